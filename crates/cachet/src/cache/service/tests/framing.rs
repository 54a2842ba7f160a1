//! Lengths and dates that frame what is stored: a stored response without its body, a
//! length no one can read, a 304 without a `Date`.

use super::*;

#[tokio::test]
async fn a_stored_response_without_its_body_but_with_a_length_answers_only_a_head() {
    use std::time::{Duration, SystemTime};
    use tower::ServiceExt;

    let store = MemoryStore::default();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "cache-control",
        http::HeaderValue::from_static("max-age=600"),
    );
    headers.insert("content-length", http::HeaderValue::from_static("1024"));
    let now = SystemTime::now();
    let entry = crate::entry::Entry {
        status: http::StatusCode::OK,
        version: http::Version::HTTP_11,
        headers,
        vary: Vec::new(),
        request_time: now,
        response_time: now,
        configured: None,
        body: Bytes::new(),
    };
    let value = entry.encode().expect("encodes");
    // A HEAD's entry, as the cache writes one, and the same bytes written under the GET
    // key by another writer.
    for key in ["GET http://example.com/x", "HEAD http://example.com/x"] {
        let put = StoreRequest::Put {
            key: crate::CacheKey::from_text(key),
            value: value.clone().into(),
            ttl: Duration::from_secs(600),
        };
        store
            .clone()
            .oneshot(put)
            .await
            .expect("memory stores never fail");
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let origin = tower::service_fn(move |_: Request<String>| {
        counted.fetch_add(1, SeqCst);
        std::future::ready(Ok::<_, std::convert::Infallible>(fresh("origin")))
    });
    let cache = tower::Layer::layer(&CacheLayer::new(store), origin);

    let get = cache
        .clone()
        .oneshot(get("http://example.com/x"))
        .await
        .expect("answers");
    assert!(matches!(
        get.extensions().get::<CacheStatus>(),
        Some(CacheStatus::Forwarded { .. })
    ));
    let body = get
        .into_body()
        .collect()
        .await
        .expect("completes")
        .to_bytes();
    assert_eq!(body, "origin");
    assert_eq!(calls.load(SeqCst), 1);

    let head = Request::head("http://example.com/x")
        .body(String::new())
        .expect("valid");
    let head = cache.oneshot(head).await.expect("answers");
    assert_eq!(
        head.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Hit)
    );
    assert_eq!(head.headers()["content-length"], "1024");
    assert_eq!(calls.load(SeqCst), 1);
}

#[tokio::test]
async fn a_response_whose_content_length_cannot_be_read_is_not_stored() {
    use tower::ServiceExt;

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let origin = tower::service_fn(move |_: Request<String>| {
        counted.fetch_add(1, SeqCst);
        let mut response = fresh("origin");
        response
            .headers_mut()
            .insert("content-length", http::HeaderValue::from_static("6, 7"));
        std::future::ready(Ok::<_, std::convert::Infallible>(response))
    });
    let cache = tower::Layer::layer(&CacheLayer::new(MemoryStore::default()), origin);
    for _ in 0..2 {
        let response = cache
            .clone()
            .oneshot(get("http://example.com/x"))
            .await
            .expect("answers");
        assert!(matches!(
            response.extensions().get::<CacheStatus>(),
            Some(CacheStatus::Forwarded { stored: false, .. })
        ));
        response.into_body().collect().await.expect("completes");
    }
    assert_eq!(calls.load(SeqCst), 2);
}

#[tokio::test]
async fn a_304_without_a_date_freshens_the_entry_from_the_time_it_arrived() {
    use std::time::Duration;
    use tower::ServiceExt;

    use crate::clock::{Clock, ManualClock};

    let clock = ManualClock::new();
    let first_date = httpdate::fmt_http_date(clock.now());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    // A 304 without `Date` (RFC 9110 §6.6.1 lets a server without a clock leave it out).
    let origin = tower::service_fn(move |request: Request<String>| {
        counted.fetch_add(1, SeqCst);
        let builder = Response::builder()
            .header("etag", "\"v1\"")
            .header("cache-control", "max-age=60");
        let response = if request.headers().contains_key("if-none-match") {
            builder.status(304).body(Full::new(Bytes::new()))
        } else {
            builder
                .header("date", first_date.as_str())
                .body(Full::new(Bytes::from_static(b"body")))
        };
        std::future::ready(Ok::<_, std::convert::Infallible>(
            response.expect("a valid response"),
        ))
    });
    let cache = tower::Layer::layer(
        &CacheLayer::new(MemoryStore::default()).clock(clock.clone()),
        origin,
    );
    let url = "http://example.com/x";
    let first = cache.clone().oneshot(get(url)).await.expect("answers");
    first.into_body().collect().await.expect("completes");
    clock.advance(Duration::from_secs(120));
    let revalidated = cache.clone().oneshot(get(url)).await.expect("answers");
    assert_eq!(
        revalidated.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Revalidated {
            reason: crate::ForwardReason::Stale,
            stored: true
        })
    );
    assert_eq!(revalidated.headers()["age"], "0", "fresh from the 304");
    revalidated.into_body().collect().await.expect("completes");
    clock.advance(Duration::from_secs(1));
    let next = cache.oneshot(get(url)).await.expect("answers");
    assert_eq!(
        next.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Hit)
    );
    assert_eq!(calls.load(SeqCst), 2);
}

