//! The validated configuration that the command line ([`command_line`]) and the
//! configuration file it may name become.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cachet::clock::Clock;
use cachet::verify::{KeyError, Keyring};
use cachet::{BodyKeyLayer, CacheLayer, Expiry, Keys, OnBadSignature};
use clap::{CommandFactory, ValueEnum};
use http::{HeaderName, Method, StatusCode, Uri};

use crate::UsageError;
use crate::file::FileSettings;
pub use crate::flags::StoreChoice;
use crate::flags::{Secret, Upstream};
use crate::server::connections::Limits;

mod command_line;

use command_line::Args;
pub use command_line::Invocation;
#[cfg(test)]
use command_line::{DEFAULT_LISTEN, DEFAULT_REDIS_NAMESPACE, DEFAULT_UPSTREAM_TIMEOUT};

/// What the proxy does with a stored entry whose signature does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BadSignatureAction {
    /// Answer `502 Bad Gateway`, saying that the cached entry failed verification.
    Error,
    /// Delete the entry, ask the upstream, and store the fresh response signed.
    Refetch,
}

/// Whom the cache serves (RFC 9111 §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A cache for many users, as a reverse proxy usually is: `private` responses are not
    /// stored, and `s-maxage` applies.
    Shared,
    /// One user's cache: `private` responses may be stored, `s-maxage` is ignored.
    Private,
}

/// The proxy's validated configuration.
///
/// It is made from a command line with [`Config::from_args`], which reads the
/// configuration file that `--config` names and applies the same defaults and checks as
/// the `cachet-proxy` program:
///
/// ```
/// use std::time::Duration;
/// use cachet_proxy::{Config, Mode};
///
/// let config = Config::from_args([
///     "cachet-proxy",
///     "--upstream", "http://127.0.0.1:3000/api",
///     "--listen", "127.0.0.1:0",
///     "--upstream-timeout", "2.5",
/// ])?;
/// assert_eq!(config.upstream().to_string(), "http://127.0.0.1:3000/api");
/// assert_eq!(config.mode(), Mode::Shared);
/// assert_eq!(config.upstream_timeout(), Duration::from_millis(2500));
/// # Ok::<_, cachet_proxy::UsageError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    upstream: Upstream,
    listen: SocketAddr,
    mode: Mode,
    memory_bytes: u64,
    max_body_bytes: usize,
    upstream_timeout: Duration,
    secrets: Vec<Secret>,
    store: StoreChoice,
    memory_tier: Option<Duration>,
    redis_namespace: String,
    on_bad_signature: BadSignatureAction,
    cdn: bool,
    trust_forwarded: bool,
    policy: Policy,
    admin_listen: Option<SocketAddr>,
    max_connections: usize,
    client_timeout: Duration,
    clock: SharedClock,
}

/// A clock that clones cheaply and prints without its state.
#[derive(Clone)]
struct SharedClock(Arc<dyn Clock>);

