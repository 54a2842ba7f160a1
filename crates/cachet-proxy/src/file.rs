//! The `--config` file: TOML holding every setting the flags hold.
//!
//! Each value is checked by the same parser as its flag, while the file is read, so an
//! error carries the place of the value in the file. Flags override the file, and
//! defaults come last; both happen in `Invocation::from_args_and_env`.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cachet::Expiry;
use http::{HeaderName, Method, StatusCode};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::config::{BadSignatureAction, Mode};
use crate::flags::{
    CoalesceWait, FromText, InvalidBytes, InvalidCount, InvalidSecret, InvalidTimeout, MemoryTier,
    Span, StoreChoice, Upstream, UrlPattern, parse_timeout, positive_bytes, positive_count,
};

/// The settings of a configuration file, each `None` when the file leaves it out.
///
/// A new setting is one field here (checked by its flag's parser through
/// `deserialize_with = "text"` or a `Deserialize` impl) and one line where the
/// [`Config`](crate::Config) is put together. The cache's own settings have sections:
/// `[cache]`, `[expiry]` (with `[[expiry.rules]]`), `[keys]` and `[filters]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSettings {
    /// `--upstream`.
    #[serde(default, deserialize_with = "text")]
    pub(crate) upstream: Option<Upstream>,
    /// `--upstream-timeout`, a number of seconds.
    pub(crate) upstream_timeout: Option<Seconds>,
    /// `--listen`.
    #[serde(default, deserialize_with = "text")]
    pub(crate) listen: Option<SocketAddr>,
    /// `--mode`.
    #[serde(default, deserialize_with = "text")]
    pub(crate) mode: Option<Mode>,
    /// `--admin-listen`.
    #[serde(default, deserialize_with = "text")]
    pub(crate) admin_listen: Option<SocketAddr>,
    /// `--trust-forwarded`.
    pub(crate) trust_forwarded: Option<bool>,
    /// `--max-connections`.
    #[serde(default, deserialize_with = "count")]
    pub(crate) max_connections: Option<usize>,
    /// `[cache]`: what is stored and how.
    #[serde(default)]
    pub(crate) cache: CacheSection,
    /// `[store]`: where entries live.
    #[serde(default)]
    pub(crate) store: StoreSection,
    /// `[signing]`: the keys entries are signed with.
    #[serde(default)]
    pub(crate) signing: SigningSection,
    /// `[expiry]`: a default expiry, rules by URL, and who wins.
    #[serde(default)]
    pub(crate) expiry: ExpirySection,
    /// `[keys]`: how requests become cache keys.
    #[serde(default)]
    pub(crate) keys: KeysSection,
    /// `[filters]`: which methods and statuses are cached.
    #[serde(default)]
    pub(crate) filters: FiltersSection,
}

/// `[expiry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpirySection {
    /// For responses that give no freshness of their own; `do-not-cache`, decided before
    /// any response, for every URL no rule matches.
    pub(crate) default: Option<Parsed<Expiry>>,
    /// Whether rules win over response headers.
    pub(crate) rules_win: Option<bool>,
    /// `[[expiry.rules]]`, first match wins.
    #[serde(default)]
    pub(crate) rules: Vec<RuleSetting>,
}

/// One `[[expiry.rules]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSetting {
    /// A URL pattern, as `CacheLayer::expiry_rule` takes it.
    pub(crate) pattern: Parsed<UrlPattern>,
    pub(crate) expire: Parsed<Expiry>,
}

/// `[keys]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeysSection {
    /// Query parameters and request headers left out of keys.
    pub(crate) ignore: Option<Vec<String>>,
    /// Names stored only as digests; replaces the default list.
    pub(crate) credentials: Option<Vec<String>>,
    /// Request headers that select a response, as `Vary` does.
    pub(crate) headers: Option<Vec<Parsed<HeaderName>>>,
    /// Whether query parameters are sorted.
    pub(crate) sort_query: Option<bool>,
}

