//! Invalidation (RFC 9111 §4.4): the markers an unsafe method's success writes, and what
//! is done when the store fails one.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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
    /// The markers on their way to the store, by shard, and in all: a lookup of a key
    /// whose shard has one in flight does not read the store, which may still hold what
    /// the marker hides (a POST's response does not wait for its marker).
    marking: Arc<Marking>,
    /// Each shard's writes of stored responses under way, as one group until an
    /// invalidation in the shard starts the next.
    writes: Arc<[Mutex<Arc<Writes>>]>,
    /// How many writes each shard has under way: an invalidation in a shard with none
    /// takes no lock.
    writers: Arc<[AtomicUsize]>,
}

/// A write of a stored response under way, in its shard's group (see
/// [`Invalidations::writing`]) until it is dropped.
#[derive(Debug)]
pub(crate) struct Writing {
    _group: Arc<Writes>,
    writers: Arc<[AtomicUsize]>,
    shard: usize,
}

impl Drop for Writing {
    fn drop(&mut self) {
        if let Some(count) = self.writers.get(self.shard) {
            count.fetch_sub(1, Ordering::Release);
        }
    }
}

/// A group of writes of stored responses (see [`Invalidations::writing`]). An
/// invalidation that starts the next group leaves its key marked in this one, until the
/// last of its writes is done: one of them may land over the invalidation's marker, and
/// be marked again only after.
#[derive(Debug, Default)]
struct Writes {
    held: Mutex<Vec<Marked>>,
}

#[derive(Debug)]
struct Marking {
    total: AtomicUsize,
    shards: Box<[AtomicUsize]>,
}

/// A marker write under way: its key's shard counts as being marked until it is dropped,
/// when the write (and any fallback of [`mark`]) is done.
#[derive(Debug)]
pub(crate) struct Marked {
    marking: Arc<Marking>,
    shard: usize,
}

impl Drop for Marked {
    fn drop(&mut self) {
        if let Some(count) = self.marking.shards.get(self.shard) {
            count.fetch_sub(1, Ordering::AcqRel);
        }
        self.marking.total.fetch_sub(1, Ordering::AcqRel);
    }
}

const SHARDS: usize = 1024;

