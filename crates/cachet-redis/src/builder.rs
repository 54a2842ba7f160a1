//! [`RedisStoreBuilder`]: where a store connects, its namespace and its bounds.

use std::fmt;
use std::time::Duration;

use deadpool_redis::redis::AsyncConnectionConfig;

use crate::RedisMetrics;
use crate::error::{BuildError, redact};
use crate::pool::{Backend, Bounds};
use crate::store::{Inner, RedisStore};

/// Configures a [`RedisStore`]; made by [`RedisStore::builder`] or
/// [`RedisStore::cluster`].
///
/// ```
/// use std::time::Duration;
/// use cachet_redis::RedisStore;
///
/// let store = RedisStore::builder("redis://127.0.0.1:6379/0")
///     .namespace("shop:http:")
///     .max_connections(32)
///     .command_timeout(Duration::from_millis(100))
///     .build()?;
/// assert_eq!(store.max_operation_time(), Duration::from_millis(100 + 250 + 100));
/// # Ok::<_, cachet_redis::BuildError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    target: Target,
    namespace: String,
    max_connections: usize,
    max_value_bytes: usize,
    bounds: Bounds,
}

#[derive(Clone)]
enum Target {
    Single(String),
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
}

impl RedisStoreBuilder {
    pub(crate) fn single(url: String) -> Self {
        Self::new(Target::Single(url))
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn cluster(urls: Vec<String>) -> Self {
        Self::new(Target::Cluster(urls))
    }

    fn new(target: Target) -> Self {
        Self {
            target,
            namespace: RedisStore::DEFAULT_NAMESPACE.to_owned(),
            max_connections: RedisStore::DEFAULT_MAX_CONNECTIONS,
            max_value_bytes: RedisStore::DEFAULT_MAX_VALUE_BYTES,
            bounds: Bounds {
                wait: RedisStore::DEFAULT_WAIT_TIMEOUT,
                connect: RedisStore::DEFAULT_CONNECT_TIMEOUT,
                command: RedisStore::DEFAULT_COMMAND_TIMEOUT,
            },
        }
    }

    /// What every key starts with (default `cachet:`), so that several applications
    /// or caches can share one Redis and `SCAN 0 MATCH cachet:*` finds this one's keys.
    /// No namespace on the same database may start with another (`cache:` and
    /// `cache:staging:`): the shorter one's listing, stats and `clear` would reach the
    /// longer one's keys.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The most connections the pool opens (default 16; 1 to 10,000). Each carries one
    /// command at a time; an operation that finds them all busy waits for one, up to the
    /// [`wait_timeout`](Self::wait_timeout).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// The largest value the store writes or reads, in bytes (default 64 MiB; 1 KiB to
    /// 512 MiB, Redis's own limit). A larger write is not sent and a larger value is not
    /// read past the limit: both fail as [`is_too_large`](crate::Error::is_too_large)
    /// and the cache fails open. Raise it along with
    /// [`CacheLayer::max_body_bytes`](cachet::CacheLayer::max_body_bytes) if bodies near
    /// the limit should be stored (cachet-proxy does so from `--max-body-bytes`).
    pub fn max_value_bytes(mut self, max: usize) -> Self {
        self.max_value_bytes = max;
        self
    }

    /// How long an operation waits for a free pooled connection (default 100 ms).
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.bounds.wait = timeout;
        self
    }

