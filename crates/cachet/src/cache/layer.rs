use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{HeaderName, Method, StatusCode};
use tower::Layer;

use super::Cache;
use super::coalesce::Inflight;
use super::expiry::{Expiry, ExpiryRules};
use super::filter::Filter;
use super::refresh::Refreshing;
use super::write::Invalidations;
use crate::clock::{Clock, SystemClock};
use crate::policy::Mode;
use crate::{Keys, Metrics};

/// Methods whose responses a cache never reuses: a response to PUT, DELETE or PATCH
/// describes a change, not the resource (RFC 9110 §9.3.4, §9.3.5; RFC 5789), and those
/// of CONNECT, OPTIONS and TRACE are not cacheable (§9.3.6 to §9.3.8). An unsafe one
/// must invalidate what is stored instead (RFC 9111 §4.4).
/// [`CacheLayer::methods`] leaves them out.
pub const UNCACHEABLE_METHODS: [Method; 6] = [
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
];

/// Configuration shared by a layer and every service it makes.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) mode: Mode,
    pub(crate) max_body_bytes: usize,
    pub(crate) cache_status_header: bool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) on_bad_signature: OnBadSignature,
    pub(crate) metrics: Metrics,
    /// `None`: store `Set-Cookie` responses only in a private cache.
    pub(crate) set_cookie: Option<bool>,
    pub(crate) max_stale_if_error: Duration,
    /// A targeted cache-control field (RFC 9213) that replaces `Cache-Control`.
    pub(crate) targeted: Option<HeaderName>,
    pub(crate) refreshing: Refreshing,
    /// How long a miss waits for a concurrent request for the same key; `None` when
    /// misses are not coalesced.
    pub(crate) coalesce_wait: Option<Duration>,
    pub(crate) inflight: Inflight,
    pub(crate) invalidations: Invalidations,
    pub(crate) always_revalidate: bool,
    pub(crate) read_only: bool,
    pub(crate) metadata: bool,
    pub(crate) expiry: ExpiryRules,
    pub(crate) keys: Keys,
    /// The methods whose responses are looked up and stored.
    pub(crate) methods: Vec<Method>,
    /// `None`: every status RFC 9111 allows.
    pub(crate) statuses: Option<Vec<StatusCode>>,
    pub(crate) filter: Option<Arc<dyn Filter>>,
    /// Whether a service made by this layer warned that expiry rules win in a shared
    /// cache: once is enough for a program that makes one per connection.
    pub(crate) warned_rules_win: Arc<AtomicBool>,
}

impl Config {
    pub(crate) fn store_set_cookie(&self) -> bool {
        self.set_cookie.unwrap_or(self.mode == Mode::Private)
    }
}

/// What a cache does when a stored entry fails signature verification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnBadSignature {
    /// Fail the request with an [`Error`](crate::Error) whose
    /// [`is_bad_signature`](crate::Error::is_bad_signature) is true (the default), so
    /// tampering is never silent.
    #[default]
    Error,
    /// Treat the entry as a miss: delete it, ask the origin, store the fresh response
    /// (signed again), and record a warning and a count in [`Metrics`].
    Refetch,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Shared,
            max_body_bytes: CacheLayer::<()>::DEFAULT_MAX_BODY_BYTES,
            cache_status_header: false,
            clock: Arc::new(SystemClock),
            on_bad_signature: OnBadSignature::Error,
            metrics: Metrics::default(),
            set_cookie: None,
            max_stale_if_error: CacheLayer::<()>::DEFAULT_MAX_STALE_IF_ERROR,
            targeted: None,
            refreshing: Refreshing::default(),
            coalesce_wait: Some(CacheLayer::<()>::DEFAULT_COALESCE_WAIT),
            inflight: Inflight::default(),
            invalidations: Invalidations::default(),
            warned_rules_win: Arc::default(),
            always_revalidate: false,
            read_only: false,
            metadata: false,
            expiry: ExpiryRules::default(),
            keys: Keys::new(),
            methods: vec![Method::GET, Method::HEAD],
            statuses: None,
            filter: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("mode", &self.mode)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("cache_status_header", &self.cache_status_header)
            .field("on_bad_signature", &self.on_bad_signature)
            .field("expiry", &self.expiry)
            .field("keys", &self.keys)
            .field("methods", &self.methods)
            .field("statuses", &self.statuses)
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

