use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use quick_cache::Weighter;
use quick_cache::sync::Cache;
use tokio::time::Instant;
use tower::Service;

use super::{Cursor, Listed, Page, Scan, StoreRequest, StoreResponse, Value};
use crate::{BoxError, CacheKey};

/// What an entry costs beyond its key and value bytes: the cache's slot, the `Arc`s, the
/// expiry time, and the decoded form a cache keeps with the value after its first hit (a
/// response's header map and freshness, some 700 bytes for a typical response), rounded
/// up. Measured by `tests/tests/memory.rs`, which holds the process to the bound.
const ENTRY_OVERHEAD: u64 = 1024;

/// The embedded default store: in process memory, bounded by bytes.
///
/// Built on [`quick_cache`], whose eviction keeps the total weight (key, value and a
/// per-entry overhead) within the bound at every insert. An entry is forgotten once its
/// TTL has passed. Clones share one cache.
///
/// It can list its entries ([`StoreRequest::Scan`], in key order: the cursor is the last
/// key of the page before) and clear itself ([`StoreRequest::Clear`]). A listed entry's
/// size is its value's length in bytes.
#[derive(Clone)]
pub struct MemoryStore {
    cache: Arc<Cache<CacheKey, Stored, ByteWeighter>>,
    max_entry_bytes: u64,
}

#[derive(Clone)]
struct Stored {
    value: Value,
    expires: Instant,
}

#[derive(Clone)]
struct ByteWeighter;

impl Weighter<CacheKey, Stored> for ByteWeighter {
    fn weight(&self, key: &CacheKey, stored: &Stored) -> u64 {
        (key.as_str().len() + stored.value.bytes().len()) as u64 + ENTRY_OVERHEAD
    }
}

/// How a store of a given bound is split: its shards, the bound they share, and the
/// largest entry one shard keeps.
struct Layout {
    shards: usize,
    bound: u64,
    max_entry_bytes: u64,
}

impl Layout {
    fn of(max_bytes: u64) -> Self {
        // The library's own choice is four shards a core, which on a large machine would
        // leave each too little room for one large body.
        let per_core = std::thread::available_parallelism().map_or(1, |n| n.get()) * 4;
        let shards = usize::try_from(max_bytes / MemoryStore::MIN_SHARD_BYTES)
            .unwrap_or(usize::MAX)
            .clamp(1, per_core);
        // Down to a power of two, which the library would otherwise round up to.
        let shards = 1 << shards.ilog2();
        // Each shard gets an equal share, rounded up by the library: a bound it can split
        // evenly keeps the total within `max_bytes`.
        let bound = max_bytes - max_bytes % shards as u64;
        // The library drops, silently, an entry that weighs more than its shard's hot
        // share.
        let shard_bytes = bound / shards as u64;
        let hot_bytes = (shard_bytes as f64 * MemoryStore::HOT_ALLOCATION) as u64;
        Self {
            shards,
            bound,
            max_entry_bytes: hot_bytes.saturating_sub(ENTRY_OVERHEAD),
        }
    }
}

impl MemoryStore {
    /// The default bound: 64 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

    /// The least room each of the store's shards has, in bytes: 16 MiB, twice the cache's
    /// default `max_body_bytes`.
    const MIN_SHARD_BYTES: u64 = 16 << 20;

    /// The share of a shard one entry may take: the library's "hot" share, set here so
    /// that [`max_entry_bytes`](Self::max_entry_bytes) follows from it, not from the
    /// library's default.
    const HOT_ALLOCATION: f64 = 0.97;

    /// A store that holds at most `max_bytes`, counting keys, values and per-entry
    /// overhead. It is split into shards for concurrent use, each with a share of the
    /// bound, and an entry is kept only if it fits in about 97 % of its shard: shards are
    /// never smaller than 16 MiB (fewer of them in a smaller store), so that an entry up
    /// to about 15.5 MiB, or up to nearly the whole bound of a store under 16 MiB, is
    /// kept, whatever the number of cores.
    pub fn new(max_bytes: u64) -> Self {
        let estimated_items = usize::try_from(max_bytes / 4096)
            .unwrap_or(usize::MAX)
            .max(16);
        let layout = Layout::of(max_bytes);
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(estimated_items)
            .weight_capacity(layout.bound)
            .hot_allocation(Self::HOT_ALLOCATION)
            .shards(layout.shards)
            .build();
        let cache = match options {
            Ok(options) => Cache::with_options(
                options,
                ByteWeighter,
                Default::default(),
                Default::default(),
            ),
            // Every option the builder requires is set above.
            Err(_) => Cache::with_weighter(estimated_items, layout.bound, ByteWeighter),
        };
        Self {
            cache: Arc::new(cache),
            max_entry_bytes: layout.max_entry_bytes,
        }
    }