/// RFC 9110 §6.6.1: a response received without `Date` is forwarded and stored with the
/// time it was received, so that a hit replays that time (beside its `Age`), not the
/// time of the hit, which a proxy's server would otherwise add.
#[tokio::test]
async fn rfc9110_6_6_1_a_response_without_a_date_is_forwarded_and_stored_with_the_time_it_was_received()
 {
    use std::convert::Infallible;
    use std::time::Duration;

    use tower::{Layer, ServiceExt};

    use crate::clock::{Clock, ManualClock};

    let clock = ManualClock::new();
    let origin = tower::service_fn(|_: Request<String>| async {
        let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
        response.headers_mut().insert(
            "cache-control",
            http::HeaderValue::from_static("max-age=600"),
        );
        Ok::<_, Infallible>(response)
    });
    let cache = CacheLayer::new(MemoryStore::default())
        .clock(clock.clone())
        .layer(origin);
    let received = httpdate::fmt_http_date(clock.now());
    let miss = cache
        .clone()
        .oneshot(get("http://example.com/undated"))
        .await
        .expect("answered");
    assert_eq!(miss.headers()["date"], received.as_str(), "forwarded");
    miss.into_body().collect().await.expect("whole");
    clock.advance(Duration::from_secs(100));
    let hit = cache
        .oneshot(get("http://example.com/undated"))
        .await
        .expect("answered");
    assert_eq!(
        hit.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Hit)
    );
    assert_eq!(hit.headers()["age"], "100");
    assert_eq!(hit.headers()["date"], received.as_str(), "stored");
}

/// Hostile bytes in the store give a miss or an error, never a panic: a variant index
/// whose `not_before` lies past the year 9999 (and a variant received after it) date a
/// revalidated entry from then, which `httpdate` panicked on formatting.
#[tokio::test]
async fn hostile_index_times_past_year_9999_do_not_panic_a_revalidation() {
    use std::convert::Infallible;
    use std::time::{Duration, UNIX_EPOCH};

    use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
    use tower::{Layer, ServiceExt, service_fn};

    use crate::CacheKey;
    use crate::entry::{Entry, Variants};
    use crate::store::StoreRequest;

    let store = MemoryStore::default();
    // The year 20000, and a millisecond on.
    let far = UNIX_EPOCH + Duration::from_secs(569_000_000_000);
    let index = Variants {
        names: vec![HeaderName::from_static("accept-language")],
        not_before: far,
    };
    let mut headers = HeaderMap::new();
    headers.insert("cache-control", HeaderValue::from_static("max-age=0"));
    headers.insert("etag", HeaderValue::from_static("\"v1\""));
    headers.insert("vary", HeaderValue::from_static("accept-language"));
    let entry = Entry {
        status: StatusCode::OK,
        version: Version::HTTP_11,
        headers,
        vary: vec![(
            HeaderName::from_static("accept-language"),
            Some(HeaderValue::from_static("en")),
        )],
        request_time: far + Duration::from_millis(1),
        response_time: far + Duration::from_millis(1),
        configured: None,
        body: Bytes::from_static(b"stale"),
    };
    let put = |key: &str, value: Bytes| StoreRequest::Put {
        key: CacheKey::from_text(key.to_owned()),
        value: value.into(),
        ttl: Duration::from_secs(3600),
    };
    store
        .clone()
        .oneshot(put(
            "GET https://example.com/x",
            index.encode().expect("encodes"),
        ))
        .await
        .expect("stored");
    store
        .clone()
        .oneshot(put(
            "GET https://example.com/x vary accept-language=en",
            entry.encode().expect("encodes"),
        ))
        .await
        .expect("stored");

    // The origin confirms the entry with a 304 that has no `Date`.
    let origin = service_fn(|request: Request<String>| async move {
        assert!(
            request.headers().contains_key("if-none-match"),
            "made conditional"
        );
        Ok::<_, Infallible>(
            Response::builder()
                .status(StatusCode::NOT_MODIFIED)
                .header("etag", "\"v1\"")
                .body(Full::new(Bytes::new()))
                .expect("valid"),
        )
    });
    let cache = CacheLayer::new(store).layer(origin);
    let request = Request::get("https://example.com/x")
        .header("accept-language", "en")
        .body(String::new())
        .expect("valid");
    let answered = tokio::spawn(cache.oneshot(request)).await;
    assert!(answered.is_ok(), "the request panicked: {answered:?}");
}
