//! The command line as clap reads it, and the [`Invocation`] it becomes: each setting
//! from its flag, else the configuration file, else its default.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cachet::clock::SystemClock;
use cachet::{CacheLayer, MemoryStore};
use clap::{CommandFactory, Parser, Subcommand};

use super::{BadSignatureAction, Config, Mode, Policy, SharedClock};
use crate::UsageError;
use crate::admin::EntriesCommand;
use crate::file::{ConfigFile, FileSettings};
use crate::flags::{
    MemoryTier, Secret, StoreChoice, Upstream, UrlParser, parse_bytes, parse_count, parse_timeout,
};
use crate::server::connections::{DEFAULT_CLIENT_TIMEOUT, DEFAULT_MAX_CONNECTIONS};

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
pub(super) struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Read settings from this TOML file; flags given as well override it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// The origin to forward to: an http:// or https:// URL with a host, and optionally a
    /// port and a base path that is put before every request's path (required, here or
    /// in the --config file)
    #[arg(long, value_name = "URL", value_parser = UrlParser::<Upstream>::new())]
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
    /// counted from the start of the request (a request body that is slow to arrive from
    /// the client counts too), and for each next part of its body; up to a day
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
    #[arg(long, value_name = "STORE", value_parser = UrlParser::<StoreChoice>::new())]
    store: Option<StoreChoice>,

    /// The prefix of every key cachet writes to Redis [default: cachet:]
    #[arg(long, value_name = "PREFIX")]
    redis_namespace: Option<String>,

    /// With a Redis store, keep entries read from or written to Redis in memory (up to
    /// --memory-bytes) for this long, such as 1s, so that repeated hits skip Redis; a
    /// write or purge made through another proxy is then seen here that much later. off:
    /// every hit asks Redis [default: off]
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

    /// Keep the Forwarded, X-Forwarded-*, X-Real-IP and X-Original-* headers requests
    /// arrive with, for a load balancer in front that sets them and overwrites what
    /// clients send; otherwise they are removed before a request goes upstream, as the
    /// cache key leaves them out. Either way the client's address is added to
    /// X-Forwarded-For [default: false]
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

    /// The most client connections open at once (and as many on the admin listener);
    /// past it, a client waits to be accepted until one closes. Each may hold an upstream
    /// connection too: keep the file descriptor limit (ulimit -n) above twice this
    /// [default: 10000]
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    max_connections: Option<usize>,
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
pub(super) const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// `--upstream-timeout`'s default.
pub(super) const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// `--redis-namespace`'s default.
pub(super) const DEFAULT_REDIS_NAMESPACE: &str = "cachet:";

/// Room kept beside the largest body in one memory entry for the rest of it: the key,
/// the response's head and the entry's framing (and a signature).
const ENTRY_HEAD_ROOM: u64 = 64 << 10;

/// Refuses a largest body that the memory store could not hold in one entry: the store
/// would drop every such response silently, while the cache said it was stored, and each
/// miss would record the body for nothing.
fn check_entry_fits(memory_bytes: u64, max_body_bytes: usize) -> Result<(), clap::Error> {
    let max_entry_bytes = MemoryStore::max_entry_bytes_for(memory_bytes);
    let largest_body = max_entry_bytes.saturating_sub(ENTRY_HEAD_ROOM);
    if max_body_bytes as u64 <= largest_body {
        return Ok(());
    }
    let needed =
        MemoryStore::max_bytes_for_entry((max_body_bytes as u64).saturating_add(ENTRY_HEAD_ROOM));
    let largest_ever = MemoryStore::max_entry_bytes_for(u64::MAX).saturating_sub(ENTRY_HEAD_ROOM);
    let message = if max_body_bytes as u64 > largest_ever {
        // No bound is large enough: raising it is no advice.
        format!(
            "--max-body-bytes {max_body_bytes} (or [cache] max_body_bytes) is more than one \
             entry of any memory store can hold: lower it to at most {largest_ever}"
        )
    } else if largest_body == 0 {
        format!(
            "--memory-bytes {memory_bytes} (or [store] memory_bytes) holds entries of at most \
             {max_entry_bytes} bytes, too few for any body beside its head: raise it to at \
             least {needed} for --max-body-bytes {max_body_bytes}"
        )
    } else {
        format!(
            "--max-body-bytes {max_body_bytes} (or [cache] max_body_bytes; {default} unless \
             given) is more than one entry of the memory store can hold with --memory-bytes \
             {memory_bytes}: lower it to at most {largest_body}, or raise --memory-bytes to \
             at least {needed}",
            default = CacheLayer::<()>::DEFAULT_MAX_BODY_BYTES
        )
    };
    Err(Args::command().error(clap::error::ErrorKind::ArgumentConflict, message))
}

