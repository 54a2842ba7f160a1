//! The command line, the configuration file it may name, and the validated
//! configuration they become.

use std::ffi::OsString;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cachet::clock::{Clock, SystemClock};
use cachet::verify::{KeyError, Keyring};
use cachet::{BodyKeyLayer, CacheLayer, Expiry, Keys, MemoryStore, OnBadSignature};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use http::{HeaderName, Method, StatusCode, Uri};

use crate::UsageError;
use crate::admin::EntriesCommand;
use crate::file::{ConfigFile, FileSettings};
pub use crate::flags::StoreChoice;
use crate::flags::{MemoryTier, Secret, Upstream, parse_bytes, parse_timeout};

/// The command line, as clap parses it. Every value is checked by its value parser.
///
/// No flag has a clap default, so that a flag left out does not hide the configuration
/// file's value: each is `None` (or empty, or `false`) unless given, and the defaults are
/// applied last, in [`Invocation::from_args_and_env`]. The help text names them; a test
/// keeps it true.
#[derive(Debug, Parser)]
#[command(
    name = "cachet-proxy",
    version,
    about = "A caching HTTP reverse proxy",
    long_about = None,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Read settings from this TOML file; flags given as well override it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// The origin to forward to: an http:// or https:// URL with a host, and optionally a
    /// port and a base path that is put before every request's path (required, here or
    /// in the --config file)
    #[arg(long, value_name = "URL", value_parser = Upstream::parse)]
    upstream: Option<Upstream>,

    /// The address to listen on, as IP:PORT [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Whether the cache serves many users (shared) or one (private) [default: shared]
    #[arg(long, value_enum)]
    mode: Option<Mode>,

    /// The most bytes the in-memory store holds, counting keys, entries and overhead
    /// [default: 67108864]
    #[arg(long, value_name = "N", value_parser = parse_bytes::<u64>, allow_negative_numbers = true)]
    memory_bytes: Option<u64>,

    /// The largest response body that is stored; larger bodies stream through uncached
    /// [default: 8388608]
    #[arg(long, value_name = "N", value_parser = parse_bytes::<usize>, allow_negative_numbers = true)]
    max_body_bytes: Option<usize>,

    /// How long to wait for the upstream's response head, in seconds (fractions allowed),
    /// counted from the start of the request: a request body that is slow to arrive from
    /// the client counts too [default: 30]
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout, allow_negative_numbers = true)]
    upstream_timeout: Option<Duration>,

    /// Sign and verify cache entries with the secret key in this environment variable;
    /// give it again for more keys: the first signs, all verify (key rotation)
    #[arg(long, value_name = "NAME")]
    secret_key_env: Vec<String>,

    /// What to do with a stored entry whose signature does not verify: answer 502 (error)
    /// or delete it and ask the upstream (refetch) [default: error]
    #[arg(long, value_enum, value_name = "ACTION")]
    on_bad_signature: Option<BadSignatureAction>,

    /// Where entries live: memory, redis://HOST:PORT/DB for one Redis shared by many
    /// proxies, or redis+cluster://HOST:PORT,HOST:PORT,... for a Redis Cluster
    /// [default: memory]
    #[arg(long, value_name = "STORE", value_parser = StoreChoice::parse)]
    store: Option<StoreChoice>,

    /// The prefix of every key cachet writes to Redis [default: cachet:]
    #[arg(long, value_name = "PREFIX")]
    redis_namespace: Option<String>,

    /// With a Redis store, keep what is read from Redis in memory (up to --memory-bytes)
    /// for this long, such as 1s, so that repeated hits skip Redis; a write or purge made
    /// through another proxy is then seen here that much later. off: every hit asks Redis
    /// [default: off]
    #[arg(long, value_name = "SPAN", value_parser = MemoryTier::parse)]
    memory_tier: Option<MemoryTier>,

    /// Act as a CDN: a response's CDN-Cache-Control (RFC 9213), when present, replaces
    /// its Cache-Control for this cache; --cdn=false turns off a --config file's cdn
    /// [default: false]
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    cdn: Option<bool>,

    /// Keep the Forwarded and X-Forwarded-* headers requests arrive with, for a load
    /// balancer in front that sets them and overwrites what clients send; otherwise they
    /// are removed before a request goes upstream, as the cache key leaves them out.
    /// Either way the client's address is added to X-Forwarded-For [default: false]
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    trust_forwarded: Option<bool>,

    /// Serve the admin endpoints (list, show, purge stored entries) on this address, as
    /// IP:PORT; off unless given. It has no authentication: keep it on loopback
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a new random secret key (64 hex characters) for --secret-key-env
    Keygen,
    /// Manage the entries of a Redis store, with the store settings given before
    /// `entries` (flags or --config); for the memory store, use --admin-listen
    Entries {
        #[command(subcommand)]
        command: EntriesCommand,
    },
}

/// `--listen`'s default.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// `--upstream-timeout`'s default.
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// `--redis-namespace`'s default.
const DEFAULT_REDIS_NAMESPACE: &str = "cachet:";

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run the proxy.
    Serve(Box<Config>),
    /// Print a new secret key.
    Keygen,
    /// Run an `entries` command against the configured store. The configuration's
    /// upstream, which `entries` does not need, is `http://unused.invalid` when none is
    /// given.
    Entries {
        /// The store and cache settings.
        config: Box<Config>,
        /// What to do.
        command: EntriesCommand,
    },
}

