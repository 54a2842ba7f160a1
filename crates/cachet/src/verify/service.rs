use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use pin_project::pin_project;
use ring::hmac;
use tower::Service;

use super::key::KEY_ID_LEN;
use super::{BadSignature, Keyring, VerifyLayer};
use crate::per_clone::PerClone;
use crate::store::{Listed, Page, StoreRequest, StoreResponse, Value};
use crate::{BoxError, CacheKey};

/// The label every signed entry starts with; the MAC covers it, so a tag made for
/// anything else never verifies here.
const LABEL: &[u8] = b"cachet-signed";
const FORMAT: u8 = 1;
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = LABEL.len() + 1 + KEY_ID_LEN + 4;

/// A store that signs every entry it is given and verifies every entry it returns.
///
/// A signed entry is `cachet-signed`, a format byte, the signing key's id, the cache key
/// (length-prefixed), the inner entry, and an HMAC-SHA256 tag over all of that. On a get,
/// the tag is checked (in constant time) before anything else reads the entry, and the
/// stored cache key must be the one asked for, so an entry copied to another key fails as
/// surely as a changed byte. A failure is a [`BadSignature`] error. `Verify` knows nothing
/// of HTTP; it works over any store.
///
/// A listing ([`StoreRequest::Scan`]) is verified entry by entry: an entry that fails is
/// listed with its [`BadSignature`] as its value's error, and the rest of the page is
/// listed as usual. Other requests (delete, clear) pass through.
#[derive(Clone, Debug)]
pub struct Verify<St> {
    inner: St,
    /// Every get hands its future a reference to the keyring; a long-lived clone hands
    /// out references to a copy of its own.
    keyring: PerClone<Keyring>,
}

impl<St> Verify<St> {
    /// Wraps `inner`, signing and verifying with `keyring`.
    pub fn new(inner: St, keyring: Keyring) -> Self {
        Self {
            inner,
            keyring: PerClone::new(keyring),
        }
    }

    /// A [`VerifyLayer`] with `keyring`.
    pub fn layer(keyring: Keyring) -> VerifyLayer {
        VerifyLayer::new(keyring)
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &St {
        &self.inner
    }

    /// Consumes the layer, returning the wrapped store.
    pub fn into_inner(self) -> St {
        self.inner
    }
}

impl<St> Service<StoreRequest> for Verify<St>
where
    St: Service<StoreRequest, Response = StoreResponse, Error = BoxError>,
{
    type Response = StoreResponse;
    type Error = BoxError;
    type Future = ResponseFuture<St::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: StoreRequest) -> Self::Future {
        match request {
            StoreRequest::Get(key) => ResponseFuture {
                inner: self.inner.call(StoreRequest::Get(key.clone())),
                verify: Check::Found(key, self.keyring.get(Keyring::unshared)),
            },
            StoreRequest::Scan(scan) => ResponseFuture {
                inner: self.inner.call(StoreRequest::Scan(scan)),
                verify: Check::Page(self.keyring.shared().clone()),
            },
            StoreRequest::Put { key, value, ttl } => {
                let value = sign(self.keyring.shared(), &key, value.bytes()).into();
                self.pass(StoreRequest::Put { key, value, ttl })
            }
            other => self.pass(other),
        }
    }
}

impl<St: Service<StoreRequest>> Verify<St> {
    /// Sends `request` on with nothing to verify in the answer.
    fn pass(&mut self, request: StoreRequest) -> ResponseFuture<St::Future> {
        ResponseFuture {
            inner: self.inner.call(request),
            verify: Check::None,
        }
    }
}

/// The response future of [`Verify`].
#[pin_project]
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    verify: Check,
}

/// What to verify in the inner store's answer.
#[derive(Debug)]
enum Check {
    None,
    /// The value found under this key.
    Found(CacheKey, Keyring),
    /// Every value of a page, each under its own key.
    Page(Keyring),
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<StoreResponse, BoxError>>,
{
    type Output = Result<StoreResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        Poll::Ready(
            match (response, std::mem::replace(this.verify, Check::None)) {
                (StoreResponse::Found(signed), Check::Found(key, keyring)) => {
                    verified(&keyring, &key, &signed)
                        .map(StoreResponse::Found)
                        .map_err(|reason| BadSignature::new(key, reason).into())
                }
                (StoreResponse::Page(page), Check::Page(keyring)) => {
                    Ok(StoreResponse::Page(verified_page(&keyring, page)))
                }
                (response, _) => Ok(response),
            },
        )
    }
}

