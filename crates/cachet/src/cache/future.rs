use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body::Body;
use pin_project::pin_project;
use tokio::sync::oneshot;
use tokio::time::Timeout;
use tower::Service;

use super::ForwardReason;
use super::answer::{Step, examine, make_conditional, only_if_cached_miss, stale_while_revalidate};
use super::body::CacheBody;
use super::coalesce::{Handed, Join, Leader};
use super::handle::StoreHandle;
use super::kept::KeptHeaders;
use super::layer::{Config, OnBadSignature};
use super::refresh::{self, Claim};
use super::stored;
use super::write::{self, Sent};
use crate::OneLine;
use crate::entry::{Entry, Variants};
use crate::policy::{Configured, RequestDirectives};
use crate::store::{Store, StoreRequest, StoreResponse};
use crate::verify::BadSignature;
use crate::{BoxError, CacheKey, Error};

/// What the cache knows of a request it may answer or store a response for.
pub(crate) struct RequestFacts<St> {
    pub(crate) key: CacheKey,
    pub(crate) store: StoreHandle<St>,
    pub(crate) method: Method,
    pub(crate) cc: RequestDirectives,
    /// Whether the request carries `If-None-Match` or `If-Modified-Since`.
    pub(crate) validators: bool,
    /// Whether the request carries `Range`, `If-Match`, `If-Unmodified-Since` or
    /// `If-Range`.
    pub(crate) conditions: bool,
    /// Whether the request carries `Authorization` (RFC 9111 §3.5).
    pub(crate) authorization: bool,
    pub(crate) time: SystemTime,
    /// The request's headers, kept when it is forwarded (for `Vary` and §3.5).
    pub(crate) headers: KeptHeaders,
    /// The variant index found under the URI's key, if any.
    pub(crate) seen: Option<Variants>,
    /// The key of this request's variant, once `seen` names the headers it varies on.
    pub(crate) variant: Option<CacheKey>,
    /// The request's headers as the variant's key saw them, when that view is not the
    /// headers themselves (a credential or a cookie digested, a header left out): the
    /// entry found under the key is matched against it without digesting again.
    pub(crate) view: Option<Box<HeaderMap>>,
    /// Whether this request waited for another's fetch (its answer is `Collapsed`).
    pub(crate) collapsed: bool,
    /// Whether any stored response serves, however stale (`ForceCache`, `OnlyIfCached`).
    pub(crate) force: bool,
    /// The freshness lifetime configuration gives the response.
    pub(crate) configured: Option<Configured>,
    /// Where the key stood among the cache's invalidations when the request was sent to
    /// the origin; `None` until then.
    pub(crate) sent: Option<Sent>,
    /// Where the key stood among the cache's invalidations when a coalescing leader looked
    /// again: what that look finds is shared with it, for waiters to judge.
    pub(crate) looked_again: Option<Sent>,
    /// An unsafe method's URI (one cached by its body), taken when it is sent:
    /// invalidated, as any unsafe method's is, when its response is not stored (RFC 9111
    /// §4.4).
    pub(crate) invalidates: Option<Box<Uri>>,
}

impl<St> RequestFacts<St> {
    /// Notes what a request sent to the origin owes: where its key stood among the
    /// cache's invalidations, and an unsafe method's URI.
    pub(crate) fn sending<B>(&mut self, request: &Request<B>, config: &Config) {
        self.sent = Some(config.invalidations.sending(&self.key));
        if !matches!(self.method, Method::GET | Method::HEAD) && request.uri().authority().is_some()
        {
            self.invalidates = Some(Box::new(request.uri().clone()));
        }
    }
}