/// An invalidation counted by [`Invalidations::note`], whose marker is still to be written.
#[derive(Debug)]
pub(crate) struct Noted<'a> {
    invalidations: &'a Invalidations,
    shard: usize,
}

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
            marking: Arc::new(Marking {
                total: AtomicUsize::new(0),
                shards: (0..SHARDS).map(|_| AtomicUsize::new(0)).collect(),
            }),
            writes: (0..SHARDS).map(|_| Mutex::default()).collect(),
            writers: (0..SHARDS).map(|_| AtomicUsize::new(0)).collect(),
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
            .map_or(0, |count| count.load(Ordering::SeqCst))
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

    /// Counts an invalidation of `key`, before its marker is written (by [`mark`], which
    /// counts the key as being marked for as long as the write is under way).
    pub(super) fn note(&self, key: &CacheKey) -> Noted<'_> {
        let shard = self.shard(key);
        if let Some(count) = self.shards.get(shard) {
            count.fetch_add(1, Ordering::SeqCst);
        }
        // The writes under way now may land over the marker: the shard stays marked
        // until they are done. With none (the group is held by its slot alone, and a
        // write joins it only under the lock), there is nothing to wait for. A write is
        // counted before it joins and checks `since` after, and this count comes before
        // that load (all `SeqCst`): a write this load misses sees this invalidation.
        let writing = self
            .writers
            .get(shard)
            .is_some_and(|count| count.load(Ordering::SeqCst) != 0);
        if writing && let Some(writes) = self.writes.get(shard) {
            let mut current = writes.lock().unwrap_or_else(PoisonError::into_inner);
            if Arc::strong_count(&current) > 1 {
                let before = std::mem::take(&mut *current);
                drop(current);
                before
                    .held
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(self.marked(shard));
            }
        }
        Noted {
            invalidations: self,
            shard,
        }
    }

    /// Counts `shard` as being marked until the guard is dropped.
    fn marked(&self, shard: usize) -> Marked {
        self.marking.total.fetch_add(1, Ordering::AcqRel);
        if let Some(count) = self.marking.shards.get(shard) {
            count.fetch_add(1, Ordering::AcqRel);
        }
        Marked {
            marking: self.marking.clone(),
            shard,
        }
    }

    /// Joins the group of writes under way for `key`'s shard, before a write that checks
    /// [`since`](Self::since) first; held until the write, and the marker it may write
    /// after, are done.
    pub(crate) fn writing(&self, key: &CacheKey) -> Writing {
        let shard = self.shard(key);
        if let Some(count) = self.writers.get(shard) {
            count.fetch_add(1, Ordering::SeqCst);
        }
        let group = self
            .writes
            .get(shard)
            .map(|writes| {
                writes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default();
        Writing {
            _group: group,
            writers: self.writers.clone(),
            shard,
        }
    }

    /// Whether a marker for `key`, or a key that shares its shard, is on its way to the
    /// store. One load when none is, as with a store that answers at once.
    pub(crate) fn marking(&self, key: &CacheKey) -> bool {
        self.marking.total.load(Ordering::Acquire) != 0
            && self
                .marking
                .shards
                .get(self.shard(key))
                .is_some_and(|count| count.load(Ordering::Acquire) != 0)
    }
}

/// Invalidates what is stored for `uri` and for the same-origin `Location` and
/// `Content-Location` of a response to an unsafe method (RFC 9111 §4.4): a marker under
/// each URI's GET and HEAD keys hides every entry and variant stored before `now` (see
/// [`mark`] for a store that fails it).
///
/// The marker is encoded once and its value shared by every key it is written under.
pub(crate) fn invalidate<St: Store>(
    store: &mut St,
    uri: &Uri,
    response: &HeaderMap,
    config: &Config,
) {
    let now = config.clock.now();
    let marker = Variants {
        names: Vec::new(),
        not_before: now,
    };
    let value = match marker.encode() {
        Ok(bytes) => Value::from(bytes),
        Err(error) => return tracing::warn!(%error, "invalidation marker could not be encoded"),
    };
    let mut mark_all = |target: &Uri| {
        // The HEAD key first: a HEAD's update of the stored GET joins the GET key's writes
        // and checks the HEAD key's count, so the HEAD key must be counted before the GET
        // key's writes are looked at (see `Invalidations::note`), or the update could read
        // the entry, miss both, and land over the GET key's marker.
        let [get, head] = config.keys.read_keys_for_url(target);
        for key in [head, get].into_iter().flatten() {
            tracing::debug!(%key, "invalidating");
            let noted = config.invalidations.note(&key);
            mark(store, key, &value, noted, &config.metrics);
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
///
/// The key counts as being marked from before the write is sent until it and its
/// fallbacks are done, for lookups to skip the store meanwhile; a write the store takes
/// at once is done before the response that invalidated goes out, so it is not counted.
pub(super) fn mark<St: Store>(
    store: &mut St,
    key: CacheKey,
    marker: &Value,
    noted: Noted<'_>,
    metrics: &Metrics,
) {
    let first = StoreRequest::Put {
        key: key.clone(),
        value: marker.clone(),
        ttl: INVALIDATION_TTL,
    };
    // The fallback, and the guard that counts the key as being marked, are made only when
    // the first write fails or runs on (before it is handed to a task, so before the
    // response goes out): a `POST` whose marker the store takes at once costs what any
    // write costs. The guard is held by the task that finishes the write, through its
    // fallbacks.
    detach(store, first, move |store| {
        let marked = noted.invalidations.marked(noted.shard);
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
                let _marked = marked;
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
