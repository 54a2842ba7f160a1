//! A Redis and Redis Cluster store for [cachet]: one cache for many processes and
//! machines.
//!
//! [`RedisStore`] is a cachet [`Store`](cachet::store::Store) on a pool of Redis
//! connections (deadpool-redis). Put it under a [`CacheLayer`](cachet::CacheLayer), with a
//! [`VerifyLayer`](cachet::verify::VerifyLayer) between them when others can write to
//! the Redis, and every cache pointed at the same Redis shares its entries.
//!
//! ```no_run
//! use cachet::CacheLayer;
//! use cachet::verify::{Keyring, VerifyLayer};
//! use cachet_redis::RedisStore;
//! use tower::{Layer, ServiceBuilder};
//!
//! # fn main() -> Result<(), cachet::BoxError> {
//! let store = RedisStore::builder("redis://127.0.0.1:6379/0")
//!     .namespace("cachet:")
//!     .build()?;
//! let signed = ServiceBuilder::new()
//!     .layer(VerifyLayer::new(Keyring::new(std::env::var("CACHET_SECRET")?)?))
//!     .service(store.clone());
//! let cache = CacheLayer::new(signed);
//! # let client = tower::service_fn(|_: http::Request<String>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//! # });
//! let client = cache.layer(client);
//! // Every failed Redis operation is a miss or a skipped write, and counted:
//! println!("redis errors so far: {}", store.metrics().errors());
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! - Keys are the namespace and the cache key, readable in `redis-cli`:
//!   `cachet:GET https://example.com/a?b=1`.
//! - Entries expire with Redis (`SET … PX`), after the TTL the cache asks for.
//! - Every operation is bounded (pool wait, connect, command: 100, 250 and 250 ms by
//!   default), and whatever fails is a miss or a skipped write for the cache, never a
//!   failed request. The store recovers by itself when Redis comes back.
//! - A hit costs one round trip: pooled connections are not pinged when taken out.
//!
//! The [guide] covers the key layout, expiry, sizing, failure behaviour and Redis
//! Cluster.
//!
//! [cachet]: https://docs.rs/cachet

mod builder;
mod error;
mod key;
mod metrics;
mod pool;
mod scan;
mod store;

#[doc = include_str!("../../../docs/redis.md")]
pub mod guide {}

pub use builder::RedisStoreBuilder;
pub use error::{BuildError, Error, redact};
pub use metrics::RedisMetrics;
pub use store::{RedisStore, ResponseFuture};
