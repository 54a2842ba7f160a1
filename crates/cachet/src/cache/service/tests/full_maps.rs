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

fn get() -> Request<()> {
    Request::get("http://example.com/x")
        .body(())
        .expect("a valid request")
}

const VALIDATED: &[(&str, &str)] = &[("cache-control", "max-age=60"), ("etag", "\"v1\"")];

#[tokio::test]
async fn an_origin_response_with_a_full_map_goes_without_cache_status_but_with_its_extension() {
    let origin = service_fn(|_: Request<()>| async {
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
    let origin = service_fn(move |request: Request<()>| {
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

#[tokio::test]
async fn a_304_with_more_fields_than_an_entry_keeps_is_served_with_its_age() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let origin = service_fn(move |_: Request<()>| {
        let call = counted.fetch_add(1, SeqCst);
        async move {
            if call == 0 {
                return Ok::<_, Infallible>(response(StatusCode::OK, VALIDATED));
            }
            let mut not_modified = response(StatusCode::NOT_MODIFIED, &[]);
            *not_modified.headers_mut() = full_map();
            not_modified.headers_mut().remove("x-0");
            not_modified
                .headers_mut()
                .insert("etag", HeaderValue::from_static("\"v1\""));
            Ok(not_modified)
        }
    });
    let cache = CacheLayer::new(MemoryStore::default())
        .clock(clock.clone())
        .layer(origin);
    let first = cache.clone().oneshot(get()).await.expect("an answer");
    first.into_body().collect().await.expect("the body");
    clock.advance(Duration::from_secs(120));

    let revalidated = cache.oneshot(get()).await.expect("an answer, not a panic");
    assert_eq!(revalidated.status(), StatusCode::OK);
    assert!(revalidated.headers().contains_key("age"));
    assert!(revalidated.headers().len() <= crate::entry::MAX_HEADER_FIELDS + 2);
    let body = revalidated.into_body().collect().await.expect("the body");
    assert_eq!(body.to_bytes(), "origin");
}
