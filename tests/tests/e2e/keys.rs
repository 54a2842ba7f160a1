//! Cache keys: ignored parameters and headers, credentials kept out of the store, headers
//! that select a response, and query sorting; checked against a real origin and, for what
//! is stored, a real Redis.

use bytes::Bytes;
use cachet::{Cache, CacheLayer, CacheStatus, Keys, MemoryStore};
use cachet_redis::RedisStore;
use cachet_tests::redis::RedisServer;
use cachet_tests::{Origin, Reply, client, fetch, get};
use http::Request;
use http::header::{ACCEPT_LANGUAGE, HeaderName};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::Layer;

type Stack<St> = Cache<Client<HttpConnector, Empty<Bytes>>, St>;

async fn status<St: cachet::store::Store>(
    cache: &Stack<St>,
    request: Request<Empty<Bytes>>,
) -> (CacheStatus, Bytes) {
    let fetched = fetch(cache, request).await;
    (fetched.status, fetched.body)
}

/// An origin that echoes the path (not the query, which may hold secrets the tests look
/// for in the store) and the language it was asked for, cacheable for a minute (publicly, so that `Authorization` does not stop a shared
/// cache).
async fn origin() -> Origin {
    Origin::start(|seen| {
        let language = seen
            .headers
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let path = seen.path.split('?').next().unwrap_or_default();
        Reply::ok(format!("{path} {language}"))
            .header("cache-control", "public, max-age=60")
            .header("vary", "authorization")
    })
    .await
}

