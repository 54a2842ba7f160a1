//! Request coalescing: concurrent misses for one key send one request to the origin; the
//! others wait for its stored response.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::CacheKey;
use crate::cache::write::Sent;
use crate::store::Value;

/// The keys whose miss is being fetched, with the requests waiting for each. Hashed as
/// the memory store hashes the same keys (a seeded fast hasher, not SipHash): every miss
/// joins and leaves this map.
#[derive(Clone, Debug, Default)]
pub(crate) struct Inflight(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    fetching: Mutex<Fetching>,
    /// How many fetches have finished with a stored entry, counted in shards by key: a
    /// request that saw the same count for its key's shard before its store lookup and
    /// when it joins knows that no fetch of its key stored anything in between, and needs
    /// no second lookup. Shards keep a busy cache's other keys from forcing one.
    finished: [AtomicU64; SHARDS],
}

const SHARDS: usize = 32;

/// A key's shard of the finished counts; keys that share one only cost each other a
/// second look.
fn shard(key: &CacheKey) -> usize {
    key.shard(SHARDS)
}

/// Each key being fetched, with the requests waiting for it.
type Fetching = HashMap<CacheKey, Fetch, quick_cache::DefaultHashBuilder>;

/// A fetch under way: the senders of the requests waiting for it; whether its response's
/// head is in, its body streaming; and whether a request then waited for it as long as it
/// may, after which no other request waits for it (its body may stream for as long as its
/// client reads it). A fetch whose origin is slow to answer is still waited for: its
/// answer may come any moment, and serve everyone.
#[derive(Debug, Default)]
struct Fetch {
    waiters: Vec<oneshot::Sender<Handed>>,
    streaming: bool,
    given_up: bool,
}

/// What a fetch hands its waiters: the entry, and where its key stood among the cache's
/// invalidations when it was read or fetched (a waiter that joined after an invalidation
/// counted since then asks the origin instead: RFC 9111 §4.4).
pub(crate) type Handed = (Value, Option<Sent>);

/// A request's place in a key's fetch.
pub(crate) enum Join {
    /// This request fetches; the others wait for it.
    Leader(Leader),
    /// Another request is fetching; this one waits for its stored entry.
    Waiter(oneshot::Receiver<Handed>),
    /// Another request is fetching, and a request that waited for it gave up: this one
    /// goes to the origin without waiting.
    Overdue,
}

/// The fetching request's duty to its waiters. Finishing hands them the stored entry;
/// dropping it unfinished (the response was not storable, its body failed, the request
/// was cancelled) sends them to the origin at once.
#[derive(Debug)]
pub(crate) struct Leader {
    claim: Option<(Inflight, CacheKey)>,
}

impl Inflight {
    /// The count of finished fetches in `key`'s shard, to compare before a lookup and at
    /// the join.
    pub(crate) fn finished(&self, key: &CacheKey) -> u64 {
        self.0.finished[shard(key)].load(Ordering::Acquire)
    }

    pub(crate) fn join(&self, key: &CacheKey) -> Join {
        // One hash and probe for both outcomes: every miss comes here.
        match self.fetching().entry(key.clone()) {
            Entry::Occupied(mut fetch) => {
                let fetch = fetch.get_mut();
                if fetch.given_up {
                    return Join::Overdue;
                }
                let (send, receive) = oneshot::channel();
                // Those who gave up (cancelled, timed out) are let go, so that a fetch that
                // lasts keeps only the waiters still there; when the list is full, so that
                // a crowd of joins costs each no more than one.
                if fetch.waiters.len() == fetch.waiters.capacity() {
                    fetch.waiters.retain(|waiter| !waiter.is_closed());
                    let live = fetch.waiters.len();
                    if live > fetch.waiters.capacity() / 2 {
                        fetch.waiters.reserve(live.max(4));
                    }
                }
                fetch.waiters.push(send);
                Join::Waiter(receive)
            }
            Entry::Vacant(vacant) => {
                vacant.insert(Fetch::default());
                Join::Leader(Leader {
                    claim: Some((self.clone(), key.clone())),
                })
            }
        }
    }

    /// Says that a request waited for `key`'s fetch as long as it may: once its body
    /// streams, later requests for it do not wait.
    pub(crate) fn give_up(&self, key: &CacheKey) {
        if let Some(fetch) = self.fetching().get_mut(key) {
            fetch.given_up |= fetch.streaming;
        }
    }

    fn release(&self, key: &CacheKey) -> Vec<oneshot::Sender<Handed>> {
        self.fetching()
            .remove(key)
            .map(|fetch| fetch.waiters)
            .unwrap_or_default()
    }