    /// What [`max_entry_bytes`](Self::max_entry_bytes) is for a store of `max_bytes` on
    /// this machine, without making one: for a program that checks its settings.
    pub fn max_entry_bytes_for(max_bytes: u64) -> u64 {
        Layout::of(max_bytes).max_entry_bytes
    }

    /// The least bound whose store keeps an entry of `entry_bytes` on this machine: for a
    /// program that tells its user how far to raise a bound. (`u64::MAX` if none does.)
    pub fn max_bytes_for_entry(entry_bytes: u64) -> u64 {
        let fits = |max_bytes| Self::max_entry_bytes_for(max_bytes) >= entry_bytes;
        // One shard holds up to twice the least shard; a larger entry needs every shard
        // this machine makes (fewer could not be that large), each large enough.
        let shard = ((entry_bytes.saturating_add(ENTRY_OVERHEAD)) as f64 / Self::HOT_ALLOCATION)
            .ceil() as u64;
        let shards = if shard < 2 * Self::MIN_SHARD_BYTES {
            1
        } else {
            Layout::of(u64::MAX).shards as u64
        };
        let mut max_bytes = shard.saturating_mul(shards);
        // Up past what the float's rounding left short, a few bytes at most.
        for _ in 0..64 {
            if fits(max_bytes) {
                return max_bytes;
            }
            max_bytes = max_bytes.saturating_add(shards);
        }
        u64::MAX
    }

    /// The most bytes one entry may take, its key and value together: a put of a larger
    /// one is dropped (the store holds it no more than it would an expired one). At least
    /// about 15.5 MiB in a store of 16 MiB or more (more where its shards are larger: a
    /// large bound on few cores, or one that is no power-of-two multiple of 16 MiB), and
    /// nearly the whole bound in a smaller one.
    pub fn max_entry_bytes(&self) -> u64 {
        self.max_entry_bytes
    }

    /// The bytes held now, by the same count as the bound.
    pub fn weighted_size(&self) -> u64 {
        self.cache.weight()
    }

    /// The bound it keeps: the one given to [`new`](Self::new), less the few bytes that
    /// would not split evenly between its shards.
    pub fn max_bytes(&self) -> u64 {
        self.cache.capacity()
    }

    /// The number of entries held now, including expired ones not yet evicted.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether the store holds no entries.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    fn get(&self, key: &CacheKey) -> StoreResponse {
        match self.cache.get(key) {
            Some(stored) if stored.expires > Instant::now() => StoreResponse::Found(stored.value),
            Some(_) => {
                self.cache
                    .remove_if(key, |stored| stored.expires <= Instant::now());
                StoreResponse::NotFound
            }
            None => StoreResponse::NotFound,
        }
    }

    /// A page of the live entries in key order, after the cursor's key. Each page walks
    /// the whole cache: listing is for management, not for the request path.
    fn scan(&self, scan: &Scan) -> StoreResponse {
        let now = Instant::now();
        let after = (!scan.cursor().is_start()).then(|| scan.cursor().as_str());
        let mut live: Vec<(CacheKey, Stored)> = self
            .cache
            .iter()
            .filter(|(key, stored)| {
                stored.expires > now
                    && scan.matches(key.as_str())
                    && after.is_none_or(|after| key.as_str() > after)
            })
            .collect();
        let limit = scan.get_limit();
        let more = live.len() > limit;
        if more {
            // The page's entries first, in no order, so that only they are sorted: a walk
            // of the whole store sorts each entry once, not once per page before it.
            live.select_nth_unstable_by(limit, |(a, _), (b, _)| a.cmp(b));
            live.truncate(limit);
        }
        live.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        let next = more
            .then(|| live.last().map(|(key, _)| Cursor::new(key.as_str())))
            .flatten();
        let items = live
            .into_iter()
            .map(|(key, stored)| {
                let size = stored.value.bytes().len() as u64;
                Listed::new(key, stored.value, size).ttl(Some(stored.expires - now))
            })
            .collect();
        StoreResponse::Page(Page::new(items, next))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_BYTES)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.len())
            .field("weighted_size", &self.weighted_size())
            .field("max_bytes", &self.max_bytes())
            .finish()
    }
}