/// Waits for the cache's background writes: until the Redis holds `count` keys.
async fn written(server: &RedisServer, count: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while server.scan("*").len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "{count} keys were not written within 2 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Every key and value in the Redis, as text, for looking for secrets in it.
fn everything_stored(server: &RedisServer) -> String {
    let mut all = String::new();
    for key in server.scan("*") {
        let value: Vec<u8> = server.query(redis::cmd("GET").arg(&key));
        all.push_str(&key);
        all.push('\n');
        all.push_str(&String::from_utf8_lossy(&value));
        all.push('\n');
    }
    all
}

fn with_header(url: &str, name: &'static str, value: &'static str) -> Request<Empty<Bytes>> {
    let mut request = get(url);
    request
        .headers_mut()
        .insert(name, http::HeaderValue::from_static(value));
    request
}

#[tokio::test]
async fn an_ignored_parameter_does_not_split_the_cache_and_is_never_stored() {
    let origin = origin().await;
    let redis = RedisServer::start();
    let store = RedisStore::new(redis.url()).expect("the fixture's URL is valid");
    let cache = CacheLayer::new(store)
        .keys(Keys::new().ignore(["session"]))
        .layer(client());
    let first = status(&cache, get(&origin.url("/a?q=1&session=s3cr3t-one"))).await;
    assert!(matches!(
        first.0,
        CacheStatus::Forwarded { stored: true, .. }
    ));
    written(&redis, 2).await; // the variant index and the response
    let second = status(&cache, get(&origin.url("/a?q=1&session=s3cr3t-two"))).await;
    assert_eq!(second.0, CacheStatus::Hit);
    assert_eq!(origin.requests(), 1);
    let stored = everything_stored(&redis);
    assert!(stored.contains("/a?q=1"), "{stored}");
    assert!(!stored.contains("s3cr3t"), "{stored}");
}

#[tokio::test]
async fn credentials_keep_users_apart_but_are_stored_only_as_digests() {
    let origin = origin().await;
    let redis = RedisServer::start();
    let store = RedisStore::new(redis.url()).expect("the fixture's URL is valid");
    let cache = CacheLayer::new(store).layer(client());
    let one = origin.url("/k?api_key=s3cr3t-one");
    let two = origin.url("/k?api_key=s3cr3t-two");
    status(&cache, with_header(&one, "authorization", "Bearer t0ken-a")).await;
    status(&cache, with_header(&two, "authorization", "Bearer t0ken-a")).await;
    status(&cache, with_header(&one, "authorization", "Bearer t0ken-b")).await;
    assert_eq!(origin.requests(), 3, "each credential has its own entry");
    written(&redis, 5).await; // two indexes, three responses
    let (again, _) = status(&cache, with_header(&one, "authorization", "Bearer t0ken-a")).await;
    assert_eq!(again, CacheStatus::Hit);
    let stored = everything_stored(&redis);
    assert!(stored.contains("api_key=sha256:"), "{stored}");
    assert!(!stored.contains("s3cr3t"), "{stored}");
    assert!(!stored.contains("t0ken"), "{stored}");
}

#[tokio::test]
async fn a_session_cookie_a_response_varies_on_keeps_users_apart_but_is_stored_only_as_a_digest() {
    // Django's session middleware, say, adds `Vary: Cookie`. A cookie is no credential: a
    // response to a request with one is stored as usual, not held to RFC 9111 §3.5.
    let origin = Origin::start(|_| {
        Reply::ok("page")
            .header("cache-control", "max-age=60")
            .header("vary", "Cookie")
    })
    .await;
    let redis = RedisServer::start();
    let store = RedisStore::new(redis.url()).expect("the fixture's URL is valid");
    let cache = CacheLayer::new(store).layer(client());
    let url = origin.url("/account");
    for session in ["sessionid=s3cr3t-one", "sessionid=s3cr3t-two"] {
        status(&cache, with_header(&url, "cookie", session)).await;
    }
    assert_eq!(origin.requests(), 2, "each session has its own entry");
    written(&redis, 3).await; // the index and two responses
    let (again, _) = status(&cache, with_header(&url, "cookie", "sessionid=s3cr3t-one")).await;
    assert_eq!(again, CacheStatus::Hit);
    let stored = everything_stored(&redis);
    assert!(!stored.contains("s3cr3t"), "{stored}");
}

#[tokio::test]
async fn rfc9111_3_5_a_credential_header_keeps_a_shared_cache_from_sharing_what_does_not_vary_on_it()
 {
    // `/plain` does not vary on the key; `/public` says it may be shared; `/varies` varies.
    let origin = Origin::start(|seen| {
        let reply = Reply::ok(seen.path.clone());
        match seen.path.as_str() {
            "/public" => reply.header("cache-control", "public, max-age=60"),
            "/varies" => reply
                .header("cache-control", "max-age=60")
                .header("vary", "x-api-key"),
            _ => reply.header("cache-control", "max-age=60"),
        }
    })
    .await;
    let shared = CacheLayer::new(MemoryStore::default()).layer(client());
    let private = CacheLayer::new(MemoryStore::default())
        .private()
        .layer(client());
    let key = |path: &str, value: &'static str| with_header(&origin.url(path), "x-api-key", value);
    let stored = |status| matches!(status, CacheStatus::Forwarded { stored: true, .. });

    assert!(!stored(status(&shared, key("/plain", "a")).await.0));
    assert_ne!(
        status(&shared, key("/plain", "b")).await.0,
        CacheStatus::Hit
    );
    assert!(stored(status(&shared, key("/public", "a")).await.0));
    assert_eq!(
        status(&shared, key("/public", "b")).await.0,
        CacheStatus::Hit
    );
    assert!(stored(status(&shared, key("/varies", "a")).await.0));
    assert_ne!(
        status(&shared, key("/varies", "b")).await.0,
        CacheStatus::Hit
    );
    assert_eq!(
        status(&shared, key("/varies", "a")).await.0,
        CacheStatus::Hit
    );
    // A private cache serves one user: it stores what a shared one may not.
    assert!(stored(status(&private, key("/plain", "a")).await.0));
}

#[tokio::test]
async fn configured_headers_select_a_response_as_vary_would() {
    let origin = origin().await;
    let cache = CacheLayer::new(MemoryStore::default())
        .keys(Keys::new().headers([ACCEPT_LANGUAGE]))
        .layer(client());
    let url = origin.url("/l");
    let en = || with_header(&url, "accept-language", "en");
    let fr = || with_header(&url, "accept-language", "fr");
    assert_eq!(status(&cache, en()).await.1, "/l en");
    assert_eq!(status(&cache, fr()).await.1, "/l fr");
    assert_eq!(
        status(&cache, en()).await,
        (CacheStatus::Hit, "/l en".into())
    );
    assert_eq!(
        status(&cache, fr()).await,
        (CacheStatus::Hit, "/l fr".into())
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn a_sorted_query_shares_one_entry_across_parameter_orders() {
    let origin = origin().await;
    let cache = CacheLayer::new(MemoryStore::default())
        .keys(Keys::new().sort_query(true))
        .layer(client());
    status(&cache, get(&origin.url("/s?b=2&a=1"))).await;
    let (again, _) = status(&cache, get(&origin.url("/s?a=1&b=2"))).await;
    assert_eq!(again, CacheStatus::Hit);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn an_entry_stored_without_a_selecting_header_is_not_served_by_a_cache_that_selects_by_it() {
    let origin = Origin::start(|seen| {
        let tenant = seen
            .headers
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        Reply::ok(format!("for {tenant}")).header("cache-control", "max-age=60")
    })
    .await;
    // Two configurations sharing one store, as during a rolling deploy.
    let store = MemoryStore::default();
    let plain = CacheLayer::new(store.clone()).layer(client());
    let selecting = CacheLayer::new(store)
        .keys(Keys::new().headers([HeaderName::from_static("x-tenant")]))
        .layer(client());
    let url = origin.url("/r");
    let tenant = |name: &'static str| {
        Request::get(&url)
            .header("x-tenant", name)
            .body(Empty::<Bytes>::new())
            .expect("valid")
    };
    fetch(&plain, tenant("a")).await;
    assert_eq!(fetch(&plain, tenant("b")).await.status, CacheStatus::Hit);
    let other = fetch(&selecting, tenant("b")).await;
    assert_ne!(other.status, CacheStatus::Hit);
    assert_eq!(other.body, "for b");
}

/// A GET sent with content (an Elasticsearch-style `GET /_search` with a JSON body) may be
/// answered by that content, which the key leaves out, so it passes the cache. A client's
/// request built with a body has no `Content-Length` yet (hyper's client adds it, below the
/// cache): the body says so where the headers do not.
#[tokio::test]
async fn a_get_whose_headers_do_not_announce_its_content_passes_the_cache() {
    use http_body_util::Full;

    let origin = Origin::start(|seen| {
        let length = seen
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        Reply::ok(format!("answer to {length} bytes")).header("cache-control", "max-age=60")
    })
    .await;
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let cache = CacheLayer::new(MemoryStore::default()).layer(client);
    let search = |query: &'static str| {
        Request::get(origin.url("/_search"))
            .body(Full::new(Bytes::from_static(query.as_bytes())))
            .expect("a valid request")
    };
    let bypassed = CacheStatus::Forwarded {
        reason: cachet::ForwardReason::Bypass,
        stored: false,
    };
    let first = fetch(&cache, search(r#"{"q":"a"}"#)).await;
    assert_eq!(
        (first.body.as_ref(), first.status),
        (&b"answer to 9 bytes"[..], bypassed)
    );
    let second = fetch(&cache, search(r#"{"q":"bbbb"}"#)).await;
    assert_eq!(
        (second.body.as_ref(), second.status),
        (&b"answer to 12 bytes"[..], bypassed),
        "each query is answered by its own content"
    );
    // Without content, the same URL is cached as usual.
    let plain = || {
        Request::get(origin.url("/_search"))
            .body(Full::default())
            .expect("valid")
    };
    fetch(&cache, plain()).await;
    assert_eq!(fetch(&cache, plain()).await.status, CacheStatus::Hit);
    assert_eq!(origin.requests(), 3);
}