/// Refuses a memory tier that can keep no entry: it need not hold the largest body (Redis
/// alone keeps those), but one with no room for any body beside its head keeps nothing,
/// and every hit asks Redis.
fn check_tier_keeps_some(memory_bytes: u64, max_body_bytes: usize) -> Result<(), clap::Error> {
    if MemoryStore::max_entry_bytes_for(memory_bytes) > ENTRY_HEAD_ROOM {
        return Ok(());
    }
    let least = MemoryStore::max_bytes_for_entry(ENTRY_HEAD_ROOM + 1);
    let every =
        MemoryStore::max_bytes_for_entry((max_body_bytes as u64).saturating_add(ENTRY_HEAD_ROOM));
    let message = format!(
        "--memory-bytes {memory_bytes} (or [store] memory_bytes) leaves the memory tier no room \
         for any body beside its head: raise it to at least {least} (to {every} for it to \
         keep bodies of --max-body-bytes {max_body_bytes})"
    );
    Err(Args::command().error(clap::error::ErrorKind::ArgumentConflict, message))
}

/// Says what clap's error cannot for two mistakes of the command line `args`: a value
/// after a space for a flag that takes it after `=` (`--cdn true`, whose `true` clap reads
/// as a command), and a flag of the proxy's own after `entries` (which takes the store
/// and config flags before it). Other errors are returned as they are.
fn explain(error: clap::Error, args: &[OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};

    let command = Args::command();
    let flag = |name: &str| {
        let long = name.strip_prefix("--")?;
        command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long))
    };
    let message = match (error.kind(), error.get(ContextKind::InvalidSubcommand)) {
        (ErrorKind::InvalidSubcommand, Some(ContextValue::String(value))) => args
            .windows(2)
            .filter(|pair| pair[1] == value.as_str())
            .filter_map(|pair| flag(pair[0].to_str()?))
            .find(|arg| arg.is_require_equals_set())
            .map(|arg| {
                let name = arg.get_long().unwrap_or_default();
                format!("'--{name}' takes its value after '=': --{name}={value}")
            }),
        _ => None,
    };
    let message = message.or_else(|| match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(name)) if error.kind() == ErrorKind::UnknownArgument => {
            let arg = flag(name)?;
            // Every flag of the proxy is refused after a command; `entries` alone needs
            // them, before it.
            let given = |word: &OsString| {
                word.to_str()
                    .is_some_and(|word| word.split('=').next() == Some(name.as_str()))
            };
            let entries = args.iter().position(|arg| arg == "entries")?;
            if args.iter().rposition(given)? < entries {
                return None;
            }
            let value = match arg.get_value_names() {
                Some([value, ..]) if !arg.is_require_equals_set() => format!(" <{value}>"),
                _ => String::new(),
            };
            Some(format!(
                "unexpected argument '{name}' found after 'entries'; the store and config \
                 flags go before it: cachet-proxy {name}{value} entries list"
            ))
        }
        _ => None,
    });
    match message {
        Some(message) => Args::command().error(error.kind(), message),
        None => error,
    }
}

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
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let args = Args::try_parse_from(&args).map_err(|error| explain(error, &args))?;
        if let Some(Command::Keygen) = args.command {
            return Ok(Self::Keygen);
        }
        let file = args.config.as_deref().map(ConfigFile::read).transpose()?;
        let empty = FileSettings::default();
        let settings = file.as_ref().map_or(&empty, |file| &file.settings);

        // The file's names are checked even when the flag replaces them, as every other
        // setting of the file is.
        let file_secrets = match (&file, &settings.signing.secret_key_env) {
            (Some(file), Some(names)) => names
                .get_ref()
                .iter()
                .map(|name| Secret::read(name, &env))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|invalid| file.secret_error(names.span(), invalid))?,
            _ => Vec::new(),
        };
        let secrets = if args.secret_key_env.is_empty() {
            file_secrets
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
        let memory_bytes = args
            .memory_bytes
            .or(store.memory_bytes)
            .unwrap_or(MemoryStore::DEFAULT_MAX_BYTES);
        let max_body_bytes = args
            .max_body_bytes
            .or(settings.cache.max_body_bytes)
            .unwrap_or(CacheLayer::<()>::DEFAULT_MAX_BODY_BYTES);
        if backend == StoreChoice::Memory {
            check_entry_fits(memory_bytes, max_body_bytes)?;
        } else if memory_tier.is_some() {
            check_tier_keeps_some(memory_bytes, max_body_bytes)?;
        }
        let config = Box::new(Config {
            upstream,
            listen: args.listen.or(settings.listen).unwrap_or(DEFAULT_LISTEN),
            mode: args.mode.or(settings.mode).unwrap_or(Mode::Shared),
            memory_bytes,
            max_body_bytes,
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
            max_connections: args
                .max_connections
                .or(settings.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            client_timeout: DEFAULT_CLIENT_TIMEOUT,
            clock: SharedClock(Arc::new(SystemClock)),
        });
        Ok(match args.command {
            Some(Command::Entries { command }) => Self::Entries { config, command },
            _ => Self::Serve(config),
        })
    }
}
