use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    AGE, CONTENT_LENGTH, ETAG, HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    IF_UNMODIFIED_SINCE, LAST_MODIFIED,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use pin_project::pin_project;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use super::body::CacheBody;
use super::layer::{Config, OnBadSignature};
use super::write::{self, Placement};
use super::{CacheStatus, ForwardReason};
use crate::entry::{Entry, Record, Variants};
use crate::policy::{self, CacheControl, ResponseFacts};
use crate::store::{Store, StoreRequest, StoreResponse};
use crate::verify::BadSignature;
use crate::{BoxError, CacheKey, Error};

/// What the cache knows of a request it may answer or store a response for.
pub(crate) struct RequestFacts<St> {
    pub(crate) key: CacheKey,
    pub(crate) store: St,
    pub(crate) method: Method,
    pub(crate) cc: CacheControl,
    pub(crate) time: SystemTime,
    /// The request's headers, captured when it is forwarded (for `Vary` and §3.5).
    pub(crate) headers: HeaderMap,
    /// The variant index found under the URI's key, if any.
    pub(crate) seen: Option<Variants>,
}

/// What the cache does with the inner service's response.
#[expect(
    clippy::large_enum_variant,
    reason = "one plan lives in each response future; boxing the facts would allocate per request"
)]
pub(crate) enum Plan<St> {
    /// A GET or HEAD: store the response if it may be stored.
    Cache(RequestFacts<St>),
    /// An unsafe method: a non-error response invalidates the URI (RFC 9111 §4.4).
    Invalidate { store: St, uri: Uri },
    /// Nothing to do.
    Pass,
}

/// A stale entry held while the origin is asked: for a 304 to refresh, or to stand in
/// for a failing origin.
struct Stale {
    entry: Entry,
    /// Whether the forwarded request carries this entry's validators.
    conditional: bool,
}

/// The response future of [`Cache`](super::Cache).
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<S, St, ReqB>
where
    S: Service<Request<ReqB>>,
    St: Store,
{
    #[pin]
    state: State<S, St, ReqB>,
    plan: Plan<St>,
    reason: ForwardReason,
    stale: Option<Stale>,
    config: Arc<Config>,
}

impl<S, St, ReqB> fmt::Debug for ResponseFuture<S, St, ReqB>
where
    S: Service<Request<ReqB>>,
    St: Store,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Lookup { .. } => "lookup",
            State::Forward { .. } => "forward",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

#[pin_project(project = StateProj)]
#[expect(
    clippy::large_enum_variant,
    reason = "the request waits inline during the lookup; boxing it would allocate per request"
)]
enum State<S, St, ReqB>
where
    S: Service<Request<ReqB>>,
    St: Store,
{
    Lookup {
        #[pin]
        lookup: Oneshot<St, StoreRequest>,
        forward: Option<(S, Request<ReqB>)>,
    },
    Forward {
        #[pin]
        future: S::Future,
    },
    Done,
}

impl<S, St, ReqB> ResponseFuture<S, St, ReqB>
where
    S: Service<Request<ReqB>>,
    St: Store,
{
    pub(crate) fn lookup(
        service: S,
        request: Request<ReqB>,
        facts: RequestFacts<St>,
        config: Arc<Config>,
    ) -> Self {
        let lookup = facts
            .store
            .clone()
            .oneshot(StoreRequest::Get(facts.key.clone()));
        Self {
            state: State::Lookup {
                lookup,
                forward: Some((service, request)),
            },
            plan: Plan::Cache(facts),
            reason: ForwardReason::Miss,
            stale: None,
            config,
        }
    }

    pub(crate) fn forward(
        future: S::Future,
        plan: Plan<St>,
        reason: ForwardReason,
        config: Arc<Config>,
    ) -> Self {
        Self {
            state: State::Forward { future },
            plan,
            reason,
            stale: None,
            config,
        }
    }
}