/// A page with every value verified, or replaced by why it failed.
fn verified_page(keyring: &Keyring, page: Page) -> Page {
    let (items, next) = page.into_parts();
    let items = items
        .into_iter()
        .map(|item: Listed| {
            let value = match item.value() {
                Ok(signed) => verified(keyring, item.key(), signed)
                    .map_err(|reason| BadSignature::new(item.key().clone(), reason).into()),
                Err(_) => return item,
            };
            item.with_value(value)
        })
        .collect();
    Page::new(items, next)
}

fn sign(keyring: &Keyring, key: &CacheKey, value: &[u8]) -> Bytes {
    let signing = keyring.signing();
    let key = key.as_str().as_bytes();
    let mut signed = BytesMut::with_capacity(HEADER_LEN + key.len() + value.len() + TAG_LEN);
    signed.put_slice(LABEL);
    signed.put_u8(FORMAT);
    signed.put_slice(&signing.id);
    // Cache keys are URIs; one longer than 4 GiB cannot reach a store.
    signed.put_u32(u32::try_from(key.len()).unwrap_or(u32::MAX));
    signed.put_slice(key);
    signed.put_slice(value);
    let tag = hmac::sign(&signing.mac, &signed);
    signed.put_slice(tag.as_ref());
    signed.freeze()
}

/// A signed value that verified: for which cache key, under which key id, and the inner
/// value. Kept in the signed value's slot, so bytes that stay in the process (a memory
/// store) cost one MAC, not one per read.
struct Verified {
    key: CacheKey,
    key_id: [u8; KEY_ID_LEN],
    payload: Value,
}

/// The inner value of a signed value, verified once per value for a given cache key and
/// signing key.
fn verified(keyring: &Keyring, key: &CacheKey, signed: &Value) -> Result<Value, &'static str> {
    let memo = signed.derive_ref(|bytes| {
        verify(keyring, key, bytes).map(|(key_id, payload)| Verified {
            key: key.clone(),
            key_id,
            payload: payload.into(),
        })
    })?;
    // A value read under another cache key, or by a keyring without the key that
    // verified it, is checked afresh.
    if memo.key == *key && keyring.find(&memo.key_id).is_some() {
        return Ok(memo.payload.clone());
    }
    verify(keyring, key, signed.bytes()).map(|(_, payload)| payload.into())
}

