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
use crate::flags::{Secret, Upstream, parse_timeout};

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
    #[arg(long, value_name = "N")]
    memory_bytes: Option<u64>,

    /// The largest response body that is stored; larger bodies stream through uncached
    /// [default: 8388608]
    #[arg(long, value_name = "N")]
    max_body_bytes: Option<usize>,

    /// How long to wait for the upstream's response head, in seconds (fractions allowed)
    /// [default: 30]
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

    /// Act as a CDN: a response's CDN-Cache-Control (RFC 9213), when present, replaces
    /// its Cache-Control for this cache
    #[arg(long)]
    cdn: bool,

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
            store: args
                .store
                .or_else(|| store.backend.clone())
                .unwrap_or(StoreChoice::Memory),
            redis_namespace: args
                .redis_namespace
                .or_else(|| store.redis_namespace.clone())
                .unwrap_or_else(|| DEFAULT_REDIS_NAMESPACE.to_owned()),
            on_bad_signature: args
                .on_bad_signature
                .or(settings.signing.on_bad_signature)
                .unwrap_or(BadSignatureAction::Error),
            cdn: args.cdn || settings.cache.cdn.unwrap_or(false),
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
    redis_namespace: String,
    on_bad_signature: BadSignatureAction,
    cdn: bool,
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
                .map(|rule| (rule.pattern.clone(), rule.expire.0))
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
mod tests {
    use super::*;
    use crate::ConfigFileError;

    fn parse(extra: &[&str]) -> Result<Config, UsageError> {
        Config::from_args(["cachet-proxy"].iter().chain(extra))
    }

    fn upstream(url: &str) -> Result<Config, UsageError> {
        parse(&["--upstream", url])
    }

    /// The one line the program prints.
    fn message(error: &UsageError) -> String {
        error.to_string()
    }

    /// The kind of a command-line error.
    fn kind(error: &UsageError) -> Option<clap::error::ErrorKind> {
        error.command_line().map(clap::Error::kind)
    }

