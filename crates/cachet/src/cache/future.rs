use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{
    AGE, CONNECTION, CONTENT_LENGTH, ETAG, HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use pin_project::pin_project;
use tower::Service;
use tower::util::Oneshot;

use super::body::{CacheBody, Recorder};
use super::layer::{Config, OnBadSignature};
use super::{CacheStatus, ForwardReason};
use crate::entry::Entry;
use crate::policy::{self, CacheControl, ResponseFacts};
use crate::store::{Store, StoreRequest, StoreResponse};
use crate::verify::BadSignature;
use crate::{BoxError, CacheKey, Error, Metrics};

/// What the cache knows of a request it may answer or store a response for.
pub(crate) struct RequestFacts<St> {
    pub(crate) key: CacheKey,
    pub(crate) store: St,
    pub(crate) method: Method,
    pub(crate) cc: CacheControl,
    pub(crate) time: SystemTime,
    /// The request's headers, captured when it is forwarded (for `Vary` and §3.5).
    pub(crate) headers: HeaderMap,
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
    facts: Option<RequestFacts<St>>,
    reason: ForwardReason,
    /// A stale entry being revalidated with a conditional request.
    stale: Option<Entry>,
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
        lookup: Oneshot<St, StoreRequest>,
        service: S,
        request: Request<ReqB>,
        facts: RequestFacts<St>,
        config: Arc<Config>,
    ) -> Self {
        Self {
            state: State::Lookup {
                lookup,
                forward: Some((service, request)),
            },
            facts: Some(facts),
            reason: ForwardReason::Miss,
            stale: None,
            config,
        }
    }

    pub(crate) fn forward(
        future: S::Future,
        facts: Option<RequestFacts<St>>,
        reason: ForwardReason,
        config: Arc<Config>,
    ) -> Self {
        Self {
            state: State::Forward { future },
            facts,
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
                    let facts = this
                        .facts
                        .as_mut()
                        .expect("a lookup always has request facts");
                    let (mut service, mut request) =
                        forward.take().expect("a lookup forwards at most once");
                    match found {
                        Ok(StoreResponse::Found(bytes)) => match Entry::decode(&bytes) {
                            Ok(entry) => match answer(entry, facts, request.headers(), this.config)
                            {
                                Answer::Hit(response) => {
                                    this.state.set(State::Done);
                                    return Poll::Ready(Ok(response));
                                }
                                Answer::Forward(reason) => *this.reason = reason,
                                Answer::Revalidate(entry) => {
                                    *this.reason = ForwardReason::Stale;
                                    if make_conditional(&entry, request.headers_mut()) {
                                        *this.stale = Some(entry);
                                    }
                                }
                            },
                            Err(error) => {
                                tracing::debug!(key = %facts.key, %error, "stored entry is unusable")
                            }
                        },
                        Ok(_) => {}
                        Err(error) => {
                            if let Some(bad) = find_bad_signature(&*error) {
                                this.config.metrics.bad_signature();
                                if this.config.on_bad_signature == OnBadSignature::Error {
                                    tracing::warn!(key = %facts.key, error = %bad, "refusing a tampered cache entry");
                                    this.state.set(State::Done);
                                    return Poll::Ready(Err(Error::bad_signature(
                                        facts.key.clone(),
                                        error,
                                    )));
                                }
                                tracing::warn!(key = %facts.key, error = %bad, "deleting a tampered cache entry and asking the origin");
                                write(
                                    facts.store.clone(),
                                    StoreRequest::Delete(facts.key.clone()),
                                    &this.config.metrics,
                                );
                            } else {
                                this.config.metrics.store_error();
                                tracing::warn!(key = %facts.key, %error, "cache store read failed; asking the origin");
                            }
                        }
                    }
                    facts.headers = request.headers().clone();
                    let future = service.call(request);
                    this.state.set(State::Forward { future });
                }
                StateProj::Forward { future } => {
                    let response = ready!(future.poll(cx)).map_err(Error::upstream)?;
                    this.state.set(State::Done);
                    let facts = this.facts.take();
                    if response.status() == StatusCode::NOT_MODIFIED
                        && let (Some(entry), Some(facts)) = (this.stale.take(), facts.as_ref())
                    {
                        return Poll::Ready(Ok(revalidated(entry, response, facts, this.config)));
                    }
                    return Poll::Ready(Ok(forwarded(response, facts, *this.reason, this.config)));
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
    /// Stale, but with a validator: worth a conditional request.
    Revalidate(Entry),
}

/// Answers from a stored entry if it may, else says why the request must go on.
fn answer<St, B>(
    entry: Entry,
    facts: &RequestFacts<St>,
    request_headers: &HeaderMap,
    config: &Config,
) -> Answer<B> {
    if !policy::vary_matches(&entry.vary, request_headers) {
        return Answer::Forward(ForwardReason::VaryMiss);
    }
    let stored = ResponseFacts {
        status: entry.status,
        headers: &entry.headers,
        cc: CacheControl::parse(&entry.headers),
        response_time: entry.response_time,
    };
    let lifetime = stored.freshness_lifetime(config.mode);
    let age = policy::current_age(
        &entry.headers,
        entry.request_time,
        entry.response_time,
        facts.time,
    );
    if !policy::usable(config.mode, &facts.cc, &stored.cc, lifetime, age) {
        return if stored.has_validator() {
            Answer::Revalidate(entry)
        } else {
            Answer::Forward(ForwardReason::Stale)
        };
    }
    tracing::trace!(key = %facts.key, age = age.as_secs(), "hit");
    config.metrics.hit();
    Answer::Hit(respond(entry, age, CacheStatus::Hit, config))
}

/// A response from a stored entry, with its current `Age`.
fn respond<B>(
    entry: Entry,
    age: std::time::Duration,
    status: CacheStatus,
    config: &Config,
) -> Response<CacheBody<B>> {
    let mut response = Response::new(CacheBody::stored(entry.body));
    *response.status_mut() = entry.status;
    *response.version_mut() = entry.version;
    *response.headers_mut() = entry.headers;
    response
        .headers_mut()
        .insert(AGE, HeaderValue::from(age.as_secs()));
    mark(&mut response, status, config);
    response
}

/// Turns a forwarded request into a conditional one for a stale entry (RFC 9111 §4.3.1);
/// `false` when the request already carries conditions of its own, which the origin
/// must judge against the client's copy rather than the cache's.
fn make_conditional(entry: &Entry, request: &mut HeaderMap) -> bool {
    const CONDITIONALS: [HeaderName; 5] = [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
    ];
    if CONDITIONALS.iter().any(|name| request.contains_key(name)) {
        return false;
    }
    if let Some(etag) = entry.headers.get(ETAG) {
        request.insert(IF_NONE_MATCH, etag.clone());
    }
    if let Some(last_modified) = entry.headers.get(LAST_MODIFIED) {
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
    let update = end_to_end(not_modified.headers());
    for name in update.keys() {
        if name != CONTENT_LENGTH {
            entry.headers.remove(name);
        }
    }
    for (name, value) in &update {
        if name != CONTENT_LENGTH {
            entry.headers.append(name, value.clone());
        }
    }
    entry.request_time = facts.time;
    entry.response_time = now;

    config.metrics.forward(true);
    let stored = ResponseFacts {
        status: entry.status,
        headers: &entry.headers,
        cc: CacheControl::parse(&entry.headers),
        response_time: now,
    };
    let storable = stored
        .storable(config.mode, &facts.method, &facts.headers, &facts.cc)
        .is_ok();
    if storable {
        let ttl = stored.freshness_lifetime(config.mode) + policy::KEEP_STALE;
        match entry.encode() {
            Ok(value) => write(
                facts.store.clone(),
                StoreRequest::Put {
                    key: facts.key.clone(),
                    value,
                    ttl,
                },
                &config.metrics,
            ),
            Err(error) => {
                tracing::warn!(key = %facts.key, %error, "entry could not be encoded; not storing")
            }
        }
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
    let recorder = facts.and_then(|facts| recorder(&parts, facts, config));
    let status = CacheStatus::Forwarded {
        reason,
        stored: recorder.is_some(),
    };
    let mut response = Response::from_parts(parts, CacheBody::origin(body, recorder));
    mark(&mut response, status, config);
    response
}

fn recorder<St: Store>(
    parts: &http::response::Parts,
    facts: RequestFacts<St>,
    config: &Config,
) -> Option<Recorder> {
    let response_time = config.clock.now();
    let response = ResponseFacts {
        status: parts.status,
        headers: &parts.headers,
        cc: CacheControl::parse(&parts.headers),
        response_time,
    };
    if let Err(refusal) = response.storable(config.mode, &facts.method, &facts.headers, &facts.cc) {
        tracing::debug!(key = %facts.key, %refusal, "not storing");
        return None;
    }
    let vary = policy::vary_names(&parts.headers)
        .unwrap_or_default()
        .into_iter()
        .map(|name| {
            let value = policy::vary_value(&facts.headers, &name);
            (name, value)
        })
        .collect();
    let ttl = response.freshness_lifetime(config.mode) + policy::KEEP_STALE;
    let head = Entry {
        status: parts.status,
        version: parts.version,
        headers: end_to_end(&parts.headers),
        vary,
        request_time: facts.time,
        response_time,
        body: Bytes::new(),
    };
    // A HEAD response's Content-Length describes the GET body it stands for.
    let expected = (facts.method != Method::HEAD)
        .then(|| {
            parts
                .headers
                .get(CONTENT_LENGTH)?
                .to_str()
                .ok()?
                .parse::<u64>()
                .ok()
        })
        .flatten();
    let RequestFacts { key, store, .. } = facts;
    let metrics = config.metrics.clone();
    Recorder::new(config.max_body_bytes, expected, move |body| {
        let entry = Entry { body, ..head };
        match entry.encode() {
            Ok(value) => write(store, StoreRequest::Put { key, value, ttl }, &metrics),
            Err(error) => tracing::warn!(%key, %error, "entry could not be encoded; not storing"),
        }
    })
}

/// The headers a cache keeps: all but the hop-by-hop ones and those `Connection` names
/// (RFC 9111 §3.1).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    const HOP_BY_HOP: [&str; 6] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
    ];
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let mut kept = headers.clone();
    for name in HOP_BY_HOP {
        kept.remove(name);
    }
    for name in listed {
        kept.remove(name);
    }
    kept
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

/// Writes to the store without delaying the response: a store that answers at once (as
/// memory does) is done inline, anything slower finishes on a spawned task.
fn write<St: Store>(store: St, request: StoreRequest, metrics: &Metrics) {
    let mut write = Box::pin(tower::ServiceExt::oneshot(store, request));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let pending = match write.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(_)) => return,
        Poll::Ready(Err(error)) => return write_failed(&error, metrics),
        Poll::Pending => write,
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let metrics = metrics.clone();
            runtime.spawn(async move {
                if let Err(error) = pending.await {
                    write_failed(&error, &metrics);
                }
            });
        }
        Err(_) => tracing::warn!("cache store write needs a Tokio runtime to finish; skipped"),
    }
}

fn write_failed(error: &BoxError, metrics: &Metrics) {
    metrics.store_error();
    tracing::warn!(%error, "cache store write failed; skipped");
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
