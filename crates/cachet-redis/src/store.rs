//! [`RedisStore`]: the store protocol over a pool of Redis connections.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use cachet::store::{StoreRequest, StoreResponse, Unsupported};
use cachet::{BoxError, CacheKey};
use deadpool_redis::redis::{self, Cmd, Value};
use tokio::task::JoinHandle;
use tower::Service;

use crate::RedisMetrics;
use crate::builder::RedisStoreBuilder;
use crate::error::{BuildError, Error, Op, Stage};
use crate::key;
use crate::pool::{Backend, Bounds};

/// A cachet [`Store`](cachet::store::Store) in Redis or a Redis Cluster, shared by every
/// process and machine that points at it.
///
/// Entries are written with `SET key value PX ttl` and read with `GETRANGE` (at most
/// `max_value_bytes`), one round trip each, under keys that stay readable in `redis-cli`: the namespace (by default
/// `cachet:`) and the cache key, such as `cachet:GET https://example.com/a?b=1`. A cache
/// key longer than [`MAX_KEY_BYTES`](Self::MAX_KEY_BYTES) is stored under its first
/// [`HASHED_PREFIX_BYTES`](Self::HASHED_PREFIX_BYTES) bytes, ` #sha256:` and the SHA-256
/// of the whole key in hex.
///
/// Every operation is bounded: waiting for a pooled connection, connecting, and the
/// reply each have a small default, and an operation never takes longer than their sum
/// (a listing page, which may take several commands, is bounded command by command).
/// Whatever fails (a timeout, a broken connection, Redis refusing a write because it is
/// full) is an [`Error`] that the cache turns into a miss or a skipped write; it is
/// counted in [`metrics`](Self::metrics) and recorded with a `tracing` event. Connections
/// that failed are dropped and new ones made, so the store recovers by itself when Redis
/// comes back.
///
/// Clones share one pool. Building a store does not connect; the first operation does.
///
/// The store lists its entries ([`StoreRequest::Scan`]) with `SCAN` under its namespace
/// and reads them with their remaining TTL in scripts of about a megabyte each, so that a
/// page of large values never holds Redis up for long; it clears
/// ([`StoreRequest::Clear`]) with `SCAN` and `UNLINK` under its namespace, in batches,
/// and never touches another key (a store with an empty namespace refuses to clear, with
/// an [`Unsupported`] error). A cluster store does both master by master. A hashed key
/// cannot be turned back into its cache key, so the value stored under one starts with
/// the cache key (`cachet-key`, its length and its text), which a read checks and strips;
/// a value whose frame does not name the key read is returned whole, frame and all, for a
/// [`Verify`](cachet::verify::Verify) above to refuse (and a cache without one to find
/// no entry in).
///
/// ```
/// use cachet::CacheLayer;
/// use cachet_redis::RedisStore;
///
/// let store = RedisStore::builder("redis://127.0.0.1:6379/0")
///     .namespace("myapp:cache:")
///     .build()?;
/// let layer = CacheLayer::new(store);
/// # let _ = layer;
/// # Ok::<_, cachet_redis::BuildError>(())
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) backend: Backend,
    pub(crate) namespace: String,
    pub(crate) bounds: Bounds,
    pub(crate) metrics: RedisMetrics,
    /// The largest value written or read, in bytes.
    pub(crate) max_value_bytes: usize,
    /// The servers, with passwords redacted, for `Debug`.
    pub(crate) servers: Vec<String>,
}