    /// How long opening a new connection may take, handshake included (default 250 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.bounds.connect = timeout;
        self
    }

    /// How long a command may wait for its reply (default 250 ms). A connection whose
    /// command timed out is dropped, not reused; on a cluster it is kept, as it reaches
    /// every other master, and only the keys of the master that did not answer miss.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.bounds.command = timeout;
        self
    }

    /// Checks the configuration and makes the store. It does not connect: the first
    /// operation does, so a store built while Redis is down works once Redis is up. Each
    /// timeout must be more than zero and at most an hour.
    pub fn build(self) -> Result<RedisStore, BuildError> {
        // Bounds past which a setting is a mistake, not a choice: a pool's slots are
        // allocated up front, and an operation's time is the sum of its bounds.
        const MAX_CONNECTIONS: usize = 10_000;
        const MAX_BOUND: Duration = Duration::from_secs(60 * 60);
        // Redis's own `proto-max-bulk-len` by default; an entry is never under a KiB's
        // worth of headers and framing by much.
        const VALUE_BYTES: std::ops::RangeInclusive<usize> = 1 << 10..=512 << 20;
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(BuildError::new(format!(
                "max_connections must be from 1 to {MAX_CONNECTIONS}"
            )));
        }
        if !VALUE_BYTES.contains(&self.max_value_bytes) {
            return Err(BuildError::new(format!(
                "max_value_bytes must be from {} to {} (512 MiB)",
                VALUE_BYTES.start(),
                VALUE_BYTES.end()
            )));
        }
        for (name, bound) in [
            ("wait_timeout", self.bounds.wait),
            ("connect_timeout", self.bounds.connect),
            ("command_timeout", self.bounds.command),
        ] {
            if bound.is_zero() || bound > MAX_BOUND {
                return Err(BuildError::new(format!(
                    "{name} must be more than zero and at most an hour"
                )));
            }
        }
        let pool_error = |error: deadpool::managed::BuildError| {
            BuildError::new(format!("the connection pool cannot be built: {error}"))
        };
        let (backend, servers) = match self.target {
            Target::Single(url) => {
                check_scheme(&url, true)?;
                check_authority(&url)?;
                check_database(&url)?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.bounds.connect))
                    // The store bounds each command itself, and drops the connection.
                    .set_response_timeout(None);
                let manager = deadpool_redis::Manager::new_with_config(url.as_str(), config)
                    .map_err(|error| BuildError::url(&url, &error, Some(error.clone())))?;
                let backend = Backend::single(manager, self.max_connections, self.bounds)
                    .map_err(pool_error)?;
                (backend, vec![redact(&url)])
            }
            #[cfg(feature = "cluster")]
            Target::Cluster(urls) => {
                use deadpool_redis::redis::IntoConnectionInfo;

                if urls.is_empty() {
                    return Err(BuildError::new(
                        "a redis cluster needs the url of at least one of its nodes".to_owned(),
                    ));
                }
                for url in &urls {
                    check_scheme(url, false)?;
                    check_authority(url)?;
                    check_database(url)?;
                    url.as_str()
                        .into_connection_info()
                        .map_err(|error| BuildError::url(url, &error, Some(error.clone())))?;
                }
                let client = deadpool_redis::cluster::ClusterClientBuilder::new(
                    urls.iter().map(String::as_str),
                )
                .connection_timeout(self.bounds.connect)
                .response_timeout(self.bounds.command)
                // Enough to follow a MOVED or ASK redirect; the operation's bound
                // stops anything longer.
                .retries(2)
                .build()
                .map_err(|error| {
                    BuildError::new(format!("invalid redis cluster configuration: {error}"))
                })?;
                let backend = Backend::cluster(client, self.max_connections, self.bounds)
                    .map_err(pool_error)?;
                (backend, urls.iter().map(|url| redact(url)).collect())
            }
        };
        Ok(RedisStore::from_inner(Inner {
            backend,
            namespace: self.namespace,
            bounds: self.bounds,
            metrics: RedisMetrics::default(),
            max_value_bytes: self.max_value_bytes,
            servers,
        }))
    }
}