    fn fetching(&self) -> std::sync::MutexGuard<'_, Fetching> {
        self.0
            .fetching
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Leader {
    /// Says that the fetch's response head is in: its body streams now.
    pub(crate) fn streaming(&self) {
        if let Some((inflight, key)) = &self.claim
            && let Some(fetch) = inflight.fetching().get_mut(key)
        {
            fetch.streaming = true;
        }
    }

    /// Hands the entry this fetch stored to every waiter, with where its key stood among
    /// the cache's invalidations when it was sent, and counts the fetch as finished.
    pub(crate) fn finish(self, value: &Value, sent: Option<Sent>) {
        self.hand_over(value, sent, true);
    }

    /// Hands an entry another fetch stored (found on a second look, begun at `looked`) to
    /// every waiter. That fetch was counted; this one stored nothing, so it is not, and
    /// sends no request that joins later to a second look.
    pub(crate) fn share(self, value: &Value, looked: Option<Sent>) {
        self.hand_over(value, looked, false);
    }

    fn hand_over(mut self, value: &Value, sent: Option<Sent>, stored: bool) {
        if let Some((inflight, key)) = self.claim.take() {
            if stored {
                inflight.0.finished[shard(&key)].fetch_add(1, Ordering::Release);
            }
            for waiter in inflight.release(&key) {
                // A waiter that gave up has dropped its receiver; nothing to do for it.
                let _ = waiter.send((value.clone(), sent));
            }
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some((inflight, key)) = self.claim.take() {
            // Dropping the senders wakes the waiters, which then ask the origin.
            drop(inflight.release(&key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey::from_text("GET http://a/")
    }

    #[tokio::test]
    async fn waiters_get_the_leaders_value() {
        let inflight = Inflight::default();
        let Join::Leader(leader) = inflight.join(&key()) else {
            panic!("the first joins as leader")
        };
        let Join::Waiter(waiter) = inflight.join(&key()) else {
            panic!("the second waits")
        };
        leader.finish(&Value::from("entry"), None);
        assert_eq!(waiter.await.expect("finished").0, Value::from("entry"));
        assert!(
            matches!(inflight.join(&key()), Join::Leader(_)),
            "the key is free again"
        );
    }

    #[test]
    fn a_finished_fetch_counts_for_its_key_not_for_a_key_in_another_shard() {
        let inflight = Inflight::default();
        let other = CacheKey::from_text("GET http://a/longer-path");
        assert_ne!(shard(&key()), shard(&other));
        let (mine, theirs) = (inflight.finished(&key()), inflight.finished(&other));
        let Join::Leader(leader) = inflight.join(&key()) else {
            panic!("the first joins as leader")
        };
        leader.finish(&Value::from("entry"), None);
        assert_eq!(inflight.finished(&key()), mine + 1);
        assert_eq!(inflight.finished(&other), theirs);
        // A fetch that stored nothing counts for no one.
        drop(inflight.join(&key()));
        assert_eq!(inflight.finished(&key()), mine + 1);
        // Nor does one that shares what another stored, though its waiters get it.
        let Join::Leader(leader) = inflight.join(&key()) else {
            panic!("the key is free again")
        };
        let Join::Waiter(mut waiter) = inflight.join(&key()) else {
            panic!("the second waits")
        };
        leader.share(&Value::from("entry"), None);
        assert_eq!(inflight.finished(&key()), mine + 1);
        assert_eq!(
            waiter.try_recv().expect("shared at once").0,
            Value::from("entry")
        );
    }

    #[test]
    fn waiters_that_gave_up_leave_nothing_behind_while_the_fetch_goes_on() {
        let inflight = Inflight::default();
        let Join::Leader(leader) = inflight.join(&key()) else {
            panic!("the first joins as leader")
        };
        for _ in 0..1_000 {
            let Join::Waiter(waiter) = inflight.join(&key()) else {
                panic!("the key is still being fetched")
            };
            drop(waiter);
        }
        let kept = inflight
            .fetching()
            .get(&key())
            .map_or(0, |fetch| fetch.waiters.len());
        drop(leader);
        assert!(kept <= 4, "{kept} kept of 1,000 that gave up");
    }

    #[test]
    fn once_a_waiter_gave_up_on_a_fetch_no_one_waits_for_it() {
        let inflight = Inflight::default();
        let Join::Leader(leader) = inflight.join(&key()) else {
            panic!("the first joins as leader")
        };
        assert!(matches!(inflight.join(&key()), Join::Waiter(_)));
        inflight.give_up(&key());
        assert!(
            matches!(inflight.join(&key()), Join::Waiter(_)),
            "an origin slow to answer is still waited for"
        );
        leader.streaming();
        inflight.give_up(&key());
        assert!(matches!(inflight.join(&key()), Join::Overdue));
        drop(leader);
        assert!(
            matches!(inflight.join(&key()), Join::Leader(_)),
            "the next fetch is waited for again"
        );
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_waiters_at_once() {
        let inflight = Inflight::default();
        let leader = inflight.join(&key());
        let Join::Waiter(waiter) = inflight.join(&key()) else {
            panic!("the second waits")
        };
        drop(leader);
        assert!(waiter.await.is_err(), "released to the origin");
    }
}
