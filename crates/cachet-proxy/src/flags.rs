//! The values the command line's flags take, each parsed with an error that says what
//! was wrong.

use std::error::Error as StdError;
use std::ffi::OsString;
use std::fmt;
use std::net::{AddrParseError, SocketAddr};
use std::time::Duration;

use cachet::Expiry;
use cachet_redis::redact;
use clap::ValueEnum;
use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue, Method, Uri};

use crate::config::{BadSignatureAction, Mode};

mod store;
mod upstream;

pub use store::StoreChoice;
pub(crate) use upstream::{InvalidUpstream, Upstream};

/// A secret key read from the environment; `Debug` shows only the variable's name.
#[derive(Clone)]
pub(crate) struct Secret {
    variable: String,
    pub(crate) value: String,
}

impl Secret {
    pub(crate) fn read(
        variable: &str,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, InvalidSecret> {
        let name = || variable.to_owned();
        if variable.is_empty() {
            return Err(InvalidSecret::NoName);
        }
        let value = env(variable).ok_or_else(|| InvalidSecret::Missing(name()))?;
        let value = value
            .into_string()
            .map_err(|_| InvalidSecret::NotText(name()))?;
        if value.is_empty() {
            return Err(InvalidSecret::Empty(name()));
        }
        Ok(Self {
            variable: name(),
            value,
        })
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("variable", &self.variable)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InvalidSecret {
    /// The variable's name is empty.
    NoName,
    Missing(String),
    Empty(String),
    NotText(String),
}

impl InvalidSecret {
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::NoName => "",
            Self::Missing(name) | Self::Empty(name) | Self::NotText(name) => name,
        }
    }
}

impl fmt::Display for InvalidSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoName => f.write_str("the name of an environment variable is needed"),
            Self::Missing(name) => write!(f, "the environment variable {name} is not set"),
            Self::Empty(name) => write!(f, "the environment variable {name} is empty"),
            Self::NotText(name) => write!(f, "the environment variable {name} is not valid UTF-8"),
        }
    }
}

impl StdError for InvalidSecret {}

/// Parses a flag that takes a URL (`--upstream`, `--store`) by its [`FromText`],
/// showing a refused URL's password as `***` in the error, which clap would otherwise
/// echo as given.
pub(crate) struct UrlParser<T>(std::marker::PhantomData<fn() -> T>);

impl<T> UrlParser<T> {
    pub(crate) fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T> Clone for UrlParser<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T: FromText + Clone + Send + Sync + 'static> clap::builder::TypedValueParser for UrlParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let Some(text) = value.to_str() else {
            return Err(clap::Error::new(clap::error::ErrorKind::InvalidUtf8).with_cmd(command));
        };
        T::from_text(text).map_err(|invalid| {
            let arg = arg.map_or_else(String::new, ToString::to_string);
            let message = format!("invalid value '{}' for '{arg}': {invalid}", redact(text));
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(command)
        })
    }
}

/// Why an `--upstream-timeout` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidTimeout;

impl InvalidTimeout {
    /// What a timeout is, after "expected": the configuration file says it too.
    pub(crate) const EXPECTED: &str =
        "a number of seconds greater than 0 and at most a day (86400), such as 30 or 0.5";
}

impl fmt::Display for InvalidTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}", Self::EXPECTED)
    }
}

impl StdError for InvalidTimeout {}

pub(crate) fn parse_timeout(text: &str) -> Result<Duration, InvalidTimeout> {
    let seconds: f64 = text.trim().parse().map_err(|_| InvalidTimeout)?;
    // Past a day a wait is a mistake, not a choice, and timers cannot reach every span.
    const MAX: Duration = Duration::from_secs(24 * 60 * 60);
    match Duration::try_from_secs_f64(seconds) {
        Ok(timeout) if !timeout.is_zero() && timeout <= MAX => Ok(timeout),
        _ => Err(InvalidTimeout),
    }
}

/// Why a byte count (`--memory-bytes`, `--max-body-bytes`) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidBytes;

impl InvalidBytes {
    /// What a byte count is, after "expected": the configuration file says it too.
    pub(crate) const EXPECTED: &str = "a whole number of bytes greater than 0, such as 1048576";
}

impl fmt::Display for InvalidBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}", Self::EXPECTED)
    }
}

impl StdError for InvalidBytes {}

/// A byte count: a bound of 0 would keep nothing, silently.
pub(crate) fn parse_bytes<T: TryFrom<u64>>(text: &str) -> Result<T, InvalidBytes> {
    let bytes: u64 = text.trim().parse().map_err(|_| InvalidBytes)?;
    positive_bytes(bytes)
}

