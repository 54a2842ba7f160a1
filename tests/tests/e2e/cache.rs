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
    assert_eq!(status, CacheStatus::Revalidated { stored: true });
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
    assert_eq!(status, CacheStatus::Revalidated { stored: true });
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

/// Sends `n` GETs for one URL at once; returns their statuses and bodies.
async fn burst(cache: &Stack, url: &str, n: usize) -> Vec<(CacheStatus, Bytes)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let cache = cache.clone();
            let url = url.to_owned();
            tokio::spawn(async move {
                let (status, _, body) = fetch(&cache, get(&url)).await;
                (status, body)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("no request panics"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_for_one_key_reach_the_origin_once() {
    let origin = Origin::start(|_| {
        Reply::ok("shared")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(200))
    })
    .await;
    let cache = shared();
    let answers = burst(&cache, &origin.url("/burst"), 16).await;
    assert!(answers.iter().all(|(_, body)| body == "shared"));
    let collapsed = answers
        .iter()
        .filter(|(status, _)| *status == CacheStatus::Collapsed)
        .count();
    assert_eq!((origin.requests(), collapsed), (1, 15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncacheable_response_releases_the_waiters_to_the_origin() {
    let origin = Origin::start(|_| {
        Reply::ok("private")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(200))
    })
    .await;
    let cache = shared();
    let answers = burst(&cache, &origin.url("/nostore"), 8).await;
    assert!(
        answers
            .iter()
            .all(|(status, body)| !status.is_hit() && body == "private")
    );
    assert_eq!(
        origin.requests(),
        8,
        "nobody waits on a response that cannot be shared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_fetch_never_strands_its_waiters() {
    let origin = Origin::start(|_| {
        Reply::ok("partial")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(200))
            .fail_mid_body()
    })
    .await;
    let cache = shared();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let cache = cache.clone();
            let url = origin.url("/failing");
            tokio::spawn(async move {
                // The origin cuts the connection: the failure shows in the head or the body.
                match cache.oneshot(get(&url)).await {
                    Ok(response) => read(response.into_body()).await.is_err(),
                    Err(error) => error.is_upstream(),
                }
            })
        })
        .collect();
    for task in tasks {
        assert!(
            task.await.expect("no request panics"),
            "every request fails, none hangs"
        );
    }
    assert_eq!(
        origin.requests(),
        6,
        "the waiters asked the origin themselves"
    );
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

/// The resource at `url` changes (to version 2) a second on, and a POST to it says so;
/// then another second passes.
async fn changed_by_post(cache: &Stack, url: &str, version: &AtomicUsize, clock: &ManualClock) {
    version.store(2, Ordering::SeqCst);
    clock.advance(Duration::from_secs(1));
    let post = Request::post(url)
        .body(Empty::new())
        .expect("a valid request");
    fetch(cache, post).await;
    clock.advance(Duration::from_secs(1));
}

/// A `GET` for `url` with `Accept-Language: language`.
fn in_language(url: &str, language: &str) -> Request<Empty<Bytes>> {
    Request::get(url)
        .header("accept-language", language)
        .body(Empty::new())
        .expect("a valid request")
}

/// An origin whose answers vary on `Accept-Language` and are fresh for `cache_control`;
/// the English answer takes 30 s once `slow_english` is set.
async fn slow_in_english(
    clock: ManualClock,
    cache_control: &'static str,
    slow_english: Arc<AtomicBool>,
) -> Origin {
    Origin::start_dated(clock, move |seen| {
        let language = seen
            .headers
            .get("accept-language")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-");
        let reply = Reply::ok(language.to_owned())
            .header("cache-control", cache_control)
            .header("vary", "accept-language");
        if language == "en" && slow_english.load(Ordering::SeqCst) {
            reply.delay(Duration::from_secs(30))
        } else {
            reply
        }
    })
    .await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_for_one_variant_waits_for_no_other_variants_fetch() {
    let origin = slow_in_english(
        ManualClock::new(),
        "max-age=600",
        Arc::new(AtomicBool::new(true)),
    )
    .await;
    let cache =
        stack(CacheLayer::new(MemoryStore::default()).coalesce(Some(Duration::from_secs(60))));
    let url = origin.url("/v");
    // The index is stored: each later request knows its own variant's key.
    fetch(&cache, in_language(&url, "de")).await;
    let english = tokio::spawn({
        let (cache, url) = (cache.clone(), url.clone());
        async move { fetch(&cache, in_language(&url, "en")).await }
    });
    requests_reach(&origin, 2).await;
    let french = tokio::time::timeout(
        Duration::from_secs(5),
        fetch(&cache, in_language(&url, "fr")),
    )
    .await
    .expect("fr is answered without waiting for en's fetch");
    english.abort();
    assert_eq!(french.2, "fr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variants_background_refresh_holds_back_no_other_variants() {
    let clock = ManualClock::new();
    let slow_english = Arc::new(AtomicBool::new(false));
    let origin = slow_in_english(
        clock.clone(),
        "max-age=1, stale-while-revalidate=600",
        slow_english.clone(),
    )
    .await;
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    let url = origin.url("/swr");
    for language in ["en", "fr"] {
        fetch(&cache, in_language(&url, language)).await;
    }
    slow_english.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(10));
    let (english, _, _) = fetch(&cache, in_language(&url, "en")).await;
    assert_eq!(english, CacheStatus::StaleWhileRevalidate);
    requests_reach(&origin, 3).await;
    let (french, _, _) = fetch(&cache, in_language(&url, "fr")).await;
    assert_eq!(french, CacheStatus::StaleWhileRevalidate);
    // fr's own refresh, while en's is still on its way.
    requests_reach(&origin, 4).await;
}

#[tokio::test]
async fn rfc9111_4_4_a_variant_fetched_across_an_invalidation_does_not_bring_back_older_ones() {
    let version = Arc::new(AtomicUsize::new(1));
    // The German answer is slow: the resource changes while it is on its way.
    let origin = by_language(version.clone(), Some("de")).await;
    let clock = ManualClock::new();
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    let url = origin.url("/v");
    fetch(&cache, in_language(&url, "fr")).await;
    clock.advance(Duration::from_secs(1));

    let slow = fetch(&cache, in_language(&url, "de"));
    let change = async {
        // Once the German request has read the index and gone to the origin, a POST.
        tokio::time::timeout(Duration::from_secs(5), async {
            while origin.requests() < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the German request reaches the origin");
        changed_by_post(&cache, &url, &version, &clock).await;
    };
    tokio::join!(slow, change);

    // Storing the German answer writes the index back, but not as it was before the
    // POST: the French answer from before it stays hidden.
    let (_, _, body) = fetch(&cache, in_language(&url, "fr")).await;
    assert_eq!(body, "fr v2", "fr is not served from before the POST");
}

#[tokio::test]
async fn rfc9111_4_4_variants_outliving_their_index_stay_hidden_after_an_invalidation() {
    use cachet::CacheKey;
    use cachet::store::StoreRequest;

    let version = Arc::new(AtomicUsize::new(1));
    let origin = by_language(version.clone(), None).await;
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    let cache = stack(CacheLayer::new(store.clone()).clock(clock.clone()));
    let url = origin.url("/v");
    for language in ["en", "fr"] {
        fetch(&cache, in_language(&url, language)).await;
        clock.advance(Duration::from_secs(1));
    }
    let (status, _, body) = fetch(&cache, in_language(&url, "fr")).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"fr v1".as_slice())
    );

    // The index goes (expired or evicted) while the variants stay; then a POST changes
    // the resource. Its marker goes under the URI's key all the same, and hides them.
    let uri: http::Uri = url.parse().expect("a valid URL");
    let index = CacheKey::for_request(&http::Method::GET, &uri).expect("a GET has a key");
    store
        .clone()
        .oneshot(StoreRequest::Delete(index))
        .await
        .expect("deleted");
    changed_by_post(&cache, &url, &version, &clock).await;
    for language in ["en", "fr"] {
        let (_, _, body) = fetch(&cache, in_language(&url, language)).await;
        assert_eq!(
            body,
            format!("{language} v2"),
            "{language} is not served from before the POST"
        );
    }
}

#[tokio::test]
async fn rfc9111_4_4_variants_an_evicted_marker_hid_stay_hidden_under_a_new_index() {
    use cachet::CacheKey;
    use cachet::store::StoreRequest;

    let version = Arc::new(AtomicUsize::new(1));
    let origin = by_language(version.clone(), None).await;
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    let cache = stack(CacheLayer::new(store.clone()).clock(clock.clone()));
    let url = origin.url("/v");
    for language in ["en", "fr"] {
        fetch(&cache, in_language(&url, language)).await;
        clock.advance(Duration::from_secs(1));
    }
    changed_by_post(&cache, &url, &version, &clock).await;
    let (_, _, body) = fetch(&cache, in_language(&url, "fr")).await;
    assert_eq!(body, "fr v2");

    // The URI's key, the marker with the index written over it, is evicted; the
    // variants stay. Another variant is stored, with a new index.
    let uri: http::Uri = url.parse().expect("a valid URL");
    let index = CacheKey::for_request(&http::Method::GET, &uri).expect("a GET has a key");
    store
        .clone()
        .oneshot(StoreRequest::Delete(index))
        .await
        .expect("deleted");
    clock.advance(Duration::from_secs(1));
    let (_, _, body) = fetch(&cache, in_language(&url, "de")).await;
    assert_eq!(body, "de v2");

    let (status, _, body) = fetch(&cache, in_language(&url, "en")).await;
    assert_eq!(
        body, "en v2",
        "en is served from before the POST ({status:?})"
    );
    let (status, _, _) = fetch(&cache, in_language(&url, "de")).await;
    assert_eq!(
        status,
        CacheStatus::Hit,
        "the new index's own variant counts"
    );
}

#[tokio::test]
async fn rfc9111_5_2_2_7_a_shared_cache_serves_nothing_private_a_private_cache_stored_beside_it() {
    let origin = Origin::start(|seen| match seen.path.as_str() {
        "/mine" => Reply::ok("alice's account").header("cache-control", "private, max-age=600"),
        "/aged" => Reply::ok("shared").header("cache-control", "private=\"age\", max-age=600"),
        _ => Reply::ok("public page")
            .header("cache-control", "private=\"x-user\", max-age=600")
            .header("x-user", "alice"),
    })
    .await;
    let store = MemoryStore::default();
    let private = stack(CacheLayer::new(store.clone()).private());
    let shared = stack(CacheLayer::new(store));
    for path in ["/mine", "/page"] {
        let url = origin.url(path);
        fetch(&private, get(&url)).await;
        let (status, _, _) = fetch(&private, get(&url)).await;
        assert_eq!(
            status,
            CacheStatus::Hit,
            "{path}: the private cache keeps it"
        );
        let (status, _, _) = fetch(&shared, get(&url)).await;
        assert_ne!(
            status,
            CacheStatus::Hit,
            "{path}: not from the private cache's entry"
        );
    }
    assert_eq!(
        origin.requests(),
        4,
        "the shared cache asked the origin for each"
    );
    // What the shared cache stored itself, without the fields `private=` names, it serves
    // (`Age` among them: every entry gets one to be served with).
    let url = origin.url("/aged");
    fetch(&shared, get(&url)).await;
    let (status, _, _) = fetch(&shared, get(&url)).await;
    assert_eq!(status, CacheStatus::Hit);
}

#[tokio::test]
async fn a_variant_fetched_after_a_failed_lookup_keeps_the_other_variants() {
    use cachet::BoxError;
    use cachet::store::{StoreRequest, StoreResponse};

    let version = Arc::new(AtomicUsize::new(1));
    let origin = by_language(version, None).await;
    let memory = MemoryStore::default();
    // A store whose next read fails once `fail_next` is set: a Redis timeout, say.
    let fail_next = Arc::new(AtomicBool::new(false));
    let failing = fail_next.clone();
    let store = tower::service_fn(move |request: StoreRequest| {
        let fails =
            matches!(request, StoreRequest::Get(_)) && failing.swap(false, Ordering::SeqCst);
        let memory = memory.clone();
        async move {
            if fails {
                return Err::<StoreResponse, BoxError>("the store timed out".into());
            }
            memory.oneshot(request).await
        }
    });
    let cache = CacheLayer::new(store).layer(client());
    let url = origin.url("/v");
    for language in ["en", "fr", "de"] {
        cachet_tests::fetch(&cache, in_language(&url, language)).await;
    }
    fail_next.store(true, Ordering::SeqCst);
    let refetched = cachet_tests::fetch(&cache, in_language(&url, "fr")).await;
    assert!(matches!(refetched.status, CacheStatus::Forwarded { .. }));
    // The index it writes is the one the store holds, not one that hides the others.
    for language in ["en", "de", "fr"] {
        let fetched = cachet_tests::fetch(&cache, in_language(&url, language)).await;
        assert_eq!(fetched.status, CacheStatus::Hit, "{language}");
    }
    assert_eq!(origin.requests(), 4);
}

mod validation;