impl Clock for SharedClock {
    fn now(&self) -> SystemTime {
        self.0.now()
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// The cache's expiry, keys and filters, which only the configuration file sets.
#[derive(Clone, Debug, Default)]
struct Policy {
    default_expiry: Option<Expiry>,
    rules: Vec<(String, Expiry)>,
    rules_win: bool,
    ignore: Vec<String>,
    credentials: Option<Vec<String>>,
    headers: Vec<HeaderName>,
    sort_query: bool,
    methods: Option<Vec<Method>>,
    statuses: Option<Vec<StatusCode>>,
    always_revalidate: bool,
    read_only: bool,
    store_set_cookie: Option<bool>,
    max_stale_if_error: Option<Duration>,
    coalesce_wait: Option<Option<Duration>>,
}

impl Policy {
    /// How the cache keys requests: `[keys]` of the file, and the flags.
    fn keys(&self) -> Keys {
        let keys = Keys::new()
            .ignore(&self.ignore)
            .headers(self.headers.iter().cloned())
            .sort_query(self.sort_query);
        match &self.credentials {
            Some(credentials) => keys.credentials(credentials),
            None => keys,
        }
    }

    fn from_file(settings: &FileSettings) -> Self {
        let (expiry, keys, filters) = (&settings.expiry, &settings.keys, &settings.filters);
        let cache = &settings.cache;
        Self {
            always_revalidate: cache.always_revalidate.unwrap_or(false),
            read_only: cache.read_only.unwrap_or(false),
            store_set_cookie: cache.store_set_cookie,
            max_stale_if_error: cache.max_stale_if_error.as_ref().map(|span| span.0.0),
            coalesce_wait: cache.coalesce_wait.as_ref().map(|wait| wait.0.0),
            default_expiry: expiry.default.as_ref().map(|e| e.0),
            rules: expiry
                .rules
                .iter()
                .map(|rule| (rule.pattern.0.0.clone(), rule.expire.0))
                .collect(),
            rules_win: expiry.rules_win.unwrap_or(false),
            ignore: keys.ignore.clone().unwrap_or_default(),
            credentials: keys.credentials.clone(),
            headers: keys
                .headers
                .iter()
                .flatten()
                .map(|name| name.0.clone())
                .collect(),
            sort_query: keys.sort_query.unwrap_or(false),
            methods: filters
                .methods
                .as_ref()
                .map(|methods| methods.iter().map(|m| m.0.clone()).collect()),
            statuses: filters
                .statuses
                .as_ref()
                .map(|statuses| statuses.iter().map(|s| s.0).collect()),
        }
    }

    fn apply<St>(&self, mut layer: CacheLayer<St>) -> CacheLayer<St> {
        layer = layer
            .always_revalidate(self.always_revalidate)
            .read_only(self.read_only);
        if let Some(store) = self.store_set_cookie {
            layer = layer.store_set_cookie(store);
        }
        if let Some(max) = self.max_stale_if_error {
            layer = layer.max_stale_if_error(max);
        }
        if let Some(wait) = self.coalesce_wait {
            layer = layer.coalesce(wait);
        }
        if let Some(expiry) = self.default_expiry {
            layer = layer.default_expiry(expiry);
        }
        for (pattern, expiry) in &self.rules {
            layer = layer.expiry_rule(pattern, *expiry);
        }
        layer = layer.rules_win(self.rules_win).keys(self.keys());
        if let Some(methods) = &self.methods {
            layer = layer.methods(methods.iter().cloned());
        }
        if let Some(statuses) = &self.statuses {
            layer = layer.statuses(statuses.iter().copied());
        }
        layer
    }
}

impl Config {
    /// Parses a command line; the first item is the program name.
    ///
    /// # Errors
    ///
    /// A [`UsageError`] for an unknown flag, a missing `--upstream`, or a value that
    /// fails its check (an upstream that is not an `http://` or `https://` URL with a
    /// host, or that has a query or fragment; a timeout that is not a positive number of
    /// seconds): its [`command_line`](UsageError::command_line) error names the flag.
    /// Also for a `--config` file that cannot be read, or a setting in it that is unknown
    /// or fails the same check as its flag: its
    /// [`config_file`](UsageError::config_file) error names the file, line, column and
    /// setting. `--help` and `--version` also come back as errors, of the kinds clap uses
    /// for them.
    pub fn from_args<I, T>(args: I) -> Result<Self, UsageError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::from_args_and_env(args, |name| std::env::var_os(name))
    }

    /// As [`from_args`](Self::from_args), reading the variables that `--secret-key-env`
    /// names through `env` instead of the process environment.
    ///
    /// # Errors
    ///
    /// As [`from_args`](Self::from_args).
    pub fn from_args_and_env<I, T>(
        args: I,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, UsageError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        match Invocation::from_args_and_env(args, env)? {
            Invocation::Serve(config) => Ok(*config),
            Invocation::Keygen | Invocation::Entries { .. } => Err(Args::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "keygen and entries are commands of their own; they do not configure a proxy",
                )
                .into()),
        }
    }

    /// The signing keys from `--secret-key-env`, the signing one first, or `None` when
    /// entries are not signed.
    ///
    /// # Errors
    ///
    /// A [`KeyError`] if a secret cannot become a key (the flag already refuses empty
    /// ones).
    pub fn keyring(&self) -> Result<Option<Keyring>, KeyError> {
        if self.secrets.is_empty() {
            return Ok(None);
        }
        Keyring::from_secrets(self.secrets.iter().map(|s| s.value.as_bytes())).map(Some)
    }

    /// Where entries live (`--store`).
    pub fn store(&self) -> &StoreChoice {
        &self.store
    }

    /// How long a memory tier in front of Redis keeps what it read or wrote
    /// (`--memory-tier`), or `None` for no tier (the default).
    pub fn memory_tier(&self) -> Option<Duration> {
        self.memory_tier
    }

    /// The prefix of cachet's Redis keys (`--redis-namespace`).
    pub fn redis_namespace(&self) -> &str {
        &self.redis_namespace
    }

