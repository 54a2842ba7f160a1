use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderName, Method, StatusCode, Uri};
use tower::{Service, ServiceExt};

use super::Error;
use crate::clock::{Clock, SystemClock};
use crate::entry::Record;
use crate::policy::{Mode, ResponseFacts, fresh_until};
use crate::store::{Cursor, Listed, Page, Scan, StoreRequest, StoreResponse};
use crate::verify::BadSignature;
use crate::{BoxError, CacheKey, Keys};

/// How many entries a full walk of the store (for [`Entries::stats`],
/// [`Entries::delete_expired`] and the URL operations) asks for at a time.
const WALK_PAGE: usize = 1_000;

/// A handle on what a cache has stored: list, show, delete and clear.
///
/// Get one from the cache's layer with [`CacheLayer::entries`](crate::CacheLayer::entries),
/// which shares its store, clock and mode (shared or private), so an entry is judged fresh
/// or stale here exactly as the cache judges it; or make one over a store with
/// [`new`](Self::new). Clones share the store.
///
/// Listing needs a store that can list ([`MemoryStore`](crate::MemoryStore), `RedisStore`,
/// and [`Tiered`](crate::store::Tiered) and [`Verify`](crate::verify::Verify) over them);
/// over one that cannot, every operation but [`delete_key`](Self::delete_key) fails with
/// an error whose [`is_unsupported`](Error::is_unsupported) is true.
///
/// See [the guide page](crate::guide::inspection) for a walk through.
#[derive(Clone)]
pub struct Entries<St> {
    store: St,
    mode: Mode,
    clock: Arc<dyn Clock>,
    targeted: Option<HeaderName>,
    keys: Keys,
    /// The methods the cache stores; those other than GET and HEAD are keyed by body.
    methods: Vec<Method>,
}

/// What is stored under one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind {
    /// A stored response.
    Response,
    /// The index of a URL whose responses vary: the request headers that select a
    /// variant. The variants are entries of their own.
    Variants,
    /// An entry whose signature did not verify: changed by somebody without the key, or
    /// signed with a key this cache does not have (only a store behind a
    /// [`VerifyLayer`](crate::verify::VerifyLayer) reports this).
    BadSignature,
    /// Bytes the cache cannot read: another program's, or an entry format this version
    /// does not know. The cache treats them as a miss.
    Unreadable,
}

/// One stored entry, as [`Entries`] describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// The cache key, such as `GET https://example.com/a?b=1` or, for one variant of a
    /// response that varies, `GET https://example.com/a vary accept-language=en`.
    pub key: CacheKey,
    /// The request method the entry answers (`GET` or `HEAD`).
    pub method: Option<Method>,
    /// The URL the entry is for.
    pub url: Option<Uri>,
    /// Whether this is one variant of a response that varies (RFC 9111 §4.1).
    pub variant: bool,
    /// What the entry is.
    pub kind: EntryKind,
    /// The bytes it takes in the store.
    pub size: u64,
    /// How much longer the store keeps it, where the store says.
    pub ttl: Option<Duration>,
    /// The stored response's status.
    pub status: Option<StatusCode>,
    /// When the stored response arrived from the origin.
    pub stored_at: Option<SystemTime>,
    /// Until when the stored response is fresh (RFC 9111 §4.2), in this cache's mode.
    pub fresh_until: Option<SystemTime>,
    /// Whether the stored response is past its freshness lifetime now. A stale entry is
    /// still kept while it can be revalidated or serve `stale-while-revalidate` or
    /// `stale-if-error`.
    pub stale: bool,
    /// Whether this is a variant its URL's index hides: stored before the URL was last
    /// invalidated (RFC 9111 §4.4: an unsafe method answered `2xx` or `3xx`, or a
    /// `Reload`), or before an index written after the old one was lost. The cache
    /// serves it no more, and [`Entries::delete_expired`] deletes it. A response that
    /// does not vary is replaced by the invalidation itself, so it is never listed so.
    pub invalidated: bool,
}

/// A page of [`EntryInfo`]s, from [`Entries::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listing {
    /// The entries of this page.
    pub entries: Vec<EntryInfo>,
    /// Where the next page starts; `None` when this is the last.
    pub next: Option<Cursor>,
}

/// How much a store holds, from [`Entries::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// How many entries (responses, variant indexes and unreadable ones).
    pub entries: u64,
    /// Their total size in the store, in bytes.
    pub bytes: u64,
}

