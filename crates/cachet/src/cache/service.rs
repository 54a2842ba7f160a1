use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_RANGE, IF_UNMODIFIED_SINCE, PRAGMA, RANGE, TRANSFER_ENCODING,
};
use http::{HeaderMap, HeaderName, Method, Request, Response};
use http_body::Body;
use tower::Service;

use super::expiry::Decision;
use super::future::{Plan, RequestFacts, ResponseFuture, StoreCall};
use super::handle::{Spare, StoreHandle};
use super::kept::KeptHeaders;
use super::layer::Config;
use super::mode::bypassed;
use super::{CacheBody, CacheLayer, CacheMode, Expiry, ForwardReason};
use crate::entry::Variants;
use crate::per_clone::PerClone;
use crate::policy::RequestDirectives;
use crate::store::{Store, StoreRequest};
use crate::{BoxError, Error, RequestHead};

/// An HTTP cache in front of the service `S`, keeping entries in the store `St`.
///
/// Made by [`CacheLayer`]. A GET or HEAD is looked up in the store first; a usable stored
/// response is returned without calling `S`. Anything else goes to `S`, and a storable
/// response is recorded as its body streams to the caller, then written to the store in
/// the background.
///
/// Request bodies are [`http_body::Body`]s, as a hyper client's are: a GET or HEAD whose
/// body is not known to be empty ([`Body::is_end_stream`]) passes through, since the key
/// leaves content out. An empty `String` or `http_body_util::Empty` is an empty body.
///
/// It is ready when the inner service is. `poll_ready` also asks the store, so that a
/// lookup goes out from `call` on a handle that is ready; a store that is not ready yet
/// holds back no request that looks nothing up (a lookup waits in its future for a handle
/// of its own, as long as the store keeps it waiting), and a handle made ready for a
/// request that looks nothing up is let go, with whatever it reserved.
///
/// A clone kept per task or connection hands its requests handles of its own from its
/// second request on, so that hits on several cores do not count references on lines
/// they share; a clone made per request costs what sharing costs.
pub struct Cache<S, St> {
    inner: S,
    /// The handle a lookup goes out on, from `call`, when `poll_ready` found it ready.
    store: St,
    /// What `poll_ready` found of `store` since the last call; `None` if not asked.
    readiness: Option<Poll<Result<(), BoxError>>>,
    /// The store handle a request's future keeps for what follows its lookup (see
    /// [`StoreHandle`]).
    spare: PerClone<Spare<St>>,
    config: PerClone<Arc<Config>>,
}

impl<S: Clone, St: Clone> Clone for Cache<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            // A clone's handle is made ready on its own.
            store: self.store.clone(),
            readiness: None,
            spare: self.spare.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S, St> Cache<S, St> {
    /// A shared cache with the default configuration; see [`CacheLayer`] to configure it.
    pub fn new(inner: S, store: St) -> Self
    where
        St: Clone,
    {
        Self::from_parts(inner, store, Arc::new(Config::default()))
    }

    pub(crate) fn from_parts(inner: S, store: St, config: Arc<Config>) -> Self
    where
        St: Clone,
    {
        Self {
            inner,
            spare: PerClone::new(Arc::new(Mutex::new(store.clone()))),
            store,
            readiness: None,
            config: PerClone::new(config),
        }
    }

    /// A [`CacheLayer`] over `store`.
    pub fn layer(store: St) -> CacheLayer<St> {
        CacheLayer::new(store)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// Consumes the cache, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, St: fmt::Debug> fmt::Debug for Cache<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("inner", &self.inner)
            .field("store", &self.store)
            .field("config", self.config.shared())
            .finish()
    }
}

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for Cache<S, St>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    // Read for whether a GET carries content, which its headers may not announce.
    ReqB: Body,
    // A stale-while-revalidate refresh finishes on a spawned task.
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + 'static,
    St: Store,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<CacheBody<ResB>>;
    type Error = Error;
    type Future = ResponseFuture<S, St, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        ready!(self.inner.poll_ready(cx)).map_err(Error::upstream)?;
        if matches!(self.readiness, None | Some(Poll::Pending)) {
            self.readiness = Some(self.store.poll_ready(cx));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        self.dispatch(request)
    }
}

impl<S: Clone, St: Store> Cache<S, St> {
    /// Forwards a request that looks nothing up, letting go of a store handle made ready
    /// for a lookup it does not make.
    fn pass<ReqB>(
        &mut self,
        request: Request<ReqB>,
        plan: Plan<St>,
        reason: ForwardReason,
        config: Arc<Config>,
    ) -> ResponseFuture<S, St, ReqB>
    where
        S: Service<Request<ReqB>>,
    {
        if self.readiness.take().is_some() {
            self.let_go_of_store();
        }
        // Whatever passes the cache has nothing stored for it: a request for stored
        // responses only, by mode or by `Cache-Control` (RFC 9111 §5.2.1.7), gets the
        // `504` a miss gets, without asking the origin.
        let only_if_cached = request.extensions().get::<CacheMode>()
            == Some(&CacheMode::OnlyIfCached)
            || (request.headers().contains_key(CACHE_CONTROL)
                && RequestDirectives::parse(request.headers()).only_if_cached);
        if only_if_cached && !bypassed() {
            return ResponseFuture::only_if_cached(config);
        }
        ResponseFuture::forward(self.inner.call(request), plan, reason, config)
    }

