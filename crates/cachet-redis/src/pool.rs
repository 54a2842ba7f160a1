//! The connection pools: deadpool over multiplexed Redis connections (or cluster
//! connections), recycled without a round trip.
//!
//! deadpool-redis's own managers check every connection with a `PING` each time it is
//! taken from the pool, which doubles the cost of a small `GET`. These managers open
//! connections the same way but hand them out again at once (deadpool-postgres calls
//! this "fast" recycling). A connection is checked by using it instead: one whose
//! command times out or breaks is taken out of the pool and dropped, and when the
//! server is found gone (a reset, an end of file) the idle ones go too, so the next
//! operation connects afresh. That is how a store recovers when Redis comes back.
//!
//! A cluster connection is kept after a command timed out: see [`Checked`].

use std::fmt;
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{Manager, Metrics, Object, Pool, PoolError, RecycleResult, TimeoutType};
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{Cmd, RedisError, Value};

use crate::RedisMetrics;
use crate::error::{Error, Op, Stage};

/// The bounds of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) wait: Duration,
    pub(crate) connect: Duration,
    pub(crate) command: Duration,
}

impl Bounds {
    /// The most an operation may take: waiting, connecting and the command, once each.
    pub(crate) fn total(&self) -> Duration {
        self.wait + self.connect + self.command
    }
}

/// A manager whose connections the pool checks by using them.
trait Checked: Manager {
    /// Whether a connection whose command timed out goes back to the pool.
    const KEPT_AFTER_TIMEOUT: bool;
}

/// Whether `error`, met by a command on a connection of `M`'s, takes that connection out
/// of the pool.
fn discards<M: Checked>(error: &Error) -> bool {
    error.discards_connection() && !(error.is_timeout() && M::KEPT_AFTER_TIMEOUT)
}

/// Opens multiplexed connections to one Redis server through deadpool-redis, and
/// recycles them without a round trip.
pub(crate) struct SingleManager(deadpool_redis::Manager);

impl SingleManager {
    pub(crate) fn new(manager: deadpool_redis::Manager) -> Self {
        Self(manager)
    }
}

impl Manager for SingleManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.0.create().await
    }

    async fn recycle(
        &self,
        _: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        Ok(())
    }
}

impl Checked for SingleManager {
    /// A server that did not answer in time may be gone without a word (a host down, a
    /// network cut): a new connection finds out, by connecting or failing to.
    const KEPT_AFTER_TIMEOUT: bool = false;
}

/// Opens cluster connections (each one reaches every master and follows redirects),
/// and recycles them without a round trip.
#[cfg(feature = "cluster")]
pub(crate) struct ClusterManager(deadpool_redis::cluster::ClusterClient);

#[cfg(feature = "cluster")]
impl ClusterManager {
    pub(crate) fn new(client: deadpool_redis::cluster::ClusterClient) -> Self {
        Self(client)
    }
}

#[cfg(feature = "cluster")]
impl Manager for ClusterManager {
    type Type = deadpool_redis::cluster::ClusterConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<Self::Type, RedisError> {
        self.0.get_async_connection().await
    }

    async fn recycle(&self, _: &mut Self::Type, _: &Metrics) -> RecycleResult<RedisError> {
        Ok(())
    }
}

#[cfg(feature = "cluster")]
impl Checked for ClusterManager {
    /// A cluster connection holds a connection to each master, and a command that timed
    /// out says only that the master it went to did not answer; the cluster client
    /// reconnects to a master whose connection broke by itself. A new cluster connection
    /// must reach every master within the connect bound, which it cannot while one is
    /// paused or unreachable: dropping this one would make every key miss, not only
    /// that master's.
    const KEPT_AFTER_TIMEOUT: bool = true;
}

/// A pool of connections to one server or to a cluster.
pub(crate) enum Backend {
    Single(Pool<SingleManager>),
    #[cfg(feature = "cluster")]
    Cluster(Pool<ClusterManager>),
}