impl<St> Entries<St> {
    /// A handle on `store`, judging freshness as a shared cache on the system clock does.
    /// [`CacheLayer::entries`](crate::CacheLayer::entries) makes one that matches a cache.
    pub fn new(store: St) -> Self {
        Self::from_parts(
            store,
            Mode::Shared,
            Arc::new(SystemClock),
            None,
            Keys::new(),
            vec![Method::GET, Method::HEAD],
        )
    }

    pub(crate) fn from_parts(
        store: St,
        mode: Mode,
        clock: Arc<dyn Clock>,
        targeted: Option<HeaderName>,
        keys: Keys,
        methods: Vec<Method>,
    ) -> Self {
        Self {
            store,
            mode,
            clock,
            targeted,
            keys,
            methods,
        }
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.store
    }
}

impl<St> Entries<St>
where
    St: Service<StoreRequest, Response = StoreResponse, Error = BoxError> + Clone,
{
    /// One page of about `limit` entries, from `cursor` ([`Cursor::start`] for the first
    /// page, then the [`next`](Listing::next) of the page before).
    ///
    /// Following the pages to the end lists every entry that was stored throughout; an
    /// entry stored or deleted meanwhile may or may not be listed. A page may hold fewer
    /// entries than `limit`, even none, before the end (Redis's `SCAN` works so): the end
    /// is the page without a `next`.
    pub async fn list(&self, cursor: Cursor, limit: usize) -> Result<Listing, Error> {
        let page = self.page(Scan::new(cursor).limit(limit)).await?;
        let (items, next) = page.into_parts();
        Ok(Listing {
            entries: self.describe_all(&items).await?,
            next,
        })
    }

    /// Every entry for `url`, in key order: its GET and HEAD responses, each variant of
    /// them, and the variant index; empty when nothing is stored for it. The URL is normalised as
    /// cache keys are (scheme and host in lower case, no default port).
    ///
    /// It walks the entries whose keys start with the URL's (in Redis, a `SCAN` with a
    /// `MATCH` on that prefix).
    pub async fn show(&self, url: &str) -> Result<Vec<EntryInfo>, Error> {
        let found = self.for_url(url).await?;
        self.describe_all(&found).await
    }

    /// Deletes every entry for `url` (GET and HEAD, every variant, the variant index),
    /// so that the next request for it goes to the origin. Returns how many entries were
    /// deleted.
    ///
    /// The URL's GET and HEAD keys are deleted even when the listing does not show them:
    /// a store in front of another (a [`Tiered`](crate::store::Tiered) memory tier, whose
    /// listing is the far tier's) may still hold what the listed store has lost.
    pub async fn delete_url(&self, url: &str) -> Result<u64, Error> {
        let found = self.for_url(url).await?;
        let mut deleted = 0;
        for item in &found {
            self.delete(item.key().clone()).await?;
            deleted += 1;
        }
        for key in self.url_keys(url)? {
            if !found.iter().any(|item| *item.key() == key) {
                self.delete(key).await?;
            }
        }
        Ok(deleted)
    }

    /// Deletes the entry under `key` (a key as [`list`](Self::list) shows it). This is
    /// the one operation that works on every store.
    pub async fn delete_key(&self, key: &CacheKey) -> Result<(), Error> {
        self.delete(key.clone()).await
    }

    /// Deletes every stored response that is past its freshness lifetime now, including
    /// those kept stale for revalidation, `stale-while-revalidate` or `stale-if-error`,
    /// and every variant an invalidation hid ([`EntryInfo::invalidated`]). Fresh entries,
    /// variant indexes and entries the cache cannot read are kept. Returns how many
    /// entries were deleted.
    pub async fn delete_expired(&self) -> Result<u64, Error> {
        let mut deleted = 0;
        let mut cursor = Cursor::start();
        loop {
            let page = self.page(Scan::new(cursor).limit(WALK_PAGE)).await?;
            let (items, next) = page.into_parts();
            for info in self.describe_all(&items).await? {
                if info.kind == EntryKind::Response && (info.stale || info.invalidated) {
                    self.delete(info.key).await?;
                    deleted += 1;
                }
            }
            match next {
                Some(next) => cursor = next,
                None => return Ok(deleted),
            }
        }
    }

    /// Deletes every entry (in a shared store such as Redis, every entry under the
    /// store's namespace, and nothing else).
    pub async fn clear(&self) -> Result<(), Error> {
        const OP: &str = "clear its entries";
        match self.store.clone().oneshot(StoreRequest::Clear).await {
            Ok(StoreResponse::Done) => Ok(()),
            Ok(_) => Err(Error::unsupported(OP)),
            Err(error) => Err(Error::store(OP, error)),
        }
    }

    /// How many entries the store holds, and their total size in bytes. It walks every
    /// entry, asking only for sizes: a store that can leaves the values where they are.
    pub async fn stats(&self) -> Result<Stats, Error> {
        let mut stats = Stats::default();
        let mut cursor = Cursor::start();
        loop {
            let scan = Scan::new(cursor).limit(WALK_PAGE).sizes_only();
            let page = self.page(scan).await?;
            for item in page.items() {
                stats.entries += 1;
                stats.bytes += item.size();
            }
            match page.next() {
                Some(next) => cursor = next.clone(),
                None => return Ok(stats),
            }
        }
    }

    async fn page(&self, scan: Scan) -> Result<Page, Error> {
        const OP: &str = "list entries";
        match self.store.clone().oneshot(StoreRequest::Scan(scan)).await {
            Ok(StoreResponse::Page(page)) => Ok(page),
            Ok(_) => Err(Error::unsupported(OP)),
            Err(error) => Err(Error::store(OP, error)),
        }
    }

    async fn delete(&self, key: CacheKey) -> Result<(), Error> {
        self.store
            .clone()
            .oneshot(StoreRequest::Delete(key))
            .await
            .map(drop)
            .map_err(|error| Error::store("delete an entry", error))
    }

    /// Every stored entry whose key is the GET or HEAD key of `url`, or a variant of one,
    /// or (for another method the cache stores) one of its keys by body.
    /// The keys of `url`'s GET and HEAD responses (or of their variant index).
    fn url_keys(&self, url: &str) -> Result<[CacheKey; 2], Error> {
        let uri: Uri = url.parse().map_err(|error: http::uri::InvalidUri| {
            Error::invalid_url("it is not a valid url", Some(error.into()))
        })?;
        let key = |method| {
            self.keys
                .key_for_url(&method, &uri)
                .ok_or_else(|| Error::invalid_url(why_no_key(&uri), None))
        };
        Ok([key(Method::GET)?, key(Method::HEAD)?])
    }

    async fn for_url(&self, url: &str) -> Result<Vec<Listed>, Error> {
        let [get, head] = self.url_keys(url)?;
        let by_body = self
            .methods
            .iter()
            .filter(|method| **method != Method::GET && **method != Method::HEAD)
            .map(|method| format!("{method} {}", get.url()));
        let prefixes: Vec<String> = [get.as_str().to_owned(), head.as_str().to_owned()]
            .into_iter()
            .chain(by_body)
            .collect();
        let mut found = Vec::new();
        for prefix in &prefixes {
            let prefix = prefix.as_str();
            let mut cursor = Cursor::start();
            loop {
                let scan = Scan::new(cursor).limit(WALK_PAGE).prefix(prefix);
                let (items, next) = self.page(scan).await?.into_parts();
                found.extend(items.into_iter().filter(|item| {
                    // `GET http://a/x` is a prefix of `GET http://a/xy` too: keep the key
                    // itself and its variants, whose suffix starts with a space.
                    let text = item.key().as_str();
                    text.strip_prefix(prefix)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
                }));
                match next {
                    Some(next) => cursor = next,
                    None => break,
                }
            }
        }
        found.sort_unstable_by(|a, b| a.key().cmp(b.key()));
        Ok(found)
    }

    /// Describes `items`, reading the index of each URL that has variants among them
    /// (once a URL) to tell which of them an invalidation hid.
    async fn describe_all(&self, items: &[Listed]) -> Result<Vec<EntryInfo>, Error> {
        let mut invalidated_at = HashMap::new();
        for index in items.iter().filter_map(|item| item.key().index_key()) {
            if let Entry::Vacant(vacant) = invalidated_at.entry(index) {
                let at = self.invalidated_at(vacant.key().clone()).await?;
                vacant.insert(at);
            }
        }
        let now = self.clock.now();
        Ok(items
            .iter()
            .map(|item| {
                let at = item
                    .key()
                    .index_key()
                    .and_then(|index| invalidated_at.get(&index).copied().flatten());
                self.describe(item, now, at)
            })
            .collect())
    }

    /// When the variant index under `index` says its URL was last invalidated; `None`
    /// when there is no index, or one the cache cannot read (which hides nothing).
    async fn invalidated_at(&self, index: CacheKey) -> Result<Option<SystemTime>, Error> {
        // The index as the far tier of a `Tiered` holds it: what the listing shows.
        let read = crate::store::latest(self.store.clone().oneshot(StoreRequest::Get(index)));
        match read.await {
            Ok(StoreResponse::Found(value)) => match Record::decode(value.bytes()) {
                Ok(Record::Variants(index)) => Ok(Some(index.not_before)),
                _ => Ok(None),
            },
            Ok(_) => Ok(None),
            // A value that failed its signature hides nothing, as in the cache.
            Err(error) if error.is::<BadSignature>() => Ok(None),
            Err(error) => Err(Error::store("read a variant index", error)),
        }
    }

    /// `item` described; `invalidated_at` is when its URL was last invalidated, if it is
    /// a variant and its index says.
    fn describe(
        &self,
        item: &Listed,
        now: SystemTime,
        invalidated_at: Option<SystemTime>,
    ) -> EntryInfo {
        let text = item.key().as_str();
        let mut words = text.splitn(3, ' ');
        let method = words
            .next()
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        let url = words.next().and_then(|u| u.parse::<Uri>().ok());
        // After the URL may come a body's digest and content headers, then the variant's
        // suffix; header values in a key have their spaces escaped, so ` vary ` is only
        // ever that suffix.
        let variant = words
            .next()
            .is_some_and(|rest| rest.starts_with("vary ") || rest.contains(" vary "));
        let mut info = EntryInfo {
            key: item.key().clone(),
            method,
            url,
            variant,
            kind: EntryKind::Unreadable,
            size: item.size(),
            ttl: item.remaining_ttl(),
            status: None,
            stored_at: None,
            fresh_until: None,
            stale: false,
            invalidated: false,
        };
        let value = match item.value() {
            Ok(value) => value,
            Err(error) => {
                if error.is::<BadSignature>() {
                    info.kind = EntryKind::BadSignature;
                }
                return info;
            }
        };
        match Record::decode(value.bytes()) {
            Ok(Record::Response(entry)) => {
                let facts = ResponseFacts::of_entry(&entry, self.targeted.as_ref());
                let freshness = facts.freshness(entry.request_time);
                let lifetime = freshness.lifetime(self.mode);
                // Fresh until its age, counted as RFC 9111 §4.2.3 does, reaches its
                // lifetime: the same reckoning as the cache's.
                let initial_age = freshness.age(entry.response_time);
                let fresh_until = fresh_until(entry.response_time, initial_age, lifetime);
                info.kind = EntryKind::Response;
                info.status = Some(entry.status);
                info.stored_at = Some(entry.response_time);
                info.fresh_until = Some(fresh_until);
                info.stale = freshness.age(now) >= lifetime;
                // As the cache judges it: what is stored in the instant of an
                // invalidation may predate it.
                info.invalidated = invalidated_at.is_some_and(|at| entry.response_time <= at);
            }
            Ok(Record::Variants(_)) => info.kind = EntryKind::Variants,
            Err(_) => {}
        }
        info
    }
}

impl<St: fmt::Debug> fmt::Debug for Entries<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entries")
            .field("store", &self.store)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Why `uri` has no cache key, as far as can be told from outside the key strategy.
fn why_no_key(uri: &Uri) -> &'static str {
    match uri.authority() {
        _ if uri.scheme().is_none() => "it needs a scheme and a host",
        None => "it needs a scheme and a host",
        Some(authority) if authority.as_str().contains('@') => {
            "it has user information, which no key holds"
        }
        // After the last `:` outside an IPv6 literal's brackets.
        Some(authority)
            if authority
                .as_str()
                .rsplit_once(':')
                .is_some_and(|(_, port)| !port.contains(']') && port.parse::<u16>().is_err()) =>
        {
            "its port is not a number from 0 to 65535"
        }
        Some(_) => "its host cannot be read, or the key strategy gives it no key",
    }
}

#[cfg(test)]
mod tests;
