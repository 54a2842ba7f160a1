use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tokio_test::{assert_pending, assert_ready_ok};
use tower_test::mock;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use tokio::sync::oneshot;
use tower::Service;

use crate::store::{StoreRequest, StoreResponse};
use crate::{BoxError, CacheLayer, CacheStatus, MemoryStore};

type Handle = mock::Handle<Request<String>, Response<Full<Bytes>>>;

fn get(uri: &str) -> Request<String> {
    Request::get(uri)
        .body(String::new())
        .expect("test requests are valid")
}

fn fresh(body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .header("cache-control", "max-age=60")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("test responses are valid")
}

async fn answer(handle: &mut Handle, response: Response<Full<Bytes>>) {
    let (_, send) = handle
        .next_request()
        .await
        .expect("the inner service is called");
    send.send_response(response);
}

#[tokio::test]
async fn a_get_with_content_neither_hits_nor_is_stored() {
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(MemoryStore::default()));
    let with_content = |announced: (&str, &str)| {
        Request::get("http://example.com/search")
            .header(announced.0, announced.1)
            .body(String::new())
            .expect("test requests are valid")
    };
    handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    let miss = cache.call(get("http://example.com/search"));
    let ((), response) = tokio::join!(answer(&mut handle, fresh("plain")), miss);
    let body = response.expect("a miss").into_body().collect().await;
    assert_eq!(body.expect("completes").to_bytes(), "plain");

    for announced in [("content-length", "5"), ("transfer-encoding", "chunked")] {
        handle.allow(1);
        assert_ready_ok!(cache.poll_ready());
        let call = cache.call(with_content(announced));
        let ((), response) = tokio::join!(answer(&mut handle, fresh("by content")), call);
        let response = response.expect("passed through");
        assert_eq!(
            response.extensions().get::<CacheStatus>(),
            Some(&CacheStatus::Forwarded {
                reason: crate::ForwardReason::Bypass,
                stored: false
            }),
            "{announced:?}"
        );
    }
    // What was stored for the plain GET is still what it gets; `Content-Length: 0`
    // announces nothing.
    handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    let hit = cache
        .call(with_content(("content-length", "0")))
        .await
        .expect("a hit");
    assert_eq!(
        hit.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Hit)
    );
    let body = hit.into_body().collect().await;
    assert_eq!(body.expect("completes").to_bytes(), "plain");
}

#[tokio::test]
async fn a_fresh_hit_never_calls_the_inner_service() {
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(MemoryStore::default()));
    handle.allow(1);

    assert_ready_ok!(cache.poll_ready());
    let miss = cache.call(get("http://example.com/a"));
    let ((), response) = tokio::join!(answer(&mut handle, fresh("first")), miss);
    let body = response
        .expect("a miss succeeds")
        .into_body()
        .collect()
        .await;
    assert_eq!(body.expect("bodies complete").to_bytes(), "first");

    handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    let hit = cache
        .call(get("http://example.com/a"))
        .await
        .expect("a hit succeeds");
    assert_eq!(
        hit.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Hit)
    );
    assert_eq!(
        hit.into_body()
            .collect()
            .await
            .expect("stored bodies complete")
            .to_bytes(),
        "first"
    );
    assert_pending!(handle.poll_request());
}

/// A memory store whose next GET, once armed with a gate, reads at once but answers
/// only when the gate opens: a stand-in for a remote store's round trip.
#[derive(Clone)]
struct Gated {
    memory: MemoryStore,
    gate: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
    gets: Arc<AtomicUsize>,
}

impl Gated {
    fn new() -> Self {
        Self {
            memory: MemoryStore::default(),
            gate: Arc::default(),
            gets: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Holds the next GET's answer until the returned sender sends.
    fn arm(&self) -> oneshot::Sender<()> {
        let (open, gate) = oneshot::channel();
        *self.gate.lock().expect("not poisoned") = Some(gate);
        open
    }
}

/// A GET's answer, read at once, and the gate it waits for, if any.
struct GatedFuture {
    answer: Option<Result<StoreResponse, BoxError>>,
    gate: Option<oneshot::Receiver<()>>,
}

impl Future for GatedFuture {
    type Output = Result<StoreResponse, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(gate) = self.gate.as_mut() {
            // A dropped sender opens the gate as well.
            let _ = ready!(Pin::new(gate).poll(cx));
            self.gate = None;
        }
        Poll::Ready(self.answer.take().expect("polled after completion"))
    }
}

impl Service<StoreRequest> for Gated {
    type Response = StoreResponse;
    type Error = BoxError;
    type Future = GatedFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: StoreRequest) -> Self::Future {
        let get = matches!(request, StoreRequest::Get(_));
        let gate = if get {
            self.gets.fetch_add(1, SeqCst);
            self.gate.lock().expect("not poisoned").take()
        } else {
            None
        };
        let answer = self.memory.call(request).into_inner();
        GatedFuture {
            answer: Some(answer),
            gate,
        }
    }
}