impl<S, St, ReqB, ResB> Future for ResponseFuture<S, St, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    St: Store,
    ResB: Body<Data = Bytes>,
{
    type Output = Result<Response<CacheBody<ResB>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Lookup { lookup, forward } => {
                    let found = ready!(lookup.poll(cx));
                    let Plan::Cache(facts) = this.plan else {
                        unreachable!("only cacheable requests are looked up")
                    };
                    let (mut service, mut request) =
                        forward.take().expect("a lookup forwards at most once");
                    let mut original_headers = None;
                    match found {
                        Ok(StoreResponse::Found(bytes)) => match Record::decode(&bytes) {
                            Ok(Record::Response(entry)) => {
                                if facts
                                    .seen
                                    .as_ref()
                                    .is_some_and(|seen| entry.response_time < seen.not_before)
                                {
                                    tracing::trace!(key = %facts.key, "stored variant predates an invalidation");
                                } else {
                                    match answer(entry, facts, request.headers(), this.config) {
                                        Answer::Hit(response) => {
                                            this.state.set(State::Done);
                                            return Poll::Ready(Ok(response));
                                        }
                                        Answer::Forward(reason) => *this.reason = reason,
                                        Answer::Stale(entry) => {
                                            *this.reason = ForwardReason::Stale;
                                            original_headers = Some(request.headers().clone());
                                            let conditional =
                                                make_conditional(&entry, request.headers_mut());
                                            *this.stale = Some(Stale { entry, conditional });
                                        }
                                    }
                                }
                            }
                            Ok(Record::Variants(index)) if facts.seen.is_none() => {
                                let variant = (!index.names.is_empty())
                                    .then(|| facts.key.variant(&index.names, request.headers()));
                                facts.seen = Some(index);
                                if let Some(variant) = variant {
                                    let lookup =
                                        facts.store.clone().oneshot(StoreRequest::Get(variant));
                                    this.state.set(State::Lookup {
                                        lookup,
                                        forward: Some((service, request)),
                                    });
                                    continue;
                                }
                            }
                            Ok(Record::Variants(_)) => {
                                tracing::debug!(key = %facts.key, "a variant key holds an index; ignoring it")
                            }
                            Err(error) => {
                                tracing::debug!(key = %facts.key, %error, "stored entry is unusable")
                            }
                        },
                        Ok(_) => {
                            if facts
                                .seen
                                .as_ref()
                                .is_some_and(|seen| !seen.names.is_empty())
                            {
                                *this.reason = ForwardReason::VaryMiss;
                            }
                        }
                        Err(error) => {
                            if let Some(bad) = find_bad_signature(&*error) {
                                this.config.metrics.bad_signature();
                                if this.config.on_bad_signature == OnBadSignature::Error {
                                    tracing::warn!(key = %facts.key, error = %bad, "refusing a tampered cache entry");
                                    this.state.set(State::Done);
                                    return Poll::Ready(Err(Error::bad_signature(
                                        bad.key().clone(),
                                        error,
                                    )));
                                }
                                tracing::warn!(key = %facts.key, error = %bad, "deleting a tampered cache entry and asking the origin");
                                write::write(
                                    facts.store.clone(),
                                    StoreRequest::Delete(bad.key().clone()),
                                    &this.config.metrics,
                                );
                            } else {
                                this.config.metrics.store_error();
                                tracing::warn!(key = %facts.key, %error, "cache store read failed; asking the origin");
                            }
                        }
                    }
                    if facts.cc.no_cache {
                        *this.reason = ForwardReason::Request;
                    }
                    if facts.cc.only_if_cached {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(only_if_cached_miss(this.config)));
                    }
                    facts.headers = original_headers.unwrap_or_else(|| request.headers().clone());
                    let future = service.call(request);
                    this.state.set(State::Forward { future });
                }
                StateProj::Forward { future } => {
                    let result = ready!(future.poll(cx));
                    this.state.set(State::Done);
                    let plan = std::mem::replace(this.plan, Plan::Pass);
                    return Poll::Ready(finish(
                        result,
                        plan,
                        this.stale.take(),
                        *this.reason,
                        this.config,
                    ));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// What a stored entry can do for a request.
enum Answer<B> {
    Hit(Response<CacheBody<B>>),
    Forward(ForwardReason),
    /// Not usable as it is, but worth keeping while the origin is asked.
    Stale(Entry),
}

/// Answers from a stored entry if it may, else says why the request must go on.
fn answer<St, B>(
    entry: Entry,
    facts: &RequestFacts<St>,
    request: &HeaderMap,
    config: &Config,
) -> Answer<B> {
    if !policy::vary_matches(&entry.vary, request) {
        return Answer::Forward(ForwardReason::VaryMiss);
    }
    let (lifetime, age, cc) = freshness(&entry, facts.time, config);
    if !policy::usable(config.mode, &facts.cc, &cc, lifetime, age) {
        return Answer::Stale(entry);
    }
    tracing::trace!(key = %facts.key, age = age.as_secs(), "hit");
    config.metrics.hit();
    if (facts.method == Method::GET || facts.method == Method::HEAD)
        && not_modified(&entry.headers, request)
    {
        return Answer::Hit(respond_not_modified(entry, age, config));
    }
    Answer::Hit(respond(entry, age, CacheStatus::Hit, config))
}

/// A stored entry's freshness lifetime, current age and directives at `now`.
fn freshness(
    entry: &Entry,
    now: SystemTime,
    config: &Config,
) -> (Duration, Duration, CacheControl) {
    let stored = ResponseFacts {
        status: entry.status,
        headers: &entry.headers,
        cc: CacheControl::parse_response(&entry.headers, config.targeted.as_ref()),
        response_time: entry.response_time,
    };
    let lifetime = stored.freshness_lifetime(config.mode);
    let age = policy::current_age(&entry.headers, entry.request_time, entry.response_time, now);
    (lifetime, age, stored.cc)
}

/// Completes a forwarded request: refreshes a stale entry on a 304, stands a stale entry
/// in for a failing origin where allowed, invalidates after an unsafe method, and
/// otherwise records the response for the store if it may be stored.
fn finish<St: Store, B: Body<Data = Bytes>, E: Into<BoxError>>(
    result: Result<Response<B>, E>,
    plan: Plan<St>,
    stale: Option<Stale>,
    reason: ForwardReason,
    config: &Config,
) -> Result<Response<CacheBody<B>>, Error> {
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            if let (Plan::Cache(facts), Some(stale)) = (&plan, stale)
                && let Some(response) = stale_on_error(stale.entry, facts, None, config)
            {
                return Ok(response);
            }
            return Err(Error::upstream(error));
        }
    };
    match plan {
        Plan::Cache(facts) => {
            let status = response.status();
            if let Some(stale) = stale {
                if status == StatusCode::NOT_MODIFIED && stale.conditional {
                    return Ok(revalidated(stale.entry, response, &facts, config));
                }
                if matches!(status.as_u16(), 500 | 502 | 503 | 504)
                    && let Some(stale) = stale_on_error(stale.entry, &facts, Some(status), config)
                {
                    return Ok(stale);
                }
            }
            Ok(forwarded(response, Some(facts), reason, config))
        }
        Plan::Invalidate { store, uri } => {
            if response.status().is_success() || response.status().is_redirection() {
                write::invalidate(
                    &store,
                    &uri,
                    response.headers(),
                    config.clock.now(),
                    &config.metrics,
                );
            }
            Ok(forwarded::<St, B>(response, None, reason, config))
        }
        Plan::Pass => Ok(forwarded::<St, B>(response, None, reason, config)),
    }
}