/// A [`Layer`] that puts an HTTP cache in front of a service, keeping entries in `St`.
///
/// The cache is shared (RFC 9111 §1) unless made [`private`](Self::private): it serves
/// many users, so it does not store `private` responses, nor responses to requests with
/// `Authorization` unless the response allows it.
///
/// ```
/// use cachet::{CacheLayer, MemoryStore};
///
/// let layer = CacheLayer::new(MemoryStore::new(256 << 20))
///     .max_body_bytes(4 << 20)
///     .cache_status_header(true);
/// # let _ = layer;
/// ```
#[derive(Clone)]
#[must_use]
pub struct CacheLayer<St> {
    store: St,
    config: Arc<Config>,
}

impl<St> CacheLayer<St> {
    /// The largest body stored by default: 8 MiB. Larger bodies are passed through whole.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;

    /// The longest a stale response stands in for a failing origin, whatever a
    /// `stale-if-error` directive allows: one day.
    pub const DEFAULT_MAX_STALE_IF_ERROR: Duration = Duration::from_secs(24 * 60 * 60);

    /// The longest a miss waits for a concurrent request for the same key: five seconds.
    pub const DEFAULT_COALESCE_WAIT: Duration = Duration::from_secs(5);

    /// A shared cache over `store`.
    pub fn new(store: St) -> Self {
        Self {
            store,
            config: Arc::new(Config::default()),
        }
    }

    /// Makes this one user's private cache: it may store `private` responses and responses
    /// to requests with `Authorization`, and it ignores `s-maxage`.
    pub fn private(mut self) -> Self {
        Arc::make_mut(&mut self.config).mode = Mode::Private;
        self
    }

    /// Makes this a shared cache again (the default).
    pub fn shared(mut self) -> Self {
        Arc::make_mut(&mut self.config).mode = Mode::Shared;
        self
    }