#[tokio::test]
async fn a_miss_that_read_the_store_before_a_fetch_finished_looks_again_and_hits() {
    let store = Gated::new();
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(store.clone()));
    handle.allow(2);

    // The leader's miss reaches the origin.
    assert_ready_ok!(cache.poll_ready());
    let mut leader = tokio_test::task::spawn(cache.call(get("http://example.com/r")));
    assert_pending!(leader.poll());
    let (_, send) = handle.next_request().await.expect("the leader fetches");

    // A second request reads the store (nothing yet) and is held before it joins.
    let open = store.arm();
    assert_ready_ok!(cache.poll_ready());
    let mut late = tokio_test::task::spawn(cache.call(get("http://example.com/r")));
    assert_pending!(late.poll());

    // The leader's fetch finishes and is stored; then the held read answers NotFound.
    send.send_response(fresh("shared"));
    let body = leader.await.expect("the leader's miss").into_body();
    body.collect().await.expect("the body completes");
    open.send(()).expect("the held read waits for it");
    // Its second look answers at once: a hit, without a wait or a second fetch.
    let response = assert_ready_ok!(late.poll());
    assert_eq!(
        response.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Hit)
    );
    assert_pending!(handle.poll_request());
}

#[tokio::test]
async fn a_miss_reads_the_store_once_when_no_fetch_finished_meanwhile() {
    let store = Gated::new();
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(store.clone()));
    handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    let miss = cache.call(get("http://example.com/once"));
    let ((), response) = tokio::join!(answer(&mut handle, fresh("once")), miss);
    assert!(response.is_ok());
    // A remote store would pay a second round trip for nothing.
    assert_eq!(store.gets.load(SeqCst), 1);
}

#[tokio::test]
async fn a_304_that_starts_to_vary_stores_the_variant_with_this_requests_values() {
    use crate::CacheKey;
    use crate::clock::ManualClock;
    use crate::entry::Record;
    use http::header::COOKIE;
    use tower::ServiceExt;

    let store = MemoryStore::default();
    let clock = ManualClock::new();
    let layer = CacheLayer::new(store.clone()).clock(clock.clone());
    let (mut cache, mut handle) = mock::spawn_layer(layer);
    let alice = || {
        Request::get("http://example.com/x")
            .header(COOKIE, "a")
            .body(String::new())
            .expect("test requests are valid")
    };
    handle.allow(2);
    assert_ready_ok!(cache.poll_ready());
    let first = Response::builder()
        .header("cache-control", "max-age=1")
        .header("etag", "\"v\"")
        .body(Full::new(Bytes::from_static(b"page")))
        .expect("valid");
    let miss = cache.call(alice());
    let ((), response) = tokio::join!(answer(&mut handle, first), miss);
    let body = response.expect("a miss").into_body().collect().await;
    assert!(body.is_ok());

    clock.advance(std::time::Duration::from_secs(2));
    assert_ready_ok!(cache.poll_ready());
    let not_modified = Response::builder()
        .status(304)
        .header("cache-control", "max-age=60")
        .header("vary", "cookie")
        .header("etag", "\"v\"")
        .body(Full::new(Bytes::new()))
        .expect("valid");
    let revalidation = cache.call(alice());
    let ((), response) = tokio::join!(answer(&mut handle, not_modified), revalidation);
    assert_eq!(
        response
            .expect("revalidated")
            .extensions()
            .get::<CacheStatus>(),
        Some(&CacheStatus::Revalidated {
            reason: crate::ForwardReason::Stale,
            stored: true
        })
    );

    let mut cookie_a = http::HeaderMap::new();
    cookie_a.insert(COOKIE, http::HeaderValue::from_static("a"));
    // A cookie is kept as its digest, in the key and in the entry.
    let cookie_a = crate::Keys::new()
        .vary_view(&cookie_a, &[COOKIE])
        .into_owned();
    let digest = cookie_a.get(COOKIE).cloned();
    assert_ne!(
        digest.as_ref().map(|value| value.as_bytes()),
        Some(&b"a"[..])
    );
    let uri: http::Uri = "http://example.com/x".parse().expect("valid");
    let key = CacheKey::for_request(&http::Method::GET, &uri)
        .expect("an absolute URI")
        .variant(&[COOKIE], &cookie_a);
    let Ok(StoreResponse::Found(value)) = store.oneshot(StoreRequest::Get(key)).await else {
        panic!("the variant is stored under this request's cookie")
    };
    let Ok(Record::Response(entry)) = Record::decode(value.bytes()) else {
        panic!("a response entry")
    };
    assert_eq!(entry.vary, vec![(COOKIE, digest)]);
}

