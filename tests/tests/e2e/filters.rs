//! Filters: which methods and statuses the cache handles, and a user's predicate over the
//! request and the response.

use std::time::Duration;

use bytes::Bytes;
use cachet::clock::ManualClock;
use cachet::{
    BodyKey, BodyKeyLayer, Cache, CacheKey, CacheLayer, CacheStatus, Filter, ForwardReason,
    KeyedBody, MemoryStore, RequestHead,
};
use cachet_tests::{Origin, Reply, client, fetch, get};
use http::{Method, Request, StatusCode};
use http_body_util::{Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceBuilder};

type Stack = Cache<Client<HttpConnector, Empty<Bytes>>, MemoryStore>;

async fn status(cache: &Stack, request: Request<Empty<Bytes>>) -> CacheStatus {
    fetch(cache, request).await.status
}

/// An origin whose responses are all cacheable for a minute; `/missing` is a 404 and
/// `/debug` carries a debug header.
async fn origin() -> Origin {
    Origin::start(|seen| {
        let reply = Reply::ok("x").header("cache-control", "max-age=60");
        match seen.path.as_str() {
            "/missing" => reply.status(404),
            "/debug" => reply.header("x-debug", "1"),
            _ => reply,
        }
    })
    .await
}

fn not_stored(reason: ForwardReason) -> CacheStatus {
    CacheStatus::Forwarded {
        reason,
        stored: false,
    }
}

#[tokio::test]
async fn a_method_left_out_passes_through() {
    let origin = origin().await;
    let cache = CacheLayer::new(MemoryStore::default())
        .methods([Method::GET])
        .layer(client());
    let head = || {
        Request::head(origin.url("/h"))
            .body(Empty::new())
            .expect("valid")
    };
    for _ in 0..2 {
        assert_eq!(
            status(&cache, head()).await,
            not_stored(ForwardReason::Bypass)
        );
    }
    status(&cache, get(&origin.url("/h"))).await;
    assert_eq!(
        status(&cache, get(&origin.url("/h"))).await,
        CacheStatus::Hit
    );
}

#[tokio::test]
async fn only_allowed_statuses_are_stored() {
    let origin = origin().await;
    let cache = CacheLayer::new(MemoryStore::default())
        .statuses([StatusCode::OK])
        .layer(client());
    for _ in 0..2 {
        assert_eq!(
            status(&cache, get(&origin.url("/missing"))).await,
            not_stored(ForwardReason::UriMiss)
        );
    }
    status(&cache, get(&origin.url("/ok"))).await;
    assert_eq!(
        status(&cache, get(&origin.url("/ok"))).await,
        CacheStatus::Hit
    );
}

#[derive(Debug)]
struct NotAdminNorDebug;

impl Filter for NotAdminNorDebug {
    fn request(&self, request: &RequestHead<'_>) -> bool {
        !request.uri.path().starts_with("/admin/")
    }

    fn response(&self, _key: &CacheKey, response: &http::response::Parts) -> bool {
        !response.headers.contains_key("x-debug")
    }
}

#[tokio::test]
async fn a_filter_decides_over_requests_and_responses() {
    let origin = origin().await;
    let cache = CacheLayer::new(MemoryStore::default())
        .filter(NotAdminNorDebug)
        .layer(client());
    for _ in 0..2 {
        assert_eq!(
            status(&cache, get(&origin.url("/admin/users"))).await,
            not_stored(ForwardReason::Bypass)
        );
        assert_eq!(
            status(&cache, get(&origin.url("/debug"))).await,
            not_stored(ForwardReason::UriMiss)
        );
    }
    status(&cache, get(&origin.url("/page"))).await;
    assert_eq!(
        status(&cache, get(&origin.url("/page"))).await,
        CacheStatus::Hit
    );
    assert_eq!(origin.requests(), 5);
}

