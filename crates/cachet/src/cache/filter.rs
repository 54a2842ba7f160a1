//! What the cache handles: allowed methods and statuses, and a user's [`Filter`].

use std::fmt;

use crate::{CacheKey, RequestHead};

/// A user's say in what the cache handles, over the request and then the response; give
/// it to [`CacheLayer::filter`](crate::CacheLayer::filter). Both methods allow by
/// default.
///
/// ```
/// use cachet::{CacheKey, CacheLayer, Filter, MemoryStore, RequestHead};
///
/// /// Never caches the admin API, nor responses that carry a debug header.
/// #[derive(Debug)]
/// struct NotAdmin;
///
/// impl Filter for NotAdmin {
///     fn request(&self, request: &RequestHead<'_>) -> bool {
///         !request.uri.path().starts_with("/admin/")
///     }
///
///     fn response(&self, _key: &CacheKey, response: &http::response::Parts) -> bool {
///         !response.headers.contains_key("x-debug")
///     }
/// }
///
/// let layer = CacheLayer::new(MemoryStore::default()).filter(NotAdmin);
/// # let _ = layer;
/// ```
pub trait Filter: fmt::Debug + Send + Sync + 'static {
    /// Whether the cache handles this request at all (its URI as sent). A request it
    /// does not handle goes to the inner service untouched (`fwd=bypass`); an unsafe
    /// one still invalidates what is stored for its URI (RFC 9111 §4.4).
    fn request(&self, request: &RequestHead<'_>) -> bool {
        let _ = request;
        true
    }

    /// Whether this response to the request stored under `key` may be stored, once RFC
    /// 9111 and the cache's settings allow it.
    fn response(&self, key: &CacheKey, response: &http::response::Parts) -> bool {
        let _ = (key, response);
        true
    }
}