#[test]
fn the_headers_a_lookup_reads_are_found_in_short_and_long_maps() {
    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::Present;

    for extra in [0, 40] {
        let mut headers = HeaderMap::new();
        for i in 0..extra {
            let name = HeaderName::try_from(format!("x-filler-{i}")).expect("a valid name");
            headers.insert(name, HeaderValue::from_static("1"));
        }
        let present = Present::scan(&headers);
        assert!(!present.directives && !present.validators);
        headers.insert("pragma", HeaderValue::from_static("no-cache"));
        assert!(Present::scan(&headers).directives);
        assert!(!Present::scan(&headers).validators);
        headers.insert("if-modified-since", HeaderValue::from_static("x"));
        assert!(Present::scan(&headers).validators);
        assert!(!Present::scan(&headers).conditions);
        headers.insert("range", HeaderValue::from_static("bytes=0-1"));
        assert!(Present::scan(&headers).conditions);
        assert!(!Present::scan(&headers).authorization);
        headers.insert("authorization", HeaderValue::from_static("Bearer x"));
        assert!(Present::scan(&headers).authorization);
    }
}

#[tokio::test]
async fn a_request_that_joins_after_the_response_arrived_still_shares_it() {
    use crate::clock::ManualClock;

    let clock = ManualClock::new();
    let layer = CacheLayer::new(MemoryStore::default()).clock(clock.clone());
    let (mut cache, mut handle) = mock::spawn_layer(layer);
    handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    let leader = cache.call(get("http://example.com/slow-body"));
    let ((), leader) = tokio::join!(answer(&mut handle, fresh("shared")), leader);
    let leader = leader.expect("the leader's miss");

    // The response has arrived, its body not yet: the fetch is still in flight when a
    // request that began later joins it.
    clock.advance(std::time::Duration::from_secs(1));
    handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    let mut waiter = tokio_test::task::spawn(cache.call(get("http://example.com/slow-body")));
    assert_pending!(waiter.poll());
    leader
        .into_body()
        .collect()
        .await
        .expect("the body completes");
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .expect("answered from the shared fetch, not sent to the origin")
        .expect("the waiter's answer");
    assert_eq!(
        response.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Collapsed)
    );
    assert_pending!(handle.poll_request(), "the origin was asked once");
}

mod coalescing;
mod invalidation;
mod readiness;

/// What a miss whose response may not be stored is marked.
const UNSTORED_MISS: CacheStatus = CacheStatus::Forwarded {
    reason: crate::ForwardReason::UriMiss,
    stored: false,
};

#[tokio::test]
async fn a_response_with_more_header_fields_than_an_entry_may_have_is_passed_on_unstored() {
    use tower::{Layer, ServiceExt};

    let origin = tower::service_fn(|_: Request<String>| async {
        let mut response = fresh("many");
        for _ in 0..30_000 {
            response
                .headers_mut()
                .append("x-a", http::HeaderValue::from_static("1"));
        }
        Ok::<_, std::convert::Infallible>(response)
    });
    let cache = CacheLayer::new(MemoryStore::default()).layer(origin);
    for _ in 0..2 {
        let response = cache
            .clone()
            .oneshot(get("http://example.com/many"))
            .await
            .expect("answered");
        assert_eq!(
            response.extensions().get::<CacheStatus>(),
            Some(&UNSTORED_MISS)
        );
        assert_eq!(response.headers().get_all("x-a").iter().count(), 30_000);
    }
}