    /// The largest response body that is stored; a larger one streams through to the
    /// caller whole and is not stored.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        Arc::make_mut(&mut self.config).max_body_bytes = max;
        self
    }

    /// Whether to add an RFC 9211 `Cache-Status` header to every response. Off by
    /// default; the [`CacheStatus`](crate::CacheStatus) extension is always there. Hits
    /// always carry `Age` (RFC 9111 §4).
    pub fn cache_status_header(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).cache_status_header = enabled;
        self
    }

    /// What to do with a stored entry that fails signature verification (only a store
    /// wrapped in [`VerifyLayer`](crate::verify::VerifyLayer) reports one).
    pub fn on_bad_signature(mut self, action: OnBadSignature) -> Self {
        Arc::make_mut(&mut self.config).on_bad_signature = action;
        self
    }

    /// Whether responses that set cookies are stored. By default only a private cache
    /// stores them: in a shared cache one user's cookie would reach others.
    pub fn store_set_cookie(mut self, store: bool) -> Self {
        Arc::make_mut(&mut self.config).set_cookie = Some(store);
        self
    }

    /// The longest a stale response may stand in for a failing origin (a connection
    /// error, or a 500, 502, 503 or 504) when `stale-if-error` (RFC 5861) allows it.
    pub fn max_stale_if_error(mut self, max: Duration) -> Self {
        Arc::make_mut(&mut self.config).max_stale_if_error = max;
        self
    }

    /// A targeted cache-control field (RFC 9213), such as `CDN-Cache-Control` for a
    /// cache that serves as a CDN: when a response carries it, its directives replace
    /// `Cache-Control` for this cache (which still passes both on unchanged).
    pub fn targeted_cache_control(mut self, field: HeaderName) -> Self {
        Arc::make_mut(&mut self.config).targeted = Some(field);
        self
    }

    /// Concurrent misses for one key send one request to the origin; the others wait at
    /// most `wait` for its response to be stored and are answered from it
    /// (`CacheStatus::Collapsed`). A response that cannot be stored, or a fetch that fails
    /// or is dropped, sends the waiters to the origin at once; once a request has waited
    /// `wait` for a fetch whose answer has begun (a body read slowly), later ones do not
    /// wait for it. Waiting needs the Tokio timer
    /// (on in every default runtime; without it, turn coalescing off). On by default, with
    /// [`DEFAULT_COALESCE_WAIT`](Self::DEFAULT_COALESCE_WAIT).
    pub fn coalesce(mut self, wait: Option<Duration>) -> Self {
        Arc::make_mut(&mut self.config).coalesce_wait = wait;
        self
    }

    /// Revalidate every stored response with the origin before serving it (as if every
    /// request were [`CacheMode::NoCache`](crate::CacheMode::NoCache)).
    pub fn always_revalidate(mut self, always: bool) -> Self {
        Arc::make_mut(&mut self.config).always_revalidate = always;
        self
    }

    /// Serve from the store but never write to it: no new entries, no refreshed ones, no
    /// invalidations. For a cache that another process fills.
    pub fn read_only(mut self, read_only: bool) -> Self {
        Arc::make_mut(&mut self.config).read_only = read_only;
        self
    }

    /// Whether every response carries a [`CacheMetadata`](crate::CacheMetadata)
    /// extension (the cache key, whether it came from the cache, when it was stored and
    /// until when it is fresh). Off by default, which keeps a hit to one extension.
    pub fn metadata(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).metadata = enabled;
        self
    }

    /// How requests become cache keys: ignored parameters and headers, credentials,
    /// headers that select a response, query sorting, and the [`KeyStrategy`](crate::KeyStrategy).
    /// [`Keys::new`] by default.
    pub fn keys(mut self, keys: Keys) -> Self {
        Arc::make_mut(&mut self.config).keys = keys;
        self
    }

    /// The methods whose responses are looked up and stored: GET and HEAD by default.
    /// Another method is cached only when its key strategy gives its request a key: the
    /// [`DefaultKey`](crate::DefaultKey) gives one to a request whose body a
    /// [`BodyKeyLayer`](crate::BodyKeyLayer) in front of the cache read whole, with the
    /// body's digest in it, and none otherwise. A request of another method that has a
    /// key is cached as a query and does not invalidate, unless the cache does not take
    /// its answer to store (RFC 9111 §4.4 then holds, as for any unsafe method). One
    /// without a key, or of a
    /// method left out, passes through (an unsafe one still invalidates, RFC 9111 §4.4).
    /// The [`UNCACHEABLE_METHODS`](crate::UNCACHEABLE_METHODS) are left out, with a
    /// warning. See the [filtering guide](crate::guide::filtering#post).
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        let mut kept: Vec<Method> = Vec::new();
        for method in methods {
            if UNCACHEABLE_METHODS.contains(&method) {
                tracing::warn!(%method, "not cached: its responses are not reusable (RFC 9110 §9.3)");
            } else if !kept.contains(&method) {
                // Each once: a listing walks one prefix per method.
                kept.push(method);
            }
        }
        Arc::make_mut(&mut self.config).methods = kept;
        self
    }

    /// Stores only responses with these statuses (of those RFC 9111 allows to be
    /// stored); by default, every status it allows.
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        Arc::make_mut(&mut self.config).statuses = Some(statuses.into_iter().collect());
        self
    }

    /// A [`Filter`] that says which requests the cache handles and which responses it
    /// may store.
    pub fn filter(mut self, filter: impl Filter) -> Self {
        Arc::make_mut(&mut self.config).filter = Some(Arc::new(filter));
        self
    }

    /// The expiry of responses that give no explicit freshness (no `max-age`,
    /// `s-maxage` or `Expires`), in place of the heuristic of RFC 9111 §4.2.2. It also
    /// makes such responses storable without a validator. It never overrides what a
    /// response says, even with [`rules_win`](Self::rules_win), and, like the heuristic,
    /// gives no lifetime to another method's response than GET's or HEAD's (RFC 9110
    /// §9.3.3); [`Expiry::DoNotCache`] caches only what an
    /// [`expiry_rule`](Self::expiry_rule) allows.
    pub fn default_expiry(mut self, expiry: Expiry) -> Self {
        Arc::make_mut(&mut self.config).expiry.set_default(expiry);
        self
    }

    /// Adds a rule giving responses whose URL matches `pattern` this expiry; the first
    /// rule that matches wins, and a request's own [`Expiry`] extension comes before all.
    ///
    /// A pattern is a host, optionally with a port and a leading `http://` or
    /// `https://`, then optionally a path: `api.example.com`, `*.example.com`,
    /// `https://example.com/static/`. The host must match whole (a pattern without a
    /// port matches every port); the path matches any
    /// path (and query) that starts with it; `*` stands for any run of characters. With
    /// a last rule `("*", Expiry::DoNotCache)` the rules become an allowlist.
    ///
    /// By default a rule's lifetime applies only where the response gives no explicit
    /// freshness; see [`rules_win`](Self::rules_win).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cachet::{CacheLayer, Expiry, MemoryStore};
    ///
    /// let layer = CacheLayer::new(MemoryStore::default())
    ///     .expiry_rule("api.example.com/v1/countries", Expiry::After(Duration::from_secs(86_400)))
    ///     .expiry_rule("api.example.com/v1/", Expiry::After(Duration::from_secs(60)))
    ///     .expiry_rule("*", Expiry::DoNotCache);
    /// # let _ = layer;
    /// ```
    pub fn expiry_rule(mut self, pattern: &str, expiry: Expiry) -> Self {
        Arc::make_mut(&mut self.config).expiry.push(pattern, expiry);
        self
    }

    /// Whether expiry rules and requests' own [`Expiry`] win over a response's headers.
    ///
    /// Off (the default), RFC 9111 decides and configuration only fills in where the
    /// headers say nothing of freshness. On, a matching rule's lifetime replaces the
    /// response's, and its `no-store`, `no-cache`, `must-revalidate` and
    /// `proxy-revalidate` are disregarded: for APIs that forbid caching what the user
    /// wants cached. `private` and the shared-cache rules for `Authorization` and
    /// `Set-Cookie` still hold. Meant for a private cache; a shared cache with it on logs
    /// a warning when it is built.
    pub fn rules_win(mut self, wins: bool) -> Self {
        Arc::make_mut(&mut self.config).expiry.rules_win = wins;
        self
    }

    /// The counters of every cache this layer makes.
    pub fn metrics(&self) -> Metrics {
        self.config.metrics.clone()
    }

    /// A handle to list, show, delete and clear what this cache stores, sharing its
    /// store, clock, mode and keys, so it judges freshness and finds a URL's entries as
    /// the cache does. See
    /// [`manage`](crate::manage).
    pub fn entries(&self) -> crate::manage::Entries<St>
    where
        St: Clone,
    {
        crate::manage::Entries::from_parts(
            self.store.clone(),
            self.config.mode,
            self.config.clock.clone(),
            self.config.targeted.clone(),
            self.config.keys.clone(),
            self.config.methods.clone(),
        )
    }

    /// The clock used for freshness and `Age`, for tests that move time by hand.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        Arc::make_mut(&mut self.config).clock = Arc::new(clock);
        self
    }
}

impl<St: fmt::Debug> fmt::Debug for CacheLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, St: Clone> Layer<S> for CacheLayer<St> {
    type Service = Cache<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        if self.config.expiry.rules_win
            && self.config.mode == Mode::Shared
            && !self.config.warned_rules_win.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "expiry rules win over response headers in a shared cache: responses the \
                 origin marked no-store or no-cache are served to every user"
            );
        }
        Cache::from_parts(inner, self.store.clone(), self.config.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[test]
    fn methods_leave_out_those_whose_responses_are_never_cached() {
        let layer = CacheLayer::new(MemoryStore::default()).methods([
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::OPTIONS,
        ]);
        assert_eq!(layer.config.methods, [Method::GET, Method::POST]);
    }
}