/// A stale entry served in place of a failing origin, if `stale-if-error` allows it.
fn stale_on_error<St, B>(
    entry: Entry,
    facts: &RequestFacts<St>,
    origin: Option<StatusCode>,
    config: &Config,
) -> Option<Response<CacheBody<B>>> {
    let now = config.clock.now();
    let (lifetime, age, cc) = freshness(&entry, now, config);
    let staleness = age.saturating_sub(lifetime);
    if !policy::stale_if_error(
        config.mode,
        &facts.cc,
        &cc,
        staleness,
        config.max_stale_if_error,
    ) {
        return None;
    }
    tracing::info!(key = %facts.key, ?origin, stale_secs = staleness.as_secs(), "origin failed; serving stale");
    let status = CacheStatus::StaleIfError {
        origin_status: origin.map(|s| s.as_u16()),
    };
    Some(respond(entry, age, status, config))
}

/// A response from a stored entry, with its current `Age`.
fn respond<B>(
    entry: Entry,
    age: Duration,
    status: CacheStatus,
    config: &Config,
) -> Response<CacheBody<B>> {
    let mut response = Response::new(CacheBody::stored(entry.body));
    *response.status_mut() = entry.status;
    // Only versions every hyper server can write are replayed: whatever a store holds,
    // HTTP/0.9 or HTTP/3 in an entry must not reach a connection that cannot send it.
    *response.version_mut() = match entry.version {
        version @ (Version::HTTP_10 | Version::HTTP_2) => version,
        _ => Version::HTTP_11,
    };
    *response.headers_mut() = entry.headers;
    response
        .headers_mut()
        .insert(AGE, HeaderValue::from(age.as_secs()));
    mark(&mut response, status, config);
    response
}

/// A `304 Not Modified` for a client whose own validators match a fresh stored response
/// (RFC 9111 §4.3.2).
fn respond_not_modified<B>(entry: Entry, age: Duration, config: &Config) -> Response<CacheBody<B>> {
    let mut response = respond(
        Entry {
            body: Bytes::new(),
            ..entry
        },
        age,
        CacheStatus::Hit,
        config,
    );
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    response.headers_mut().remove(CONTENT_LENGTH);
    response
}