impl RedisStore {
    /// The namespace keys are prefixed with unless one is configured.
    pub const DEFAULT_NAMESPACE: &'static str = "cachet:";
    /// How long an operation waits for a pooled connection when all are busy: 100 ms.
    pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_millis(100);
    /// How long opening a connection may take: 250 ms.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
    /// How long a command may wait for its reply: 250 ms.
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
    /// How many connections the pool keeps at most: 16. Each carries one command at a
    /// time.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
    /// The largest value the store writes or reads, in bytes: 64 MiB.
    pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 << 20;
    /// The longest cache key kept whole in a Redis key, in bytes: 512.
    pub const MAX_KEY_BYTES: usize = key::MAX_KEY_BYTES;
    /// How much of a longer cache key stays readable in its Redis key, in bytes: 128.
    pub const HASHED_PREFIX_BYTES: usize = key::HASHED_PREFIX_BYTES;

    /// A store on the Redis server at `url` (`redis://[user:password@]host[:port][/db]`
    /// or `unix:///path/to/socket`), with the default namespace and bounds.
    pub fn new(url: impl Into<String>) -> Result<Self, BuildError> {
        Self::builder(url).build()
    }

    /// Configures a store on the Redis server at `url`.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::single(url.into())
    }

    /// Configures a store on a Redis Cluster, reached first through any of `urls`
    /// (`redis://host:port`, one or more masters; the rest are discovered).
    #[cfg(feature = "cluster")]
    pub fn cluster<I>(urls: I) -> RedisStoreBuilder
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        RedisStoreBuilder::cluster(urls.into_iter().map(Into::into).collect())
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The counts of failed operations, shared by every clone of this store.
    pub fn metrics(&self) -> RedisMetrics {
        self.inner.metrics.clone()
    }

    /// The namespace every key starts with.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The Redis key an entry for `key` is kept under: the namespace and the key's
    /// text, or for a long key its readable prefix and digest.
    pub fn redis_key(&self, key: &CacheKey) -> String {
        key::redis_key(&self.inner.namespace, key.as_str())
    }

    /// The most one operation can take: the pool wait, the connect and the command
    /// bounds added up.
    pub fn max_operation_time(&self) -> Duration {
        self.inner.bounds.total()
    }

    /// Sends a `PING`, within the same bounds as every operation: a way to check the
    /// configuration at startup. The store works without it, and works again once
    /// Redis is back even if this failed.
    pub async fn ping(&self) -> Result<(), Error> {
        let cmd = redis::cmd("PING");
        match self.inner.execute(Op::Ping, None, &cmd, "").await? {
            Value::SimpleString(_) | Value::Okay | Value::BulkString(_) => Ok(()),
            _ => Err(self.inner.unexpected(Op::Ping, "")),
        }
    }
}

