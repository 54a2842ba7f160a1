//! What the hit bench and the `profile_hit` example share: the request, the origin's
//! response, and the floor.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use cachet::CacheKey;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use tower::Service;

/// The request every contender answers.
pub type Req = Request<Full<Bytes>>;

/// A GET for `uri` with a browser's usual headers.
pub fn request(uri: &str) -> Req {
    Request::get(uri)
        .header("user-agent", "bench/1.0")
        .header("accept", "*/*")
        .body(Full::default())
        .expect("the bench request is valid")
}

/// The origin's response: a script, public for an hour, with a validator and a `Date`.
pub fn origin_response(body: &Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "application/javascript")
        .header("cache-control", "public, max-age=3600")
        .header("etag", "\"abc123\"")
        .header(
            "date",
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        )
        .body(Full::new(body.clone()))
        .expect("the bench response is valid")
}

/// A stored response as the floors keep it.
type Parts = (StatusCode, HeaderMap, Bytes);

/// The floor: a prebuilt response handed back from a concurrent cache by its cache key
/// (the key built per request as cachet builds it), its body a `Bytes` clone.
///
/// Two caches: `quick_cache`, the crate `MemoryStore` is built on (the stricter floor),
/// and moka, the floor issue #6 names (what the peers are built on).
#[derive(Clone, Debug)]
pub struct Floor {
    map: Map,
}

#[derive(Clone, Debug)]
enum Map {
    QuickCache(Arc<quick_cache::sync::Cache<CacheKey, Parts>>),
    Moka(moka::sync::Cache<CacheKey, Parts>),
}

impl Floor {
    /// A floor over `quick_cache` holding the origin's response for `uri`.
    pub fn quick_cache(uri: &str, body: &Bytes) -> Self {
        let cache = quick_cache::sync::Cache::new(1024);
        let (key, parts) = prebuilt(uri, body);
        cache.insert(key, parts);
        Self {
            map: Map::QuickCache(Arc::new(cache)),
        }
    }

    /// A floor over moka holding the origin's response for `uri`.
    pub fn moka(uri: &str, body: &Bytes) -> Self {
        let cache = moka::sync::Cache::new(1024);
        let (key, parts) = prebuilt(uri, body);
        cache.insert(key, parts);
        Self {
            map: Map::Moka(cache),
        }
    }
}

/// The key for a GET of `uri` and the origin's response for it, in parts.
fn prebuilt(uri: &str, body: &Bytes) -> (CacheKey, Parts) {
    let (parts, _) = origin_response(body).into_parts();
    let key = CacheKey::for_request(&http::Method::GET, &uri.parse().expect("a valid URI"))
        .expect("an absolute URI has a key");
    (key, (parts.status, parts.headers, body.clone()))
}

impl Service<Req> for Floor {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = CacheKey::for_request(request.method(), request.uri())
            .expect("an absolute URI has a key");
        let found = match &self.map {
            Map::QuickCache(cache) => cache.get(&key),
            Map::Moka(cache) => cache.get(&key),
        };
        let (status, headers, body) = found.expect("the floor is prefilled");
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        ready(Ok(response))
    }
}
