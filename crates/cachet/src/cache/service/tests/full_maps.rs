//! Messages whose header maps hold all the names a map may (24,576): the cache adds no
//! header that does not fit, and panics on none.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use http::header::IF_NONE_MATCH;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

use crate::clock::ManualClock;
use crate::{CacheLayer, CacheStatus, MemoryStore};

/// A map holding as many names as it may.
fn full_map() -> HeaderMap {
    let mut map = HeaderMap::new();
    for i in 0.. {
        let name = HeaderName::from_bytes(format!("x-{i}").as_bytes()).expect("a valid name");
        if map.try_append(name, HeaderValue::from_static("1")).is_err() {
            return map;
        }
    }
    unreachable!("a map's room ends")
}

fn response(status: StatusCode, headers: &[(&str, &str)]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"origin")));
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).expect("a valid name"),
            HeaderValue::from_str(value).expect("a valid value"),
        );
    }
    response
}

fn get() -> Request<String> {
    Request::get("http://example.com/x")
        .body(String::new())
        .expect("a valid request")
}

const VALIDATED: &[(&str, &str)] = &[("cache-control", "max-age=60"), ("etag", "\"v1\"")];

#[tokio::test]
async fn an_origin_response_with_a_full_map_goes_without_cache_status_but_with_its_extension() {
    let origin = service_fn(|_: Request<String>| async {
        let mut response = response(StatusCode::OK, &[]);
        *response.headers_mut() = full_map();
        Ok::<_, Infallible>(response)
    });
    let cache = CacheLayer::new(MemoryStore::default())
        .cache_status_header(true)
        .layer(origin);
    let response = cache.oneshot(get()).await.expect("an answer, not a panic");
    assert!(!response.headers().contains_key("cache-status"));
    assert!(matches!(
        response.extensions().get::<CacheStatus>(),
        Some(CacheStatus::Forwarded { .. })
    ));
}

#[tokio::test]
async fn a_request_with_a_full_map_revalidates_unconditionally() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let origin = service_fn(move |request: Request<String>| {
        let call = counted.fetch_add(1, SeqCst);
        async move {
            // The first request fills the cache; the second, with no room for a
            // condition, must come without one, or its 304 would answer a client that
            // asked for none.
            assert!(call == 0 || !request.headers().contains_key(IF_NONE_MATCH));
            Ok::<_, Infallible>(response(StatusCode::OK, VALIDATED))
        }
    });
    let cache = CacheLayer::new(MemoryStore::default())
        .clock(clock.clone())
        .layer(origin);
    let first = cache.clone().oneshot(get()).await.expect("an answer");
    first.into_body().collect().await.expect("the body");
    clock.advance(Duration::from_secs(120));

    let mut request = get();
    *request.headers_mut() = full_map();
    let second = cache
        .oneshot(request)
        .await
        .expect("an answer, not a panic");
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(calls.load(SeqCst), 2);
}

/// An origin that answers a request 200 with a validator, and a conditional one 304 with
/// the headers `not_modified` makes.
fn revalidating_origin(
    calls: Arc<AtomicUsize>,
    not_modified: fn() -> HeaderMap,
) -> impl tower::Service<
    Request<String>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone {
    service_fn(move |request: Request<String>| {
        calls.fetch_add(1, SeqCst);
        let conditional = request.headers().contains_key(IF_NONE_MATCH);
        async move {
            if !conditional {
                let mut first = response(StatusCode::OK, VALIDATED);
                first.headers_mut().insert(
                    "last-modified",
                    HeaderValue::from_static("Mon, 02 Jan 2006 15:04:05 GMT"),
                );
                return Ok::<_, Infallible>(first);
            }
            let mut answer = response(StatusCode::NOT_MODIFIED, &[]);
            *answer.headers_mut() = not_modified();
            Ok(answer)
        }
    })
}

async fn revalidate(not_modified: fn() -> HeaderMap) -> (Vec<CacheStatus>, usize) {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = CacheLayer::new(MemoryStore::default())
        .clock(clock.clone())
        .layer(revalidating_origin(calls.clone(), not_modified));
    let mut statuses = Vec::new();
    for step in 0..3 {
        if step == 1 {
            clock.advance(Duration::from_secs(120));
        }
        let response = cache
            .clone()
            .oneshot(get())
            .await
            .expect("an answer, not a panic");
        assert_eq!(response.status(), StatusCode::OK);
        statuses.extend(response.extensions().get::<CacheStatus>().copied());
        let body = response.into_body().collect().await.expect("the body");
        assert_eq!(body.to_bytes(), "origin");
    }
    (statuses, calls.load(SeqCst))
}

#[tokio::test]
async fn a_304_with_more_fields_than_a_map_holds_is_served_not_stored() {
    let (statuses, calls) = revalidate(|| {
        let mut headers = full_map();
        headers.remove("x-0");
        headers.insert("etag", HeaderValue::from_static("\"v1\""));
        headers
    })
    .await;
    assert_eq!(
        statuses[1],
        CacheStatus::Revalidated {
            reason: crate::ForwardReason::Stale,
            stored: false
        }
    );
    assert_eq!(calls, 3, "the entry was not stored updated in part");
}

#[tokio::test]
async fn a_304_past_an_entrys_fields_is_not_stored_without_its_private() {
    // The fields fit a map, not an entry; stored cut at the limit, the entry would
    // have lost the `private` that comes last, and be served to the next user.
    let (statuses, calls) = revalidate(|| {
        let mut headers = HeaderMap::new();
        for i in 0..crate::entry::MAX_HEADER_FIELDS {
            let name = HeaderName::from_bytes(format!("x-{i}").as_bytes()).expect("a valid name");
            headers.insert(name, HeaderValue::from_static("1"));
        }
        headers.insert("etag", HeaderValue::from_static("\"v1\""));
        headers.insert(
            "cache-control",
            HeaderValue::from_static("private, max-age=600"),
        );
        headers
    })
    .await;
    assert_eq!(
        statuses[1],
        CacheStatus::Revalidated {
            reason: crate::ForwardReason::Stale,
            stored: false
        }
    );
    assert_ne!(statuses[2], CacheStatus::Hit);
    assert_eq!(calls, 3);
}