impl Inner {
    async fn call(self: Arc<Self>, request: StoreRequest) -> Result<StoreResponse, BoxError> {
        let mut hashed = None;
        let (op, cmd, key) = match request {
            StoreRequest::Get(key) => {
                let text = key.as_str();
                if key::is_hashed(text) {
                    hashed = Some(key.clone());
                }
                let key = key::redis_key(&self.namespace, text);
                // A value past the limit is not read whole: anyone who can write to this
                // Redis could otherwise make every reader allocate what they stored.
                let mut cmd = redis::cmd("GETRANGE");
                cmd.arg(&key).arg(0).arg(self.max_value_bytes);
                (Op::Get, cmd, key)
            }
            StoreRequest::Put {
                key: cache_key,
                value,
                ttl,
            } => {
                let text = cache_key.as_str();
                let key = key::redis_key(&self.namespace, text);
                let mut cmd = redis::cmd("SET");
                let len = if key::is_hashed(text) {
                    let framed = key::frame(text, value.bytes());
                    let len = framed.len();
                    cmd.arg(&key).arg(framed);
                    len
                } else {
                    cmd.arg(&key).arg(value.bytes().as_ref());
                    value.bytes().len()
                };
                if len > self.max_value_bytes {
                    let error = Error::too_large(Op::Put, self.max_value_bytes);
                    self.failed(Op::Put, &key, &error);
                    return Err(error.into());
                }
                cmd.arg("PX").arg(ttl_millis(ttl));
                (Op::Put, cmd, key)
            }
            StoreRequest::Delete(key) => {
                let text = key.as_str();
                if key::is_listed_hashed_key(text) {
                    // A hashed key whose value names no cache key of its own is listed by
                    // the Redis key's text, which hashes elsewhere: that key goes too.
                    let mut cmd = redis::cmd("DEL");
                    cmd.arg(format!("{}{text}", self.namespace));
                    self.execute(Op::Delete, None, &cmd, text).await?;
                }
                let key = key::redis_key(&self.namespace, text);
                let mut cmd = redis::cmd("DEL");
                cmd.arg(&key);
                (Op::Delete, cmd, key)
            }
            StoreRequest::Scan(scan) => return Ok(StoreResponse::Page(self.scan(&scan).await?)),
            StoreRequest::Clear => {
                self.clear().await?;
                return Ok(StoreResponse::Done);
            }
            // `StoreRequest` may grow; until this store learns a new request it answers
            // that it cannot, and the cache fails open.
            _ => return Err(Unsupported::new("redis store", "answer this request").into()),
        };
        let reply = self.execute(op, None, &cmd, &key).await?;
        let response = match (op, reply) {
            // `GETRANGE` answers a key that is not there with nothing; no entry is empty.
            (Op::Get, Value::BulkString(bytes)) if bytes.is_empty() => StoreResponse::NotFound,
            (Op::Get, Value::BulkString(bytes)) if bytes.len() > self.max_value_bytes => {
                let error = Error::too_large(Op::Get, self.max_value_bytes);
                self.failed(Op::Get, &key, &error);
                return Err(error.into());
            }
            (Op::Get, Value::BulkString(bytes)) => match hashed {
                None => StoreResponse::Found(Bytes::from(bytes).into()),
                Some(cache_key) => {
                    let framed = Bytes::from(bytes);
                    match key::unframe(&framed) {
                        Some((text, value)) if text == cache_key.as_str() => {
                            StoreResponse::Found(value.into())
                        }
                        // An unsigned entry with no frame (copied from a short key): cachet
                        // never writes one under a hashed key, and handed on it would be
                        // served for this key by a cache without a `Verify`.
                        _ if framed.starts_with(key::ENTRY_MAGIC) => {
                            tracing::debug!(key, "a hashed key holds an entry without its frame");
                            StoreResponse::NotFound
                        }
                        // A frame that names another key (changed, copied from another
                        // long key, or a collision), or other bytes: they go on as they
                        // are, so that a `Verify` above reports them as a bad signature
                        // instead of the store hiding them as a miss. Unsigned, they are
                        // no entry either (they do not start with an entry's magic).
                        _ => {
                            tracing::debug!(key, "a hashed key's value is not framed for it");
                            StoreResponse::Found(framed.into())
                        }
                    }
                }
            },
            (Op::Get, Value::Nil) => StoreResponse::NotFound,
            (Op::Put, Value::Okay | Value::SimpleString(_)) => StoreResponse::Done,
            (Op::Delete, Value::Int(_)) => StoreResponse::Done,
            _ => return Err(self.unexpected(op, &key).into()),
        };
        Ok(response)
    }

    /// Runs a command within the operation's overall bound, counting and recording any
    /// failure.
    /// On a cluster, `node` sends it to that master instead of the key's.
    pub(crate) async fn execute(
        &self,
        op: Op,
        node: Option<(&str, u16)>,
        cmd: &Cmd,
        key: &str,
    ) -> Result<Value, Error> {
        let bound = self.bounds.total();
        let run = async {
            match node {
                #[cfg(feature = "cluster")]
                Some(node) => {
                    self.backend
                        .run_on(op, cmd, node, self.bounds, &self.metrics)
                        .await
                }
                _ => self.backend.run(op, cmd, self.bounds, &self.metrics).await,
            }
        };
        let result = match tokio::time::timeout(bound, run).await {
            Ok(result) => result,
            Err(_) => Err(Error::timeout(op, Stage::Operation, bound)),
        };
        if let Err(error) = &result {
            self.failed(op, key, error);
        }
        result
    }

