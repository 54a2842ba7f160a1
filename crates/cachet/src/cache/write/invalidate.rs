//! Invalidation (RFC 9111 §4.4): the markers an unsafe method's success writes, and what
//! is done when the store fails one.

use http::{HeaderMap, Uri};
use tower::ServiceExt;

use super::reference::same_origin;
use super::{INVALIDATION_TTL, write_failed};
use crate::CacheKey;
use crate::cache::layer::Config;
use crate::entry::Variants;
use crate::metrics::Metrics;
use crate::store::{Store, StoreRequest, Value, detach, detach_all};

/// Invalidates what is stored for `uri` and for the same-origin `Location` and
/// `Content-Location` of a response to an unsafe method (RFC 9111 §4.4): a marker under
/// each URI's GET and HEAD keys hides every entry and variant stored before `now` (see
/// [`mark`] for a store that fails it).
///
/// The marker is encoded once and its value shared by every key it is written under.
pub(crate) fn invalidate<St: Store>(store: &St, uri: &Uri, response: &HeaderMap, config: &Config) {
    let marker = Variants {
        names: Vec::new(),
        not_before: config.clock.now(),
    };
    let value = match marker.encode() {
        Ok(bytes) => Value::from(bytes),
        Err(error) => return tracing::warn!(%error, "invalidation marker could not be encoded"),
    };
    let mark_all = |target: &Uri| {
        for key in config.keys.read_keys_for_url(target).into_iter().flatten() {
            tracing::debug!(%key, "invalidating");
            mark(store.clone(), key, value.clone(), &config.metrics);
        }
    };
    mark_all(uri);
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        if let Some(target) = response
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|reference| same_origin(uri, reference))
        {
            mark_all(&target);
        }
    }
}

/// Writes an invalidation marker under `key` without delaying the response (as [`write()`]
/// does). A marker the store refuses (a Redis full under `noeviction`) or never gets
/// would leave what it hides to be served as fresh, so the key is then deleted, which a
/// full Redis still allows: a miss instead of a hit from before the invalidation. When
/// the delete fails too (the store is down or read-only), the marker is written once
/// more, for a store that has come back meanwhile.
pub(super) fn mark<St: Store>(store: St, key: CacheKey, marker: Value, metrics: &Metrics) {
    let metrics = metrics.clone();
    let put = move |key| StoreRequest::Put {
        key,
        value: marker.clone(),
        ttl: INVALIDATION_TTL,
    };
    let first = put(key.clone());
    // The fallback is built only when the first write fails: a `POST` whose marker the
    // store takes costs what any write costs.
    detach(store.clone(), first, move |error| {
        metrics.store_error();
        tracing::warn!(%key, %error, "invalidation marker not stored; deleting the key instead");
        detach_all(async move {
            let delete = StoreRequest::Delete(key.clone());
            let Err(error) = store.clone().oneshot(delete).await else {
                return;
            };
            metrics.store_error();
            tracing::warn!(%key, %error, "invalidated key not deleted either; writing the marker once more");
            if let Err(error) = store.oneshot(put(key)).await {
                write_failed(&error, &metrics);
            }
        });
    });
}
