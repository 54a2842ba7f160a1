//! Signed cache entries: [`VerifyLayer`] over any store.
//!
//! A store that others can write to (a shared Redis, a disk) can be made to serve
//! anything. `Verify` signs each entry with HMAC-SHA256 under a secret key you hold and
//! checks the signature before an entry is decoded, so an entry changed by anyone without
//! the key is reported as a bad signature instead of served. The
//! [security guide](crate::guide::security) explains when you need it and how to run it.
//!
//! ```
//! use cachet::verify::{Keyring, VerifyLayer};
//! use cachet::{CacheLayer, MemoryStore};
//! use tower::ServiceBuilder;
//!
//! let keyring = Keyring::new(std::env::var("CACHET_SECRET").unwrap_or_else(|_| "dev only".into()))?;
//! let store = ServiceBuilder::new()
//!     .layer(VerifyLayer::new(keyring))
//!     .service(MemoryStore::default());
//! let cache = CacheLayer::new(store);
//! # let _ = cache;
//! # Ok::<_, cachet::verify::KeyError>(())
//! ```

mod key;
mod layer;
mod service;

use std::fmt;

pub use key::{KeyError, Keyring};
pub use layer::VerifyLayer;
pub use service::{ResponseFuture, Verify};

use crate::CacheKey;

/// A stored entry failed signature verification.
///
/// It names the cache key and the reason, never a secret.
#[derive(Debug, Clone)]
pub struct BadSignature {
    key: CacheKey,
    reason: &'static str,
}

impl BadSignature {
    pub(crate) fn new(key: CacheKey, reason: &'static str) -> Self {
        Self { key, reason }
    }

    /// The cache key of the entry.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }
}

impl fmt::Display for BadSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad signature on cached entry {}: {}",
            self.key, self.reason
        )
    }
}

impl std::error::Error for BadSignature {}
