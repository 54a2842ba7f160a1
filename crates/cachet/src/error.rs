//! The one error type that a [`Cache`](crate::Cache) hands to its caller.

use std::error::Error as StdError;
use std::fmt;

/// A boxed error, as tower uses between layers.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a request through a [`Cache`](crate::Cache) failed.
///
/// Store failures never appear here: the cache fails open and asks the origin instead.
/// What does appear is the inner service's own error ([`is_upstream`](Self::is_upstream)).
pub struct Error {
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Debug)]
enum Kind {
    Upstream,
}

impl Error {
    pub(crate) fn upstream(source: impl Into<BoxError>) -> Self {
        Self {
            kind: Kind::Upstream,
            source: Some(source.into()),
        }
    }

    /// The inner service (the origin side) returned this error; [`source`](StdError::source)
    /// holds it.
    pub fn is_upstream(&self) -> bool {
        matches!(self.kind, Kind::Upstream)
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