/// `[filters]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FiltersSection {
    /// The methods that are cached.
    pub(crate) methods: Option<Vec<Parsed<Method>>>,
    /// The statuses that are stored.
    pub(crate) statuses: Option<Vec<Status>>,
}

/// A value checked by its text parser, wherever it sits (a list item, a table field).
#[derive(Debug, Clone)]
pub(crate) struct Parsed<T>(pub(crate) T);

impl<'de, T: FromText> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        T::from_text(&text)
            .map(Parsed)
            .map_err(|error| refused(&text, error))
    }
}

/// An HTTP status code a response may be stored with: 200 to 599, but 206, 304, 412 and
/// 416.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status(pub(crate) StatusCode);

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Interim responses, partial content, 304s and the answers to a request's own
        // precondition or range are never stored (RFC 9111 §3).
        let storable = |code: u64| {
            let code = u16::try_from(code).ok()?;
            StatusCode::from_u16(code)
                .ok()
                .filter(|status| {
                    (200..600).contains(&status.as_u16()) && !matches!(code, 206 | 304 | 412 | 416)
                })
                .map(Status)
        };
        whole_number(
            deserializer,
            "a status from 200 to 599 that can be stored (not 206, 304, 412 or 416)",
            storable,
        )
    }
}

/// `[cache]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheSection {
    /// `--max-body-bytes`.
    #[serde(default, deserialize_with = "bytes")]
    pub(crate) max_body_bytes: Option<usize>,
    /// `--cdn`.
    pub(crate) cdn: Option<bool>,
    /// Revalidate every stored response before serving it.
    pub(crate) always_revalidate: Option<bool>,
    /// Serve from the store, never write to it.
    pub(crate) read_only: Option<bool>,
    /// Store responses that set cookies (in a shared cache).
    pub(crate) store_set_cookie: Option<bool>,
    /// The longest a stale response stands in for a failing upstream.
    pub(crate) max_stale_if_error: Option<Parsed<Span>>,
    /// How long a miss waits for a concurrent one for the same key; `"off"` not to
    /// coalesce.
    pub(crate) coalesce_wait: Option<Parsed<CoalesceWait>>,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreSection {
    /// `--store`: `memory`, `redis://…` or `redis+cluster://…`.
    #[serde(default, deserialize_with = "text")]
    pub(crate) backend: Option<StoreChoice>,
    /// `--memory-bytes`.
    #[serde(default, deserialize_with = "bytes")]
    pub(crate) memory_bytes: Option<u64>,
    /// `--redis-namespace`.
    pub(crate) redis_namespace: Option<String>,
    /// `--memory-tier`: `off`, or how long a memory tier keeps what it read from Redis.
    pub(crate) memory_tier: Option<Parsed<MemoryTier>>,
}

/// `[signing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SigningSection {
    /// `--secret-key-env`, every name in one list; its place, for an error about a
    /// variable that is not set.
    pub(crate) secret_key_env: Option<Spanned<Vec<String>>>,
    /// `--on-bad-signature`.
    #[serde(default, deserialize_with = "text")]
    pub(crate) on_bad_signature: Option<BadSignatureAction>,
}

/// Reads a string and parses it as its flag does.
fn text<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromText,
{
    let text = String::deserialize(deserializer)?;
    T::from_text(&text)
        .map(Some)
        .map_err(|error| refused(&text, error))
}

/// The error for a value its parser refused: the value shown back, but for a URL's
/// password.
fn refused<E: de::Error>(text: &str, error: impl fmt::Display) -> E {
    let shown = cachet_redis::redact(text);
    E::custom(format_args!("invalid value '{shown}': {error}"))
}

/// Reads a byte count, checked as its flag checks it.
fn bytes<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    whole_number(deserializer, InvalidBytes::EXPECTED, |bytes| {
        positive_bytes(bytes).ok()
    })
    .map(Some)
}

/// Reads a count, checked as its flag checks it.
fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
    whole_number(deserializer, InvalidCount::EXPECTED, |count| {
        positive_count(count).ok()
    })
    .map(Some)
}

