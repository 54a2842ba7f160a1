//! The proxy's error type.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;

use cachet::BoxError;

/// Why the proxy could not start or run.
///
/// The message names what failed (such as the address that could not be bound);
/// [`source`](StdError::source) holds the underlying cause.
pub struct Error {
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Debug)]
enum Kind {
    Bind(SocketAddr),
    Tls,
    Store,
}

impl Error {
    pub(crate) fn bind(addr: SocketAddr, source: impl Into<BoxError>) -> Self {
        Self {
            kind: Kind::Bind(addr),
            source: Some(source.into()),
        }
    }

    pub(crate) fn tls(source: impl Into<BoxError>) -> Self {
        Self {
            kind: Kind::Tls,
            source: Some(source.into()),
        }
    }

    pub(crate) fn store(source: impl Into<BoxError>) -> Self {
        Self {
            kind: Kind::Store,
            source: Some(source.into()),
        }
    }

    /// The cache store could not be set up (its keys, or its connection).
    pub fn is_store(&self) -> bool {
        matches!(self.kind, Kind::Store)
    }

    /// The listening address could not be bound (for example, it is in use).
    pub fn is_bind(&self) -> bool {
        matches!(self.kind, Kind::Bind(_))
    }

    /// The TLS client for the upstream could not be set up.
    pub fn is_tls(&self) -> bool {
        matches!(self.kind, Kind::Tls)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("cachet_proxy::Error");
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
            Kind::Bind(addr) => write!(f, "cannot listen on {addr}"),
            Kind::Tls => f.write_str("cannot set up TLS for the upstream"),
            Kind::Store => f.write_str("cannot set up the cache store"),
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