    /// A [`CacheLayer`] over `store` with every cache setting of this configuration.
    pub fn cache_layer<St>(&self, store: St) -> CacheLayer<St> {
        let on_bad_signature = match self.on_bad_signature {
            BadSignatureAction::Error => OnBadSignature::Error,
            BadSignatureAction::Refetch => OnBadSignature::Refetch,
        };
        let layer = CacheLayer::new(store)
            .clock(self.clock.clone())
            .max_body_bytes(self.max_body_bytes)
            .on_bad_signature(on_bad_signature)
            .cache_status_header(true)
            .filter(crate::upstream::NotVaryingOnForwarding);
        let layer = if self.cdn {
            layer.targeted_cache_control(HeaderName::from_static("cdn-cache-control"))
        } else {
            layer
        };
        let layer = match self.mode {
            Mode::Shared => layer.shared(),
            Mode::Private => layer.private(),
        };
        self.policy.apply(layer)
    }

    /// The layer that reads the bodies of the methods cached by their body (those of
    /// `[filters] methods` other than GET and HEAD) into their keys; with none, it passes
    /// every body through untouched.
    pub fn body_key_layer(&self) -> BodyKeyLayer {
        BodyKeyLayer::new().methods(self.methods_cached_by_body())
    }

    /// The methods of `[filters] methods` other than GET and HEAD: cached by their body.
    pub(crate) fn methods_cached_by_body(&self) -> impl Iterator<Item = Method> + '_ {
        self.policy
            .methods
            .iter()
            .flatten()
            .filter(|method| **method != Method::GET && **method != Method::HEAD)
            .cloned()
    }

    /// The admin listener's address (`--admin-listen`), if it is on.
    pub fn admin_listen(&self) -> Option<SocketAddr> {
        self.admin_listen
    }

    /// Sets the clock freshness and `Age` use; the system clock by default.
    ///
    /// No flag sets it: it is for tests and embedders that move time themselves, such as
    /// with [`ManualClock`](cachet::clock::ManualClock).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = SharedClock(Arc::new(clock));
        self
    }

    /// Sets how long a client may stay silent before its connection is closed: before the
    /// first bytes of its first request, while it sends a request head (HTTP/1), and
    /// before it answers a ping the proxy sends after as long without a frame (HTTP/2).
    /// 30 seconds by default, the bound hyper puts on a request head; the admin listener
    /// keeps it too. A bound under a millisecond is taken as a millisecond.
    ///
    /// No flag sets it: the default suits clients, and tests use a short one.
    #[must_use]
    pub fn client_timeout(mut self, timeout: Duration) -> Self {
        self.client_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The most connections open at once, on the proxy's listener and on the admin one
    /// each (`--max-connections`, default 10,000); past it, a client waits to be
    /// accepted until one closes.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The bounds of the listeners' connections.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            client_timeout: self.client_timeout,
            max_connections: self.max_connections,
        }
    }

    /// Whether the `Forwarded`, `X-Forwarded-*`, `X-Real-IP`, `X-Original-URL`,
    /// `X-Rewrite-URL` and `X-Original-Host` headers requests arrive with are kept
    /// (`--trust-forwarded`); by default they are removed before a request goes upstream.
    pub fn trust_forwarded(&self) -> bool {
        self.trust_forwarded
    }

    /// Whether `CDN-Cache-Control` replaces `Cache-Control` (`--cdn`).
    pub fn cdn(&self) -> bool {
        self.cdn
    }

    /// What to do with an entry whose signature does not verify (`--on-bad-signature`).
    pub fn on_bad_signature(&self) -> BadSignatureAction {
        self.on_bad_signature
    }

    /// The upstream URL: scheme, authority and base path (without a trailing `/`).
    pub fn upstream(&self) -> &Uri {
        &self.upstream.uri
    }

    /// The address to listen on (`--listen`, default `127.0.0.1:8080`).
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// Whether the cache is shared or private (`--mode`, default shared).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The bound of the in-memory store, in bytes (`--memory-bytes`, default
    /// [`MemoryStore::DEFAULT_MAX_BYTES`](cachet::MemoryStore::DEFAULT_MAX_BYTES)).
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// The largest body that is stored, in bytes (`--max-body-bytes`, default
    /// [`CacheLayer::DEFAULT_MAX_BODY_BYTES`]).
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// How long to wait for the upstream's response head, and for each next part of its
    /// body (`--upstream-timeout`, default 30 seconds); always more than zero.
    pub fn upstream_timeout(&self) -> Duration {
        self.upstream_timeout
    }

    /// How the cache keys requests, whose credentials a `TRACE` answered here leaves out.
    pub(crate) fn keys(&self) -> Keys {
        self.policy.keys()
    }

    pub(crate) fn target(&self) -> &Upstream {
        &self.upstream
    }
}

#[cfg(test)]
mod tests;
