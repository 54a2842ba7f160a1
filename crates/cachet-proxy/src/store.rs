//! The store the proxy's cache keeps entries in, chosen on the command line.

use cachet::MemoryStore;
use cachet::store::Tiered;
use cachet::verify::Verify;
use cachet_redis::RedisStore;
use tower::util::Either;

use crate::{Config, Error, StoreChoice};

/// Where entries live: memory or Redis.
pub(crate) type Backend = Either<MemoryStore, RedisStore>;

/// The backend, signed when `--secret-key-env` is given.
pub(crate) type Signed = Either<Backend, Verify<Backend>>;

/// The store, with a memory tier in front when `--memory-tier` is given (for Redis): what
/// crosses from Redis is verified and decoded once, then served from memory.
pub(crate) type ProxyStore = Either<Signed, Tiered<MemoryStore, Signed>>;

/// What a store is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A proxy that serves with it: a Redis that does not answer yet is logged, and
    /// requests go to the upstream until it does.
    Serving,
    /// One `entries` command, whose own request reports a Redis that does not answer.
    Command,
}

pub(crate) async fn build(config: &Config, purpose: Purpose) -> Result<ProxyStore, Error> {
    let backend = match config.store() {
        StoreChoice::Memory => Either::Left(MemoryStore::new(config.memory_bytes())),
        StoreChoice::Redis(url) => {
            Either::Right(redis(RedisStore::builder(url.as_str()), config, purpose).await?)
        }
        StoreChoice::Cluster(urls) => {
            Either::Right(redis(RedisStore::cluster(urls.iter().cloned()), config, purpose).await?)
        }
    };
    let signed = match config.keyring().map_err(Error::store)? {
        Some(keyring) => Either::Right(Verify::new(backend, keyring)),
        None => Either::Left(backend),
    };
    Ok(match config.memory_tier() {
        Some(keep) => {
            let near = MemoryStore::new(config.memory_bytes());
            Either::Right(Tiered::new(near, signed).near_ttl(keep))
        }
        None => Either::Left(signed),
    })
}

/// Builds the Redis store; an unreachable Redis is not fatal: a serving proxy logs it,
/// and its cache fails open until Redis comes back.
async fn redis(
    builder: cachet_redis::RedisStoreBuilder,
    config: &Config,
    purpose: Purpose,
) -> Result<RedisStore, Error> {
    // Room for the largest body that is stored, with its head and framing, within what
    // Redis takes in one value.
    const HEAD_ROOM: usize = 1 << 20;
    const REDIS_MAX: usize = 512 << 20;
    let max_value_bytes = config
        .max_body_bytes()
        .saturating_add(HEAD_ROOM)
        .clamp(RedisStore::DEFAULT_MAX_VALUE_BYTES, REDIS_MAX);
    let store = builder
        .namespace(config.redis_namespace())
        .max_value_bytes(max_value_bytes)
        .build()
        .map_err(Error::store)?;
    if purpose == Purpose::Serving
        && let Err(error) = store.ping().await
    {
        let error = cachet::OneLine(&error).to_string();
        tracing::warn!(%error, "Redis does not answer yet; serving from the upstream until it does");
    }
    Ok(store)
}
