use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project::pin_project;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use super::{StoreRequest, StoreResponse, Value, detach, detach_all, wants_latest};
use crate::per_clone::PerClone;
use crate::{BoxError, CacheKey};

/// Two stores as one: a near tier (memory) in front of a far one (Redis), so a repeated
/// hit costs what a memory hit costs.
///
/// A get asks the near tier first; on a miss it asks the far tier and keeps what it finds
/// in the near tier for at most `near_ttl`. Puts and deletes go to both. Because the near
/// tier keeps the very [`Value`] the far tier returned, an entry that was verified and
/// decoded on its way in from the far tier is not verified or decoded again while it is
/// near: compose as `Tiered<MemoryStore, Verify<RedisStore>>`.
///
/// What another process writes or deletes in the far tier is seen here once the near
/// copy expires: never later than `near_ttl` (one second by default) after it is made,
/// since a near copy is kept until `near_ttl` after the far read that found it *began*,
/// however long the far tier took to answer. What this store writes or deletes is seen
/// at once: a far read that was under way when a key of its kind was written here is
/// not kept near, and a near copy that a write sent while it went near may have beaten
/// is taken out again (until then, for one near round trip, a read may still see the
/// value the write replaced). What a cache reads in order to write it back (the variant
/// index it rewrites, the entry a HEAD response freshens) comes from the far tier, so
/// that a near copy never replaces another process's newer write there.
///
/// A listing ([`StoreRequest::Scan`]) comes from the far tier, which holds every entry;
/// [`StoreRequest::Clear`] clears both tiers.
///
/// `Tiered` is ready when its near tier is (gets go to the near handle it readied; a near
/// tier that fails to get ready leaves them to the far tier).
///
/// ```
/// use std::time::Duration;
/// use cachet::store::{MemoryStore, Tiered};
///
/// // The far tier would be a RedisStore (from cachet-redis), usually behind a VerifyLayer.
/// let far = MemoryStore::new(1 << 30);
/// let store = Tiered::new(MemoryStore::new(64 << 20), far).near_ttl(Duration::from_millis(500));
/// # let _ = store;
/// ```
pub struct Tiered<Near, Far> {
    /// The near tier's handle that gets are sent to, once `poll_ready` readied it.
    near: Near,
    near_ready: bool,
    far: Far,
    /// Both tiers again, for the promotion a get may need: one reference taken per get
    /// instead of two handles cloned (a long-lived clone's own from its second get). The
    /// lock, taken only on a near miss, keeps the `Arc` sendable for tiers that are `Send`
    /// but not `Sync`.
    promote: PerClone<SharedTiers<Near, Far>>,
    /// Writes and deletes made through this store and its clones, counted by key.
    writes: Arc<Writes>,
    near_ttl: Duration,
}

struct Tiers<Near, Far> {
    near: Near,
    far: Far,
    writes: Arc<Writes>,
}

/// Both tiers' handles, shared for promotions (see [`Tiered`]'s `promote`).
type SharedTiers<Near, Far> = Arc<Mutex<Tiers<Near, Far>>>;

fn shared_tiers<Near: Clone, Far: Clone>(
    near: &Near,
    far: &Far,
    writes: &Arc<Writes>,
) -> SharedTiers<Near, Far> {
    Arc::new(Mutex::new(Tiers {
        near: near.clone(),
        far: far.clone(),
        writes: writes.clone(),
    }))
}

/// The writes and deletes that go through a store, in shards by key: how many were sent,
/// and how many the far tier has not answered yet. A far read that sees its key's shard
/// sent a write while it read, or still waiting on one when it ends, may have read what a
/// write replaced (an invalidation marker written meanwhile, say), so it keeps nothing
/// near. Keys that share a shard only cost each other a promotion.
#[derive(Debug, Default)]
struct Writes {
    sent: [AtomicU64; Writes::SHARDS],
    pending: [AtomicU64; Writes::SHARDS],
}

