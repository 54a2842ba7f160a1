//! Invalidation (RFC 9111 §4.4): the markers an unsafe method's success writes, and what
//! is done when the store fails one.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Uri};
use tower::ServiceExt;

use super::reference::same_origin;
use super::{INVALIDATION_TTL, write_failed};
use crate::CacheKey;
use crate::cache::layer::Config;
use crate::entry::Variants;
use crate::metrics::Metrics;
use crate::store::{Store, StoreRequest, Value, detach, detach_all};

/// When this process last invalidated a URI, kept by shards of keys (a key's shard holds
/// the latest of its keys' times): a response whose request began before an invalidation
/// of its URI, and did not see it, may be from before it, and is not stored (see
/// [`Placement`](super::Placement)). Only this process's invalidations are known here;
/// another's, through a shared store, meet the marker alone.
///
/// A shard stands for many keys, so a response may be refused for another key's
/// invalidation: a miss more, never a response from before an invalidation. With 1,024
/// shards that takes about a thousand invalidations while one response is fetched.
#[derive(Clone, Debug)]
pub(crate) struct Invalidations {
    /// Nanoseconds since the Unix epoch; 0 for never.
    shards: Arc<[AtomicU64]>,
    hasher: quick_cache::DefaultHashBuilder,
}

const SHARDS: usize = 1024;

impl Default for Invalidations {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
            hasher: quick_cache::DefaultHashBuilder::default(),
        }
    }
}

impl Invalidations {
    fn shard(&self, key: &CacheKey) -> &AtomicU64 {
        let hash = self.hasher.hash_one(key.as_str());
        // Below `SHARDS`, so it fits and is in bounds.
        &self.shards[usize::try_from(hash % SHARDS as u64).unwrap_or(0)]
    }

    /// Notes an invalidation of `key` at `at`, in nanoseconds since the Unix epoch (see
    /// [`nanos`]: read once for all the keys one response invalidates).
    fn note(&self, key: &CacheKey, at: u64) {
        self.shard(key).fetch_max(at, Ordering::AcqRel);
    }

    /// Whether `key` may have been invalidated at or after `began` by an invalidation
    /// other than one at `seen` or before (the one the request's lookup found).
    pub(crate) fn since(
        &self,
        key: &CacheKey,
        began: SystemTime,
        seen: Option<SystemTime>,
    ) -> bool {
        let last = self.shard(key).load(Ordering::Acquire);
        last != 0 && last >= nanos(began) && seen.is_none_or(|seen| last > nanos(seen))
    }
}

fn nanos(at: SystemTime) -> u64 {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

/// Invalidates what is stored for `uri` and for the same-origin `Location` and
/// `Content-Location` of a response to an unsafe method (RFC 9111 §4.4): a marker under
/// each URI's GET and HEAD keys hides every entry and variant stored before `now` (see
/// [`mark`] for a store that fails it).
///
/// The marker is encoded once and its value shared by every key it is written under.
pub(crate) fn invalidate<St: Store>(store: &St, uri: &Uri, response: &HeaderMap, config: &Config) {
    let now = config.clock.now();
    let marker = Variants {
        names: Vec::new(),
        not_before: now,
    };
    let value = match marker.encode() {
        Ok(bytes) => Value::from(bytes),
        Err(error) => return tracing::warn!(%error, "invalidation marker could not be encoded"),
    };
    let noted = nanos(now);
    let mark_all = |target: &Uri| {
        for key in config.keys.read_keys_for_url(target).into_iter().flatten() {
            tracing::debug!(%key, "invalidating");
            config.invalidations.note(&key, noted);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_response_counts_as_invalidated_by_what_came_at_or_after_its_request_and_it_did_not_see() {
        let log = Invalidations::default();
        let key = CacheKey::from_text("GET http://a.example/list");
        let t = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert!(!log.since(&key, t(10), None), "never invalidated");
        log.note(&key, nanos(t(10)));
        assert!(log.since(&key, t(9), None), "after the request began");
        assert!(
            log.since(&key, t(10), None),
            "in the instant it began, unseen"
        );
        assert!(
            !log.since(&key, t(10), Some(t(10))),
            "the one its lookup found"
        );
        assert!(
            log.since(&key, t(9), Some(t(5))),
            "after the one its lookup found"
        );
        assert!(!log.since(&key, t(11), None), "before it began");
        log.note(&key, nanos(t(3)));
        assert!(
            !log.since(&key, t(11), None),
            "an older one changes nothing"
        );
    }
}
