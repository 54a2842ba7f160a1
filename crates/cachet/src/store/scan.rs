//! Listing and clearing a store: what [`StoreRequest::Scan`](super::StoreRequest::Scan)
//! asks and [`StoreResponse::Page`](super::StoreResponse::Page) answers, and the error of
//! a store that cannot do it.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::Value;
use crate::{BoxError, CacheKey};

/// Where a listing resumes: [`start`](Self::start) for the first page, then the
/// [`next`](Page::next) of the page before.
///
/// A cursor is a token of the store's own making (a Redis `SCAN` cursor, the last key of
/// a memory store's page). It can be shown as text and made again from it with
/// [`new`](Self::new), so an admin endpoint can hand it to its client and back.
///
/// ```
/// use cachet::store::Cursor;
///
/// assert!(Cursor::start().is_start());
/// let next = Cursor::new("1792");
/// assert_eq!(next.as_str(), "1792");
/// assert_eq!(Cursor::new(next.to_string()), next);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Cursor(Option<Arc<str>>);

impl Cursor {
    /// The cursor of a listing's first page.
    pub fn start() -> Self {
        Self(None)
    }

    /// A cursor from its text, as a store or [`as_str`](Self::as_str) made it. An empty
    /// text is the start.
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        let token = token.into();
        Self((!token.is_empty()).then_some(token))
    }

    /// Whether this is the cursor of a listing's first page.
    pub fn is_start(&self) -> bool {
        self.0.is_none()
    }

    /// The cursor's text; empty for the start.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or_default()
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cursor").field(&self.as_str()).finish()
    }
}

/// One page of a store's entries: what [`StoreRequest::Scan`](super::StoreRequest::Scan)
/// asks for.
///
/// ```
/// use cachet::store::{Cursor, Scan};
///
/// let scan = Scan::new(Cursor::start()).limit(100).prefix("GET https://example.com/");
/// assert_eq!(scan.get_limit(), 100);
/// assert_eq!(Scan::new(Cursor::start()).limit(usize::MAX).get_limit(), Scan::MAX_LIMIT);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    cursor: Cursor,
    limit: usize,
    prefix: Option<Arc<str>>,
    sizes_only: bool,
}

impl Scan {
    /// The page size unless one is given: 100.
    pub const DEFAULT_LIMIT: usize = 100;

    /// The page that starts at `cursor`.
    pub fn new(cursor: Cursor) -> Self {
        Self {
            cursor,
            limit: Self::DEFAULT_LIMIT,
            prefix: None,
            sizes_only: false,
        }
    }

    /// About how many entries the page should hold (from 1 to [`MAX_LIMIT`](Self::MAX_LIMIT);
    /// a number outside is taken as the nearest). A store may return somewhat more or
    /// fewer, even none before the end (Redis's `SCAN` does); the listing ends when a page
    /// has no [`next`](Page::next).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, Self::MAX_LIMIT);
        self
    }

    /// The most entries a page is asked for: more would hold a store (Redis answers a
    /// `SCAN` in one go) for longer than a page is worth.
    pub const MAX_LIMIT: usize = 100_000;

    /// Only entries whose key text starts with `prefix`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<Arc<str>>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Only the entries' keys, sizes and TTLs are wanted: a store that would read each
    /// value whole to list it (Redis) may leave the values out, each then listed as not
    /// read ([`Listed::value`] an error), so that a walk that counts entries holds no
    /// page of them. A store that holds its values anyway may list them as usual.
    #[must_use]
    pub fn sizes_only(mut self) -> Self {
        self.sizes_only = true;
        self
    }

    /// Where the page starts.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// About how many entries the page should hold.
    pub fn get_limit(&self) -> usize {
        self.limit
    }

    /// The prefix every listed key must start with, if any.
    pub fn get_prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// Whether only the entries' keys, sizes and TTLs are wanted (see
    /// [`sizes_only`](Self::sizes_only)).
    pub fn is_sizes_only(&self) -> bool {
        self.sizes_only
    }

    /// Whether `key` belongs in this listing by its prefix.
    pub fn matches(&self, key: &str) -> bool {
        self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
    }
}

/// One stored entry in a [`Page`]: its key, its value (or why the value could not be
/// read), its size as stored, and how much longer the store keeps it, where it knows.
#[derive(Clone, Debug)]
pub struct Listed {
    key: CacheKey,
    value: Result<Value, Arc<dyn StdError + Send + Sync>>,
    size: u64,
    ttl: Option<Duration>,
}

