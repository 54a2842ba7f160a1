//! HTTP caching semantics through `CacheLayer` over a real origin, one test per RFC
//! section or directive.

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

struct Fetched {
    status: CacheStatus,
    code: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn fetch(cache: &Stack, request: Request<Empty<Bytes>>) -> Fetched {
    let response = cache
        .clone()
        .oneshot(request)
        .await
        .expect("the request succeeds");
    Fetched {
        status: *response
            .extensions()
            .get::<CacheStatus>()
            .expect("every response has a status"),
        code: response.status().as_u16(),
        headers: response.headers().clone(),
        body: read(response.into_body())
            .await
            .expect("the body completes"),
    }
}

fn with(url: &str, name: &'static str, value: &'static str) -> Request<Empty<Bytes>> {
    Request::get(url)
        .header(name, value)
        .body(Empty::new())
        .expect("valid request")
}

fn cache_with_clock() -> (Stack, ManualClock) {
    let clock = ManualClock::new();
    (
        CacheLayer::new(MemoryStore::default())
            .clock(clock.clone())
            .layer(client()),
        clock,
    )
}

#[tokio::test]
async fn rfc9111_4_1_two_variants_of_one_uri_are_kept_at_once() {
    let origin = Origin::start(|seen| {
        let accept = seen
            .headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        Reply::ok(format!("as {accept}"))
            .header("cache-control", "max-age=60")
            .header("vary", "Accept")
    })
    .await;
    let (cache, _) = cache_with_clock();
    let url = origin.url("/negotiated");

    for round in 0..2 {
        let html = fetch(&cache, with(&url, "accept", "text/html")).await;
        let json = fetch(&cache, with(&url, "accept", "application/json")).await;
        let none = fetch(&cache, get(&url)).await;
        assert_eq!(
            (html.body.as_ref(), json.body.as_ref(), none.body.as_ref()),
            (
                &b"as text/html"[..],
                &b"as application/json"[..],
                &b"as none"[..]
            )
        );
        if round == 1 {
            assert!(
                [html.status, json.status, none.status]
                    .iter()
                    .all(|s| *s == CacheStatus::Hit)
            );
        }
    }
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn rfc9111_4_1_vary_star_is_never_stored() {
    let origin = Origin::start(|_| {
        Reply::ok("x")
            .header("cache-control", "max-age=60")
            .header("vary", "*")
    })
    .await;
    let (cache, _) = cache_with_clock();
    fetch(&cache, get(&origin.url("/star"))).await;
    let second = fetch(&cache, get(&origin.url("/star"))).await;
    assert_eq!(
        second.status,
        CacheStatus::Forwarded {
            reason: ForwardReason::Miss,
            stored: false
        }
    );
}

#[tokio::test]
async fn rfc9111_4_4_a_post_invalidates_the_stored_get_and_its_variants() {
    let origin = Origin::start(|seen| {
        Reply::ok(format!("v{}", seen.method))
            .header("cache-control", "max-age=600")
            .header("vary", "accept")
    })
    .await;
    let (cache, clock) = cache_with_clock();
    let url = origin.url("/resource");
    fetch(&cache, with(&url, "accept", "a")).await;
    fetch(&cache, with(&url, "accept", "b")).await;
    assert_eq!(
        fetch(&cache, with(&url, "accept", "a")).await.status,
        CacheStatus::Hit
    );

    clock.advance(Duration::from_secs(1));
    let poster = CacheLayer::new(cache.store().clone())
        .clock(clock)
        .layer(Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>());
    let post = Request::post(&url)
        .body(Full::new(Bytes::from_static(b"change")))
        .expect("valid request");
    let response = poster.oneshot(post).await.expect("the POST succeeds");
    read(response.into_body()).await.expect("body completes");

    for variant in ["a", "b"] {
        let after = fetch(&cache, with(&url, "accept", variant)).await;
        assert!(!after.status.is_hit(), "variant {variant} was invalidated");
    }
    assert_eq!(
        fetch(&cache, with(&url, "accept", "a")).await.status,
        CacheStatus::Hit,
        "caching resumes"
    );
}

#[tokio::test]
async fn rfc9111_4_4_location_of_the_same_origin_is_invalidated_too() {
    let origin = Origin::start(|seen| {
        if seen.method == http::Method::PUT {
            Reply::ok("").status(201).header("location", "/other")
        } else {
            Reply::ok("cached").header("cache-control", "max-age=600")
        }
    })
    .await;
    let (cache, _) = cache_with_clock();
    fetch(&cache, get(&origin.url("/other"))).await;
    let putter = CacheLayer::new(cache.store().clone())
        .layer(Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>());
    let put = Request::put(origin.url("/target"))
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    putter.oneshot(put).await.expect("the PUT succeeds");
    assert!(
        !fetch(&cache, get(&origin.url("/other")))
            .await
            .status
            .is_hit()
    );
}

#[tokio::test]
async fn rfc5861_4_stale_if_error_serves_the_stored_response_when_the_origin_fails() {
    let origin = Origin::start(|seen| {
        if seen.path == "/sie" && seen.headers.contains_key("if-none-match")
            || seen.headers.contains_key("x-fail")
        {
            Reply::ok("broken").status(500)
        } else {
            Reply::ok("good")
                .header("cache-control", "max-age=10, stale-if-error=60")
                .header("etag", "\"e\"")
        }
    })
    .await;
    let (cache, clock) = cache_with_clock();
    fetch(&cache, get(&origin.url("/sie"))).await;
    clock.advance(Duration::from_secs(20));
    let served = fetch(&cache, get(&origin.url("/sie"))).await;
    assert_eq!(
        (served.code, served.body.as_ref()),
        (200, b"good".as_slice())
    );
    assert_eq!(
        served.status,
        CacheStatus::StaleIfError {
            origin_status: Some(500)
        }
    );

    clock.advance(Duration::from_secs(60));
    let too_stale = fetch(&cache, get(&origin.url("/sie"))).await;
    assert_eq!(
        too_stale.code, 500,
        "past the stale-if-error window the error goes through"
    );
}

#[tokio::test]
async fn rfc5861_4_stale_if_error_covers_an_unreachable_origin() {
    let origin = Origin::start(|_| {
        Reply::ok("good").header("cache-control", "max-age=10, stale-if-error=60")
    })
    .await;
    let (cache, clock) = cache_with_clock();
    // Filled through the origin's address, then asked again once nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let dead = format!("http://{}/gone", listener.local_addr().expect("bound"));
    drop(listener);
    // Fill the entry under the dead URL's key with the live origin's answer.
    let proxy_like = CacheLayer::new(cache.store().clone())
        .clock(clock.clone())
        .layer(tower::service_fn(move |request: Request<Empty<Bytes>>| {
            let url = origin.url(request.uri().path());
            let client = client();
            async move { client.oneshot(cachet_tests::get(&url)).await }
        }));
    let first = proxy_like
        .clone()
        .oneshot(get(&dead))
        .await
        .expect("filled");
    read(first.into_body()).await.expect("body completes");

    clock.advance(Duration::from_secs(30));
    let served = fetch(&cache, get(&dead)).await;
    assert_eq!(
        served.status,
        CacheStatus::StaleIfError {
            origin_status: None
        }
    );
    assert_eq!(served.body, "good");
}

#[tokio::test]
async fn rfc9111_5_2_1_7_only_if_cached_answers_504_on_a_miss() {
    let origin = Origin::start(|_| Reply::ok("x").header("cache-control", "max-age=60")).await;
    let (cache, _) = cache_with_clock();
    let miss = fetch(
        &cache,
        with(&origin.url("/oic"), "cache-control", "only-if-cached"),
    )
    .await;
    assert_eq!(
        (miss.code, miss.status),
        (504, CacheStatus::OnlyIfCachedMiss)
    );
    assert_eq!(origin.requests(), 0);
    fetch(&cache, get(&origin.url("/oic"))).await;
    let hit = fetch(
        &cache,
        with(&origin.url("/oic"), "cache-control", "only-if-cached"),
    )
    .await;
    assert_eq!((hit.code, hit.status), (200, CacheStatus::Hit));
}

#[tokio::test]
async fn rfc9111_5_2_1_4_request_no_cache_goes_to_the_origin() {
    let origin = Origin::start(|_| Reply::ok("x").header("cache-control", "max-age=60")).await;
    let (cache, _) = cache_with_clock();
    fetch(&cache, get(&origin.url("/nc"))).await;
    let reload = fetch(
        &cache,
        with(&origin.url("/nc"), "cache-control", "no-cache"),
    )
    .await;
    assert_eq!(
        reload.status,
        CacheStatus::Forwarded {
            reason: ForwardReason::Request,
            stored: true
        }
    );
    let pragma = fetch(&cache, with(&origin.url("/nc"), "pragma", "no-cache")).await;
    assert!(!pragma.status.is_hit());
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn rfc9111_4_3_2_a_clients_matching_validator_gets_304_from_a_fresh_entry() {
    let origin = Origin::start(|_| {
        Reply::ok("body")
            .header("cache-control", "max-age=60")
            .header("etag", "W/\"7\"")
    })
    .await;
    let (cache, _) = cache_with_clock();
    fetch(&cache, get(&origin.url("/v"))).await;
    let matched = fetch(&cache, with(&origin.url("/v"), "if-none-match", "\"7\"")).await;
    assert_eq!(
        (matched.code, matched.body.len(), matched.status),
        (304, 0, CacheStatus::Hit)
    );
    let other = fetch(&cache, with(&origin.url("/v"), "if-none-match", "\"8\"")).await;
    assert_eq!((other.code, other.body.as_ref()), (200, b"body".as_slice()));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn rfc9111_5_2_2_s_maxage_wins_in_a_shared_cache_only() {
    let origin =
        Origin::start(|_| Reply::ok("x").header("cache-control", "max-age=1, s-maxage=100")).await;
    let (shared, clock) = cache_with_clock();
    fetch(&shared, get(&origin.url("/s"))).await;
    clock.advance(Duration::from_secs(50));
    assert_eq!(
        fetch(&shared, get(&origin.url("/s"))).await.status,
        CacheStatus::Hit
    );

    let private = CacheLayer::new(MemoryStore::default())
        .private()
        .clock(clock.clone())
        .layer(client());
    fetch(&private, get(&origin.url("/s"))).await;
    clock.advance(Duration::from_secs(2));
    assert!(
        !fetch(&private, get(&origin.url("/s")))
            .await
            .status
            .is_hit()
    );
}

#[tokio::test]
async fn rfc9111_5_2_2_private_and_no_cache_field_names_strip_those_fields() {
    let origin = Origin::start(|_| {
        Reply::ok("x")
            .header(
                "cache-control",
                "max-age=60, private=\"x-user\", no-cache=\"x-token\"",
            )
            .header("x-user", "alice")
            .header("x-token", "t")
    })
    .await;
    let (cache, _) = cache_with_clock();
    let first = fetch(&cache, get(&origin.url("/f"))).await;
    assert_eq!(
        first.headers["x-user"], "alice",
        "the first user sees everything"
    );
    let second = fetch(&cache, get(&origin.url("/f"))).await;
    assert_eq!(second.status, CacheStatus::Hit);
    assert!(!second.headers.contains_key("x-user") && !second.headers.contains_key("x-token"));
}

#[tokio::test]
async fn rfc9111_3_set_cookie_responses_are_stored_only_when_enabled() {
    let origin = Origin::start(|_| {
        Reply::ok("x")
            .header("cache-control", "max-age=60")
            .header("set-cookie", "id=1")
    })
    .await;
    let (cache, _) = cache_with_clock();
    fetch(&cache, get(&origin.url("/c"))).await;
    assert!(!fetch(&cache, get(&origin.url("/c"))).await.status.is_hit());

    let opted_in = CacheLayer::new(MemoryStore::default())
        .store_set_cookie(true)
        .layer(client());
    fetch(&opted_in, get(&origin.url("/c"))).await;
    assert_eq!(
        fetch(&opted_in, get(&origin.url("/c"))).await.status,
        CacheStatus::Hit
    );
}

#[tokio::test]
async fn rfc5861_3_stale_while_revalidate_answers_at_once_and_refreshes_once_per_key() {
    let origin = Origin::start(|seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=600")
                .delay(Duration::from_millis(300))
        } else {
            Reply::ok("first")
                .header("cache-control", "max-age=10, stale-while-revalidate=60")
                .header("etag", "\"1\"")
        }
    })
    .await;
    let (cache, clock) = cache_with_clock();
    fetch(&cache, get(&origin.url("/swr"))).await;
    clock.advance(Duration::from_secs(20));

    for _ in 0..5 {
        let stale = fetch(&cache, get(&origin.url("/swr"))).await;
        assert_eq!(
            (stale.status, stale.body.as_ref()),
            (CacheStatus::StaleWhileRevalidate, b"first".as_slice())
        );
    }
    // The one background revalidation is still waiting on the slow origin; wait for it.
    for _ in 0..100 {
        if fetch(&cache, get(&origin.url("/swr"))).await.status == CacheStatus::Hit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        fetch(&cache, get(&origin.url("/swr"))).await.status,
        CacheStatus::Hit,
        "refreshed by the 304"
    );
    assert_eq!(
        origin.requests(),
        2,
        "five stale answers, one background refresh"
    );
}

#[tokio::test]
async fn rfc5861_3_past_the_stale_while_revalidate_window_the_request_waits_for_the_origin() {
    let origin = Origin::start(|_| {
        Reply::ok("x").header("cache-control", "max-age=10, stale-while-revalidate=5")
    })
    .await;
    let (cache, clock) = cache_with_clock();
    fetch(&cache, get(&origin.url("/late"))).await;
    clock.advance(Duration::from_secs(16));
    let late = fetch(&cache, get(&origin.url("/late"))).await;
    assert_eq!(
        late.status,
        CacheStatus::Forwarded {
            reason: ForwardReason::Stale,
            stored: true
        }
    );
}

#[tokio::test]
async fn rfc9111_4_3_5_a_head_response_freshens_the_stored_get() {
    let origin = Origin::start(|seen| {
        let cc = if seen.method == http::Method::HEAD {
            "max-age=600"
        } else {
            "max-age=10"
        };
        Reply::ok("body")
            .header("cache-control", cc)
            .header("etag", "\"same\"")
    })
    .await;
    let (cache, clock) = cache_with_clock();
    fetch(&cache, get(&origin.url("/h"))).await;
    clock.advance(Duration::from_secs(20));
    let head = Request::head(origin.url("/h"))
        .body(Empty::new())
        .expect("valid request");
    fetch(&cache, head).await;
    // The freshening reads the store on a task of its own; let it run.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = fetch(&cache, get(&origin.url("/h"))).await;
    assert_eq!(
        after.status,
        CacheStatus::Hit,
        "the GET was freshened by the HEAD"
    );
    assert_eq!(after.body, "body");
    assert_eq!(origin.requests(), 2);
}