#[tokio::test]
async fn a_304_that_the_filter_refuses_is_served_but_not_stored() {
    let origin = Origin::start(|seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=10")
                .header("x-debug", "1")
        } else {
            Reply::ok("x")
                .header("cache-control", "max-age=10")
                .header("etag", "\"1\"")
        }
    })
    .await;
    let clock = ManualClock::new();
    let cache = CacheLayer::new(MemoryStore::default())
        .filter(NotAdminNorDebug)
        .clock(clock.clone())
        .layer(client());
    let url = origin.url("/page");
    status(&cache, get(&url)).await;
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        status(&cache, get(&url)).await,
        CacheStatus::Revalidated {
            reason: cachet::ForwardReason::Stale,
            stored: false
        }
    );
}

/// Stores a GET (fresh for 10 s, with an `ETag`, and `on_get` headers), lets it go stale,
/// sends a HEAD that the origin answers fresh for 600 s with `on_head` headers as well,
/// and returns the stored GET as `only-if-cached` then finds it: a `504` when the HEAD did
/// not freshen it.
async fn after_a_head(
    layer: CacheLayer<MemoryStore>,
    on_get: &'static [(&'static str, &'static str)],
    on_head: &'static [(&'static str, &'static str)],
) -> cachet_tests::Fetched {
    let origin = Origin::start(move |seen| {
        let reply = Reply::ok("x").header("etag", "\"1\"");
        let (cache_control, extra) = if seen.method == Method::HEAD {
            ("max-age=600", on_head)
        } else {
            ("max-age=10", on_get)
        };
        extra.iter().fold(
            reply.header("cache-control", cache_control),
            |reply, &(name, value)| reply.header(name, value),
        )
    })
    .await;
    let clock = ManualClock::new();
    let cache = layer.clock(clock.clone()).layer(client());
    let url = origin.url("/page");
    status(&cache, get(&url)).await;
    clock.advance(Duration::from_secs(20));
    let head = Request::head(&url).body(Empty::new()).expect("valid");
    status(&cache, head).await;
    // A freshening runs on a task of this (current-thread) runtime at the first wait.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cached_only = Request::get(&url)
        .header("cache-control", "only-if-cached")
        .body(Empty::new())
        .expect("valid");
    let answer = fetch(&cache, cached_only).await;
    assert_eq!(
        origin.requests(),
        2,
        "only the GET and the HEAD reach the origin"
    );
    answer
}

#[tokio::test]
async fn rfc9111_4_3_5_a_head_response_freshens_the_stored_get_unless_it_may_not_be_stored() {
    let layer = || CacheLayer::new(MemoryStore::default());
    // The control: a HEAD response that may be stored freshens the GET in time to be seen.
    let freshened = after_a_head(layer(), &[], &[("x-head", "1")]).await;
    assert_eq!(freshened.code, StatusCode::OK);
    assert_eq!(freshened.headers["x-head"], "1");

    let refused = after_a_head(layer().filter(NotAdminNorDebug), &[], &[("x-debug", "1")]).await;
    assert_eq!(
        refused.code,
        StatusCode::GATEWAY_TIMEOUT,
        "the filter refuses it"
    );
    // In a shared cache, one that sets a cookie would carry it to everyone.
    let cookie = after_a_head(layer(), &[], &[("set-cookie", "session=secret")]).await;
    assert_eq!(cookie.code, StatusCode::GATEWAY_TIMEOUT);
    assert!(!cookie.headers.contains_key("set-cookie"));
    // One that varies describes variants, not the plain GET stored.
    let varies = after_a_head(layer(), &[], &[("vary", "accept-language")]).await;
    assert_eq!(varies.code, StatusCode::GATEWAY_TIMEOUT);
    // One whose `Cache-Control` keeps a stored field private: the freshened entry drops it.
    let private = after_a_head(
        layer(),
        &[("x-user", "alice")],
        &[("cache-control", "max-age=600, private=\"x-user\"")],
    )
    .await;
    assert_eq!(private.code, StatusCode::OK);
    assert!(!private.headers.contains_key("x-user"));
}

