//! Redis keys: the namespace plus the cache key's text, hashed only when too long.

use ring::digest::{SHA256, digest};

/// The longest cache key text kept whole in a Redis key, in bytes. A longer key, or one
/// that contains [`HASH_MARKER`], is stored under its first [`HASHED_PREFIX_BYTES`] bytes
/// followed by the marker and the SHA-256 of the whole text.
pub(crate) const MAX_KEY_BYTES: usize = 512;

/// How much of a hashed key's text stays readable.
pub(crate) const HASHED_PREFIX_BYTES: usize = 128;

/// What separates the readable prefix of a hashed key from its digest. A key kept whole
/// never contains it (a key that does is hashed), so a whole key can never be mistaken
/// for a hashed one: the mapping from cache keys to Redis keys is one to one.
pub(crate) const HASH_MARKER: &str = " #sha256:";

/// What the value of a hashed key starts with: this label, the cache key text's length
/// (four bytes, big-endian) and the text, then the value. A hashed Redis key cannot be
/// turned back into its cache key, so a listing reads it from here.
pub(crate) const KEYED_LABEL: &[u8] = b"cachet-key";

/// Whether the cache key text `text` is stored under a hashed Redis key.
pub(crate) fn is_hashed(text: &str) -> bool {
    text.len() > MAX_KEY_BYTES || text.contains(HASH_MARKER)
}

/// Whether `text` is the text of a hashed Redis key itself (a readable prefix, the
/// marker, 64 hex digits): how a listing names a hashed key whose value does not say
/// which cache key it belongs to.
pub(crate) fn is_listed_hashed_key(text: &str) -> bool {
    text.rsplit_once(HASH_MARKER)
        .is_some_and(|(prefix, digest)| {
            prefix.len() <= HASHED_PREFIX_BYTES
                && digest.len() == 64
                && digest
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// The value stored under a hashed key: the cache key text in front of `value`.
pub(crate) fn frame(text: &str, value: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(KEYED_LABEL.len() + 4 + text.len() + value.len());
    framed.extend_from_slice(KEYED_LABEL);
    // A cache key longer than 4 GiB cannot reach a store.
    framed.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(text.as_bytes());
    framed.extend_from_slice(value);
    framed
}

/// How every entry cachet encodes (unsigned) begins: such bytes under a hashed key without
/// a frame were not written there by this store.
pub(crate) const ENTRY_MAGIC: &[u8] = b"CACHET";

/// The cache key text and the value of a framed value, or `None` when it is not framed.
pub(crate) fn unframe(framed: &bytes::Bytes) -> Option<(&str, bytes::Bytes)> {
    let rest = framed.strip_prefix(KEYED_LABEL)?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    let (text, value) = rest.split_at_checked(len)?;
    let text = std::str::from_utf8(text).ok()?;
    Some((text, framed.slice_ref(value)))
}

/// The Redis key for the cache key text `text` under `namespace`.
pub(crate) fn redis_key(namespace: &str, text: &str) -> String {
    if !is_hashed(text) {
        let mut key = String::with_capacity(namespace.len() + text.len());
        key.push_str(namespace);
        key.push_str(text);
        return key;
    }
    let mut cut = HASHED_PREFIX_BYTES.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = digest(&SHA256, text.as_bytes());
    let mut key =
        String::with_capacity(namespace.len() + cut + HASH_MARKER.len() + 2 * hash.as_ref().len());
    key.push_str(namespace);
    key.push_str(&text[..cut]);
    key.push_str(HASH_MARKER);
    for byte in hash.as_ref() {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        key.push(char::from(HEX[usize::from(byte >> 4)]));
        key.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_key_is_the_namespace_and_the_text() {
        assert_eq!(
            redis_key("cachet:", "GET http://host/path"),
            "cachet:GET http://host/path"
        );
        assert_eq!(redis_key("", "GET http://h/"), "GET http://h/");
    }

    #[test]
    fn a_long_key_keeps_a_readable_prefix_and_a_digest() {
        let text = format!("GET http://host/{}", "a".repeat(1_000));
        let key = redis_key("cachet:", &text);
        let prefix = format!("cachet:{}", &text[..HASHED_PREFIX_BYTES]);
        assert!(key.starts_with(&prefix), "{key}");
        let digest = key
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_prefix(HASH_MARKER))
            .expect("the marker follows the prefix");
        assert_eq!(digest.len(), 64);
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn the_limit_is_inclusive() {
        let at = "x".repeat(MAX_KEY_BYTES);
        assert_eq!(redis_key("n:", &at), format!("n:{at}"));
        let over = "x".repeat(MAX_KEY_BYTES + 1);
        assert!(redis_key("n:", &over).contains(HASH_MARKER));
    }

    #[test]
    fn long_keys_with_one_prefix_differ() {
        let base = "GET http://host/".to_owned() + &"p".repeat(600);
        assert_ne!(
            redis_key("n:", &(base.clone() + "1")),
            redis_key("n:", &(base + "2"))
        );
    }

    #[test]
    fn a_short_key_cannot_pose_as_a_hashed_one() {
        let long = format!("GET http://host/{}", "a".repeat(1_000));
        let hashed = redis_key("n:", &long);
        let forged = hashed.strip_prefix("n:").expect("namespaced");
        assert!(forged.len() <= MAX_KEY_BYTES);
        assert_ne!(redis_key("n:", forged), hashed);
    }

    #[test]
    fn a_framed_value_gives_back_its_key_and_value_and_anything_else_is_not_framed() {
        let framed = bytes::Bytes::from(frame("GET http://h/long", b"value"));
        let (text, value) = unframe(&framed).expect("framed");
        assert_eq!((text, &value[..]), ("GET http://h/long", &b"value"[..]));
        assert!(unframe(&bytes::Bytes::from_static(b"CACHET")).is_none());
        for len in 0..framed.len() - 5 {
            assert!(unframe(&framed.slice(..len)).is_none(), "{len}");
        }
    }

    #[test]
    fn the_prefix_is_cut_on_a_character_boundary() {
        let text = "é".repeat(400);
        let key = redis_key("n:", &text);
        assert!(key.starts_with(&format!("n:{}", "é".repeat(HASHED_PREFIX_BYTES / 2))));
    }
}
