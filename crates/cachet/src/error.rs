//! The one error type that a [`Cache`](crate::Cache) hands to its caller.

use std::error::Error as StdError;
use std::fmt;

use crate::CacheKey;

/// A boxed error, as tower uses between layers.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a request through a [`Cache`](crate::Cache) failed.
///
/// Store failures never appear here: the cache fails open and asks the origin instead.
/// What does appear is the inner service's own error ([`is_upstream`](Self::is_upstream)),
/// and, by default, a stored entry whose signature did not verify
/// ([`is_bad_signature`](Self::is_bad_signature)).
pub struct Error {
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Debug)]
enum Kind {
    Upstream,
    BadSignature(CacheKey),
}

impl Error {
    pub(crate) fn upstream(source: impl Into<BoxError>) -> Self {
        Self {
            kind: Kind::Upstream,
            source: Some(source.into()),
        }
    }

    pub(crate) fn bad_signature(key: CacheKey, source: BoxError) -> Self {
        Self {
            kind: Kind::BadSignature(key),
            source: Some(source),
        }
    }

    /// The inner service (the origin side) returned this error; [`source`](StdError::source)
    /// holds it.
    pub fn is_upstream(&self) -> bool {
        matches!(self.kind, Kind::Upstream)
    }

    /// The stored entry for this request failed signature verification: somebody without
    /// the key changed it, or it was signed with a key this cache does not have. See
    /// [`verify`](crate::verify).
    pub fn is_bad_signature(&self) -> bool {
        matches!(self.kind, Kind::BadSignature(_))
    }

    /// The cache key of the entry that failed verification, if that is the error.
    pub fn cache_key(&self) -> Option<&CacheKey> {
        match &self.kind {
            Kind::BadSignature(key) => Some(key),
            Kind::Upstream => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("cachet::Error");
        d.field("kind", &self.kind);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Upstream => f.write_str("upstream service failed"),
            Kind::BadSignature(key) => {
                write!(f, "cached entry for {key} failed signature verification")
            }
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// An error and its causes on one line, `: `-separated, each once (a message that already
/// ends with its cause's text does not repeat it), line breaks made spaces: what a log
/// line or a one-line message shows of an error whose own message ("redis get could not
/// connect") leaves the reason to its source.
///
/// ```
/// let error = std::io::Error::other("disk full");
/// assert_eq!(cachet::OneLine(&error).to_string(), "disk full");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct OneLine<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        // A message from outside (a store's server) must not start a log line of its own.
        f.write_str(&text.replace(['\r', '\n'], " "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layered(&'static str, Option<Box<Layered>>);

    impl fmt::Display for Layered {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Layered {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn StdError + 'static))
        }
    }

    #[test]
    fn a_chain_shows_every_cause_once() {
        let error = Layered(
            "redis get could not connect",
            Some(Box::new(Layered(
                "DB index is out of range",
                Some(Box::new(Layered("out of range", None))),
            ))),
        );
        assert_eq!(
            OneLine(&error).to_string(),
            "redis get could not connect: DB index is out of range"
        );
        let injected = Layered("refused", Some(Box::new(Layered("a\r\nFAKE line", None))));
        assert_eq!(OneLine(&injected).to_string(), "refused: a  FAKE line");
    }
}