/// Names the common mistakes in a URL's scheme before the Redis client parses it.
fn check_scheme(url: &str, unix_allowed: bool) -> Result<(), BuildError> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(BuildError::url(
            url,
            "no scheme; expected redis://host[:port][/db]",
            None,
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "redis" | "valkey" => Ok(()),
        "unix" | "redis+unix" | "valkey+unix" if unix_allowed => Ok(()),
        "unix" | "redis+unix" | "valkey+unix" => Err(BuildError::url(
            url,
            "a cluster is reached over TCP; expected redis://host:port",
            None,
        )),
        "rediss" | "valkeys" => Err(BuildError::url(
            url,
            "TLS (rediss://) is not supported by this build of cachet-redis",
            None,
        )),
        other => Err(BuildError::url(
            url,
            format_args!("`{other}` is not a redis scheme; expected redis://host[:port][/db]"),
            None,
        )),
    }
}

/// A URL without a host is refused in words (the redis client says `Missing hostname -
/// InvalidClientConfig`). A user name or password with a `/`, `?` or `#` of its own (a
/// base64 secret pasted as it is) ends the URL's authority early: the redis client would
/// read the rest as a path or a query, and quote it in its errors. It must be
/// percent-encoded.
fn check_authority(url: &str) -> Result<(), BuildError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(());
    };
    if scheme.to_ascii_lowercase().ends_with("unix") {
        return Ok(());
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest.rfind('@').is_some_and(|at| at > authority_end) {
        return Err(BuildError::url(
            url,
            "its user name or password holds a `/`, `?` or `#`: percent-encode them \
             (`%2F`, `%3F`, `%23`)",
            None,
        ));
    }
    let host = rest[..authority_end]
        .rsplit_once('@')
        .map_or(&rest[..authority_end], |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return Err(BuildError::url(
            url,
            "it names no host, such as redis://127.0.0.1:6379/0",
            None,
        ));
    }
    Ok(())
}

