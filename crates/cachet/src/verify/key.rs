use std::fmt;
use std::sync::Arc;

use ring::{hkdf, hmac, rand};

/// Length of the key id that names a key in a signed entry.
pub(crate) const KEY_ID_LEN: usize = 8;

const HKDF_SALT: &[u8] = b"cachet verify v1 salt";
const MAC_KEY_INFO: &[u8] = b"cachet verify v1 hmac-sha256 key";
const KEY_ID_INFO: &[u8] = b"cachet verify v1 key id";

/// Why a secret cannot become a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(&'static str);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for KeyError {}

/// A MAC key derived from one secret, with the id that names it in signed entries.
#[derive(Clone)]
pub(crate) struct SigningKey {
    pub(crate) id: [u8; KEY_ID_LEN],
    pub(crate) mac: hmac::Key,
}

struct KeyIdLen;

impl hkdf::KeyType for KeyIdLen {
    fn len(&self) -> usize {
        KEY_ID_LEN
    }
}

impl SigningKey {
    fn derive(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError("secret key is empty"));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
        let mac = prk
            .expand(&[MAC_KEY_INFO], hmac::HMAC_SHA256)
            .map(hmac::Key::from)
            .map_err(|_| KeyError("key derivation failed"))?;
        let mut id = [0; KEY_ID_LEN];
        prk.expand(&[KEY_ID_INFO], KeyIdLen)
            .and_then(|okm| okm.fill(&mut id))
            .map_err(|_| KeyError("key derivation failed"))?;
        Ok(Self { id, mac })
    }
}

/// The secrets a [`Verify`](super::Verify) store signs and verifies with.
///
/// Each secret (any string or bytes, as long as it is not empty) is turned into an
/// HMAC-SHA256 key with HKDF-SHA256. The first secret signs new entries; every secret
/// verifies, so a key can be rotated by putting the new secret first and keeping the old
/// one until the entries it signed have expired. A short id derived from each key names
/// it in the entries it signs, so verifying costs one MAC however many keys there are.
///
/// `Debug` shows only the key ids, never a secret.
///
/// ```
/// use cachet::verify::Keyring;
///
/// let keyring = Keyring::new("new secret")?.with_previous("old secret")?;
/// assert_eq!(keyring.len(), 2);
/// assert!(Keyring::new("").is_err());
/// # Ok::<_, cachet::verify::KeyError>(())
/// ```
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<[SigningKey]>,
}

impl Keyring {
    /// A keyring that signs and verifies with `secret`.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        Ok(Self {
            keys: Arc::new([SigningKey::derive(secret.as_ref())?]),
        })
    }

    /// A keyring from several secrets: the first signs, all verify.
    pub fn from_secrets<I>(secrets: I) -> Result<Self, KeyError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let keys = secrets
            .into_iter()
            .map(|secret| SigningKey::derive(secret.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyError("no secret key given"));
        }
        Ok(Self { keys: keys.into() })
    }

    /// Adds a secret that verifies entries but does not sign new ones.
    pub fn with_previous(self, secret: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let mut keys = self.keys.to_vec();
        keys.push(SigningKey::derive(secret.as_ref())?);
        Ok(Self { keys: keys.into() })
    }

    /// The same keys in a keyring of its own, whose reference count no other clone
    /// touches (see [`Verify`](super::Verify)).
    pub(crate) fn unshared(&self) -> Self {
        Self {
            keys: self.keys.iter().cloned().collect(),
        }
    }

    /// How many secrets the keyring holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always `false`: a keyring holds at least one secret.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A new random secret: 32 bytes from the operating system's generator, as 64
    /// hexadecimal characters, fit for an environment variable or a password manager.
    pub fn generate_secret() -> Result<String, KeyError> {
        let bytes: [u8; 32] = rand::generate(&rand::SystemRandom::new())
            .map_err(|_| KeyError("the system random generator failed"))?
            .expose();
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub(crate) fn signing(&self) -> &SigningKey {
        &self.keys[0]
    }

    pub(crate) fn find(&self, id: &[u8]) -> Option<&SigningKey> {
        self.keys.iter().find(|key| key.id == id)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self
            .keys
            .iter()
            .map(|key| key.id.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        f.debug_struct("Keyring")
            .field("key_ids", &ids)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_secrets_give_equal_ids_and_different_secrets_differ() {
        let a = Keyring::new("a").expect("non-empty");
        let a2 = Keyring::new(b"a").expect("non-empty");
        let b = Keyring::new("b").expect("non-empty");
        assert_eq!(a.signing().id, a2.signing().id);
        assert_ne!(a.signing().id, b.signing().id);
    }

    #[test]
    fn empty_secrets_are_refused() {
        assert_eq!(
            Keyring::new("").err(),
            Some(KeyError("secret key is empty"))
        );
        assert!(Keyring::from_secrets(Vec::<String>::new()).is_err());
        assert!(Keyring::new("a").and_then(|k| k.with_previous("")).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let keyring = Keyring::new("hunter2-very-secret").expect("non-empty");
        let shown = format!("{keyring:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("key_ids"));
    }

    #[test]
    fn generated_secrets_are_64_hex_characters_and_differ() {
        let a = Keyring::generate_secret().expect("the system has randomness");
        let b = Keyring::generate_secret().expect("the system has randomness");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
