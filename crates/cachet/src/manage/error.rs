use std::error::Error as StdError;
use std::fmt;

use crate::BoxError;
use crate::store::{InvalidCursor, Unsupported};

/// Why an [`Entries`](super::Entries) operation failed.
///
/// [`is_unsupported`](Self::is_unsupported) says the store cannot do it at all (it cannot
/// list its entries, say); [`is_store`](Self::is_store) that the store failed this time
/// (Redis timed out); [`is_invalid_url`](Self::is_invalid_url) that the URL given is not
/// one a cache key can be made of. [`source`](StdError::source) holds the store's error.
pub struct Error {
    kind: Kind,
    operation: &'static str,
    source: Option<BoxError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unsupported,
    Store,
    /// Why no cache key can be made of the URL.
    InvalidUrl(&'static str),
    InvalidCursor,
}

impl Error {
    /// The store failed at `operation`: unsupported when the error (or one of its
    /// sources) is [`Unsupported`].
    pub(crate) fn store(operation: &'static str, source: BoxError) -> Self {
        let mut cause: Option<&(dyn StdError + 'static)> = Some(&*source);
        let mut kind = Kind::Store;
        while let Some(error) = cause {
            if error.is::<Unsupported>() {
                kind = Kind::Unsupported;
                break;
            }
            if error.is::<InvalidCursor>() {
                kind = Kind::InvalidCursor;
                break;
            }
            cause = error.source();
        }
        Self {
            kind,
            operation,
            source: Some(source),
        }
    }

    /// The store answered `operation` with a response of another kind: a store that does
    /// not know the request.
    pub(crate) fn unsupported(operation: &'static str) -> Self {
        Self {
            kind: Kind::Unsupported,
            operation,
            source: None,
        }
    }

    pub(crate) fn invalid_url(why: &'static str, source: Option<BoxError>) -> Self {
        Self {
            kind: Kind::InvalidUrl(why),
            operation: "find entries by url",
            source,
        }
    }

    /// The store cannot do this at all: it cannot list its entries or clear itself.
    pub fn is_unsupported(&self) -> bool {
        self.kind == Kind::Unsupported
    }

    /// The store failed this time (a timeout, a lost connection); trying again may work.
    pub fn is_store(&self) -> bool {
        self.kind == Kind::Store
    }

    /// No cache key can be made of the URL (it is not absolute, has user information or a
    /// port that is not a number, or the key strategy gives it none), so no entry can be
    /// stored for it.
    pub fn is_invalid_url(&self) -> bool {
        matches!(self.kind, Kind::InvalidUrl(_))
    }

    /// The cursor is not one the store made (see [`InvalidCursor`]).
    pub fn is_invalid_cursor(&self) -> bool {
        self.kind == Kind::InvalidCursor
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("cachet::manage::Error");
        d.field("kind", &self.kind)
            .field("operation", &self.operation);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.operation;
        match self.kind {
            Kind::Unsupported => write!(f, "the store cannot {op}"),
            Kind::Store => write!(f, "the store failed to {op}"),
            Kind::InvalidUrl(why) => write!(f, "no cache key can be made of that url: {why}"),
            Kind::InvalidCursor => write!(f, "the store cannot {op} from that cursor"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsupported_source_anywhere_in_the_chain_makes_it_unsupported() {
        let error = Error::store("list entries", Unsupported::new("a store", "list").into());
        assert!(error.is_unsupported());
        assert_eq!(error.to_string(), "the store cannot list entries");
        let error = Error::store("list entries", "connection reset".into());
        assert!(error.is_store() && !error.is_unsupported());
        assert_eq!(error.to_string(), "the store failed to list entries");
    }
}
