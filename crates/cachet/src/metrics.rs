//! Counters of what a cache did, shared by a layer and every service it makes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a cache has done since it was built; clones share the counts.
///
/// ```
/// use cachet::{CacheLayer, MemoryStore};
///
/// let layer = CacheLayer::new(MemoryStore::default());
/// let metrics = layer.metrics();
/// assert_eq!(metrics.hits(), 0);
/// ```
#[derive(Clone, Default)]
pub struct Metrics {
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    hits: AtomicU64,
    forwarded: AtomicU64,
    stale: AtomicU64,
    store_errors: AtomicU64,
    bad_signatures: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Requests answered from the cache.
    pub fn hits(&self) -> u64 {
        self.counts.hits.load(Ordering::Relaxed)
    }

    /// Requests sent on to the inner service, for any reason.
    pub fn forwarded(&self) -> u64 {
        self.counts.forwarded.load(Ordering::Relaxed)
    }

    /// Forwarded requests whose stored response was stale.
    pub fn stale(&self) -> u64 {
        self.counts.stale.load(Ordering::Relaxed)
    }

    /// Store reads and writes that failed (the cache failed open).
    pub fn store_errors(&self) -> u64 {
        self.counts.store_errors.load(Ordering::Relaxed)
    }

    /// Stored entries that failed signature verification.
    pub fn bad_signatures(&self) -> u64 {
        self.counts.bad_signatures.load(Ordering::Relaxed)
    }

    pub(crate) fn hit(&self) {
        bump(&self.counts.hits);
    }

    pub(crate) fn forward(&self, stale: bool) {
        bump(&self.counts.forwarded);
        if stale {
            bump(&self.counts.stale);
        }
    }

    pub(crate) fn store_error(&self) {
        bump(&self.counts.store_errors);
    }

    pub(crate) fn bad_signature(&self) {
        bump(&self.counts.bad_signatures);
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("hits", &self.hits())
            .field("forwarded", &self.forwarded())
            .field("stale", &self.stale())
            .field("store_errors", &self.store_errors())
            .field("bad_signatures", &self.bad_signatures())
            .finish()
    }
}
