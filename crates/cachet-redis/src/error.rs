//! The errors of a [`RedisStore`](crate::RedisStore): building one, and its operations.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use deadpool_redis::redis::RedisError;

/// A [`RedisStore`](crate::RedisStore) operation that failed.
///
/// The cache fails open on it: a failed read is a miss, a failed write is skipped. The
/// predicates say why; [`source`](StdError::source) holds the Redis client's error where
/// there is one.
pub struct Error {
    op: Op,
    kind: Kind,
    source: Option<RedisError>,
}

/// What a store operation was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    Put,
    Delete,
    Ping,
    Scan,
    Clear,
    /// Any operation, where the failure comes before knowing which.
    Any,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Delete => "delete",
            Op::Ping => "ping",
            Op::Scan => "scan",
            Op::Clear => "clear",
            Op::Any => "operation",
        }
    }
}

/// Which bound an operation ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Waiting for a pooled connection.
    Wait,
    /// Opening a new connection.
    Connect,
    /// Waiting for the reply to the command.
    Command,
    /// The whole operation.
    Operation,
}

#[derive(Debug)]
enum Kind {
    Timeout(Stage, Duration),
    Connect,
    Connection,
    Refused,
    UnexpectedReply,
    Pool(&'static str),
    TooLarge(usize),
}

impl Error {
    pub(crate) fn timeout(op: Op, stage: Stage, after: Duration) -> Self {
        Self {
            op,
            kind: Kind::Timeout(stage, after),
            source: None,
        }
    }

    pub(crate) fn connect(op: Op, source: RedisError) -> Self {
        Self {
            op,
            kind: Kind::Connect,
            source: Some(source),
        }
    }

    /// A command failed: refused by the server if the server answered with an error,
    /// a broken connection otherwise.
    pub(crate) fn command(op: Op, source: RedisError) -> Self {
        let kind = if is_server_reply(&source) {
            Kind::Refused
        } else {
            Kind::Connection
        };
        Self {
            op,
            kind,
            source: Some(source),
        }
    }

    pub(crate) fn unexpected_reply(op: Op) -> Self {
        Self {
            op,
            kind: Kind::UnexpectedReply,
            source: None,
        }
    }

    pub(crate) fn too_large(op: Op, limit: usize) -> Self {
        Self {
            op,
            kind: Kind::TooLarge(limit),
            source: None,
        }
    }

    pub(crate) fn pool(op: Op, what: &'static str) -> Self {
        Self {
            op,
            kind: Kind::Pool(what),
            source: None,
        }
    }

    /// The operation ran into one of its bounds: waiting for a pooled connection,
    /// connecting, or waiting for the reply.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout(..))
    }

    /// Redis answered with an error: out of memory under `noeviction` (`OOM`), a
    /// read-only replica, a cluster that is down, and the like.
    pub fn is_refused(&self) -> bool {
        matches!(self.kind, Kind::Refused)
    }

    /// The value is larger than the store's
    /// [`max_value_bytes`](crate::RedisStoreBuilder::max_value_bytes): a write that was
    /// not sent, or a value in Redis that was not read past the limit.
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind, Kind::TooLarge(_))
    }

    /// No connection could be made, or the connection broke during the command.
    pub fn is_connection(&self) -> bool {
        matches!(self.kind, Kind::Connect | Kind::Connection)
    }

    /// Whether the failed connection should leave the pool.
    pub(crate) fn discards_connection(&self) -> bool {
        matches!(self.kind, Kind::Timeout(..) | Kind::Connection)
    }

    pub(crate) fn is_dropped_connection(&self) -> bool {
        matches!(self.kind, Kind::Connection)
            && self
                .source
                .as_ref()
                .is_some_and(|e| e.is_connection_dropped() || e.is_io_error())
    }
}