/// A byte count read as a number (from the configuration file), checked as its flag is.
pub(crate) fn positive_bytes<T: TryFrom<u64>>(bytes: u64) -> Result<T, InvalidBytes> {
    if bytes == 0 {
        return Err(InvalidBytes);
    }
    T::try_from(bytes).map_err(|_| InvalidBytes)
}

/// Why a count (`--max-connections`) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidCount;

impl InvalidCount {
    /// What a count is, after "expected": the configuration file says it too.
    pub(crate) const EXPECTED: &str = "a whole number from 1 to 1000000, such as 10000";
}

/// The most connections a count may allow: more than one process can hold open (each is
/// a file descriptor, and may hold an upstream one), and far below what the semaphore
/// that counts them takes.
const MAX_COUNT: usize = 1_000_000;

impl fmt::Display for InvalidCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}", Self::EXPECTED)
    }
}

impl StdError for InvalidCount {}

/// A count: a bound of 0 would let nothing in.
pub(crate) fn parse_count(text: &str) -> Result<usize, InvalidCount> {
    let count: u64 = text.trim().parse().map_err(|_| InvalidCount)?;
    positive_count(count)
}

/// A count read as a number (from the configuration file), checked as its flag is.
pub(crate) fn positive_count(count: u64) -> Result<usize, InvalidCount> {
    match usize::try_from(count) {
        Ok(count) if (1..=MAX_COUNT).contains(&count) => Ok(count),
        _ => Err(InvalidCount),
    }
}

/// A value given as text, parsed as its flag parses it: the configuration file reads
/// its text settings through this.
pub(crate) trait FromText: Sized {
    /// Why a text was refused; the message a flag gives, without the flag's name.
    type Err: fmt::Display;

    fn from_text(text: &str) -> Result<Self, Self::Err>;
}

impl FromText for Upstream {
    type Err = InvalidUpstream;

    fn from_text(text: &str) -> Result<Self, InvalidUpstream> {
        Self::parse(text)
    }
}

impl FromText for SocketAddr {
    type Err = AddrParseError;

    fn from_text(text: &str) -> Result<Self, AddrParseError> {
        text.parse()
    }
}

impl FromText for Mode {
    type Err = InvalidChoice;

    fn from_text(text: &str) -> Result<Self, InvalidChoice> {
        choice(text)
    }
}

impl FromText for BadSignatureAction {
    type Err = InvalidChoice;

    fn from_text(text: &str) -> Result<Self, InvalidChoice> {
        choice(text)
    }
}

impl FromText for Expiry {
    type Err = InvalidExpiry;

    /// `never`, `do-not-cache`, or a duration: a whole number followed by `ms`, `s`, `m`, `h`
    /// or `d` (`90s`, `5m`, `1d`).
    fn from_text(text: &str) -> Result<Self, InvalidExpiry> {
        match text {
            "never" => Ok(Expiry::NeverExpire),
            "do-not-cache" => Ok(Expiry::DoNotCache),
            _ => span(text).map(Expiry::After).ok_or(InvalidExpiry),
        }
    }
}

/// A whole number followed by `ms`, `s`, `m`, `h` or `d`: `90s`, `5m`, `1d`.
fn span(text: &str) -> Option<Duration> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number.parse().ok()?;
    if unit == "ms" {
        // A memory tier or a coalescing wait may well be shorter than a second.
        return Some(Duration::from_millis(number));
    }
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return None,
    };
    number.checked_mul(seconds).map(Duration::from_secs)
}

/// A configured length of time, such as `90s`, `5m` or `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span(pub(crate) Duration);

impl FromText for Span {
    type Err = InvalidSpan;

    fn from_text(text: &str) -> Result<Self, InvalidSpan> {
        span(text).map(Span).ok_or(InvalidSpan)
    }
}

/// A length of time that is not a whole number with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidSpan;

impl fmt::Display for InvalidSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected a whole number with a unit: ms, s, m, h or d (such as '90s' or '1d')")
    }
}

impl StdError for InvalidSpan {}

/// An expiry that is not `never`, `do-not-cache` or a duration such as `90s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidExpiry;

impl fmt::Display for InvalidExpiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "expected 'never', 'do-not-cache', or a whole number with a unit: ms, s, m, h or d \
             (such as '90s' or '1d')",
        )
    }
}

impl StdError for InvalidExpiry {}

impl FromText for Method {
    type Err = InvalidName;