impl Listed {
    /// An entry whose value is `value`, taking `size` bytes in the store.
    pub fn new(key: CacheKey, value: Value, size: u64) -> Self {
        Self {
            key,
            value: Ok(value),
            size,
            ttl: None,
        }
    }

    /// An entry whose value could not be read: a signing layer reports a bad signature
    /// this way, for this entry only, instead of failing the whole page.
    pub fn failed(key: CacheKey, error: impl Into<BoxError>, size: u64) -> Self {
        Self {
            key,
            value: Err(Arc::from(error.into())),
            size,
            ttl: None,
        }
    }

    /// The time the store keeps the entry from now.
    #[must_use]
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// The entry's key.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }

    /// The entry's value, or why it could not be read.
    pub fn value(&self) -> Result<&Value, &(dyn StdError + Send + Sync + 'static)> {
        self.value.as_ref().map_err(|e| &**e)
    }

    /// The bytes the entry takes in the store (its value as stored, with any signature).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How much longer the store keeps the entry, where it knows.
    pub fn remaining_ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The same entry with another value (a signing layer replaces the signed value with
    /// the verified one, or with the reason it failed).
    pub fn with_value(mut self, value: Result<Value, BoxError>) -> Self {
        self.value = value.map_err(Arc::from);
        self
    }
}

impl PartialEq for Listed {
    fn eq(&self, other: &Self) -> bool {
        let values = match (&self.value, &other.value) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => a.to_string() == b.to_string(),
            _ => false,
        };
        values && self.key == other.key && self.size == other.size && self.ttl == other.ttl
    }
}

impl Eq for Listed {}

/// A page of a store's entries, the answer to a
/// [`StoreRequest::Scan`](super::StoreRequest::Scan).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    items: Vec<Listed>,
    next: Option<Cursor>,
}

impl Page {
    /// A page of `items`, followed by the page at `next` (`None` at the end).
    pub fn new(items: Vec<Listed>, next: Option<Cursor>) -> Self {
        Self { items, next }
    }

    /// The entries of this page.
    pub fn items(&self) -> &[Listed] {
        &self.items
    }

    /// Where the next page starts; `None` when this is the last.
    pub fn next(&self) -> Option<&Cursor> {
        self.next.as_ref()
    }

    /// The entries and the next page's cursor.
    pub fn into_parts(self) -> (Vec<Listed>, Option<Cursor>) {
        (self.items, self.next)
    }
}

/// A store was asked for something it cannot do, such as listing its entries.
///
/// A store that cannot list or clear answers [`StoreRequest::Scan`] or
/// [`StoreRequest::Clear`] with this error, never with an empty page.
///
/// [`StoreRequest::Scan`]: super::StoreRequest::Scan
/// [`StoreRequest::Clear`]: super::StoreRequest::Clear
///
/// ```
/// use cachet::store::Unsupported;
///
/// let error = Unsupported::new("an append-only store", "list entries");
/// assert_eq!(error.to_string(), "an append-only store cannot list entries");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    store: &'static str,
    operation: &'static str,
}

impl Unsupported {
    /// `store` cannot do `operation`; the message reads "`store` cannot `operation`".
    pub fn new(store: &'static str, operation: &'static str) -> Self {
        Self { store, operation }
    }

    /// The store that cannot.
    pub fn store(&self) -> &'static str {
        self.store
    }

    /// What it cannot do.
    pub fn operation(&self) -> &'static str {
        self.operation
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cannot {}", self.store, self.operation)
    }
}

impl StdError for Unsupported {}

/// A [`StoreRequest::Scan`] whose cursor the store did not make: a store answers with
/// this error, so that a mistyped cursor is told apart from a store that failed.
///
/// [`StoreRequest::Scan`]: super::StoreRequest::Scan
///
/// ```
/// use cachet::store::{Cursor, InvalidCursor};
///
/// let error = InvalidCursor::new(&Cursor::new("abc"), "a redis store");
/// assert_eq!(error.to_string(), "abc is not a cursor a redis store made");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidCursor {
    cursor: Cursor,
    store: &'static str,
}

impl InvalidCursor {
    /// `cursor` is not one `store` made.
    pub fn new(cursor: &Cursor, store: &'static str) -> Self {
        Self {
            cursor: cursor.clone(),
            store,
        }
    }

    /// The cursor refused.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }
}

impl fmt::Display for InvalidCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not a cursor {} made", self.cursor, self.store)
    }
}

impl StdError for InvalidCursor {}