/// Checks a signed entry and returns the signing key's id and the inner entry, borrowed
/// from `signed`.
fn verify(
    keyring: &Keyring,
    key: &CacheKey,
    signed: &Bytes,
) -> Result<([u8; KEY_ID_LEN], Bytes), &'static str> {
    let unsigned = "entry is not signed";
    let body_end = signed.len().checked_sub(TAG_LEN).ok_or(unsigned)?;
    let (data, tag) = signed.split_at(body_end);
    let rest = data.strip_prefix(LABEL).ok_or(unsigned)?;
    let (&format, rest) = rest.split_first().ok_or(unsigned)?;
    if format != FORMAT {
        return Err("entry has an unknown signature format");
    }
    let (id, rest) = rest.split_at_checked(KEY_ID_LEN).ok_or(unsigned)?;
    let signing = keyring
        .find(id)
        .ok_or("entry is signed with a key this cache does not have")?;
    hmac::verify(&signing.mac, data, tag).map_err(|_| "signature does not match")?;

    // The tag is good: what follows was written by a holder of the key.
    let (len, rest) = rest.split_at_checked(4).ok_or(unsigned)?;
    let len = u32::from_be_bytes(len.try_into().map_err(|_| unsigned)?) as usize;
    let (stored_key, inner) = rest.split_at_checked(len).ok_or(unsigned)?;
    if stored_key != key.as_str().as_bytes() {
        return Err("entry was signed for another cache key");
    }
    Ok((signing.id, signed.slice_ref(inner)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn keyring(secret: &str) -> Keyring {
        Keyring::new(secret).expect("test secrets are not empty")
    }

    fn key(text: &str) -> CacheKey {
        CacheKey::from_text(text)
    }

    #[test]
    fn a_signed_entry_verifies_and_borrows_its_payload() {
        let keys = keyring("k");
        let signed = sign(&keys, &key("GET http://a/"), b"payload");
        let (_, inner) =
            verify(&keys, &key("GET http://a/"), &signed).expect("untouched entries verify");
        assert_eq!(inner, "payload");
        assert!(signed.as_ptr_range().contains(&inner.as_ptr()));
    }

    #[test]
    fn an_entry_moved_to_another_key_fails() {
        let keys = keyring("k");
        let signed = sign(&keys, &key("GET http://a/"), b"payload");
        assert_eq!(
            verify(&keys, &key("GET http://b/"), &signed).err(),
            Some("entry was signed for another cache key")
        );
    }

    #[test]
    fn another_key_or_foreign_bytes_fail() {
        let signed = sign(&keyring("a"), &key("k"), b"payload");
        assert!(verify(&keyring("b"), &key("k"), &signed).is_err());
        assert!(verify(&keyring("a"), &key("k"), &Bytes::from_static(b"exploit!")).is_err());
        assert!(verify(&keyring("a"), &key("k"), &Bytes::new()).is_err());
    }

    #[test]
    fn rotation_verifies_old_entries_while_the_old_secret_is_kept() {
        let old = sign(&keyring("old"), &key("k"), b"payload");
        let rotated = keyring("new").with_previous("old").expect("not empty");
        assert!(verify(&rotated, &key("k"), &old).is_ok());
        assert!(verify(&keyring("new"), &key("k"), &old).is_err());
        let fresh = sign(&rotated, &key("k"), b"payload");
        assert!(verify(&keyring("new"), &key("k"), &fresh).is_ok());
    }

    #[tokio::test]
    async fn a_clone_and_its_own_keyring_verify_what_the_original_signs() {
        use tower::ServiceExt;

        let original = Verify::new(crate::MemoryStore::default(), keyring("k"));
        let clone = original.clone();
        let put = StoreRequest::Put {
            key: key("k1"),
            value: Value::from("payload"),
            ttl: std::time::Duration::from_secs(60),
        };
        original.oneshot(put).await.expect("stored");
        // The second get on a handle uses its own copy of the keyring.
        let mut handle = clone;
        for _ in 0..3 {
            let found = handle.ready().await.expect("ready");
            let found = found.call(StoreRequest::Get(key("k1"))).await;
            assert_eq!(
                found.expect("verified"),
                StoreResponse::Found(Value::from("payload"))
            );
        }
    }

    #[test]
    fn a_verified_value_is_reused_only_for_its_key_and_by_keyrings_that_hold_its_key() {
        let a = keyring("a");
        let signed = Value::from(sign(&a, &key("k1"), b"payload"));
        assert!(verified(&a, &key("k1"), &signed).is_ok());
        // The same value, now verified and remembered, read under another key or by a
        // keyring without key a, is checked afresh and fails.
        assert!(verified(&a, &key("k2"), &signed).is_err());
        assert!(verified(&keyring("b"), &key("k1"), &signed).is_err());
        let rotated = keyring("b").with_previous("a").expect("not empty");
        assert!(verified(&rotated, &key("k1"), &signed).is_ok());
    }

    #[tokio::test]
    async fn a_listing_reports_a_tampered_entry_and_lists_the_rest() {
        use crate::store::{Cursor, MemoryStore, Scan};
        use tower::ServiceExt;

        let memory = MemoryStore::default();
        let signed = Verify::new(memory.clone(), keyring("k"));
        for (store, text) in [
            (signed.clone(), "GET http://a/"),
            (signed.clone(), "GET http://b/"),
        ] {
            let put = StoreRequest::Put {
                key: key(text),
                value: Value::from("payload"),
                ttl: std::time::Duration::from_secs(60),
            };
            store.oneshot(put).await.expect("memory stores never fail");
        }
        // Somebody without the key rewrites one entry.
        let forged = StoreRequest::Put {
            key: key("GET http://b/"),
            value: Value::from("forged"),
            ttl: std::time::Duration::from_secs(60),
        };
        memory
            .oneshot(forged)
            .await
            .expect("memory stores never fail");

        let scan = StoreRequest::Scan(Scan::new(Cursor::start()));
        let Ok(StoreResponse::Page(page)) = signed.oneshot(scan).await else {
            panic!("a signed memory store lists");
        };
        let [good, bad] = page.items() else {
            panic!("two entries: {page:?}");
        };
        assert_eq!(
            good.value().map(|v| v.bytes().clone()).ok(),
            Some(Bytes::from("payload"))
        );
        let error = bad.value().expect_err("the forged entry fails");
        assert!(error.is::<BadSignature>(), "{error}");
    }

    proptest! {
        #[test]
        fn any_flipped_bit_fails(payload in proptest::collection::vec(any::<u8>(), 0..256), bit in any::<usize>()) {
            let keys = keyring("k");
            let signed = sign(&keys, &key("GET http://a/x"), &payload);
            let mut tampered = signed.to_vec();
            let bit = bit % (tampered.len() * 8);
            tampered[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify(&keys, &key("GET http://a/x"), &Bytes::from(tampered)).is_err());
        }

        #[test]
        fn random_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            prop_assert!(verify(&keyring("k"), &key("k"), &Bytes::from(bytes)).is_err());
        }
    }
}