    fn from_text(text: &str) -> Result<Self, InvalidName> {
        // Methods are case-sensitive (RFC 9110 §9.1): `get` is not GET.
        if text.is_empty() || text.bytes().any(|b| !b.is_ascii_uppercase()) {
            return Err(InvalidName("a method in upper case, such as GET or POST"));
        }
        let method = Method::from_bytes(text.as_bytes())
            .map_err(|_| InvalidName("a method in upper case, such as GET or POST"))?;
        if cachet::UNCACHEABLE_METHODS.contains(&method) {
            return Err(InvalidName(
                "a method whose responses can be cached, such as GET, HEAD or POST \
                 (those of PUT, DELETE, PATCH, CONNECT, OPTIONS and TRACE never are)",
            ));
        }
        Ok(method)
    }
}

impl FromText for HeaderName {
    type Err = InvalidName;

    fn from_text(text: &str) -> Result<Self, InvalidName> {
        HeaderName::from_bytes(text.as_bytes())
            .map_err(|_| InvalidName("a header name, such as accept-language"))
    }
}

/// A name that is not what its setting takes; says what it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidName(&'static str);

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}", self.0)
    }
}

impl StdError for InvalidName {}

/// One of the words a flag such as `--mode` takes, matched as clap matches them.
fn choice<T: ValueEnum>(text: &str) -> Result<T, InvalidChoice> {
    T::from_str(text, false).map_err(|_| InvalidChoice {
        expected: T::value_variants()
            .iter()
            .filter_map(ValueEnum::to_possible_value)
            .map(|value| value.get_name().to_owned())
            .collect(),
    })
}

/// A word that is not one of a flag's choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidChoice {
    expected: Vec<String>,
}

impl fmt::Display for InvalidChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected ")?;
        let count = self.expected.len();
        for (index, name) in self.expected.iter().enumerate() {
            if index > 0 {
                f.write_str(if index + 1 == count { " or " } else { ", " })?;
            }
            write!(f, "'{name}'")?;
        }
        Ok(())
    }
}

impl StdError for InvalidChoice {}

/// How long a miss waits for a concurrent one for the same key: a length of time, or
/// `off` to send every miss upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CoalesceWait(pub(crate) Option<Duration>);

impl FromText for CoalesceWait {
    type Err = InvalidCoalesceWait;

    fn from_text(text: &str) -> Result<Self, InvalidCoalesceWait> {
        match text {
            "off" => Ok(Self(None)),
            _ => span(text)
                .map(|wait| Self(Some(wait)))
                .ok_or(InvalidCoalesceWait),
        }
    }
}

/// A coalescing wait that is neither `off` nor a length of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidCoalesceWait;

impl fmt::Display for InvalidCoalesceWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected 'off' or a whole number with a unit: ms, s, m, h or d (such as '5s')")
    }
}

impl StdError for InvalidCoalesceWait {}

/// How long the memory tier in front of Redis keeps what it read (`--memory-tier`): a
/// length of time above zero, or `off` for no tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryTier(pub(crate) Option<Duration>);

impl MemoryTier {
    pub(crate) fn parse(text: &str) -> Result<Self, InvalidMemoryTier> {
        match text {
            "off" => Ok(Self(None)),
            // A tier that keeps nothing for no time would be a tier in name only.
            _ => span(text)
                .filter(|keep| !keep.is_zero())
                .map(|keep| Self(Some(keep)))
                .ok_or(InvalidMemoryTier),
        }
    }
}

impl FromText for MemoryTier {
    type Err = InvalidMemoryTier;

    fn from_text(text: &str) -> Result<Self, InvalidMemoryTier> {
        Self::parse(text)
    }
}

/// A memory tier that is neither `off` nor a length of time above zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidMemoryTier;

impl fmt::Display for InvalidMemoryTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "expected 'off' or a whole number above 0 with a unit: ms, s, m, h or d (such as '1s')",
        )
    }
}

impl StdError for InvalidMemoryTier {}

/// An expiry rule's URL pattern: a host (glob), optionally a scheme before it and a path
/// after it, with no white space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlPattern(pub(crate) String);

impl FromText for UrlPattern {
    type Err = InvalidPattern;

    fn from_text(text: &str) -> Result<Self, InvalidPattern> {
        let host = text.split_once("://").map_or(text, |(_, rest)| rest);
        let host = host.split('/').next().unwrap_or_default();
        if host.is_empty() || text.chars().any(char::is_whitespace) {
            return Err(InvalidPattern);
        }
        Ok(Self(text.to_owned()))
    }
}

/// A URL pattern without a host, or with white space in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidPattern;

impl fmt::Display for InvalidPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "expected a host pattern, optionally with a scheme and a path, without spaces \
             (such as 'api.example.com/v1/' or '*')",
        )
    }
}

impl StdError for InvalidPattern {}