    /// Forwards a request the cache neither looks up nor stores. An unsafe method still
    /// invalidates its URI, whatever made it pass (a filter, a bypass, an expiry that says
    /// not to cache, no body key): RFC 9111 §4.4 says a cache MUST, and none of these may
    /// leave a stale GET behind it.
    fn pass_uncached<ReqB>(
        &mut self,
        request: Request<ReqB>,
        reason: ForwardReason,
        config: Arc<Config>,
    ) -> ResponseFuture<S, St, ReqB>
    where
        S: Service<Request<ReqB>>,
    {
        let plan = match *request.method() {
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE => Plan::Pass,
            _ if request.uri().authority().is_some() => Plan::Invalidate {
                store: self.store.clone(),
                uri: request.uri().clone(),
            },
            _ => Plan::Pass,
        };
        self.pass(request, plan, reason, config)
    }

    /// Swaps the store handle `poll_ready` asked, and did not call, for a fresh clone: so
    /// that whatever the store reserved for it (a permit, a slot) is not held until the
    /// next request, and a handle that failed is not asked again.
    fn let_go_of_store(&mut self) {
        self.store = self.store.clone();
    }

    /// What `call` does; a lookup takes the store's readiness, and a request that looks
    /// nothing up goes through [`pass`](Self::pass).
    // Inlined, so that the future is built where `call` returns it, not copied there.
    #[inline]
    fn dispatch<ReqB, ResB>(&mut self, request: Request<ReqB>) -> ResponseFuture<S, St, ReqB>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        ReqB: Body,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + 'static,
        ResB: Body<Data = Bytes> + Send + 'static,
    {
        let config = self.config.get(|shared| Arc::new(Config::clone(shared)));
        let head = RequestHead {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        };
        let filtered = config.filter.as_ref().is_some_and(|f| !f.request(&head));
        let key = (!filtered && config.methods.contains(head.method))
            .then(|| {
                config
                    .keys
                    .key(head.method, head.uri, head.headers, head.extensions)
            })
            .flatten();
        let Some(key) = key else {
            let reason = match *request.method() {
                Method::GET | Method::HEAD => ForwardReason::Bypass,
                Method::OPTIONS | Method::TRACE => ForwardReason::Method,
                _ if filtered => ForwardReason::Bypass,
                _ => ForwardReason::Method,
            };
            tracing::trace!(method = %request.method(), uri = %request.uri(), %reason, "passing through");
            return self.pass_uncached(request, reason, config);
        };

        let mode = if bypassed() {
            CacheMode::NoStore
        } else {
            request
                .extensions()
                .get::<CacheMode>()
                .copied()
                .unwrap_or_default()
        };
        if mode == CacheMode::NoStore {
            tracing::trace!(%key, "bypassed for this request");
            return self.pass_uncached(request, ForwardReason::Bypass, config);
        }
        let own = request.extensions().get::<Expiry>().copied();
        let configured = match config.expiry.decide(request.method(), &key, own) {
            Decision::Cache(configured) => configured,
            Decision::DoNotCache => {
                tracing::trace!(%key, "expiry says do not cache");
                return self.pass_uncached(request, ForwardReason::Bypass, config);
            }
        };
        let present = Present::scan(request.headers());
        if matches!(*request.method(), Method::GET | Method::HEAD)
            && (present.content || !request.body().is_end_stream())
        {
            // Content on a GET has no defined meaning (RFC 9110 §9.3.1), yet an origin may
            // answer by it; the key leaves it out, so neither a stored response nor this
            // one may stand for the other. The body says so when the headers do not: a
            // client's request gets its `Content-Length` below the cache, from the client.
            tracing::trace!(%key, "a GET or HEAD with content; passing through");
            return self.pass(request, Plan::Pass, ForwardReason::Bypass, config);
        }
        let store = &self.store;
        let spare = self.spare.get(|_| Arc::new(Mutex::new(store.clone())));
        let mut facts = RequestFacts {
            key,
            store: StoreHandle::new(spare),
            method: request.method().clone(),
            cc: if present.directives {
                RequestDirectives::parse(request.headers())
            } else {
                RequestDirectives::default()
            },
            validators: present.validators,
            conditions: present.conditions,
            authorization: present.authorization,
            time: config.clock.now(),
            headers: KeptHeaders::default(),
            seen: None,
            variant: None,
            view: None,
            collapsed: false,
            force: matches!(mode, CacheMode::ForceCache | CacheMode::OnlyIfCached),
            configured,
            sent: None,
            looked_again: None,
            invalidates: None,
        };
        match mode {
            CacheMode::Reload => {
                facts.headers = KeptHeaders::new(request.headers());
                // It looks nothing up, so it saw no index: what it stores counts as after
                // whatever was stored before it began, as if an invalidation had been seen
                // (an index it writes must not bring back variants an invalidation hid).
                facts.seen = Some(Variants {
                    names: Vec::new(),
                    not_before: facts.time,
                });
                facts.sending(&request, &config);
                return self.pass(request, Plan::Cache(facts), ForwardReason::Request, config);
            }
            CacheMode::NoCache => {
                facts.cc.no_cache = true;
                facts.cc.validate_all = true;
            }
            CacheMode::OnlyIfCached => facts.cc.only_if_cached = true,
            _ if config.always_revalidate => {
                facts.cc.no_cache = true;
                facts.cc.validate_all = true;
            }
            _ => {}
        }
        // Read before the lookup is answered: a fetch of the key that finishes after it
        // makes a coalescing leader look again.
        let finished_before = config.inflight.finished(&facts.key);
        let lookup = match self.readiness.take() {
            // A marker for the key is still on its way to the store, which may hold what
            // it hides (RFC 9111 §4.4): a miss, without reading it.
            readiness if config.invalidations.marking(&facts.key) => {
                if readiness.is_some() {
                    self.let_go_of_store();
                }
                StoreCall::Skipped
            }
            Some(Poll::Ready(Ok(()))) => {
                StoreCall::Called(self.store.call(StoreRequest::Get(facts.key.clone())))
            }
            Some(Poll::Ready(Err(error))) => {
                self.let_go_of_store();
                StoreCall::Failed(Some(error))
            }
            Some(Poll::Pending) => {
                self.let_go_of_store();
                StoreCall::get(facts.key.clone())
            }
            // Called without `poll_ready`: the request readies a handle of its own.
            None => StoreCall::get(facts.key.clone()),
        };
        // The service that `poll_ready` readied goes into the future; this handle keeps a
        // fresh clone that will be readied before the next call.
        let ready = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, ready);
        ResponseFuture::lookup(ready, request, facts, lookup, finished_before, config)
    }
}