/// What the cache does with the inner service's response.
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
pub(crate) struct Stale {
    entry: Box<Entry>,
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
    /// Its entry is boxed: it is rare, and the future stays small for the hits.
    stale: Option<Stale>,
    /// This request fetches for others waiting on the same key.
    leader: Option<Leader>,
    /// How many coalesced fetches had finished before the lookup (see `Inflight`).
    finished_before: u64,
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
            State::Wait { .. } => "wait",
            State::Ready { .. } => "ready",
            State::Forward { .. } => "forward",
            State::OnlyIfCached => "only-if-cached",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

#[pin_project(project = StateProj)]
enum State<S, St, ReqB>
where
    S: Service<Request<ReqB>>,
    St: Store,
{
    Lookup {
        #[pin]
        lookup: StoreCall<St::Future>,
        forward: Option<(S, Request<ReqB>)>,
    },
    /// Waiting for another request's fetch of the same key. Boxed: a timer is large,
    /// and only a waiter pays for its room. The service is a clone not made ready: the
    /// one `poll_ready` readied is let go, with whatever it reserved (a slot of a
    /// concurrency limit, a buffer's), so that a wait holds none.
    Wait {
        wait: Pin<Box<Timeout<oneshot::Receiver<Handed>>>>,
        forward: Option<(S, Request<ReqB>)>,
    },
    /// A waiter that must ask the origin after all, getting its service ready.
    Ready {
        forward: Option<(S, Request<ReqB>)>,
    },
    Forward {
        #[pin]
        future: S::Future,
    },
    /// Answered `504` without asking the origin: nothing is stored for the request.
    OnlyIfCached,
    Done,
}

impl<S, St, ReqB> ResponseFuture<S, St, ReqB>
where
    S: Service<Request<ReqB>>,
    St: Store,
{
    // Inlined into `Cache::call`, so the future is built where it is returned, not copied.
    #[inline]
    pub(crate) fn lookup(
        service: S,
        request: Request<ReqB>,
        facts: RequestFacts<St>,
        lookup: StoreCall<St::Future>,
        finished_before: u64,
        config: Arc<Config>,
    ) -> Self {
        Self {
            state: State::Lookup {
                lookup,
                forward: Some((service, request)),
            },
            plan: Plan::Cache(facts),
            reason: ForwardReason::Miss,
            stale: None,
            leader: None,
            finished_before,
            config,
        }
    }

    /// A request that wants only what is stored, and has nothing stored for it.
    pub(crate) fn only_if_cached(config: Arc<Config>) -> Self {
        Self::looking_nothing_up(
            State::OnlyIfCached,
            Plan::Pass,
            ForwardReason::Bypass,
            config,
        )
    }

    pub(crate) fn forward(
        future: S::Future,
        plan: Plan<St>,
        reason: ForwardReason,
        config: Arc<Config>,
    ) -> Self {
        Self::looking_nothing_up(State::Forward { future }, plan, reason, config)
    }

    fn looking_nothing_up(
        state: State<S, St, ReqB>,
        plan: Plan<St>,
        reason: ForwardReason,
        config: Arc<Config>,
    ) -> Self {
        Self {
            state,
            plan,
            reason,
            stale: None,
            leader: None,
            finished_before: 0,
            config,
        }
    }
}

impl<S, St, ReqB, ResB> Future for ResponseFuture<S, St, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + 'static,
    St: Store,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    type Output = Result<Response<CacheBody<ResB>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Lookup {
                    mut lookup,
                    forward,
                } => {
                    let Plan::Cache(facts) = this.plan else {
                        unreachable!("only cacheable requests are looked up")
                    };
                    let found = ready!(lookup.as_mut().poll_with(&mut facts.store, cx));
                    // Borrowed, not moved out: a hit drops the request where it lies.
                    let (_, request) = forward.as_mut().expect("a lookup forwards at most once");
                    let mut found_value = None;
                    let store_answered = found.is_ok();
                    let step = match found {
                        Ok(StoreResponse::Found(value)) => {
                            let step = match stored::decode(&value, this.config) {
                                Ok(decoded) => {
                                    examine(&decoded.stored, facts, request.headers(), this.config)
                                }
                                Err(error) => {
                                    tracing::debug!(key = %facts.key, %error, "stored entry is unusable");
                                    Step::Forward(None)
                                }
                            };
                            found_value = Some(value);
                            step
                        }
                        Ok(_) => {
                            let varies = facts
                                .seen
                                .as_ref()
                                .is_some_and(|seen| !seen.names.is_empty());
                            Step::Forward(Some(if varies {
                                ForwardReason::VaryMiss
                            } else {
                                ForwardReason::UriMiss
                            }))
                        }
                        Err(error) => {
                            if let Some(error) = store_failed(error, facts, this.config) {
                                this.state.set(State::Done);
                                return Poll::Ready(Err(error));
                            }
                            Step::Forward(None)
                        }
                    };
                    let mut original_headers = None;
                    match step {
                        Step::Hit(response) => {
                            // A leader that found the entry on its second look shares it.
                            if let (Some(leader), Some(value)) = (this.leader.take(), &found_value)
                            {
                                leader.share(value, facts.looked_again);
                            }
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(response));
                        }
                        Step::Variant(variant) => {
                            // What a fetch of this variant finished from here on, a join
                            // on its key compares with.
                            *this.finished_before = this.config.inflight.finished(&variant);
                            facts.variant = Some(variant.clone());
                            lookup.set(StoreCall::unless_marked(&facts.key, variant, this.config));
                            continue;
                        }
                        Step::Forward(reason) => {
                            if let Some(reason) = reason {
                                *this.reason = reason;
                            }
                        }
                        Step::Stale(entry, reason) => {
                            *this.reason = reason;
                            let headers = KeptHeaders::new(request.headers());
                            // Validators condition a read; on another method (a POST
                            // keyed by its body) they would condition a change.
                            let readable = matches!(*request.method(), Method::GET | Method::HEAD);
                            let conditional =
                                readable && make_conditional(&entry, request.headers_mut());
                            if let Some((response, claim)) =
                                stale_while_revalidate(&entry, facts, this.config)
                            {
                                if let Claim::Started(guard) = claim {
                                    let (mut service, mut request) =
                                        forward.take().expect("a lookup forwards at most once");
                                    // The client has its answer: the refresh is the
                                    // cache's own, conditioned on the entry's validators,
                                    // not the client's, so that its 304 freshens the entry.
                                    let conditional = conditional
                                        || (readable
                                            && own_validators_dropped(request.headers_mut())
                                            && make_conditional(&entry, request.headers_mut()));
                                    let Plan::Cache(mut facts) =
                                        std::mem::replace(this.plan, Plan::Pass)
                                    else {
                                        unreachable!("only cacheable requests are looked up")
                                    };
                                    facts.headers = headers;
                                    facts.sending(&request, this.config);
                                    let stale = Stale { entry, conditional };
                                    refresh::spawn(
                                        service.call(request),
                                        facts,
                                        stale,
                                        this.config.clone(),
                                        guard,
                                    );
                                }
                                this.state.set(State::Done);
                                return Poll::Ready(Ok(response));
                            }
                            original_headers = Some(headers);
                            *this.stale = Some(Stale { entry, conditional });
                        }
                    }
                    if facts.cc.only_if_cached {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(only_if_cached_miss(Some(&facts.key), this.config)));
                    }
                    if let Some(wait) = this.config.coalesce_wait
                        && this.leader.is_none()
                        && this.stale.is_none()
                        && coalescible(*this.reason, facts)
                    {
                        // A miss of one variant waits for no other variant's fetch.
                        let key = facts.variant.as_ref().unwrap_or(&facts.key);
                        match this.config.inflight.join(key) {
                            Join::Leader(leader)
                                if !store_answered
                                    || this.config.inflight.finished(key)
                                        == *this.finished_before =>
                            {
                                *this.leader = Some(leader);
                            }
                            Join::Leader(leader) => {
                                // A fetch that finished between this request's lookup and
                                // its join may have stored its response: look once more.
                                *this.leader = Some(leader);
                                facts.seen = None;
                                facts.variant = None;
                                facts.view = None;
                                facts.looked_again =
                                    Some(this.config.invalidations.sending(&facts.key));
                                // Not while the key is being marked, as in `dispatch`.
                                lookup.set(StoreCall::unless_marked(
                                    &facts.key,
                                    facts.key.clone(),
                                    this.config,
                                ));
                                continue;
                            }
                            Join::Waiter(receiver) => {
                                facts.collapsed = true;
                                let forward = forward
                                    .take()
                                    .map(|(service, request)| (service.clone(), request));
                                this.state.set(State::Wait {
                                    wait: Box::pin(tokio::time::timeout(wait, receiver)),
                                    forward,
                                });
                                continue;
                            }
                            // Not waited for: it goes to the origin on its own.
                            Join::Overdue => {}
                        }
                    }
                    let (mut service, request) =
                        forward.take().expect("a lookup forwards at most once");
                    facts.headers =
                        original_headers.unwrap_or_else(|| KeptHeaders::new(request.headers()));
                    facts.sending(&request, this.config);
                    let future = service.call(request);
                    this.state.set(State::Forward { future });
                }
                StateProj::Wait { wait, forward } => {
                    let outcome = ready!(wait.as_mut().poll(cx));
                    let Plan::Cache(facts) = this.plan else {
                        unreachable!("only cacheable requests wait")
                    };
                    let (service, request) = forward.take().expect("a wait forwards at most once");
                    if outcome.is_err() {
                        // Waited as long as it may: the fetch may stream for as long as
                        // its client reads, and no one else waits for it.
                        let key = facts.variant.as_ref().unwrap_or(&facts.key);
                        this.config.inflight.give_up(key);
                    }
                    // What was read or fetched before an invalidation counted since (this
                    // request may have joined after it) is not taken (RFC 9111 §4.4).
                    if let Ok(Ok((value, sent))) = outcome
                        && !this.config.invalidations.since(sent)
                        && let Ok(decoded) = stored::decode(&value, this.config)
                        && let Step::Hit(response) =
                            examine(&decoded.stored, facts, request.headers(), this.config)
                    {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(response));
                    }
                    tracing::trace!(key = %facts.key, "the fetch waited for gave nothing to share; asking the origin");
                    facts.collapsed = false;
                    facts.headers = KeptHeaders::new(request.headers());
                    this.state.set(State::Ready {
                        forward: Some((service, request)),
                    });
                }
                StateProj::Ready { forward } => {
                    let (service, _) = forward.as_mut().expect("made ready at most once");
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::upstream(error)));
                    }
                    let Plan::Cache(facts) = this.plan else {
                        unreachable!("only cacheable requests wait")
                    };
                    let (mut service, request) = forward.take().expect("made ready at most once");
                    facts.sending(&request, this.config);
                    let future = service.call(request);
                    this.state.set(State::Forward { future });
                }
                StateProj::Forward { future } => {
                    let result = ready!(future.poll(cx));
                    this.state.set(State::Done);
                    // Borrowed: the plan is dropped with the future, not moved again.
                    return Poll::Ready(finish(
                        result,
                        this.plan,
                        this.leader.take(),
                        this.stale.take(),
                        *this.reason,
                        this.config,
                    ));
                }
                StateProj::OnlyIfCached => {
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(only_if_cached_miss(None, this.config)));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// Takes a request's own `If-None-Match` and `If-Modified-Since` off; whether it had
/// either.
fn own_validators_dropped(headers: &mut HeaderMap) -> bool {
    let had = headers.remove(IF_NONE_MATCH).is_some();
    headers.remove(IF_MODIFIED_SINCE).is_some() || had
}