impl Service<StoreRequest> for MemoryStore {
    type Response = StoreResponse;
    type Error = BoxError;
    type Future = Ready<Result<StoreResponse, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: StoreRequest) -> Self::Future {
        let response = match request {
            StoreRequest::Get(key) => self.get(&key),
            StoreRequest::Put { key, value, ttl } => {
                // Any TTL is accepted: past what the clock can add, the entry is kept
                // until it is evicted.
                let now = Instant::now();
                let expires = now
                    .checked_add(ttl)
                    .unwrap_or_else(|| now + crate::Expiry::NEVER);
                self.cache.insert(key, Stored { value, expires });
                StoreResponse::Done
            }
            StoreRequest::Delete(key) => {
                self.cache.remove(&key);
                StoreResponse::Done
            }
            StoreRequest::Scan(scan) => self.scan(&scan),
            StoreRequest::Clear => {
                self.cache.clear();
                StoreResponse::Done
            }
        };
        ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn the_least_bound_for_an_entry_keeps_it_and_a_byte_less_does_not() {
        for entry in [
            1,
            60 << 10,
            8 << 20,
            (15 << 20) + 123,
            31 << 20,
            40 << 20,
            200 << 20,
        ] {
            let bound = MemoryStore::max_bytes_for_entry(entry);
            assert!(
                MemoryStore::max_entry_bytes_for(bound) >= entry,
                "{entry}: {bound}"
            );
            assert!(
                (0..bound)
                    .rev()
                    .take(4096)
                    .all(|less| MemoryStore::max_entry_bytes_for(less) < entry)
                    || entry >= 32 << 20,
                "{entry}: a bound below {bound} keeps it"
            );
        }
    }

    #[tokio::test]
    async fn an_entry_up_to_15_mib_is_kept_whatever_the_number_of_cores() {
        // The cache's default `max_body_bytes` is 8 MiB; with the library's own sharding
        // (four shards a core) a 64 MiB store kept nothing over 8 MiB on two cores, and
        // nothing over 2 MiB on eight.
        for (max_bytes, len) in [
            (MemoryStore::DEFAULT_MAX_BYTES, 15 << 20),
            (1 << 30, 15 << 20),
            (48 << 20, 15 << 20),
            (4 << 20, 3 << 20),
        ] {
            let store = MemoryStore::new(max_bytes);
            let key = CacheKey::from_text("GET http://a/large");
            let put = StoreRequest::Put {
                key: key.clone(),
                value: Bytes::from(vec![7; len]).into(),
                ttl: Duration::from_secs(60),
            };
            store.clone().oneshot(put).await.expect("a put succeeds");
            let found = store.clone().oneshot(StoreRequest::Get(key)).await;
            assert!(
                matches!(found, Ok(StoreResponse::Found(_))),
                "{len} bytes in a store of {max_bytes}"
            );
        }
    }

    #[tokio::test]
    async fn an_entry_of_max_entry_bytes_is_kept_and_one_byte_more_is_not() {
        for max_bytes in [2_000_000, MemoryStore::DEFAULT_MAX_BYTES, 1 << 30] {
            let store = MemoryStore::new(max_bytes);
            let max = usize::try_from(store.max_entry_bytes()).expect("small");
            assert!(
                max > 1 << 20 && (max as u64) < max_bytes,
                "{max} of {max_bytes}"
            );
            for (name, extra, kept) in [("fits", 0, true), ("over", 1, false)] {
                let key = CacheKey::from_text(format!("GET http://a/{name}").as_str());
                let value = vec![7; max - key.as_str().len() + extra];
                let put = StoreRequest::Put {
                    key: key.clone(),
                    value: Bytes::from(value).into(),
                    ttl: Duration::from_secs(60),
                };
                store.clone().oneshot(put).await.expect("a put succeeds");
                let found = store.clone().oneshot(StoreRequest::Get(key)).await;
                assert_eq!(
                    matches!(found, Ok(StoreResponse::Found(_))),
                    kept,
                    "{name} in a store of {max_bytes}"
                );
            }
        }
    }

    #[test]
    fn the_bound_kept_is_never_above_the_bound_given() {
        for max_bytes in [0, 1, (32 << 20) + 1, (64 << 20) + 3, u64::MAX / 2, u64::MAX] {
            let kept = MemoryStore::new(max_bytes).max_bytes();
            assert!(
                kept <= max_bytes && max_bytes - kept < 64,
                "{kept} for {max_bytes}"
            );
        }
    }

    #[tokio::test]
    async fn a_ttl_past_the_clocks_range_keeps_the_entry_instead_of_panicking() {
        use tower::ServiceExt;
        let store = MemoryStore::new(1 << 20);
        let key = CacheKey::from_text("GET http://a/");
        let put = StoreRequest::Put {
            key: key.clone(),
            value: bytes::Bytes::from_static(b"kept").into(),
            ttl: Duration::MAX,
        };
        store.clone().oneshot(put).await.expect("a put succeeds");
        let found = store.oneshot(StoreRequest::Get(key)).await;
        assert!(matches!(found, Ok(StoreResponse::Found(_))));
    }

    async fn put(store: &MemoryStore, key: &str, len: usize, ttl: Duration) {
        let request = StoreRequest::Put {
            key: CacheKey::from_text(key),
            value: Bytes::from(vec![b'x'; len]).into(),
            ttl,
        };
        store
            .clone()
            .oneshot(request)
            .await
            .expect("memory store never fails");
    }

    async fn get(store: &MemoryStore, key: &str) -> StoreResponse {
        let request = StoreRequest::Get(CacheKey::from_text(key));
        store
            .clone()
            .oneshot(request)
            .await
            .expect("memory store never fails")
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_at_their_ttl() {
        let store = MemoryStore::default();
        put(&store, "k", 10, Duration::from_secs(5)).await;
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert!(matches!(get(&store, "k").await, StoreResponse::Found(_)));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(get(&store, "k").await, StoreResponse::NotFound);
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn delete_forgets() {
        let store = MemoryStore::default();
        put(&store, "k", 10, Duration::from_secs(5)).await;
        store
            .clone()
            .oneshot(StoreRequest::Delete(CacheKey::from_text("k")))
            .await
            .expect("memory store never fails");
        assert_eq!(get(&store, "k").await, StoreResponse::NotFound);
    }

    async fn scan(store: &MemoryStore, scan: Scan) -> Page {
        match store.clone().oneshot(StoreRequest::Scan(scan)).await {
            Ok(StoreResponse::Page(page)) => page,
            other => panic!("a memory store lists: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_is_paged_in_key_order_complete_and_skips_expired_entries() {
        let store = MemoryStore::default();
        for i in 0..25 {
            put(&store, &format!("k{i:02}"), i, Duration::from_secs(60)).await;
        }
        put(&store, "gone", 1, Duration::from_secs(1)).await;
        tokio::time::advance(Duration::from_secs(1)).await;

        let (mut keys, mut cursor, mut pages) = (Vec::new(), Cursor::start(), 0);
        loop {
            let page = scan(&store, Scan::new(cursor).limit(10)).await;
            pages += 1;
            assert!(page.items().len() <= 10);
            for item in page.items() {
                assert_eq!(
                    item.size(),
                    item.value().map_or(0, |v| v.bytes().len() as u64)
                );
                assert_eq!(item.remaining_ttl(), Some(Duration::from_secs(59)));
                keys.push(item.key().to_string());
            }
            match page.next() {
                Some(next) => cursor = next.clone(),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let expected: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
        assert_eq!(keys, expected);
    }

    #[tokio::test]
    async fn a_prefix_narrows_the_listing_and_clear_empties_the_store() {
        let store = MemoryStore::default();
        put(&store, "GET http://a/", 1, Duration::from_secs(60)).await;
        put(
            &store,
            "GET http://a/ vary accept=x",
            1,
            Duration::from_secs(60),
        )
        .await;
        put(&store, "GET http://b/", 1, Duration::from_secs(60)).await;
        let page = scan(&store, Scan::new(Cursor::start()).prefix("GET http://a/")).await;
        assert_eq!(page.items().len(), 2);
        assert_eq!(page.next(), None);

        store
            .clone()
            .oneshot(StoreRequest::Clear)
            .await
            .expect("memory store never fails");
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn never_holds_more_than_its_bound() {
        let bound = 256 * 1024;
        let store = MemoryStore::new(bound);
        for i in 0..2_000 {
            let len = if i % 7 == 0 { 9_000 } else { 100 + i % 900 };
            put(&store, &format!("key-{i}"), len, Duration::from_secs(60)).await;
            assert!(
                store.weighted_size() <= bound,
                "{} > {bound}",
                store.weighted_size()
            );
        }
        assert!(
            store.weighted_size() > bound / 2,
            "the store should still be used"
        );
    }
}