    #[test]
    fn defaults_match_the_library_defaults() {
        let config = upstream("http://127.0.0.1:3000").expect("a plain URL is accepted");
        assert_eq!(config.listen(), SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(config.mode(), Mode::Shared);
        assert_eq!(config.memory_bytes(), MemoryStore::DEFAULT_MAX_BYTES);
        assert_eq!(
            config.max_body_bytes(),
            CacheLayer::<()>::DEFAULT_MAX_BODY_BYTES
        );
        assert_eq!(config.upstream_timeout(), Duration::from_secs(30));
        assert_eq!(config.upstream().to_string(), "http://127.0.0.1:3000/");
    }

    #[test]
    fn every_flag_is_read() {
        let config = parse(&[
            "--upstream",
            "https://origin.example:8443/base/",
            "--listen",
            "127.0.0.1:0",
            "--mode",
            "private",
            "--memory-bytes",
            "1024",
            "--max-body-bytes",
            "10",
            "--upstream-timeout",
            "0.25",
        ])
        .expect("valid flags are accepted");
        assert_eq!(config.listen(), SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(config.mode(), Mode::Private);
        assert_eq!(config.memory_bytes(), 1024);
        assert_eq!(config.max_body_bytes(), 10);
        assert_eq!(config.upstream_timeout(), Duration::from_millis(250));
        assert_eq!(
            config.upstream().to_string(),
            "https://origin.example:8443/base"
        );
        assert_eq!(config.target().base_path, "/base");
        assert_eq!(config.target().host, "origin.example:8443");
    }

    #[test]
    fn upstream_is_required() {
        let error = parse(&[]).expect_err("--upstream is required");
        assert_eq!(
            kind(&error),
            Some(clap::error::ErrorKind::MissingRequiredArgument)
        );
        assert!(error.to_string().contains("--upstream"), "{error}");
    }

    #[test]
    fn upstream_that_is_not_a_url_is_refused_naming_the_flag() {
        for bad in ["not a url", "", "127.0.0.1:3000", "/just/a/path", "http://"] {
            let error = upstream(bad).expect_err(bad);
            assert_eq!(
                kind(&error),
                Some(clap::error::ErrorKind::ValueValidation),
                "{bad}"
            );
            assert!(
                message(&error).contains("--upstream"),
                "{bad}: {}",
                message(&error)
            );
        }
    }

    #[test]
    fn upstream_scheme_must_be_http_or_https() {
        let error = upstream("ftp://example.com/").expect_err("ftp is refused");
        assert!(
            message(&error).contains("--upstream"),
            "{}",
            message(&error)
        );
        assert!(
            message(&error).contains("scheme must be http or https"),
            "{}",
            message(&error)
        );
        assert!(
            upstream("HTTPS://example.com").is_ok(),
            "the scheme is case-insensitive"
        );
    }

    #[test]
    fn upstream_query_fragment_and_user_info_are_refused() {
        let cases = [
            ("http://example.com/?a=1", "must not have a query"),
            ("http://example.com/#top", "must not have a fragment"),
            (
                "http://user:secret@example.com/",
                "must not contain user information",
            ),
        ];
        for (bad, why) in cases {
            let error = upstream(bad).expect_err(bad);
            assert!(
                message(&error).contains("--upstream"),
                "{bad}: {}",
                message(&error)
            );
            assert!(message(&error).contains(why), "{bad}: {}", message(&error));
        }
    }

    #[test]
    fn base_path_loses_its_trailing_slash() {
        for (url, base) in [
            ("http://h", ""),
            ("http://h/", ""),
            ("http://h/api", "/api"),
            ("http://h/api/", "/api"),
            ("http://h/a/b//", "/a/b"),
        ] {
            let config = upstream(url).expect(url);
            assert_eq!(config.target().base_path, base, "{url}");
        }
    }

    #[test]
    fn timeout_must_be_a_positive_number_of_seconds() {
        for bad in ["0", "0.0", "-1", "NaN", "inf", "soon", ""] {
            let error =
                parse(&["--upstream", "http://h", "--upstream-timeout", bad]).expect_err(bad);
            assert_eq!(
                kind(&error),
                Some(clap::error::ErrorKind::ValueValidation),
                "{bad}"
            );
            assert!(
                message(&error).contains("--upstream-timeout"),
                "{bad}: {}",
                message(&error)
            );
        }
        let config = parse(&["--upstream", "http://h", "--upstream-timeout", "0.001"])
            .expect("1 ms is allowed");
        assert_eq!(config.upstream_timeout(), Duration::from_millis(1));
    }

    #[test]
    fn unknown_flags_and_bad_values_are_refused() {
        let error = parse(&["--upstream", "http://h", "--bogus"]).expect_err("unknown flag");
        assert_eq!(kind(&error), Some(clap::error::ErrorKind::UnknownArgument));
        let error = parse(&["--upstream", "http://h", "--mode", "public"]).expect_err("bad mode");
        assert!(message(&error).contains("--mode"), "{}", message(&error));
        let error =
            parse(&["--upstream", "http://h", "--listen", "localhost"]).expect_err("bad address");
        assert!(message(&error).contains("--listen"), "{}", message(&error));
    }

    /// A configuration file holding `text`, removed when dropped.
    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("a temporary file");
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("written");
        file
    }

    /// Parses a command line with `--config FILE` first, reading secrets from `env`.
    fn with_file(
        file: &tempfile::NamedTempFile,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Config, UsageError> {
        let path = file.path().to_str().expect("a UTF-8 temporary path");
        let args = ["cachet-proxy", "--config", path]
            .into_iter()
            .chain(extra.iter().copied());
        Config::from_args_and_env(args, |name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        })
    }

    const EXAMPLE: &str = include_str!("../../../docs/cachet-proxy.example.toml");

    #[test]
    fn the_documented_example_file_sets_every_setting() {
        let file = config_file(EXAMPLE);
        let env = [
            ("CACHET_KEY", "first secret"),
            ("CACHET_OLD_KEY", "older secret"),
        ];
        let config = with_file(&file, &[], &env).expect("the example is valid");
        assert_eq!(config.upstream().to_string(), "http://127.0.0.1:8000/api");
        assert_eq!(config.upstream_timeout(), DEFAULT_UPSTREAM_TIMEOUT);
        assert_eq!(config.listen(), DEFAULT_LISTEN);
        assert_eq!(config.mode(), Mode::Shared);
        assert_eq!(
            config.max_body_bytes(),
            CacheLayer::<()>::DEFAULT_MAX_BODY_BYTES
        );
        assert!(!config.cdn());
        assert_eq!(config.store(), &StoreChoice::Memory);
        assert_eq!(config.memory_bytes(), MemoryStore::DEFAULT_MAX_BYTES);
        assert_eq!(config.redis_namespace(), DEFAULT_REDIS_NAMESPACE);
        assert_eq!(config.secrets.len(), 2);
        assert_eq!(config.secrets[0].value, "first secret");
        assert_eq!(config.on_bad_signature(), BadSignatureAction::Error);
        let policy = &config.policy;
        assert_eq!(
            policy.default_expiry,
            Some(Expiry::After(Duration::from_secs(300)))
        );
        assert_eq!(
            policy.rules,
            [
                (
                    "127.0.0.1/static/".to_owned(),
                    Expiry::After(Duration::from_secs(86_400))
                ),
                ("127.0.0.1/live/".to_owned(), Expiry::DoNotCache),
            ]
        );
        assert!(!policy.rules_win && !policy.sort_query);
        assert_eq!(policy.ignore, ["utm_source", "utm_medium"]);
        assert_eq!(
            policy.credentials.as_deref(),
            Some(
                Keys::DEFAULT_CREDENTIALS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .as_slice()
            )
        );
        assert_eq!(policy.methods, Some(vec![Method::GET, Method::HEAD]));
        assert_eq!(policy.statuses.as_ref().map(Vec::len), Some(11));
        assert_eq!(config.admin_listen(), "127.0.0.1:9090".parse().ok());
        assert!(!policy.always_revalidate && !policy.read_only);
        assert_eq!(policy.store_set_cookie, Some(false));
        assert_eq!(policy.max_stale_if_error, Some(Duration::from_secs(86_400)));
        assert_eq!(policy.coalesce_wait, Some(Some(Duration::from_secs(5))));
    }

    #[test]
    fn the_guide_shows_the_example_file_as_it_is() {
        let guide = include_str!("../../../docs/proxy.md");
        assert!(
            guide.contains(EXAMPLE),
            "docs/proxy.md must quote docs/cachet-proxy.example.toml exactly"
        );
    }

    #[test]
    fn every_setting_is_read_from_the_file() {
        let file = config_file(
            r#"
            upstream = "https://origin.example:8443/base/"
            upstream_timeout = 0.25
            listen = "127.0.0.1:0"
            mode = "private"
            [cache]
            max_body_bytes = 10
            cdn = true
            [store]
            backend = "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
            memory_bytes = 1024
            redis_namespace = "edge:"
            [signing]
            secret_key_env = ["KEY"]
            on_bad_signature = "refetch"
            "#,
        );
        let config = with_file(&file, &[], &[("KEY", "secret")]).expect("valid settings");
        assert_eq!(
            config.upstream().to_string(),
            "https://origin.example:8443/base"
        );
        assert_eq!(config.upstream_timeout(), Duration::from_millis(250));
        assert_eq!(config.listen(), SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(config.mode(), Mode::Private);
        assert_eq!(config.max_body_bytes(), 10);
        assert!(config.cdn());
        assert_eq!(
            config.store(),
            &StoreChoice::Cluster(vec![
                "redis://10.0.0.1:7000".to_owned(),
                "redis://10.0.0.2:7000".to_owned()
            ])
        );
        assert_eq!(config.memory_bytes(), 1024);
        assert_eq!(config.redis_namespace(), "edge:");
        assert_eq!(config.secrets.len(), 1);
        assert_eq!(config.on_bad_signature(), BadSignatureAction::Refetch);
    }

    #[test]
    fn a_flag_overrides_the_file_and_the_file_overrides_the_default() {
        let file = config_file(
            r#"
            upstream = "http://file.example"
            mode = "private"
            listen = "127.0.0.1:9000"
            [store]
            memory_bytes = 1024
            [signing]
            secret_key_env = ["FILE_KEY"]
            "#,
        );
        let config = with_file(
            &file,
            &[
                "--upstream",
                "http://flag.example",
                "--mode",
                "shared",
                "--secret-key-env",
                "FLAG_KEY",
            ],
            &[("FLAG_KEY", "from the flag")],
        )
        .expect("the file's FILE_KEY is not read: the flag's list replaces it");
        assert_eq!(config.upstream().to_string(), "http://flag.example/");
        assert_eq!(config.mode(), Mode::Shared, "the flag wins");
        assert_eq!(
            config.listen(),
            SocketAddr::from(([127, 0, 0, 1], 9000)),
            "a flag left out does not hide the file"
        );
        assert_eq!(config.memory_bytes(), 1024);
        assert_eq!(config.secrets.len(), 1);
        assert_eq!(config.secrets[0].value, "from the flag");
        assert_eq!(
            config.upstream_timeout(),
            DEFAULT_UPSTREAM_TIMEOUT,
            "in neither: the default"
        );
        assert_eq!(config.on_bad_signature(), BadSignatureAction::Error);
    }

    #[test]
    fn the_upstream_may_come_from_either_but_is_required() {
        let file = config_file("mode = \"private\"\n");
        let config = with_file(&file, &["--upstream", "http://h"], &[]).expect("from the flag");
        assert_eq!(config.mode(), Mode::Private);
        let error = with_file(&file, &[], &[]).expect_err("in neither");
        assert_eq!(
            kind(&error),
            Some(clap::error::ErrorKind::MissingRequiredArgument)
        );
        assert!(message(&error).contains("--upstream"), "{error}");
    }

    #[test]
    fn a_bad_setting_is_refused_even_when_a_flag_would_override_it() {
        let file = config_file("upstream = \"http://h\"\n\nmode = \"shard\"\n");
        let path = file.path().display().to_string();
        let error = with_file(&file, &["--mode", "shared"], &[]).expect_err("a bad file");
        let file_error = error.config_file().expect("the file's error");
        assert_eq!(file_error.setting(), Some("mode"));
        assert_eq!((file_error.line(), file_error.column()), (Some(3), Some(8)));
        assert_eq!(error.exit_code(), 2);
        assert_eq!(
            message(&error),
            format!(
                "{path}:3:8: setting 'mode': invalid value 'shard': expected 'shared' or 'private'"
            )
        );
    }

    #[test]
    fn an_unset_secret_variable_in_the_file_is_refused_where_it_is_named() {
        let file = config_file(
            "upstream = \"http://h\"\n[signing]\nsecret_key_env = [\"CACHET_TEST_UNSET\"]\n",
        );
        let error = with_file(&file, &[], &[]).expect_err("unset");
        let file_error = error.config_file().expect("the file's error");
        assert_eq!(file_error.setting(), Some("signing.secret_key_env"));
        assert_eq!(file_error.line(), Some(3));
        assert!(
            message(&error).ends_with(
                "setting 'signing.secret_key_env': the environment variable CACHET_TEST_UNSET is not set"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_missing_config_file_is_a_usage_error_naming_it() {
        let error = parse(&["--config", "/nonexistent/cachet.toml"]).expect_err("no such file");
        assert_eq!(error.exit_code(), 2);
        assert!(error.config_file().is_some_and(ConfigFileError::is_read));
        assert_eq!(
            message(&error),
            "cannot read config file /nonexistent/cachet.toml"
        );
    }

    #[test]
    fn the_help_names_the_defaults_that_are_applied() {
        let help = Args::command().render_long_help().to_string();
        for default in [
            format!("[default: {DEFAULT_LISTEN}]"),
            format!("[default: {}]", MemoryStore::DEFAULT_MAX_BYTES),
            format!("[default: {}]", CacheLayer::<()>::DEFAULT_MAX_BODY_BYTES),
            format!("[default: {}]", DEFAULT_UPSTREAM_TIMEOUT.as_secs()),
            format!("[default: {DEFAULT_REDIS_NAMESPACE}]"),
            "[default: shared]".to_owned(),
            "[default: error]".to_owned(),
            "[default: memory]".to_owned(),
        ] {
            assert!(help.contains(&default), "{default} missing from {help}");
        }
    }
}
