//! What an answer says it was and what it counts: `Cache-Status` (RFC 9211) and
//! [`Metrics`](crate::Metrics), where a revalidation or a stale response stands in.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

use crate::clock::ManualClock;
use crate::{CacheLayer, CacheStatus, MemoryStore};

/// `Metrics::forwarded` counts "requests sent on to the inner service, for any reason"
/// and `hits` "requests answered from the cache": a stale response standing in for a
/// failing origin (`stale-if-error`) was both, and counts as neither.
#[tokio::test]
async fn a_stale_if_error_answer_is_counted() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let origin = service_fn(move |_: Request<String>| {
        let call = counter.fetch_add(1, SeqCst);
        async move {
            let response = if call == 0 {
                Response::builder()
                    .header("cache-control", "max-age=60, stale-if-error=600")
                    .body(Full::new(Bytes::from_static(b"ok")))
            } else {
                Response::builder()
                    .status(503)
                    .body(Full::new(Bytes::from_static(b"down")))
            };
            Ok::<_, Infallible>(response.expect("valid"))
        }
    });
    let clock = ManualClock::new();
    let layer = CacheLayer::new(MemoryStore::default()).clock(clock.clone());
    let metrics = layer.metrics();
    let cache = layer.layer(origin);
    let get = || {
        Request::get("https://example.com/x")
            .body(String::new())
            .expect("valid")
    };
    let first = cache.clone().oneshot(get()).await.expect("answered");
    first.into_body().collect().await.expect("body");
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    clock.advance(Duration::from_secs(120));
    let before = (metrics.hits(), metrics.forwarded(), metrics.stale());
    let stale = cache.oneshot(get()).await.expect("answered");
    assert_eq!(
        stale.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::StaleIfError {
            origin_status: Some(503)
        })
    );
    assert_eq!(calls.load(SeqCst), 2, "the origin was asked");
    let after = (metrics.hits(), metrics.forwarded(), metrics.stale());
    assert_eq!(
        (before.0, before.1 + 1, before.2 + 1),
        after,
        "sent on, with a stale response, and answered by it: forwarded and stale"
    );
}

/// An origin that answers first `max-age=60` with an `ETag`, then a `304` confirming it to
/// every request, each of which must carry the entry's validator.
fn confirming_origin() -> impl tower::Service<
    Request<String>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone {
    let calls = Arc::new(AtomicUsize::new(0));
    service_fn(move |request: Request<String>| {
        let first = calls.fetch_add(1, SeqCst) == 0;
        async move {
            let response = if first {
                Response::builder()
                    .header("cache-control", "max-age=60")
                    .header("etag", "\"v1\"")
                    .body(Full::new(Bytes::from_static(b"ok")))
            } else {
                assert!(request.headers().contains_key("if-none-match"));
                Response::builder()
                    .status(304)
                    .header("etag", "\"v1\"")
                    .body(Full::new(Bytes::new()))
            };
            Ok::<_, Infallible>(response.expect("valid"))
        }
    })
}

/// RFC 9211 §2.2: a fresh entry that the request's own `no-cache` (or `max-age=0`) sends
/// to the origin is `fwd=request`, also when a 304 confirms it, and no stale response is
/// counted.
#[tokio::test]
async fn rfc9211_2_2_a_reload_revalidating_a_fresh_entry_is_fwd_request_not_stale() {
    let origin = confirming_origin();
    let layer = CacheLayer::new(MemoryStore::default())
        .cache_status_header(true)
        .clock(ManualClock::new());
    let metrics = layer.metrics();
    let cache = layer.layer(origin);
    let first = cache
        .clone()
        .oneshot(
            Request::get("https://example.com/x")
                .body(String::new())
                .expect("valid"),
        )
        .await
        .expect("answered");
    first.into_body().collect().await.expect("body");
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    for directive in ["no-cache", "max-age=0"] {
        let reload = Request::get("https://example.com/x")
            .header("cache-control", directive)
            .body(String::new())
            .expect("valid");
        let response = cache.clone().oneshot(reload).await.expect("answered");
        let header = response.headers().get("cache-status").cloned();
        assert_eq!(
            header.as_ref().and_then(|v| v.to_str().ok()).map(|v| v
                .split("; ttl")
                .next()
                .unwrap_or(v)
                .to_owned()),
            Some("cachet; fwd=request; fwd-status=304; stored".to_owned()),
            "{directive}: the entry was fresh; the request is why it went forward"
        );
    }
    assert_eq!(metrics.stale(), 0, "no stale response was involved");
}

/// RFC 9211 §2.2: `fwd=request` is for a *fresh* response the request refused. A stale
/// entry that a `no-cache` request revalidates is `fwd=stale`, and counted stale; a
/// `no-cache` request with nothing stored is a miss like any other.
#[tokio::test]
async fn rfc9211_2_2_a_stale_entry_or_a_miss_under_no_cache_is_not_fwd_request() {
    let origin = confirming_origin();
    let clock = ManualClock::new();
    let layer = CacheLayer::new(MemoryStore::default())
        .cache_status_header(true)
        .clock(clock.clone());
    let metrics = layer.metrics();
    let cache = layer.layer(origin);
    let no_cache = || {
        Request::get("https://example.com/x")
            .header("cache-control", "no-cache")
            .body(String::new())
            .expect("valid")
    };
    let miss = cache.clone().oneshot(no_cache()).await.expect("answered");
    assert_eq!(
        miss.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Forwarded {
            reason: crate::ForwardReason::UriMiss,
            stored: true
        })
    );
    miss.into_body().collect().await.expect("body");
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    clock.advance(Duration::from_secs(120));
    let response = cache.clone().oneshot(no_cache()).await.expect("answered");
    assert_eq!(
        response.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Revalidated {
            reason: crate::ForwardReason::Stale,
            stored: true
        }),
        "{:?}",
        response.headers().get("cache-status")
    );
    assert_eq!(metrics.stale(), 1, "the stored response was stale");
}
