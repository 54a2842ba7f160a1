//! The cache in a hyper client stack, against a real origin.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cachet::clock::ManualClock;
use cachet::{Cache, CacheLayer, CacheStatus, ForwardReason, MemoryStore};
use cachet_tests::{Origin, Reply, client, get, read};
use http::Request;
use http_body_util::{Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::{Layer, ServiceExt};

type Stack = Cache<Client<HttpConnector, Empty<Bytes>>, MemoryStore>;

fn stack(layer: CacheLayer<MemoryStore>) -> Stack {
    layer.layer(client())
}

fn shared() -> Stack {
    stack(CacheLayer::new(MemoryStore::default()))
}

/// Sends a request, reads the whole body, and returns what the cache did with the body.
async fn fetch(
    cache: &Stack,
    request: Request<Empty<Bytes>>,
) -> (CacheStatus, http::HeaderMap, Bytes) {
    let fetched = cachet_tests::fetch(cache, request).await;
    (fetched.status, fetched.headers, fetched.body)
}

fn miss(stored: bool) -> CacheStatus {
    CacheStatus::Forwarded {
        reason: ForwardReason::UriMiss,
        stored,
    }
}

#[tokio::test]
async fn a_fresh_response_is_served_from_the_cache_without_the_origin() {
    let origin = Origin::start(|_| Reply::ok("hello").header("cache-control", "max-age=60")).await;
    let cache = shared();

    let (status, _, body) = fetch(&cache, get(&origin.url("/a"))).await;
    assert_eq!((status, body.as_ref()), (miss(true), b"hello".as_slice()));
    let (status, headers, body) = fetch(&cache, get(&origin.url("/a"))).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"hello".as_slice())
    );
    assert!(headers.contains_key("age"));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn age_grows_with_the_test_clock_and_the_entry_expires_at_max_age() {
    let origin = Origin::start(|_| Reply::ok("x").header("cache-control", "max-age=60")).await;
    let clock = ManualClock::new();
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));

    fetch(&cache, get(&origin.url("/t"))).await;
    clock.advance(Duration::from_secs(10));
    let (status, headers, _) = fetch(&cache, get(&origin.url("/t"))).await;
    assert_eq!(status, CacheStatus::Hit);
    assert_eq!(headers["age"], "10");

    clock.advance(Duration::from_secs(50));
    let (status, _, _) = fetch(&cache, get(&origin.url("/t"))).await;
    assert_eq!(
        status,
        CacheStatus::Forwarded {
            reason: ForwardReason::Stale,
            stored: true
        }
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn head_never_fills_the_get_entry() {
    let origin = Origin::start(|_| Reply::ok("body").header("cache-control", "max-age=60")).await;
    let cache = shared();
    let head = || {
        Request::head(origin.url("/h"))
            .body(Empty::new())
            .expect("valid request")
    };

    let (status, _, _) = fetch(&cache, head()).await;
    assert_eq!(status, miss(true));
    let (status, _, body) = fetch(&cache, get(&origin.url("/h"))).await;
    assert_eq!((status, body.as_ref()), (miss(true), b"body".as_slice()));
    let (status, _, body) = fetch(&cache, head()).await;
    assert_eq!((status, body.len()), (CacheStatus::Hit, 0));
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn two_authorities_never_share_an_entry() {
    let origin = Origin::start(|seen| {
        let host = seen.headers["host"].to_str().unwrap_or_default().to_owned();
        Reply::ok(host).header("cache-control", "max-age=60")
    })
    .await;
    let cache = shared();
    let by_ip = origin.url("/same");
    let by_name = format!("http://localhost:{}/same", origin.addr().port());

    let (_, _, first) = fetch(&cache, get(&by_ip)).await;
    let (status, _, second) = fetch(&cache, get(&by_name)).await;
    assert_eq!(status, miss(true));
    assert_ne!(first, second);
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn responses_to_authorization_are_shared_only_when_the_response_allows_it() {
    let origin = Origin::start(|seen| {
        let cc = if seen.path.starts_with("/public") {
            "max-age=60, public"
        } else {
            "max-age=60"
        };
        Reply::ok("secret").header("cache-control", cc)
    })
    .await;
    let with_auth = |path: &str| {
        Request::get(origin.url(path))
            .header("authorization", "Bearer token")
            .body(Empty::new())
            .expect("valid request")
    };

    let cache = shared();
    let (status, _, _) = fetch(&cache, with_auth("/plain")).await;
    assert_eq!(status, miss(false));
    let (status, _, _) = fetch(&cache, with_auth("/public")).await;
    assert_eq!(status, miss(true));
    let (status, _, _) = fetch(&cache, with_auth("/public")).await;
    assert_eq!(status, CacheStatus::Hit);

    let private = stack(CacheLayer::new(MemoryStore::default()).private());
    let (status, _, _) = fetch(&private, with_auth("/plain")).await;
    assert_eq!(status, miss(true));
}

#[tokio::test]
async fn no_store_on_the_response_or_the_request_is_honoured() {
    let origin = Origin::start(|seen| {
        let cc = if seen.path == "/no-store" {
            "no-store, max-age=60"
        } else {
            "max-age=60"
        };
        Reply::ok("x").header("cache-control", cc)
    })
    .await;
    let cache = shared();

    fetch(&cache, get(&origin.url("/no-store"))).await;
    let (status, _, _) = fetch(&cache, get(&origin.url("/no-store"))).await;
    assert_eq!(status, miss(false));

    let no_store = Request::get(origin.url("/fine"))
        .header("cache-control", "no-store")
        .body(Empty::new())
        .expect("valid request");
    let (status, _, _) = fetch(&cache, no_store).await;
    assert_eq!(status, miss(false));
    let (status, _, _) = fetch(&cache, get(&origin.url("/fine"))).await;
    assert_eq!(status, miss(true));
    assert_eq!(origin.requests(), 4);
}

#[tokio::test]
async fn a_cache_control_whose_quote_never_closes_is_not_stored_by_a_shared_cache() {
    let origin = Origin::start(|seen| match seen.path.as_str() {
        "/broken" => Reply::ok("x").header("cache-control", "max-age=300, x=\"oops, private"),
        // Without its `Cache-Control`, `Last-Modified` would make it storable.
        _ => Reply::ok("x")
            .header("cache-control", "private, ext=\"é\"")
            .header("last-modified", "Mon, 02 Jan 2006 15:04:05 GMT"),
    })
    .await;
    let cache = shared();
    for path in ["/outside-ascii", "/broken"] {
        let (status, _, _) = fetch(&cache, get(&origin.url(path))).await;
        assert_eq!(status, miss(false), "{path}");
    }
}

#[tokio::test]
async fn a_private_behind_a_semicolon_or_a_space_is_not_missed_by_a_shared_cache() {
    let origin = Origin::start(|seen| {
        let cache_control = match seen.path.as_str() {
            "/semicolon" => "private; max-age=600",
            "/space" => "max-age=600 private",
            _ => "no-store;",
        };
        // Without its `Cache-Control`, `Last-Modified` would make it storable.
        Reply::ok("mine")
            .header("cache-control", cache_control)
            .header("last-modified", "Mon, 02 Jan 2006 15:04:05 GMT")
    })
    .await;
    let cache = shared();
    for path in ["/semicolon", "/space", "/no-store"] {
        let (status, _, _) = fetch(&cache, get(&origin.url(path))).await;
        assert_eq!(status, miss(false), "{path}");
    }
}

#[tokio::test]
async fn private_responses_are_kept_only_by_a_private_cache() {
    let origin =
        Origin::start(|_| Reply::ok("mine").header("cache-control", "private, max-age=60")).await;

    let cache = shared();
    fetch(&cache, get(&origin.url("/p"))).await;
    let (status, _, _) = fetch(&cache, get(&origin.url("/p"))).await;
    assert_eq!(status, miss(false));

    let private = stack(CacheLayer::new(MemoryStore::default()).private());
    fetch(&private, get(&origin.url("/p"))).await;
    let (status, _, _) = fetch(&private, get(&origin.url("/p"))).await;
    assert_eq!(status, CacheStatus::Hit);
}

#[tokio::test]
async fn unknown_request_directives_leave_an_ordinary_request() {
    let origin = Origin::start(|_| Reply::ok("x").header("cache-control", "max-age=60")).await;
    let cache = shared();
    fetch(&cache, get(&origin.url("/u"))).await;
    for (name, value) in [("cache-control", "nothing-to-see-here"), ("pragma", "foo")] {
        let request = Request::get(origin.url("/u"))
            .header(name, value)
            .body(Empty::new())
            .expect("valid request");
        let (status, _, _) = fetch(&cache, request).await;
        assert_eq!(status, CacheStatus::Hit, "{name}: {value}");
    }
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_response_without_freshness_or_validator_is_not_stored() {
    let origin = Origin::start(|_| Reply::ok("x")).await;
    let cache = shared();
    let (status, _, _) = fetch(&cache, get(&origin.url("/n"))).await;
    assert_eq!(status, miss(false));
}

#[tokio::test]
async fn post_passes_straight_through() {
    let origin = Origin::start(|_| Reply::ok("posted").header("cache-control", "max-age=60")).await;
    let cache = CacheLayer::new(MemoryStore::default())
        .layer(Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>());
    for _ in 0..2 {
        let request = Request::post(origin.url("/form"))
            .body(Full::new(Bytes::from_static(b"a=1")))
            .expect("valid request");
        let response = cache
            .clone()
            .oneshot(request)
            .await
            .expect("the request succeeds");
        assert_eq!(
            response.extensions().get::<CacheStatus>(),
            Some(&CacheStatus::Forwarded {
                reason: ForwardReason::Method,
                stored: false
            })
        );
        assert_eq!(
            read(response.into_body()).await.expect("body completes"),
            "posted"
        );
    }
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn a_body_that_streams_in_frames_is_stored_and_served_byte_for_byte() {
    let len = 300 * 1024;
    let body = Bytes::from((0..len).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>());
    let sent = body.clone();
    let origin = Origin::start(move |seen| {
        let reply = Reply::ok(sent.clone()).header("cache-control", "max-age=60");
        // Chunked, without a length, or with one (read in as many pieces as arrive).
        if seen.path.starts_with("/framed") {
            reply.in_frames(9)
        } else {
            reply
        }
    })
    .await;
    // The cap is exactly the body's length: it is kept.
    let cache = stack(CacheLayer::new(MemoryStore::default()).max_body_bytes(len));
    for path in ["/framed", "/sized"] {
        let (status, _, received) = fetch(&cache, get(&origin.url(path))).await;
        assert_eq!((status, received.len()), (miss(true), len), "{path}");
        let (status, _, received) = fetch(&cache, get(&origin.url(path))).await;
        assert_eq!(status, CacheStatus::Hit, "{path}");
        assert!(received == body, "{path}: the stored body is the one sent");
    }
    // One byte under it, a body without a length is found too long as it streams.
    let cache = stack(CacheLayer::new(MemoryStore::default()).max_body_bytes(len - 1));
    let (status, _, received) = fetch(&cache, get(&origin.url("/framed-again"))).await;
    assert_eq!(
        (status, received.len()),
        (miss(true), len),
        "stored is claimed up front"
    );
    let (status, _, _) = fetch(&cache, get(&origin.url("/framed-again"))).await;
    assert_ne!(status, CacheStatus::Hit, "but nothing past the cap is kept");
}

#[tokio::test]
async fn a_body_over_the_cap_is_served_whole_and_not_stored() {
    let big = Bytes::from(vec![b'b'; 10_000]);
    let body = big.clone();
    let origin =
        Origin::start(move |_| Reply::ok(body.clone()).header("cache-control", "max-age=60")).await;
    let cache = stack(CacheLayer::new(MemoryStore::default()).max_body_bytes(4_096));

    for _ in 0..2 {
        let (status, _, received) = fetch(&cache, get(&origin.url("/big"))).await;
        assert_eq!(received, big);
        assert_eq!(
            status,
            miss(false),
            "Content-Length over the cap is known up front"
        );
    }
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn an_origin_body_that_fails_mid_stream_is_not_stored() {
    let origin = Origin::start(|_| {
        Reply::ok("partial")
            .header("cache-control", "max-age=60")
            .fail_mid_body()
    })
    .await;
    let store = MemoryStore::default();
    let cache = stack(CacheLayer::new(store.clone()));

    for _ in 0..2 {
        let response = cache
            .clone()
            .oneshot(get(&origin.url("/broken")))
            .await
            .expect("the head arrives");
        assert!(
            read(response.into_body()).await.is_err(),
            "the caller sees the failure"
        );
    }
    assert_eq!(origin.requests(), 2);
    assert!(store.is_empty());
}

#[tokio::test]
async fn the_memory_store_never_holds_more_than_its_bound() {
    let origin = Origin::start(|seen| {
        let len = 200 + seen.path.len() * 97 % 3_000;
        Reply::ok(vec![b'm'; len]).header("cache-control", "max-age=60")
    })
    .await;
    let bound = 32 * 1024;
    let store = MemoryStore::new(bound);
    let cache = stack(CacheLayer::new(store.clone()));
    for i in 0..200 {
        fetch(&cache, get(&origin.url(&format!("/fill/{i}")))).await;
        assert!(store.weighted_size() <= bound);
    }
    assert!(!store.is_empty());
}

#[tokio::test]
async fn a_failing_or_hanging_store_never_fails_a_request() {
    use cachet::BoxError;
    use cachet::store::{StoreRequest, StoreResponse};
    use tower::ServiceBuilder;

    let origin = Origin::start(|_| Reply::ok("origin").header("cache-control", "max-age=60")).await;

    let failing = tower::service_fn(|_: StoreRequest| async {
        Err::<StoreResponse, BoxError>("store is down".into())
    });
    let layer = CacheLayer::new(failing);
    for _ in 0..2 {
        let response = layer
            .layer(client())
            .oneshot(get(&origin.url("/f")))
            .await
            .expect("fails open");
        assert_eq!(
            read(response.into_body()).await.expect("body completes"),
            "origin"
        );
    }
    assert_eq!(
        layer.metrics().store_errors(),
        4,
        "two reads and two writes failed"
    );

    let hanging = ServiceBuilder::new()
        .timeout(Duration::from_millis(50))
        .service(tower::service_fn(|_: StoreRequest| {
            std::future::pending::<Result<StoreResponse, BoxError>>()
        }));
    let response = CacheLayer::new(hanging)
        .layer(client())
        .oneshot(get(&origin.url("/h")))
        .await
        .expect("a bounded store read fails open");
    // The store could not say whether anything is stored: a plain miss.
    assert_eq!(
        response.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Forwarded {
            reason: ForwardReason::Miss,
            stored: true
        })
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn a_stale_entry_is_revalidated_and_a_304_refreshes_it_rfc_9111_4_3() {
    let origin = Origin::start(|seen| {
        if seen
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"")
        {
            // The origin's Date lags the test clock by the 11 s it was moved, so the
            // refreshed lifetime must cover that apparent age.
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=60")
                .header("x-refreshed", "yes")
        } else {
            Reply::ok("original")
                .header("cache-control", "max-age=10")
                .header("etag", "\"v1\"")
        }
    })
    .await;
    let clock = ManualClock::new();
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));

    fetch(&cache, get(&origin.url("/r"))).await;
    clock.advance(Duration::from_secs(11));
    let (status, headers, body) = fetch(&cache, get(&origin.url("/r"))).await;
    assert_eq!(
        status,
        CacheStatus::Revalidated {
            reason: cachet::ForwardReason::Stale,
            stored: true
        }
    );
    assert_eq!(body, "original");
    assert_eq!(
        headers["x-refreshed"], "yes",
        "headers are updated from the 304"
    );
    assert_eq!(headers["etag"], "\"v1\"");
    assert_eq!(origin.seen()[1].headers["if-none-match"], "\"v1\"");

    let (status, _, body) = fetch(&cache, get(&origin.url("/r"))).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"original".as_slice())
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn rfc9111_5_2_2_7_a_field_a_304_keeps_private_is_served_once_and_never_stored() {
    let origin = Origin::start(|seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=60, private=\"x-user\"")
                .header("x-user", "alice")
        } else {
            Reply::ok("page")
                .header("cache-control", "max-age=10")
                .header("etag", "\"v1\"")
        }
    })
    .await;
    let clock = ManualClock::new();
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    fetch(&cache, get(&origin.url("/p"))).await;
    clock.advance(Duration::from_secs(11));
    let (status, headers, _) = fetch(&cache, get(&origin.url("/p"))).await;
    assert_eq!(
        status,
        CacheStatus::Revalidated {
            reason: cachet::ForwardReason::Stale,
            stored: true
        }
    );
    assert_eq!(
        headers["x-user"], "alice",
        "the revalidating client gets it"
    );
    let (status, headers, body) = fetch(&cache, get(&origin.url("/p"))).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"page".as_slice())
    );
    assert!(
        !headers.contains_key("x-user"),
        "a shared cache stores no field `private` names"
    );
}