/// Reads a whole number that `check` takes. One it refuses, a negative or fractional
/// number, and a value of another type (a string, `"8M"`) are refused saying what is
/// `expected`, in its flag's words, not as a Rust type (`u64`).
fn whole_number<'de, D, T>(
    deserializer: D,
    expected: &'static str,
    check: impl FnOnce(u64) -> Option<T>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct WholeNumber<F> {
        expected: &'static str,
        check: F,
    }

    impl<T, F: FnOnce(u64) -> Option<T>> Visitor<'_> for WholeNumber<F> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expected)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            let expected = self.expected;
            u64::try_from(v)
                .ok()
                .and_then(self.check)
                .ok_or_else(|| E::custom(format_args!("invalid value '{v}': expected {expected}")))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            let expected = self.expected;
            (self.check)(v)
                .ok_or_else(|| E::custom(format_args!("invalid value '{v}': expected {expected}")))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            let expected = self.expected;
            Err(E::custom(format_args!(
                "invalid value '{v:?}': expected {expected}"
            )))
        }
    }

    deserializer.deserialize_any(WholeNumber { expected, check })
}

/// `upstream_timeout`: a number of seconds, checked as `--upstream-timeout` is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seconds(pub(crate) Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecondsVisitor;

        impl SecondsVisitor {
            fn check<E: de::Error>(text: String) -> Result<Seconds, E> {
                parse_timeout(&text)
                    .map(Seconds)
                    .map_err(|error| E::custom(format_args!("invalid value '{text}': {error}")))
            }
        }

        impl Visitor<'_> for SecondsVisitor {
            type Value = Seconds;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(InvalidTimeout::EXPECTED)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                Self::check(v.to_string())
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Self::check(v.to_string())
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                Self::check(v.to_string())
            }
        }

        deserializer.deserialize_any(SecondsVisitor)
    }
}

/// A configuration file that was read and parsed.
#[derive(Debug)]
pub(crate) struct ConfigFile {
    path: PathBuf,
    text: String,
    pub(crate) settings: FileSettings,
}

impl ConfigFile {
    /// Reads and checks the file at `path`.
    pub(crate) fn read(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigFileError {
            path: path.to_owned(),
            kind: Box::new(FileErrorKind::Read(error)),
        })?;
        Self::parse(path, text)
    }

    /// Checks `text`, read from `path`.
    pub(crate) fn parse(path: &Path, text: String) -> Result<Self, ConfigFileError> {
        let parsed = DeTable::parse(&text)
            .and_then(|table| FileSettings::deserialize(toml::de::Deserializer::from(table)));
        match parsed {
            Ok(settings) => Ok(Self {
                path: path.to_owned(),
                text,
                settings,
            }),
            Err(error) => {
                let span = error.span();
                Err(invalid(path, &text, span, Cause::Toml(error)))
            }
        }
    }

    /// An error about the value at `span` in this file.
    pub(crate) fn secret_error(&self, span: Range<usize>, error: InvalidSecret) -> ConfigFileError {
        invalid(&self.path, &self.text, Some(span), Cause::Secret(error))
    }
}

fn invalid(path: &Path, text: &str, span: Option<Range<usize>>, cause: Cause) -> ConfigFileError {
    let (position, setting) = match span {
        Some(span) => (
            Some(line_and_column(text, span.start)),
            setting_at(text, &span),
        ),
        None => (None, None),
    };
    ConfigFileError {
        path: path.to_owned(),
        kind: Box::new(FileErrorKind::Invalid {
            position,
            setting,
            cause,
        }),
    }
}

/// The 1-based line and column (in characters) of the byte at `offset`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (index, c) in text.char_indices() {
        if index >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else if !(index == 0 && c == '\u{feff}') {
            // A byte order mark is no column an editor shows.
            column += 1;
        }
    }
    (line, column)
}