#[tokio::test]
async fn a_response_that_varies_on_more_headers_than_an_index_may_name_is_passed_on_unstored() {
    use tower::{Layer, ServiceExt};

    let vary: Vec<String> = (0..=crate::entry::MAX_VARIANT_NAMES)
        .map(|i| format!("x-{i}"))
        .collect();
    let vary = vary.join(", ");
    let origin = tower::service_fn(move |_: Request<String>| {
        let mut response = fresh("varied");
        response.headers_mut().insert(
            "vary",
            http::HeaderValue::from_str(&vary).expect("a valid value"),
        );
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let cache = CacheLayer::new(MemoryStore::default()).layer(origin);
    let response = cache
        .oneshot(get("http://example.com/varied"))
        .await
        .expect("answered");
    assert_eq!(
        response.extensions().get::<CacheStatus>(),
        Some(&UNSTORED_MISS)
    );
}

/// A body of `count` frames, each `frame`.
struct Frames {
    count: usize,
    frame: Bytes,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.count == 0 {
            return Poll::Ready(None);
        }
        self.count -= 1;
        Poll::Ready(Some(Ok(http_body::Frame::data(self.frame.clone()))))
    }
}

#[tokio::test]
async fn a_body_in_many_small_or_empty_frames_is_stored_whole() {
    use tower::{Layer, ServiceExt};

    let origin = tower::service_fn(|request: Request<String>| async move {
        let frames = match request.uri().path() {
            // Two million empty frames: nothing to keep.
            "/empty" => Frames {
                count: 2_000_000,
                frame: Bytes::new(),
            },
            // Seventy thousand one-byte frames, kept in a few copied-together chunks.
            _ => Frames {
                count: 70_000,
                frame: Bytes::from_static(b"x"),
            },
        };
        let response = Response::builder()
            .header("cache-control", "max-age=60")
            .body(frames)
            .expect("valid");
        Ok::<_, std::convert::Infallible>(response)
    });
    let cache = CacheLayer::new(MemoryStore::default()).layer(origin);
    let fetch = |path: &'static str| {
        let cache = cache.clone();
        async move {
            let response = cache
                .oneshot(get(&format!("http://example.com{path}")))
                .await
                .expect("answered");
            let status = response.extensions().get::<CacheStatus>().copied();
            let body = response.into_body().collect().await.expect("read whole");
            (status, body.to_bytes())
        }
    };
    fetch("/empty").await;
    assert_eq!(
        fetch("/empty").await,
        (Some(CacheStatus::Hit), Bytes::new())
    );
    let (_, first) = fetch("/pieces").await;
    let (status, again) = fetch("/pieces").await;
    assert_eq!(status, Some(CacheStatus::Hit));
    assert_eq!((again.len(), &again), (70_000, &first));
}

#[tokio::test]
async fn only_if_cached_never_asks_the_origin_even_for_a_request_the_cache_passes() {
    use tower::{Layer, ServiceExt};

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let origin = tower::service_fn(move |_: Request<String>| {
        counted.fetch_add(1, SeqCst);
        async { Ok::<_, std::convert::Infallible>(fresh("origin")) }
    });
    // Asked for by the extension, or by the request's own `Cache-Control` (RFC 9111
    // §5.2.1.7), in any case and among other directives.
    let by_mode = |uri: &str| {
        let mut request = get(uri);
        request
            .extensions_mut()
            .insert(crate::CacheMode::OnlyIfCached);
        request
    };
    let by_header = |uri: &str| {
        let mut request = get(uri);
        request.headers_mut().append(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("max-age=5, Only-If-Cached"),
        );
        request
    };
    let by_header_on_post = |uri: &str| {
        let mut request = by_header(uri);
        *request.method_mut() = http::Method::POST;
        request
    };
    let layers = [
        CacheLayer::new(MemoryStore::default()),
        CacheLayer::new(MemoryStore::default()).methods([]),
    ];
    for layer in layers {
        let cache = layer.layer(origin.clone());
        for uri in ["/relative", "http://user@a.example/x", "http://a.example/x"] {
            for request in [by_mode(uri), by_header(uri), by_header_on_post(uri)] {
                let asked = format!("{} {uri} {:?}", request.method(), request.headers());
                let response = cache.clone().oneshot(request).await.expect("answered");
                assert_eq!(
                    response.status(),
                    http::StatusCode::GATEWAY_TIMEOUT,
                    "{asked}"
                );
                assert_eq!(
                    response.extensions().get::<CacheStatus>(),
                    Some(&CacheStatus::OnlyIfCachedMiss),
                    "{asked}"
                );
            }
        }
    }
    assert_eq!(calls.load(SeqCst), 0, "the origin was never asked");
}

mod framing;
mod full_maps;
mod refresh;
mod status;