/// Whether Redis itself answered with this error (the connection is fine).
fn is_server_reply(error: &RedisError) -> bool {
    use deadpool_redis::redis::ErrorKind;
    matches!(error.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("cachet_redis::Error");
        d.field("op", &self.op).field("kind", &self.kind);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.op.as_str();
        match &self.kind {
            Kind::Timeout(stage, after) => {
                let waiting = match stage {
                    Stage::Wait => "waiting for a pooled connection",
                    Stage::Connect => "connecting",
                    Stage::Command => "waiting for the reply",
                    Stage::Operation => "in all",
                };
                write!(f, "redis {op} timed out after {after:?} {waiting}")
            }
            Kind::Connect => write!(f, "redis {op} could not connect"),
            Kind::Connection => write!(f, "redis {op} failed: the connection broke"),
            Kind::Refused => {
                let code = self.source.as_ref().and_then(RedisError::code);
                match code {
                    Some(code) => write!(f, "redis {op} was refused by the server ({code})"),
                    None => write!(f, "redis {op} was refused by the server"),
                }
            }
            Kind::UnexpectedReply => write!(f, "redis {op} got an unexpected reply"),
            Kind::Pool(what) => write!(f, "redis {op} failed: {what}"),
            Kind::TooLarge(limit) => write!(
                f,
                "redis {op} failed: the value is larger than the store's limit of {limit} bytes (max_value_bytes)"
            ),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// A [`RedisStoreBuilder`](crate::RedisStoreBuilder) configuration that cannot work:
/// a URL that does not parse, an empty cluster, a zero bound.
///
/// The message names what was wrong; a URL in it has its password replaced by `***`.
pub struct BuildError {
    message: String,
    source: Option<RedisError>,
}

impl BuildError {
    pub(crate) fn new(message: String) -> Self {
        Self {
            message,
            source: None,
        }
    }

    pub(crate) fn url(url: &str, reason: impl fmt::Display, source: Option<RedisError>) -> Self {
        Self {
            message: format!("invalid redis url `{}`: {reason}", redact(url)),
            source,
        }
    }
}

impl fmt::Debug for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildError")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for BuildError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// `url` with its password, if it has one, shown as `***`: how this crate's messages and
/// `Debug` output show a Redis URL, and how a program that prints one should. A password
/// is the one in the URL's user information, and a `unix://` URL's `pass` parameter
/// (where the Redis client reads a socket's password).
///
/// ```
/// assert_eq!(
///     cachet_redis::redact("redis://app:hunter2@cache.internal:6379/0"),
///     "redis://app:***@cache.internal:6379/0"
/// );
/// ```
pub fn redact(url: &str) -> String {
    // The query's passwords first: one may hold an `@`, which would otherwise look like
    // the end of user information.
    redact_userinfo(&redact_query(url))
}

fn redact_query(url: &str) -> String {
    let Some((before, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if matches!(name, "pass" | "password") => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{before}?{}", query.join("&"))
}

fn redact_userinfo(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[start..];
    // The last `@` ends the user information even past a `/`, `?` or `#`: a password
    // that holds one unescaped must not show (such a URL is refused, and shown so).
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // No authority (`unix:///path?pass=…`): no user information; an `@` is the query's.
    if authority_end == 0 {
        return url.to_owned();
    }
    let at = match rest.rfind('@') {
        Some(at) if at > authority_end => Some(at),
        _ => rest[..authority_end].rfind('@'),
    };
    match at {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                // `redis://secret@host` puts the password where a user name would be.
                "***".to_owned()
            };
            format!("{}{shown}{}", &url[..start], &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("redis://:hunter2@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact("redis://user:hunter2@host/0"),
            "redis://user:***@host/0"
        );
        assert_eq!(redact("redis://hunter2@host"), "redis://***@host");
        for url in [
            "unix:///run/redis.sock?pass=hunt@er2",
            "unix:///run/redis.sock?db=1&pass=hunt@er2",
            "redis://host/0?password=hunt@er2",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("er2"), "{url} -> {shown}");
        }
        for password in ["s3cr/et", "s3cr?et", "s3cr#et"] {
            let url = format!("redis://app:{password}@host:6379/0");
            assert_eq!(redact(&url), "redis://app:***@host:6379/0", "{url}");
        }
        assert_eq!(redact("redis://host:6379/2"), "redis://host:6379/2");
        assert_eq!(redact("not a url"), "not a url");
        assert_eq!(
            redact("unix:///tmp/redis.sock?db=1&pass=hunter2"),
            "unix:///tmp/redis.sock?db=1&pass=***"
        );
        assert_eq!(
            redact("redis://:hunter2@host/0?password=hunter2&protocol=resp3"),
            "redis://:***@host/0?password=***&protocol=resp3"
        );
    }
}