impl Invocation {
    /// Parses a command line (the first item is the program name), reading the
    /// configuration file that `--config` names and the variables that
    /// `--secret-key-env` names through `env`, usually `std::env::var_os`.
    ///
    /// A flag that is given overrides the file; a setting in neither gets its default.
    ///
    /// # Errors
    ///
    /// As [`Config::from_args`]; also when a named variable is unset, empty or not UTF-8.
    pub fn from_args_and_env<I, T>(
        args: I,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, UsageError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args = Args::try_parse_from(args)?;
        if let Some(Command::Keygen) = args.command {
            return Ok(Self::Keygen);
        }
        let file = args.config.as_deref().map(ConfigFile::read).transpose()?;
        let empty = FileSettings::default();
        let settings = file.as_ref().map_or(&empty, |file| &file.settings);

        let secrets = if args.secret_key_env.is_empty() {
            match (&file, &settings.signing.secret_key_env) {
                (Some(file), Some(names)) => names
                    .get_ref()
                    .iter()
                    .map(|name| Secret::read(name, &env))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|invalid| file.secret_error(names.span(), invalid))?,
                _ => Vec::new(),
            }
        } else {
            args.secret_key_env
                .iter()
                .map(|name| Secret::read(name, &env))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|invalid| {
                    Args::command().error(
                        clap::error::ErrorKind::ValueValidation,
                        format!(
                            "invalid value '{}' for '--secret-key-env <NAME>': {invalid}",
                            invalid.name()
                        ),
                    )
                })?
        };
        let upstream = args.upstream.or_else(|| settings.upstream.clone());
        let upstream = match (&args.command, upstream) {
            (_, Some(upstream)) => Some(upstream),
            (Some(Command::Entries { .. }), None) => Some(
                Upstream::parse("http://unused.invalid")
                    .expect("a constant http URL with a host is a valid upstream"),
            ),
            (_, None) => None,
        };
        let upstream = upstream.ok_or_else(|| {
            Args::command().error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "the following required arguments were not provided: --upstream <URL> \
                 (or upstream in the --config file)",
            )
        })?;
        // Each setting: the flag, else the file, else the default.
        let store = &settings.store;
        let backend = args
            .store
            .or_else(|| store.backend.clone())
            .unwrap_or(StoreChoice::Memory);
        let memory_tier = args
            .memory_tier
            .or(store.memory_tier.as_ref().map(|tier| tier.0))
            .and_then(|tier| tier.0);
        if memory_tier.is_some() && backend == StoreChoice::Memory {
            return Err(Args::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--memory-tier (or [store] memory_tier) keeps Redis hits in memory; \
                     the store is memory already: leave it out or set it to off",
                )
                .into());
        }
        let config = Box::new(Config {
            upstream,
            listen: args.listen.or(settings.listen).unwrap_or(DEFAULT_LISTEN),
            mode: args.mode.or(settings.mode).unwrap_or(Mode::Shared),
            memory_bytes: args
                .memory_bytes
                .or(store.memory_bytes)
                .unwrap_or(MemoryStore::DEFAULT_MAX_BYTES),
            max_body_bytes: args
                .max_body_bytes
                .or(settings.cache.max_body_bytes)
                .unwrap_or(CacheLayer::<()>::DEFAULT_MAX_BODY_BYTES),
            upstream_timeout: args
                .upstream_timeout
                .or(settings.upstream_timeout.map(|seconds| seconds.0))
                .unwrap_or(DEFAULT_UPSTREAM_TIMEOUT),
            secrets,
            store: backend,
            memory_tier,
            redis_namespace: args
                .redis_namespace
                .or_else(|| store.redis_namespace.clone())
                .unwrap_or_else(|| DEFAULT_REDIS_NAMESPACE.to_owned()),
            on_bad_signature: args
                .on_bad_signature
                .or(settings.signing.on_bad_signature)
                .unwrap_or(BadSignatureAction::Error),
            cdn: args.cdn.or(settings.cache.cdn).unwrap_or(false),
            trust_forwarded: args
                .trust_forwarded
                .or(settings.trust_forwarded)
                .unwrap_or(false),
            policy: Policy::from_file(settings),
            admin_listen: args.admin_listen.or(settings.admin_listen),
            clock: SharedClock(Arc::new(SystemClock)),
        });
        Ok(match args.command {
            Some(Command::Entries { command }) => Self::Entries { config, command },
            _ => Self::Serve(config),
        })
    }
}

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
        let mut keys = Keys::new()
            .ignore(&self.ignore)
            .headers(self.headers.iter().cloned())
            .sort_query(self.sort_query);
        if let Some(credentials) = &self.credentials {
            keys = keys.credentials(credentials);
        }
        layer = layer.rules_win(self.rules_win).keys(keys);
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

    /// How long a memory tier in front of Redis keeps what it read (`--memory-tier`), or
    /// `None` for no tier (the default).
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
            .cache_status_header(true);
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
        let by_body = self
            .policy
            .methods
            .iter()
            .flatten()
            .filter(|method| **method != Method::GET && **method != Method::HEAD)
            .cloned();
        BodyKeyLayer::new().methods(by_body)
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

    /// Whether the `Forwarded` and `X-Forwarded-*` headers requests arrive with are kept
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
    /// [`MemoryStore::DEFAULT_MAX_BYTES`]).
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// The largest body that is stored, in bytes (`--max-body-bytes`, default
    /// [`CacheLayer::DEFAULT_MAX_BODY_BYTES`]).
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// How long to wait for the upstream's response head (`--upstream-timeout`, default
    /// 30 seconds); always more than zero.
    pub fn upstream_timeout(&self) -> Duration {
        self.upstream_timeout
    }

    pub(crate) fn target(&self) -> &Upstream {
        &self.upstream
    }
}

#[cfg(test)]
mod tests;
