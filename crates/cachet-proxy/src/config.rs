//! The command line and the validated configuration it becomes.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use cachet::verify::{KeyError, Keyring};
use cachet::{CacheLayer, MemoryStore};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use http::Uri;

pub use crate::flags::StoreChoice;
use crate::flags::{Secret, Upstream, parse_timeout};

/// The command line, as clap parses it. Every field is validated by its value parser, so
/// turning it into a [`Config`] cannot fail.
#[derive(Debug, Parser)]
#[command(
    name = "cachet-proxy",
    version,
    about = "A caching HTTP reverse proxy",
    long_about = None,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// The origin to forward to: an http:// or https:// URL with a host, and optionally a
    /// port and a base path that is put before every request's path
    #[arg(long, value_name = "URL", value_parser = Upstream::parse, required = true)]
    upstream: Option<Upstream>,

    /// The address to listen on, as IP:PORT
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Whether the cache serves many users (shared) or one (private)
    #[arg(long, value_enum, default_value_t = Mode::Shared)]
    mode: Mode,

    /// The most bytes the in-memory store holds, counting keys, entries and overhead
    #[arg(long, value_name = "N", default_value_t = MemoryStore::DEFAULT_MAX_BYTES)]
    memory_bytes: u64,

    /// The largest response body that is stored; larger bodies stream through uncached
    #[arg(long, value_name = "N", default_value_t = CacheLayer::<()>::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,

    /// How long to wait for the upstream's response head, in seconds (fractions allowed)
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_timeout, allow_negative_numbers = true)]
    upstream_timeout: Duration,

    /// Sign and verify cache entries with the secret key in this environment variable;
    /// give it again for more keys: the first signs, all verify (key rotation)
    #[arg(long, value_name = "NAME")]
    secret_key_env: Vec<String>,

    /// What to do with a stored entry whose signature does not verify: answer 502 (error)
    /// or delete it and ask the upstream (refetch)
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = BadSignatureAction::Error)]
    on_bad_signature: BadSignatureAction,

    /// Where entries live: memory, redis://HOST:PORT/DB for one Redis shared by many
    /// proxies, or redis+cluster://HOST:PORT,HOST:PORT,... for a Redis Cluster
    #[arg(long, value_name = "STORE", default_value = "memory", value_parser = StoreChoice::parse)]
    store: StoreChoice,

    /// The prefix of every key cachet writes to Redis
    #[arg(long, value_name = "PREFIX", default_value = "cachet:")]
    redis_namespace: String,

    /// Act as a CDN: a response's CDN-Cache-Control (RFC 9213), when present, replaces
    /// its Cache-Control for this cache
    #[arg(long)]
    cdn: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a new random secret key (64 hex characters) for --secret-key-env
    Keygen,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run the proxy.
    Serve(Box<Config>),
    /// Print a new secret key.
    Keygen,
}

impl Invocation {
    /// Parses a command line (the first item is the program name), reading the variables
    /// that `--secret-key-env` names through `env`, usually `std::env::var_os`.
    ///
    /// # Errors
    ///
    /// As [`Config::from_args`]; also when a named variable is unset, empty or not UTF-8.
    pub fn from_args_and_env<I, T>(
        args: I,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args = Args::try_parse_from(args)?;
        let secrets = args
            .secret_key_env
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
            })?;
        match (args.command, args.upstream) {
            (Some(Command::Keygen), _) => Ok(Self::Keygen),
            (None, Some(upstream)) => Ok(Self::Serve(Box::new(Config {
                upstream,
                listen: args.listen,
                mode: args.mode,
                memory_bytes: args.memory_bytes,
                max_body_bytes: args.max_body_bytes,
                upstream_timeout: args.upstream_timeout,
                secrets,
                store: args.store,
                redis_namespace: args.redis_namespace,
                on_bad_signature: args.on_bad_signature,
                cdn: args.cdn,
            }))),
            (None, None) => Err(Args::command().error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "the following required arguments were not provided: --upstream <URL>",
            )),
        }
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
/// It is made from a command line with [`Config::from_args`], which applies the same
/// defaults and checks as the `cachet-proxy` program:
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
/// # Ok::<_, clap::Error>(())
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
}

impl Config {
    /// Parses a command line; the first item is the program name.
    ///
    /// # Errors
    ///
    /// A [`clap::Error`] for an unknown flag, a missing `--upstream`, or a value that
    /// fails its check (an upstream that is not an `http://` or `https://` URL with a
    /// host, or that has a query or fragment; a timeout that is not a positive number of
    /// seconds). Its first line names the flag. `--help` and `--version` also come back as
    /// errors, of the kinds clap uses for them.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
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
    ) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        match Invocation::from_args_and_env(args, env)? {
            Invocation::Serve(config) => Ok(*config),
            Invocation::Keygen => Err(Args::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "keygen prints a key; it does not configure a proxy",
            )),
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

    fn parse(extra: &[&str]) -> Result<Config, clap::Error> {
        Config::from_args(["cachet-proxy"].iter().chain(extra))
    }

    fn upstream(url: &str) -> Result<Config, clap::Error> {
        parse(&["--upstream", url])
    }

    /// The first line of clap's message, which is what the program prints.
    fn message(error: &clap::Error) -> String {
        error
            .render()
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
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
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(error.to_string().contains("--upstream"), "{error}");
    }

    #[test]
    fn upstream_that_is_not_a_url_is_refused_naming_the_flag() {
        for bad in ["not a url", "", "127.0.0.1:3000", "/just/a/path", "http://"] {
            let error = upstream(bad).expect_err(bad);
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
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
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
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
        assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
        let error = parse(&["--upstream", "http://h", "--mode", "public"]).expect_err("bad mode");
        assert!(message(&error).contains("--mode"), "{}", message(&error));
        let error =
            parse(&["--upstream", "http://h", "--listen", "localhost"]).expect_err("bad address");
        assert!(message(&error).contains("--listen"), "{}", message(&error));
    }
}
