use std::sync::Arc;

use http::Method;
use tower::Layer;

use super::BodyKey;

/// Configuration shared by a layer and every service it makes.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The methods whose request bodies are read.
    pub(crate) methods: Vec<Method>,
    /// The most bytes read from one body.
    pub(crate) max_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            methods: vec![Method::POST],
            max_bytes: BodyKeyLayer::DEFAULT_MAX_BYTES,
        }
    }
}

/// A [`Layer`] that reads request bodies ahead so a cache can key on them; it makes
/// [`BodyKey`] services.
///
/// ```
/// use cachet::BodyKeyLayer;
/// use http::Method;
///
/// let layer = BodyKeyLayer::new()
///     .methods([Method::POST, Method::from_bytes(b"QUERY")?])
///     .max_bytes(16 << 10);
/// # let _ = layer;
/// # Ok::<_, http::method::InvalidMethod>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct BodyKeyLayer {
    config: Arc<Config>,
}

impl BodyKeyLayer {
    /// The most bytes read from one body by default: 64 KiB.
    pub const DEFAULT_MAX_BYTES: usize = 64 << 10;

    /// Reads the bodies of POST requests, up to
    /// [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES).
    pub fn new() -> Self {
        Self::default()
    }

    /// The methods whose request bodies are read: POST by default. Other requests pass
    /// through untouched.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        Arc::make_mut(&mut self.config).methods = methods.into_iter().collect();
        self
    }

    /// The most bytes read from one body. A longer body is still sent whole, but gets no
    /// [`BodyDigest`](super::BodyDigest), so it is not cached.
    pub fn max_bytes(mut self, max: usize) -> Self {
        Arc::make_mut(&mut self.config).max_bytes = max;
        self
    }
}

impl<S> Layer<S> for BodyKeyLayer {
    type Service = BodyKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyKey::from_parts(inner, self.config.clone())
    }
}