#[tokio::test]
async fn a_client_conditional_request_is_not_answered_with_the_caches_304() {
    let origin = Origin::start(|seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("").status(304)
        } else {
            Reply::ok("full")
                .header("cache-control", "max-age=10")
                .header("etag", "\"v1\"")
        }
    })
    .await;
    let clock = ManualClock::new();
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    fetch(&cache, get(&origin.url("/c"))).await;
    clock.advance(Duration::from_secs(11));
    let conditional = Request::get(origin.url("/c"))
        .header("if-none-match", "\"client-copy\"")
        .body(Empty::new())
        .expect("valid request");
    let response = cache.clone().oneshot(conditional).await.expect("forwarded");
    assert_eq!(
        response.status(),
        304,
        "the client's own validator was judged by the origin"
    );
    assert_eq!(origin.seen()[1].headers["if-none-match"], "\"client-copy\"");
}

/// An origin whose answers vary on `Accept-Language`: the language and `version`, fresh
/// for ten minutes; the answer in `slow` comes 300 ms late.
async fn by_language(version: Arc<AtomicUsize>, slow: Option<&'static str>) -> Origin {
    Origin::start(move |seen| {
        let language = seen
            .headers
            .get("accept-language")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-");
        let reply = Reply::ok(format!("{language} v{}", version.load(Ordering::SeqCst)))
            .header("cache-control", "max-age=600")
            .header("vary", "accept-language");
        if slow == Some(language) {
            reply.delay(Duration::from_millis(300))
        } else {
            reply
        }
    })
    .await
}

/// A `GET` for `url` with `Accept-Language: language`.
fn in_language(url: &str, language: &str) -> Request<Empty<Bytes>> {
    Request::get(url)
        .header("accept-language", language)
        .body(Empty::new())
        .expect("a valid request")
}

/// Waits until `origin` has had `count` requests; the bound is a hang guard.
async fn requests_reach(origin: &Origin, count: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while origin.requests() < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{count} requests reach the origin"));
}

mod coalescing;
mod invalidation;
mod privacy;
mod slow_store;
mod validation;