    pub(crate) fn unexpected(&self, op: Op, key: &str) -> Error {
        let error = Error::unexpected_reply(op);
        self.failed(op, key, &error);
        error
    }

    fn failed(&self, op: Op, key: &str, error: &Error) {
        self.metrics.failed(error);
        let source = std::error::Error::source(error).map(tracing::field::display);
        tracing::debug!(
            op = ?op,
            key,
            %error,
            source,
            "redis store operation failed; the cache fails open"
        );
    }
}

/// `PX` milliseconds: the TTL rounded up to a whole millisecond, at least 1, at most
/// about 30 years (Redis refuses an expiry time past its clock's range).
fn ttl_millis(ttl: Duration) -> u64 {
    const MAX_MILLIS: u64 = 1_000_000_000_000;
    let millis = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis)
        .unwrap_or(MAX_MILLIS)
        .clamp(1, MAX_MILLIS)
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("servers", &self.inner.servers)
            .field("namespace", &self.inner.namespace)
            .field("bounds", &self.inner.bounds)
            .field("pool", &self.inner.backend)
            .field("metrics", &self.inner.metrics)
            .finish()
    }
}

impl Service<StoreRequest> for RedisStore {
    type Response = StoreResponse;
    type Error = BoxError;
    type Future = ResponseFuture;

    /// Always ready: waiting for a connection is part of each operation, and bounded.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: StoreRequest) -> ResponseFuture {
        // deadpool's and the Redis client's futures come from `async fn`s and cannot be
        // named; the operation runs as a task of its own, which this named future waits
        // for (and stops when dropped).
        let state = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => State::Running(runtime.spawn(self.inner.clone().call(request))),
            Err(_) => State::NoRuntime,
        };
        ResponseFuture { state }
    }
}

/// The response future of [`RedisStore`]: waits for the operation's task.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    state: State,
}

enum State {
    Running(JoinHandle<Result<StoreResponse, BoxError>>),
    /// Called outside a Tokio runtime, which the Redis client needs.
    NoRuntime,
    Done,
}

impl Future for ResponseFuture {
    type Output = Result<StoreResponse, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let output = match &mut self.state {
            State::Running(task) => match ready!(Pin::new(task).poll(cx)) {
                Ok(result) => result,
                Err(_) => Err(Error::pool(Op::Any, "its task panicked or was cancelled").into()),
            },
            State::NoRuntime => Err(Error::pool(Op::Any, "it needs a Tokio runtime").into()),
            State::Done => Err(Error::pool(Op::Any, "polled after it completed").into()),
        };
        self.state = State::Done;
        Poll::Ready(output)
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        // A caller that stops waiting stops the operation, as with any future.
        if let State::Running(task) = &self.state {
            task.abort();
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Running(_) => "running",
            State::NoRuntime => "no runtime",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_milliseconds_of_at_least_one() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1_001)), 2);
        assert_eq!(ttl_millis(Duration::from_secs(60)), 60_000);
        assert_eq!(ttl_millis(Duration::MAX), 1_000_000_000_000);
    }

    #[test]
    fn outside_a_tokio_runtime_an_operation_fails_with_a_clear_error() {
        let mut store = RedisStore::new("redis://127.0.0.1:1").expect("a valid URL");
        let mut call = store.call(StoreRequest::Get(CacheKey::from_text("GET http://a/")));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Err(error)) = Pin::new(&mut call).poll(&mut cx) else {
            panic!("an operation outside a runtime fails at once");
        };
        assert_eq!(
            error.to_string(),
            "redis operation failed: it needs a Tokio runtime"
        );
    }

    fn assert_store<S: cachet::store::Store>() {}

    #[test]
    fn a_redis_store_is_a_store() {
        assert_store::<RedisStore>();
    }
}