/// Which of the request headers a lookup reads are present, found in one pass.
struct Present {
    /// `Cache-Control` or `Pragma`.
    directives: bool,
    /// `If-None-Match` or `If-Modified-Since`.
    validators: bool,
    /// `Range`, `If-Match`, `If-Unmodified-Since` or `If-Range`.
    conditions: bool,
    /// Content announced: `Transfer-Encoding`, or a `Content-Length` other than 0.
    content: bool,
    /// `Authorization`.
    authorization: bool,
}

impl Present {
    fn scan(headers: &HeaderMap) -> Self {
        let any = |names: &[HeaderName]| names.iter().any(|name| headers.contains_key(name));
        // Comparing the names of a short map is cheaper than hashing eight of them.
        let content = |length: bool, encoded: bool| {
            encoded
                || length
                    && headers
                        .get_all(CONTENT_LENGTH)
                        .iter()
                        .any(|value| value.as_bytes() != b"0")
        };
        if headers.keys_len() > 16 {
            return Self {
                directives: any(&[CACHE_CONTROL, PRAGMA]),
                validators: any(&[IF_NONE_MATCH, IF_MODIFIED_SINCE]),
                conditions: any(&[RANGE, IF_MATCH, IF_UNMODIFIED_SINCE, IF_RANGE]),
                content: content(
                    headers.contains_key(CONTENT_LENGTH),
                    headers.contains_key(TRANSFER_ENCODING),
                ),
                authorization: headers.contains_key(AUTHORIZATION),
            };
        }
        let mut present = Self {
            directives: false,
            validators: false,
            conditions: false,
            content: false,
            authorization: false,
        };
        let (mut length, mut encoded) = (false, false);
        for name in headers.keys() {
            if *name == CACHE_CONTROL || *name == PRAGMA {
                present.directives = true;
            } else if *name == IF_NONE_MATCH || *name == IF_MODIFIED_SINCE {
                present.validators = true;
            } else if *name == RANGE
                || *name == IF_MATCH
                || *name == IF_UNMODIFIED_SINCE
                || *name == IF_RANGE
            {
                present.conditions = true;
            } else if *name == CONTENT_LENGTH {
                length = true;
            } else if *name == TRANSFER_ENCODING {
                encoded = true;
            } else if *name == AUTHORIZATION {
                present.authorization = true;
            }
        }
        present.content = content(length, encoded);
        present
    }
}

#[cfg(test)]
mod tests;