/// Whether a forwarded request may wait for a concurrent fetch of the same key instead:
/// a plain miss, with no conditions or reload of its own.
fn coalescible<St>(reason: ForwardReason, facts: &RequestFacts<St>) -> bool {
    matches!(
        reason,
        ForwardReason::UriMiss | ForwardReason::Miss | ForwardReason::VaryMiss
    ) && !facts.cc.no_cache
        && !facts.validators
        && !facts.conditions
}

/// Handles a failed store read: the error for the caller when it is a bad signature and
/// the cache is set to report those, else `None` (the cache asks the origin).
fn store_failed<St: Store>(
    error: BoxError,
    facts: &RequestFacts<St>,
    config: &Config,
) -> Option<Error> {
    let Some(bad) = find_bad_signature(&*error) else {
        config.metrics.store_error();
        tracing::warn!(key = %facts.key, error = %OneLine(&*error), "cache store read failed; asking the origin");
        return None;
    };
    config.metrics.bad_signature();
    if config.on_bad_signature == OnBadSignature::Error {
        tracing::warn!(key = %facts.key, error = %bad, "refusing a tampered cache entry");
        return Some(Error::bad_signature(bad.key().clone(), error));
    }
    tracing::warn!(key = %facts.key, error = %bad, "deleting a tampered cache entry and asking the origin");
    if config.read_only {
        return None;
    }
    write::write(
        facts.store.cloned(),
        StoreRequest::Delete(bad.key().clone()),
        &config.metrics,
    );
    None
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

mod finish;
mod store_call;

pub(crate) use finish::finish;
pub(crate) use store_call::StoreCall;
