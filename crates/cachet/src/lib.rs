//! cachet is an HTTP response cache for [tower] and [hyper] clients, proxies and
//! servers' outbound calls.
//!
//! A [`CacheLayer`] sits in front of any `tower::Service<http::Request<_>>` and answers
//! from a [`Store`](store::Store) whenever the HTTP caching rules of RFC 9111 allow.
//! Stored responses are versioned, bincode-encoded entries.
//!
//! - [`CacheLayer`] / [`Cache`]: the cache itself, shared (the default) or private.
//! - [`store`]: the store protocol, and [`MemoryStore`], the in-process default.
//! - [`body_key`]: [`BodyKeyLayer`], which reads request bodies ahead so a POST can be
//!   cached, keyed by its body.
//! - [`CacheStatus`]: what the cache did, in every response's extensions.
//! - [`verify`]: signed entries, so a store others can write cannot make the cache
//!   serve what they wrote.
//! - [`manage`]: list, show, delete and clear what a cache has stored.
//! - [`Metrics`]: counts of hits, forwards, store errors and bad signatures.
//! - [`clock`]: the time source, replaceable in tests.
//! - [`guide`]: the user guide, from `docs/guide.md`.
//!
//! [tower]: https://docs.rs/tower
//! [hyper]: https://docs.rs/hyper

pub mod body_key;
mod cache;
pub mod clock;
mod entry;
mod error;
mod key;
pub mod manage;
mod metrics;
mod per_clone;
mod policy;
pub mod store;
pub mod verify;

#[doc = include_str!("../../../docs/guide.md")]
pub mod guide {
    #[doc = include_str!("../../../docs/security.md")]
    pub mod security {}

    #[doc = include_str!("../../../docs/http-caching.md")]
    pub mod http_caching {}

    #[doc = include_str!("../../../docs/proxy.md")]
    pub mod proxy {}

    #[doc = include_str!("../../../docs/controls.md")]
    pub mod controls {}

    #[doc = include_str!("../../../docs/expiration.md")]
    pub mod expiration {}

    #[doc = include_str!("../../../docs/keys.md")]
    pub mod keys {}

    #[doc = include_str!("../../../docs/filtering.md")]
    pub mod filtering {}

    #[doc = include_str!("../../../docs/inspection.md")]
    pub mod inspection {}

    #[doc = include_str!("../../../docs/migrating.md")]
    pub mod migrating {}
}

pub use body_key::{BodyDigest, BodyKey, BodyKeyLayer, KeyedBody};
pub use cache::{
    Cache, CacheBody, CacheLayer, CacheMetadata, CacheMode, CacheStatus, Expiry, Filter,
    ForwardReason, OnBadSignature, ResponseFuture, UNCACHEABLE_METHODS, bypass,
};
pub use error::{BoxError, Error, OneLine};
pub use key::{CacheKey, DefaultKey, KeyStrategy, Keys, RequestHead};
pub use metrics::Metrics;
pub use store::MemoryStore;

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
