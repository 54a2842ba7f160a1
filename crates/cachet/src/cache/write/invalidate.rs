//! Invalidation (RFC 9111 §4.4): the markers an unsafe method's success writes, and what
//! is done when the store fails one.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, Uri};
use tower::ServiceExt;

use super::reference::same_origin;
use super::{INVALIDATION_TTL, write_failed};
use crate::CacheKey;
use crate::OneLine;
use crate::cache::layer::Config;
use crate::entry::Variants;
use crate::metrics::Metrics;
use crate::store::{Store, StoreRequest, Value, detach, detach_all};

/// How many invalidations each shard of keys has seen in this cache (one
/// [`CacheLayer`](crate::CacheLayer)'s services): a response whose key's count moved
/// between the moment its request was sent and the moment it would be stored may be from
/// before an invalidation (the origin may have answered it first), and is not stored (see
/// [`Placement`](super::Placement)). A request sent after the count is read is sent after
/// every invalidation counted so far had its response, so a response to it counts. Other
/// caches' invalidations, through a shared store, meet the marker alone; so do purges.
///
/// A shard counts for many keys, so a response may be refused for another key's
/// invalidation: a miss more, never a response from before an invalidation. An
/// invalidation counts two keys (GET and HEAD) for each URI it names, so a fetch is
/// refused about once in five hundred for each URI invalidated while it is under way.
#[derive(Clone, Debug)]
pub(crate) struct Invalidations {
    shards: Arc<[AtomicU64]>,
    hasher: quick_cache::DefaultHashBuilder,
}

const SHARDS: usize = 1024;

/// Where a request's key stood in [`Invalidations`] when it was sent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sent {
    shard: usize,
    count: u64,
}

impl Default for Invalidations {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
            hasher: quick_cache::DefaultHashBuilder::default(),
        }
    }
}

impl Invalidations {
    fn shard(&self, key: &CacheKey) -> usize {
        // Below `SHARDS`, so it fits.
        usize::try_from(self.hasher.hash_one(key.as_str()) % SHARDS as u64).unwrap_or(0)
    }

    fn count(&self, shard: usize) -> u64 {
        self.shards
            .get(shard)
            .map_or(0, |count| count.load(Ordering::Acquire))
    }

    /// Read when a request for `key` is sent, before it goes.
    pub(crate) fn sending(&self, key: &CacheKey) -> Sent {
        let shard = self.shard(key);
        Sent {
            shard,
            count: self.count(shard),
        }
    }

    /// Whether `key`, or a key that shares its shard, was invalidated since `sent`;
    /// `None` (a request whose sending was not read) counts as invalidated.
    pub(crate) fn since(&self, sent: Option<Sent>) -> bool {
        sent.is_none_or(|sent| self.count(sent.shard) != sent.count)
    }

    /// Counts an invalidation of `key`, before its marker is written.
    fn note(&self, key: &CacheKey) {
        if let Some(count) = self.shards.get(self.shard(key)) {
            count.fetch_add(1, Ordering::AcqRel);
        }
    }
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
    let mark_all = |target: &Uri| {
        for key in config.keys.read_keys_for_url(target).into_iter().flatten() {
            tracing::debug!(%key, "invalidating");
            config.invalidations.note(&key);
            mark(store, key, &value, &config.metrics);
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
pub(super) fn mark<St: Store>(store: &St, key: CacheKey, marker: &Value, metrics: &Metrics) {
    let first = StoreRequest::Put {
        key: key.clone(),
        value: marker.clone(),
        ttl: INVALIDATION_TTL,
    };
    // The fallback is made only when the first write fails or runs on: a `POST` whose
    // marker the store takes at once costs what any write costs.
    detach(store.clone(), first, || {
        let (store, marker, metrics) = (store.clone(), marker.clone(), metrics.clone());
        let put = move |key| StoreRequest::Put {
            key,
            value: marker.clone(),
            ttl: INVALIDATION_TTL,
        };
        move |error| {
            metrics.store_error();
            tracing::warn!(%key, error = %OneLine(&*error), "invalidation marker not stored; deleting the key instead");
            detach_all(async move {
                let delete = StoreRequest::Delete(key.clone());
                let Err(error) = store.clone().oneshot(delete).await else {
                    return;
                };
                metrics.store_error();
                tracing::warn!(%key, error = %OneLine(&*error), "invalidated key not deleted either; writing the marker once more");
                if let Err(error) = store.oneshot(put(key)).await {
                    write_failed(&error, &metrics);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_counts_as_invalidated_by_what_its_key_s_shard_counted_after_it_was_sent() {
        let log = Invalidations::default();
        let key = CacheKey::from_text("GET http://a.example/list");
        let sent = log.sending(&key);
        assert!(!log.since(Some(sent)), "nothing since");
        log.note(&key);
        assert!(log.since(Some(sent)), "invalidated after it was sent");
        assert!(
            !log.since(Some(log.sending(&key))),
            "sent after the invalidation"
        );
        assert!(log.since(None), "a request whose sending was not read");
    }
}