impl Backend {
    pub(crate) fn single(
        manager: deadpool_redis::Manager,
        max_connections: usize,
        bounds: Bounds,
    ) -> Result<Self, deadpool::managed::BuildError> {
        pool(SingleManager::new(manager), max_connections, bounds).map(Self::Single)
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn cluster(
        client: deadpool_redis::cluster::ClusterClient,
        max_connections: usize,
        bounds: Bounds,
    ) -> Result<Self, deadpool::managed::BuildError> {
        pool(ClusterManager::new(client), max_connections, bounds).map(Self::Cluster)
    }

    /// Runs one command within the bounds of a pool checkout and a reply.
    pub(crate) async fn run(
        &self,
        op: Op,
        cmd: &Cmd,
        bounds: Bounds,
        metrics: &RedisMetrics,
    ) -> Result<Value, Error> {
        match self {
            Self::Single(pool) => run(pool, op, cmd, bounds, metrics).await,
            #[cfg(feature = "cluster")]
            Self::Cluster(pool) => run(pool, op, cmd, bounds, metrics).await,
        }
    }

    /// Runs one command on the cluster master at `host:port` (for `SCAN`, which walks one
    /// node's keys), within the bounds of a pool checkout and a reply.
    #[cfg(feature = "cluster")]
    pub(crate) async fn run_on(
        &self,
        op: Op,
        cmd: &Cmd,
        (host, port): (&str, u16),
        bounds: Bounds,
        metrics: &RedisMetrics,
    ) -> Result<Value, Error> {
        use deadpool_redis::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

        let Self::Cluster(pool) = self else {
            return self.run(op, cmd, bounds, metrics).await;
        };
        let mut connection = pool
            .get()
            .await
            .map_err(|error| pool_error(op, error, bounds))?;
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.to_owned(),
            port,
        });
        let reply = tokio::time::timeout(
            bounds.command,
            connection.route_command(cmd.clone(), routing),
        )
        .await;
        let error = match answer(op, reply, bounds) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if discards::<ClusterManager>(&error) {
            drop(Object::take(connection));
            metrics.discarded();
        }
        Err(error)
    }

    /// Whether this is a cluster's pool.
    pub(crate) fn is_cluster(&self) -> bool {
        !matches!(self, Self::Single(_))
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Single(_) => "single",
            #[cfg(feature = "cluster")]
            Self::Cluster(_) => "cluster",
        }
    }

    fn status(&self) -> deadpool::managed::Status {
        match self {
            Self::Single(pool) => pool.status(),
            #[cfg(feature = "cluster")]
            Self::Cluster(pool) => pool.status(),
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status();
        f.debug_struct("Backend")
            .field("kind", &self.kind())
            .field("connections", &status.size)
            .field("idle", &status.available)
            .field("max_connections", &status.max_size)
            .finish()
    }
}

fn pool<M: Manager>(
    manager: M,
    max_connections: usize,
    bounds: Bounds,
) -> Result<Pool<M>, deadpool::managed::BuildError> {
    Pool::builder(manager)
        .max_size(max_connections)
        .wait_timeout(Some(bounds.wait))
        .create_timeout(Some(bounds.connect))
        .recycle_timeout(Some(bounds.connect))
        .runtime(Runtime::Tokio1)
        .build()
}

async fn run<M>(
    pool: &Pool<M>,
    op: Op,
    cmd: &Cmd,
    bounds: Bounds,
    metrics: &RedisMetrics,
) -> Result<Value, Error>
where
    M: Checked<Error = RedisError>,
    M::Type: ConnectionLike,
{
    let mut retried = false;
    loop {
        let mut connection = pool
            .get()
            .await
            .map_err(|error| pool_error(op, error, bounds))?;
        let reused = Object::metrics(&connection).recycle_count > 0;
        let reply = tokio::time::timeout(bounds.command, connection.req_packed_command(cmd)).await;
        let error = match answer(op, reply, bounds) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !discards::<M>(&error) {
            return Err(error);
        }
        drop(Object::take(connection));
        metrics.discarded();
        if !error.is_dropped_connection() {
            return Err(error);
        }
        // The server closed this connection: it restarted or went away, and the idle
        // connections to it are as dead. Drop them, and try once more on a new
        // connection if this one had been idle in the pool (a restart is then not even
        // a miss); the operation's overall bound still holds.
        let removed = pool.retain(|_, _| false).removed.len();
        for _ in 0..removed {
            metrics.discarded();
        }
        if !reused || retried {
            return Err(error);
        }
        retried = true;
        tracing::debug!(op = ?op, %error, "redis connection was closed; retrying on a new one");
    }
}

fn pool_error(op: Op, error: PoolError<RedisError>, bounds: Bounds) -> Error {
    match error {
        PoolError::Timeout(TimeoutType::Wait) => Error::timeout(op, Stage::Wait, bounds.wait),
        PoolError::Timeout(_) => Error::timeout(op, Stage::Connect, bounds.connect),
        PoolError::Backend(error) if error.is_timeout() => {
            Error::timeout(op, Stage::Connect, bounds.connect)
        }
        PoolError::Backend(error) => Error::connect(op, error),
        PoolError::Closed => Error::pool(op, "the connection pool is closed"),
        PoolError::NoRuntimeSpecified => Error::pool(op, "the connection pool has no runtime"),
        PoolError::PostCreateHook(_) => Error::pool(op, "a connection hook failed"),
    }
}

/// A command's reply within its bound: its value, or the error it met (Redis's own error
/// reply included).
fn answer(
    op: Op,
    reply: Result<Result<Value, RedisError>, tokio::time::error::Elapsed>,
    bounds: Bounds,
) -> Result<Value, Error> {
    match reply {
        Ok(Ok(value)) => value
            .extract_error()
            .map_err(|error| Error::command(op, error)),
        // A cluster connection bounds each command by the same bound (its response
        // timeout) and may give up first: the command timed out all the same.
        Ok(Err(error)) if error.is_timeout() => {
            Err(Error::timeout(op, Stage::Command, bounds.command))
        }
        Ok(Err(error)) => Err(Error::command(op, error)),
        Err(_) => Err(Error::timeout(op, Stage::Command, bounds.command)),
    }
}
