//! Counters of what went wrong between a store and Redis.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// What a [`RedisStore`](crate::RedisStore) has failed at since it was built; clones of
/// the store share the counts.
///
/// Every failed operation counts once in [`errors`](Self::errors), and also in
/// [`timeouts`](Self::timeouts) or [`refused`](Self::refused) when that is why.
/// Connections dropped after a failure count in
/// [`discarded_connections`](Self::discarded_connections).
#[derive(Clone, Default)]
pub struct RedisMetrics {
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    errors: AtomicU64,
    timeouts: AtomicU64,
    refused: AtomicU64,
    discarded: AtomicU64,
}

impl RedisMetrics {
    /// Operations that failed, for any reason (the cache failed open on each).
    pub fn errors(&self) -> u64 {
        self.counts.errors.load(Ordering::Relaxed)
    }

    /// Operations that ran into a bound: pool wait, connect or command.
    pub fn timeouts(&self) -> u64 {
        self.counts.timeouts.load(Ordering::Relaxed)
    }

    /// Operations Redis answered with an error, such as `OOM` when it is full under
    /// `maxmemory-policy noeviction`.
    pub fn refused(&self) -> u64 {
        self.counts.refused.load(Ordering::Relaxed)
    }

    /// Connections dropped because a command on them timed out or failed; the pool
    /// opens new ones as they are needed.
    pub fn discarded_connections(&self) -> u64 {
        self.counts.discarded.load(Ordering::Relaxed)
    }

    pub(crate) fn failed(&self, error: &Error) {
        self.counts.errors.fetch_add(1, Ordering::Relaxed);
        if error.is_timeout() {
            self.counts.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        if error.is_refused() {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn discarded(&self) {
        self.counts.discarded.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for RedisMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisMetrics")
            .field("errors", &self.errors())
            .field("timeouts", &self.timeouts())
            .field("refused", &self.refused())
            .field("discarded_connections", &self.discarded_connections())
            .finish()
    }
}