/// Whether a request's `If-None-Match` (or, without it, `If-Modified-Since`) is met by
/// stored headers, comparing entity tags weakly (RFC 9110 §13.1.2, §13.1.3).
fn not_modified(stored: &HeaderMap, request: &HeaderMap) -> bool {
    if request.contains_key(IF_NONE_MATCH) {
        let Some(etag) = stored.get(ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let weak = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
        return request
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| tag.trim() == "*" || weak(tag) == weak(etag));
    }
    let date = |headers: &HeaderMap, name| {
        httpdate::parse_http_date(headers.get(name)?.to_str().ok()?).ok()
    };
    match (
        date(request, IF_MODIFIED_SINCE),
        date(stored, LAST_MODIFIED),
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// Turns a forwarded request into a conditional one for a stale entry (RFC 9111 §4.3.1);
/// `false` when the entry has no validator, or the request carries conditions of its
/// own, which the origin must judge against the client's copy rather than the cache's.
fn make_conditional(entry: &Entry, request: &mut HeaderMap) -> bool {
    const CONDITIONALS: [HeaderName; 5] = [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
    ];
    let etag = entry.headers.get(ETAG);
    let last_modified = entry.headers.get(LAST_MODIFIED);
    if (etag.is_none() && last_modified.is_none())
        || CONDITIONALS.iter().any(|name| request.contains_key(name))
    {
        return false;
    }
    if let Some(etag) = etag {
        request.insert(IF_NONE_MATCH, etag.clone());
    }
    if let Some(last_modified) = last_modified {
        request.insert(IF_MODIFIED_SINCE, last_modified.clone());
    }
    true
}

/// Serves a stale entry that the origin confirmed with `304 Not Modified`, its headers
/// updated from the 304 (RFC 9111 §3.2, §4.3.4), and stores the updated entry.
fn revalidated<St: Store, B>(
    mut entry: Entry,
    not_modified: Response<B>,
    facts: &RequestFacts<St>,
    config: &Config,
) -> Response<CacheBody<B>> {
    let now = config.clock.now();
    let update = write::end_to_end(not_modified.headers());
    for name in update.keys().filter(|name| *name != CONTENT_LENGTH) {
        entry.headers.remove(name);
    }
    for (name, value) in update.iter().filter(|(name, _)| *name != CONTENT_LENGTH) {
        entry.headers.append(name, value.clone());
    }
    entry.request_time = facts.time;
    entry.response_time = now;

    config.metrics.forward(true);
    let stored = ResponseFacts {
        status: entry.status,
        headers: &entry.headers,
        cc: CacheControl::parse_response(&entry.headers, config.targeted.as_ref()),
        response_time: now,
    };
    let storable = stored
        .storable(
            config.mode,
            config.store_set_cookie(),
            &facts.method,
            &facts.headers,
            &facts.cc,
        )
        .is_ok();
    if storable {
        let ttl = stored.freshness_lifetime(config.mode) + policy::KEEP_STALE;
        let names = policy::vary_names(&entry.headers).unwrap_or_default();
        Placement::new(facts, names, ttl).put(&entry, &config.metrics);
    }
    tracing::trace!(key = %facts.key, "revalidated");
    let age = policy::current_age(&entry.headers, entry.request_time, entry.response_time, now);
    respond(
        entry,
        age,
        CacheStatus::Revalidated { stored: storable },
        config,
    )
}

/// Wraps a response from the inner service, recording it for the store if it may be
/// stored.
fn forwarded<St: Store, B: Body<Data = Bytes>>(
    response: Response<B>,
    facts: Option<RequestFacts<St>>,
    reason: ForwardReason,
    config: &Config,
) -> Response<CacheBody<B>> {
    config.metrics.forward(reason == ForwardReason::Stale);
    let (parts, body) = response.into_parts();
    let recorder = facts.and_then(|facts| write::recorder(&parts, &facts, config));
    let status = CacheStatus::Forwarded {
        reason,
        stored: recorder.is_some(),
    };
    let mut response = Response::from_parts(parts, CacheBody::origin(body, recorder));
    mark(&mut response, status, config);
    response
}

/// The `504 Gateway Timeout` for an `only-if-cached` request with nothing usable
/// stored (RFC 9111 §5.2.1.7).
fn only_if_cached_miss<B>(config: &Config) -> Response<CacheBody<B>> {
    let mut response = Response::new(CacheBody::stored(Bytes::new()));
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    mark(&mut response, CacheStatus::OnlyIfCachedMiss, config);
    response
}

fn mark<B>(response: &mut Response<B>, status: CacheStatus, config: &Config) {
    if config.cache_status_header {
        response.headers_mut().append(
            HeaderName::from_static("cache-status"),
            status.header_value(),
        );
    }
    response.extensions_mut().insert(status);
}

/// Finds a [`BadSignature`] in an error or its sources, wherever middleware around the
/// store has wrapped it.
fn find_bad_signature<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a BadSignature> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(bad) = error.downcast_ref::<BadSignature>() {
            return Some(bad);
        }
        next = error.source();
    }
    None
}