/// The redis client reads the database as any `i64`: `/-1` or `/+1` would reach Redis,
/// which refuses the connection on every command, not the URL once.
fn check_database(url: &str) -> Result<(), BuildError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(());
    };
    let database = if scheme.to_ascii_lowercase().ends_with("unix") {
        // The path is the socket's; a database goes in `?db=`.
        rest.split_once('?')
            .into_iter()
            .flat_map(|(_, query)| query.split('&'))
            .find_map(|pair| pair.strip_prefix("db="))
            .unwrap_or_default()
    } else {
        let Some((_, path)) = rest.split_once('/') else {
            return Ok(());
        };
        path.split(['?', '#']).next().unwrap_or_default()
    };
    if database.is_empty() || database.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    Err(BuildError::url(
        url,
        format_args!("the database `{database}` is not a whole number from 0, such as /0"),
        None,
    ))
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = match &self.target {
            Target::Single(url) => vec![redact(url)],
            #[cfg(feature = "cluster")]
            Target::Cluster(urls) => urls.iter().map(|url| redact(url)).collect(),
        };
        f.debug_struct("RedisStoreBuilder")
            .field("servers", &servers)
            .field("namespace", &self.namespace)
            .field("max_connections", &self.max_connections)
            .field("bounds", &self.bounds)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(builder: RedisStoreBuilder) -> String {
        builder
            .build()
            .expect_err("the configuration is refused")
            .to_string()
    }

    #[test]
    fn a_password_only_url_whose_secret_holds_a_slash_is_told_to_percent_encode_it() {
        let message = error(RedisStore::builder(
            "redis://:ab/cd+ef==@cache.internal:6379/0",
        ));
        assert!(message.contains("percent-encode"), "{message}");
        assert!(!message.contains("names no host"), "{message}");
    }

    #[test]
    fn a_bad_url_says_what_is_wrong_without_the_password() {
        let message = error(RedisStore::builder("http://:hunter2@host:6379"));
        assert!(
            message.contains("`http` is not a redis scheme"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");

        let message = error(RedisStore::builder("127.0.0.1:6379"));
        assert!(message.contains("no scheme"), "{message}");

        for url in ["redis://", "redis://:pw@:6379/0", "redis:///0"] {
            let message = error(RedisStore::builder(url));
            assert!(message.contains("it names no host"), "{message}");
            assert!(!message.contains("InvalidClientConfig"), "{message}");
        }

        let message = error(RedisStore::builder("rediss://host"));
        assert!(message.contains("TLS"), "{message}");

        for database in ["zero", "-1", "+1", "1x"] {
            let url = format!("redis://:hunter2@host:6379/{database}");
            let message = error(RedisStore::builder(url.as_str()));
            assert_eq!(
                message,
                format!(
                    "invalid redis url `redis://:***@host:6379/{database}`: the database \
                     `{database}` is not a whole number from 0, such as /0"
                )
            );
        }
        let message = error(RedisStore::builder("unix:///tmp/r.sock?db=-1&pass=hunter2"));
        assert!(message.contains("the database `-1`"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        for fine in [
            "redis://host:6379",
            "redis://host:6379/",
            "redis://host/15",
            "unix:///tmp/r.sock",
            "unix:///tmp/r.sock?db=3",
        ] {
            assert!(RedisStore::builder(fine).build().is_ok(), "{fine}");
        }
    }

    #[test]
    fn bounds_and_pools_out_of_range_are_refused() {
        let message = error(RedisStore::builder("redis://h").command_timeout(Duration::ZERO));
        assert_eq!(
            message,
            "command_timeout must be more than zero and at most an hour"
        );
        let message = error(RedisStore::builder("redis://h").command_timeout(Duration::MAX));
        assert_eq!(
            message,
            "command_timeout must be more than zero and at most an hour"
        );
        let message = error(RedisStore::builder("redis://h").wait_timeout(Duration::MAX));
        assert_eq!(
            message,
            "wait_timeout must be more than zero and at most an hour"
        );
        for max in [0, 1023, (512 << 20) + 1, usize::MAX] {
            let message = error(RedisStore::builder("redis://h").max_value_bytes(max));
            assert_eq!(
                message, "max_value_bytes must be from 1024 to 536870912 (512 MiB)",
                "{max}"
            );
        }
        for pool in [0, 10_001, 1 << 40, usize::MAX] {
            let message = error(RedisStore::builder("redis://h").max_connections(pool));
            assert_eq!(message, "max_connections must be from 1 to 10000", "{pool}");
        }
        let store = RedisStore::builder("redis://h")
            .max_connections(10_000)
            .wait_timeout(Duration::from_secs(3600))
            .connect_timeout(Duration::from_secs(3600))
            .command_timeout(Duration::from_secs(3600))
            .build()
            .expect("the greatest settings build");
        assert_eq!(store.max_operation_time(), Duration::from_secs(3 * 3600));
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn a_cluster_needs_a_node() {
        let message = error(RedisStore::cluster(Vec::<String>::new()));
        assert!(message.contains("at least one"), "{message}");
        let message = error(RedisStore::cluster(["redis://a:1", "unix:///tmp/s"]));
        assert!(message.contains("over TCP"), "{message}");
    }

    #[test]
    fn building_does_not_connect_and_debug_hides_the_password() {
        let store = RedisStore::builder("redis://:hunter2@127.0.0.1:1/0")
            .build()
            .expect("a valid configuration");
        let shown = format!("{store:?}");
        assert!(shown.contains("127.0.0.1:1"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(store.namespace(), "cachet:");
    }

    #[test]
    fn a_unix_sockets_password_never_shows() {
        // The Redis client reads a socket's password from its `pass` parameter.
        let store = RedisStore::builder("unix:///tmp/redis.sock?db=1&pass=hunter2")
            .build()
            .expect("a valid configuration");
        let shown = format!("{store:?}");
        assert!(shown.contains("/tmp/redis.sock"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let message = error(RedisStore::builder(
            "unix:///tmp/redis.sock?db=zero&pass=hunter2",
        ));
        assert!(!message.contains("hunter2"), "{message}");
    }
}
