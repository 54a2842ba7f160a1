//! Filters: which methods and statuses the cache handles, and a user's predicate over the
//! request and the response.

use bytes::Bytes;
use cachet::{
    Cache, CacheKey, CacheLayer, CacheStatus, Filter, ForwardReason, MemoryStore, RequestHead,
};
use cachet_tests::{Origin, Reply, client, get, read};
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::{Layer, ServiceExt};

type Stack = Cache<Client<HttpConnector, Empty<Bytes>>, MemoryStore>;

async fn status(cache: &Stack, request: Request<Empty<Bytes>>) -> CacheStatus {
    let response = cache
        .clone()
        .oneshot(request)
        .await
        .expect("the request succeeds");
    let status = *response
        .extensions()
        .get::<CacheStatus>()
        .expect("every response has a status");
    read(response.into_body())
        .await
        .expect("the body completes");
    status
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
            not_stored(ForwardReason::Miss)
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
            not_stored(ForwardReason::Miss)
        );
    }
    status(&cache, get(&origin.url("/page"))).await;
    assert_eq!(
        status(&cache, get(&origin.url("/page"))).await,
        CacheStatus::Hit
    );
    assert_eq!(origin.requests(), 5);
}