/// The dotted name of the setting whose key or value holds `span`, such as
/// `store.backend`; `None` for a place outside every setting, or a file that does not
/// parse.
fn setting_at(text: &str, span: &Range<usize>) -> Option<String> {
    fn walk(table: &DeTable<'_>, span: &Range<usize>, path: &mut Vec<String>) -> bool {
        for (key, value) in table {
            path.push(key.get_ref().to_string());
            if within_value(value, span, path)
                || contains(&key.span(), span)
                || contains(&value.span(), span)
            {
                return true;
            }
            path.pop();
        }
        false
    }
    /// Whether a table or array below `value` holds `span`, naming its setting.
    fn within_value(
        value: &Spanned<DeValue<'_>>,
        span: &Range<usize>,
        path: &mut Vec<String>,
    ) -> bool {
        match value.get_ref() {
            DeValue::Table(table) => walk(table, span, path),
            DeValue::Array(items) => items.iter().any(|item| within_value(item, span, path)),
            _ => false,
        }
    }
    fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
        outer.start <= inner.start && inner.end <= outer.end
    }

    let table = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    walk(table.get_ref(), span, &mut path).then(|| path.join("."))
}

/// A configuration file that could not be read, or a setting in it that was refused.
///
/// Its message is one line: the path, and for a refused setting the line and column of
/// its value, the setting's dotted name (such as `store.backend`), and why.
pub struct ConfigFileError {
    path: PathBuf,
    kind: Box<FileErrorKind>,
}

#[derive(Debug)]
enum FileErrorKind {
    Read(std::io::Error),
    Invalid {
        position: Option<(usize, usize)>,
        setting: Option<String>,
        cause: Cause,
    },
}

#[derive(Debug)]
enum Cause {
    Toml(toml::de::Error),
    Secret(InvalidSecret),
}

impl ConfigFileError {
    /// The file's path, as given to `--config`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The 1-based line of the refused value, if the error has a place in the file.
    pub fn line(&self) -> Option<usize> {
        self.position().map(|(line, _)| line)
    }

    /// The 1-based column (in characters) of the refused value, if the error has a place
    /// in the file.
    pub fn column(&self) -> Option<usize> {
        self.position().map(|(_, column)| column)
    }

    /// The dotted name of the refused setting, such as `mode` or `store.backend`; for a
    /// misspelt setting, the name as it is written in the file.
    pub fn setting(&self) -> Option<&str> {
        match self.kind.as_ref() {
            FileErrorKind::Invalid { setting, .. } => setting.as_deref(),
            FileErrorKind::Read(_) => None,
        }
    }

    /// Whether the file could not be read at all.
    pub fn is_read(&self) -> bool {
        matches!(*self.kind, FileErrorKind::Read(_))
    }

    fn position(&self) -> Option<(usize, usize)> {
        match self.kind.as_ref() {
            FileErrorKind::Invalid { position, .. } => *position,
            FileErrorKind::Read(_) => None,
        }
    }
}

impl fmt::Debug for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigFileError")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish()
    }
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match self.kind.as_ref() {
            FileErrorKind::Read(_) => write!(f, "cannot read config file {path}"),
            FileErrorKind::Invalid {
                position,
                setting,
                cause,
            } => {
                write!(f, "{path}:")?;
                if let Some((line, column)) = position {
                    write!(f, "{line}:{column}:")?;
                }
                if let Some(setting) = setting {
                    write!(f, " setting '{setting}':")?;
                }
                match cause {
                    // toml quotes with backticks and may break lines; the program's
                    // messages quote with ' and are one line.
                    Cause::Toml(error) => {
                        let message = error.message().trim().replace('`', "'");
                        write!(f, " {}", message.replace(['\r', '\n'], " "))
                    }
                    Cause::Secret(error) => write!(f, " {error}"),
                }
            }
        }
    }
}

impl StdError for ConfigFileError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self.kind.as_ref() {
            FileErrorKind::Read(error) => Some(error),
            FileErrorKind::Invalid { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests;