impl Writes {
    const SHARDS: usize = 32;

    fn shard(key: &CacheKey) -> usize {
        key.shard(Self::SHARDS)
    }

    /// The shards a write of `key` touches: its own, or all of them for a clear.
    fn shards(key: Option<&CacheKey>) -> std::ops::Range<usize> {
        key.map_or(0..Self::SHARDS, |key| {
            let shard = Self::shard(key);
            shard..shard + 1
        })
    }

    fn sent(&self, key: &CacheKey) -> u64 {
        self.sent[Self::shard(key)].load(Ordering::Acquire)
    }

    /// Whether nothing is pending in `key`'s shard now.
    fn settled(&self, key: &CacheKey) -> bool {
        self.pending[Self::shard(key)].load(Ordering::Acquire) == 0
    }

    /// Whether a read of `key` that began settled, when `sent` writes had been sent, may
    /// be kept: nothing pending now, and nothing sent since.
    fn unchanged_since(&self, key: &CacheKey, sent: u64) -> bool {
        self.settled(key) && self.sent[Self::shard(key)].load(Ordering::Acquire) == sent
    }
}

/// A write under way to the far tier: counted as pending until it is answered or dropped.
struct Writing {
    writes: Arc<Writes>,
    key: Option<CacheKey>,
}

impl Writing {
    /// Counts a write of `key` (`None`: every key) as sent and pending.
    fn start(writes: &Arc<Writes>, key: Option<CacheKey>) -> Self {
        // Pending first: whoever sees the new count of sent writes sees it pending.
        for shard in Writes::shards(key.as_ref()) {
            writes.pending[shard].fetch_add(1, Ordering::AcqRel);
            writes.sent[shard].fetch_add(1, Ordering::AcqRel);
        }
        Self {
            writes: writes.clone(),
            key,
        }
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        for shard in Writes::shards(self.key.as_ref()) {
            self.writes.pending[shard].fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A far read's promotion: where to keep what it finds, unless its key was written
/// while it read.
struct Keep<Near> {
    key: CacheKey,
    near: Near,
    writes: Arc<Writes>,
    /// How many writes of the key's shard had been sent when the read began, if none was
    /// pending then (a read that began beside a pending write is never kept: the write
    /// may end before it and leave no trace).
    sent: Option<u64>,
    /// When the far read began: what it found may be older than its arrival, by as long
    /// as the far tier took to answer.
    started: tokio::time::Instant,
}

impl<Near> Keep<Near> {
    fn new(key: CacheKey, near: Near, writes: Arc<Writes>) -> Self {
        let started = tokio::time::Instant::now();
        let sent = writes.sent(&key);
        let sent = writes.settled(&key).then_some(sent);
        Self {
            key,
            near,
            writes,
            sent,
            started,
        }
    }

    /// Whether what the read found may be kept near.
    fn may_keep(&self) -> bool {
        self.sent
            .is_some_and(|sent| self.writes.unchanged_since(&self.key, sent))
    }

    /// Keeps `value` near until `ttl` after the far read began (not after its answer
    /// arrived: the far tier read it then, and a slow answer must not stretch how long a
    /// later far write stays hidden); an answer that took `ttl` or longer is not kept. A
    /// write of the key sent between the check and the copy's arrival may have reached the
    /// near tier first, and the copy would hide it: the copy is then taken out again (a
    /// miss, never what the write replaced).
    fn promote(self, value: Value, ttl: Duration)
    where
        Near: Service<StoreRequest, Response = StoreResponse, Error = BoxError, Future: Send>
            + Clone
            + Send
            + 'static,
    {
        let ttl = ttl.saturating_sub(self.started.elapsed());
        if ttl.is_zero() {
            return;
        }
        let put = StoreRequest::Put {
            key: self.key.clone(),
            value,
            ttl,
        };
        detach_all(async move {
            match self.near.clone().oneshot(put).await {
                Err(error) => near_failed(error),
                Ok(_) if !self.may_keep() => {
                    let delete = StoreRequest::Delete(self.key.clone());
                    if let Err(error) = self.near.clone().oneshot(delete).await {
                        near_failed(error);
                    }
                }
                Ok(_) => {}
            }
        });
    }
}

impl<Near, Far> Tiered<Near, Far> {
    /// The default bound on how long the near tier keeps an entry: one second.
    pub const DEFAULT_NEAR_TTL: Duration = Duration::from_secs(1);

    /// `near` in front of `far`.
    pub fn new(near: Near, far: Far) -> Self
    where
        Near: Clone,
        Far: Clone,
    {
        let writes = Arc::default();
        Self {
            promote: PerClone::new(shared_tiers(&near, &far, &writes)),
            writes,
            near,
            near_ready: false,
            far,
            near_ttl: Self::DEFAULT_NEAR_TTL,
        }
    }

    /// The longest the near tier keeps an entry, and so the longest a write or delete made
    /// through another process's far tier can stay hidden here.
    #[must_use]
    pub fn near_ttl(mut self, ttl: Duration) -> Self {
        self.near_ttl = ttl;
        self
    }
}

impl<Near: Clone, Far: Clone> Clone for Tiered<Near, Far> {
    fn clone(&self) -> Self {
        Self {
            // A clone's handle is readied on its own.
            near: self.near.clone(),
            near_ready: false,
            far: self.far.clone(),
            promote: self.promote.clone(),
            writes: self.writes.clone(),
            near_ttl: self.near_ttl,
        }
    }
}

impl<Near: fmt::Debug, Far: fmt::Debug> fmt::Debug for Tiered<Near, Far> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tiered")
            .field("near", &self.near)
            .field("far", &self.far)
            .field("near_ttl", &self.near_ttl)
            .finish()
    }
}

impl<Near, Far> Service<StoreRequest> for Tiered<Near, Far>
where
    Near: Service<StoreRequest, Response = StoreResponse, Error = BoxError, Future: Send + 'static>
        + Clone
        + Send
        + 'static,
    Far: Service<StoreRequest, Response = StoreResponse, Error = BoxError> + Clone,
{
    type Response = StoreResponse;
    type Error = BoxError;
    type Future = ResponseFuture<Near, Far>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Gets go to the near handle readied here; every other request works on clones,
        // readied as it goes. A near tier that fails leaves gets to the far tier.
        if !self.near_ready {
            self.near_ready = match ready!(self.near.poll_ready(cx)) {
                Ok(()) => true,
                Err(error) => {
                    tracing::debug!(%error, "near tier not ready; the far tier answers");
                    false
                }
            };
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: StoreRequest) -> Self::Future {
        let (near, far, writes) = (&self.near, &self.far, &self.writes);
        let state = match request {
            // A read whose value is written back goes past the near copy (see `latest`).
            StoreRequest::Get(key) if !wants_latest() && std::mem::take(&mut self.near_ready) => {
                let tiers = self.promote.get(|_| shared_tiers(near, far, writes));
                State::Near {
                    promote: Some((key.clone(), tiers)),
                    near: self.near.call(StoreRequest::Get(key)),
                }
            }
            StoreRequest::Get(key) => State::Far {
                keep: Some(Keep::new(key.clone(), near.clone(), writes.clone())),
                far: far.clone().oneshot(StoreRequest::Get(key)),
                written: None,
            },
            StoreRequest::Put { key, value, ttl } => {
                let writing = Writing::start(writes, Some(key.clone()));
                let put = StoreRequest::Put {
                    key: key.clone(),
                    value: value.clone(),
                    ttl: ttl.min(self.near_ttl),
                };
                detach(&mut near.clone(), put, |_| near_failed);
                State::Far {
                    written: Some(writing),
                    far: far.clone().oneshot(StoreRequest::Put { key, value, ttl }),
                    keep: None,
                }
            }
            StoreRequest::Delete(key) => {
                let writing = Writing::start(writes, Some(key.clone()));
                detach(&mut near.clone(), StoreRequest::Delete(key.clone()), |_| {
                    near_failed
                });
                State::Far {
                    written: Some(writing),
                    far: far.clone().oneshot(StoreRequest::Delete(key)),
                    keep: None,
                }
            }
            StoreRequest::Clear => {
                let writing = Writing::start(writes, None);
                detach(&mut near.clone(), StoreRequest::Clear, |_| near_failed);
                State::Far {
                    written: Some(writing),
                    far: far.clone().oneshot(StoreRequest::Clear),
                    keep: None,
                }
            }
            // Scans, and whatever the protocol learns next, are the far tier's to answer.
            other => State::Far {
                far: far.clone().oneshot(other),
                keep: None,
                written: None,
            },
        };
        ResponseFuture {
            state,
            near_ttl: self.near_ttl,
        }
    }
}

fn near_failed(error: BoxError) {
    tracing::debug!(%error, "near tier write failed; the far tier still has the entry");
}

/// The response future of [`Tiered`].
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<Near, Far>
where
    Near: Service<StoreRequest>,
    Far: Service<StoreRequest>,
{
    #[pin]
    state: State<Near, Far>,
    near_ttl: Duration,
}

#[pin_project(project = StateProj)]
enum State<Near, Far>
where
    Near: Service<StoreRequest>,
    Far: Service<StoreRequest>,
{
    Near {
        #[pin]
        near: Near::Future,
        /// The key and both tiers, for a near miss.
        promote: Option<(CacheKey, SharedTiers<Near, Far>)>,
    },
    Far {
        #[pin]
        far: Oneshot<Far, StoreRequest>,
        /// Where to keep what the far tier finds.
        keep: Option<Keep<Near>>,
        /// A write under way, pending until the far tier answers it.
        written: Option<Writing>,
    },
}

impl<Near, Far> Future for ResponseFuture<Near, Far>
where
    Near: Service<StoreRequest, Response = StoreResponse, Error = BoxError, Future: Send + 'static>
        + Clone
        + Send
        + 'static,
    Far: Service<StoreRequest, Response = StoreResponse, Error = BoxError> + Clone,
{
    type Output = Result<StoreResponse, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Near { near, promote } => {
                    let found = ready!(near.poll(cx));
                    if let Ok(found @ StoreResponse::Found(_)) = found {
                        return Poll::Ready(Ok(found));
                    }
                    let (key, tiers) = promote.take().expect("a near miss asks the far tier once");
                    let (far, near, writes) = {
                        // Cloning handles cannot leave them half-changed: a poisoned
                        // lock still holds good ones.
                        let tiers = tiers.lock().unwrap_or_else(PoisonError::into_inner);
                        (tiers.far.clone(), tiers.near.clone(), tiers.writes.clone())
                    };
                    this.state.set(State::Far {
                        keep: Some(Keep::new(key.clone(), near, writes)),
                        far: far.oneshot(StoreRequest::Get(key)),
                        written: None,
                    });
                }
                StateProj::Far { far, keep, written } => {
                    let result = ready!(far.poll(cx));
                    drop(written.take());
                    if let (Ok(StoreResponse::Found(value)), Some(keep)) = (&result, keep.take())
                        && keep.may_keep()
                    {
                        keep.promote(Value::clone(value), *this.near_ttl);
                    }
                    return Poll::Ready(result);
                }
            }
        }
    }
}

impl<Near, Far> fmt::Debug for ResponseFuture<Near, Far>
where
    Near: Service<StoreRequest>,
    Far: Service<StoreRequest>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tier = match self.state {
            State::Near { .. } => "near",
            State::Far { .. } => "far",
        };
        f.debug_struct("ResponseFuture")
            .field("tier", &tier)
            .finish()
    }
}

#[cfg(test)]
mod tests;