/// Only GETs are the cache's business.
#[derive(Debug)]
struct OnlyGets;

impl Filter for OnlyGets {
    fn request(&self, request: &RequestHead<'_>) -> bool {
        request.method == Method::GET
    }
}

#[tokio::test]
async fn rfc9111_4_4_a_request_a_filter_refuses_still_invalidates() {
    let origin = origin().await;
    let cache = CacheLayer::new(MemoryStore::default())
        .filter(OnlyGets)
        .layer(client());
    let url = origin.url("/item");
    status(&cache, get(&url)).await;
    assert_eq!(status(&cache, get(&url)).await, CacheStatus::Hit);
    let delete = Request::delete(&url)
        .body(Empty::new())
        .expect("test requests are valid");
    assert_eq!(
        status(&cache, delete).await,
        not_stored(ForwardReason::Bypass)
    );
    assert_eq!(
        status(&cache, get(&url)).await,
        CacheStatus::Forwarded {
            reason: ForwardReason::UriMiss,
            stored: true
        }
    );
}

type PostStack = BodyKey<Cache<Client<HttpConnector, KeyedBody<Full<Bytes>>>, MemoryStore>>;

async fn post(stack: &PostStack, url: &str, body: Bytes) -> (CacheStatus, Bytes) {
    let request = Request::post(url)
        .body(Full::new(body))
        .expect("test requests are valid");
    let fetched = fetch(stack, request).await;
    (fetched.status, fetched.body)
}

#[tokio::test]
async fn a_post_is_cached_by_its_body_only_within_the_byte_limit() {
    // The origin answers with the method and the body length it was sent.
    let origin = Origin::start(|seen| {
        let length = seen
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        Reply::ok(format!("{} {length}", seen.method)).header("cache-control", "max-age=60")
    })
    .await;
    let stack = ServiceBuilder::new()
        .layer(BodyKeyLayer::new().max_bytes(16))
        .layer(CacheLayer::new(MemoryStore::default()).methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
        ]))
        .service(Client::builder(TokioExecutor::new()).build_http());
    let url = origin.url("/search");
    let cats = Bytes::from_static(br#"{"q":"cats"}"#);

    let first = post(&stack, &url, cats.clone()).await;
    assert_eq!(
        first,
        (
            CacheStatus::Forwarded {
                reason: ForwardReason::UriMiss,
                stored: true
            },
            Bytes::from("POST 12")
        )
    );
    let again = post(&stack, &url, cats.clone()).await;
    assert_eq!(again, (CacheStatus::Hit, Bytes::from("POST 12")));
    assert_eq!(origin.requests(), 1);
    let seen = origin.seen();
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(
        seen[0].headers.get("content-length").map(|v| v.as_bytes()),
        Some(&b"12"[..])
    );

    let dogs = post(&stack, &url, Bytes::from_static(br#"{"q":"dogs"}"#)).await;
    assert_eq!(
        dogs.0,
        CacheStatus::Forwarded {
            reason: ForwardReason::UriMiss,
            stored: true
        }
    );
    assert_eq!(origin.requests(), 2);

    // Past the limit: forwarded whole every time, never stored.
    let long = Bytes::from(vec![b'x'; 40]);
    for sent in 3..=4 {
        let answer = post(&stack, &url, long.clone()).await;
        assert_eq!(
            answer,
            (
                CacheStatus::Forwarded {
                    reason: ForwardReason::Method,
                    stored: false
                },
                Bytes::from("POST 40")
            )
        );
        assert_eq!(origin.requests(), sent);
    }
    // The short bodies are still answered from the cache.
    assert_eq!(post(&stack, &url, cats).await.0, CacheStatus::Hit);
    assert_eq!(origin.requests(), 4);
}
