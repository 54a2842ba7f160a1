//! `RedisStore` against real `redis-server` processes: the store protocol, the key
//! layout, caches sharing one Redis, signed entries, a Redis Cluster, and Redis killed,
//! paused, restarted, full or cut off mid-reply under concurrent load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachet::clock::ManualClock;
use cachet::store::{StoreRequest, StoreResponse};
use cachet::verify::{Keyring, VerifyLayer};
use cachet::{BoxError, Cache, CacheKey, CacheLayer, CacheStatus, ForwardReason};
use cachet_redis::RedisStore;
use cachet_tests::redis::{CutProxy, RedisCluster, RedisServer};
use cachet_tests::{Origin, Reply, client, get, read};
use http::Method;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::{Layer, Service, ServiceExt};

type Http = Client<HttpConnector, Empty<Bytes>>;

fn key(text: &str) -> CacheKey {
    CacheKey::from_text(text)
}

fn key_of(url: &str) -> CacheKey {
    CacheKey::for_request(&Method::GET, &url.parse().expect("valid URL")).expect("absolute URL")
}

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::new(server.url()).expect("the fixture's URL is valid")
}

/// Small bounds for the fault tests, so that they finish in a few seconds.
fn tight(url: String) -> RedisStore {
    RedisStore::builder(url)
        .wait_timeout(Duration::from_millis(50))
        .connect_timeout(Duration::from_millis(100))
        .command_timeout(Duration::from_millis(100))
        .build()
        .expect("a valid configuration")
}

async fn call<S>(store: &S, request: StoreRequest) -> Result<StoreResponse, BoxError>
where
    S: Service<StoreRequest, Response = StoreResponse, Error = BoxError> + Clone,
{
    store.clone().oneshot(request).await
}

async fn put<S>(store: &S, key: &CacheKey, value: impl Into<Bytes>, ttl: Duration)
where
    S: Service<StoreRequest, Response = StoreResponse, Error = BoxError> + Clone,
{
    let request = StoreRequest::Put {
        key: key.clone(),
        value: value.into().into(),
        ttl,
    };
    assert_eq!(
        call(store, request).await.expect("redis accepts the write"),
        StoreResponse::Done
    );
}

async fn lookup(store: &RedisStore, key: &CacheKey) -> StoreResponse {
    call(store, StoreRequest::Get(key.clone()))
        .await
        .expect("redis answers the read")
}

fn exists(server: &RedisServer, redis_key: &str) -> bool {
    server.query::<bool>(redis::cmd("EXISTS").arg(redis_key))
}

/// Waits for the cache's background write of `redis_key` to land.
async fn written(server: &RedisServer, redis_key: &str) {
    until(Duration::from_secs(2), redis_key, || {
        exists(server, redis_key)
    })
    .await;
}

/// Waits until `done` holds; `bound` guards against a hang.
async fn until(bound: Duration, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + bound;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn fetch<St>(
    cache: &Cache<Http, St>,
    url: &str,
) -> Result<(CacheStatus, Bytes), cachet::Error>
where
    St: cachet::store::Store,
{
    send(cache, get(url)).await
}

async fn send<St>(
    cache: &Cache<Http, St>,
    request: http::Request<Empty<Bytes>>,
) -> Result<(CacheStatus, Bytes), cachet::Error>
where
    St: cachet::store::Store,
{
    let response = cache.clone().oneshot(request).await?;
    let status = *response
        .extensions()
        .get::<CacheStatus>()
        .expect("every response has a status");
    let body = read(response.into_body())
        .await
        .expect("the body completes");
    Ok((status, body))
}

fn stored_miss() -> CacheStatus {
    CacheStatus::Forwarded {
        reason: ForwardReason::UriMiss,
        stored: true,
    }
}

/// An origin whose body names the path, so a wrong entry served is seen.
async fn naming_origin() -> Origin {
    Origin::start(|seen| {
        Reply::ok(format!("body of {}", seen.path)).header("cache-control", "max-age=600")
    })
    .await
}

// ---------------------------------------------------------------------------------------
// The store protocol, on one server and on a cluster.

/// Get, put, overwrite, expiry, delete and a large value, checked through the store and
/// on the Redis node that holds each key.
async fn store_suite<'a>(store: &RedisStore, node_for: impl Fn(&str) -> &'a RedisServer) {
    let k = key("GET http://example.com/suite");
    let redis_key = store.redis_key(&k);
    assert_eq!(redis_key, "cachet:GET http://example.com/suite");
    assert_eq!(lookup(store, &k).await, StoreResponse::NotFound);

    let binary = Bytes::from_static(b"\0entry\r\n\xff bytes");
    put(store, &k, binary.clone(), Duration::from_secs(60)).await;
    assert_eq!(lookup(store, &k).await, StoreResponse::Found(binary.into()));
    let pttl: i64 = node_for(&redis_key).query(redis::cmd("PTTL").arg(&redis_key));
    assert!(
        (59_000..=60_000).contains(&pttl),
        "written with PX 60000, PTTL {pttl}"
    );

    put(store, &k, "second", Duration::from_millis(1_500)).await;
    assert_eq!(
        lookup(store, &k).await,
        StoreResponse::Found("second".into())
    );
    let pttl: i64 = node_for(&redis_key).query(redis::cmd("PTTL").arg(&redis_key));
    assert!((1..=1_500).contains(&pttl), "PTTL {pttl}");

    let big = Bytes::from(vec![0xa5; 100 * 1024]);
    let big_key = key("GET http://example.com/big");
    put(store, &big_key, big.clone(), Duration::from_secs(60)).await;
    assert_eq!(
        lookup(store, &big_key).await,
        StoreResponse::Found(big.into())
    );

    assert_eq!(
        call(store, StoreRequest::Delete(k.clone()))
            .await
            .expect("redis deletes"),
        StoreResponse::Done
    );
    assert_eq!(lookup(store, &k).await, StoreResponse::NotFound);
    assert!(!exists(node_for(&redis_key), &redis_key));

    // A TTL under a millisecond is still an expiry (PX 1), never a key kept forever.
    let brief = key("GET http://example.com/brief");
    put(store, &brief, "x", Duration::from_micros(10)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(lookup(store, &brief).await, StoreResponse::NotFound);
    assert_eq!(store.metrics().errors(), 0);
}

#[tokio::test]
async fn the_store_protocol_round_trips_with_set_px_get_and_del() {
    let server = RedisServer::start();
    let store = store(&server);
    store_suite(&store, |_| &server).await;
    store.ping().await.expect("the server answers PING");
}

#[tokio::test]
async fn a_lookup_is_one_command_without_a_ping_per_checkout() {
    let server = RedisServer::start();
    let store = store(&server);
    let k = key("GET http://example.com/one-round-trip");
    put(&store, &k, "v", Duration::from_secs(60)).await;
    server.query::<()>(redis::cmd("CONFIG").arg("RESETSTAT"));
    for _ in 0..20 {
        assert_eq!(lookup(&store, &k).await, StoreResponse::Found("v".into()));
    }
    let stats: String = server.query(redis::cmd("INFO").arg("commandstats"));
    let calls = |command: &str| {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse::<u64>().expect("a count"))
    };
    assert_eq!(calls("getrange"), 20, "{stats}");
    assert_eq!(calls("ping"), 0, "{stats}");
}

#[tokio::test]
async fn a_value_past_the_size_limit_is_neither_written_nor_read_whole() {
    use cachet::store::{Cursor, Scan};

    let server = RedisServer::start();
    let store = RedisStore::builder(server.url())
        .max_value_bytes(4096)
        .build()
        .expect("a valid configuration");
    let too_large = |error: BoxError| {
        let error = error
            .downcast::<cachet_redis::Error>()
            .expect("a redis store error");
        assert!(error.is_too_large(), "{error}");
        error.to_string()
    };
    let at_limit = key("GET http://example.com/at-limit");
    let whole = Bytes::from(vec![1; 4096]);
    put(&store, &at_limit, whole.clone(), Duration::from_secs(60)).await;
    assert_eq!(
        lookup(&store, &at_limit).await,
        StoreResponse::Found(whole.into())
    );

    // A write past the limit is not sent.
    let over = key("GET http://example.com/over");
    let put_over = StoreRequest::Put {
        key: over.clone(),
        value: Bytes::from(vec![2; 4097]).into(),
        ttl: Duration::from_secs(60),
    };
    let error = call(&store, put_over)
        .await
        .expect_err("too large to write");
    assert_eq!(
        too_large(error),
        "redis put failed: the value is larger than the store's limit of 4096 bytes (max_value_bytes)"
    );
    assert!(!exists(&server, &store.redis_key(&over)));

    // One written by anyone else is refused without being read whole, by a lookup and
    // by a listing, which names it with its size.
    let planted = 4 << 20;
    server.query::<()>(
        redis::cmd("SET")
            .arg(store.redis_key(&over))
            .arg(vec![7u8; planted]),
    );
    let sent = || -> u64 {
        let stats: String = server.query(redis::cmd("INFO").arg("stats"));
        stats
            .lines()
            .find_map(|line| line.strip_prefix("total_net_output_bytes:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("INFO stats counts the bytes sent")
    };
    let before = sent();
    let error = call(&store, StoreRequest::Get(over.clone()))
        .await
        .expect_err("too large to read");
    assert!(too_large(error).starts_with("redis get failed"));
    let StoreResponse::Page(page) = call(&store, StoreRequest::Scan(Scan::new(Cursor::start())))
        .await
        .expect("a listing")
    else {
        panic!("a scan answers with a page");
    };
    let listed = page
        .items()
        .iter()
        .find(|item| item.key() == &over)
        .expect("the planted value is listed");
    assert_eq!(listed.size(), planted as u64);
    assert!(listed.value().is_err(), "{listed:?}");
    assert!(sent() - before < 64 << 10, "read {} bytes", sent() - before);
    assert_eq!(store.metrics().errors(), 2);
}

#[tokio::test]
async fn keys_are_readable_under_the_namespace_and_namespaces_do_not_mix() {
    let server = RedisServer::start();
    let default = store(&server);
    let other = RedisStore::builder(server.url())
        .namespace("other-app:")
        .build()
        .expect("valid");
    let k = key_of("http://Example.COM:80/a?b=1");

    put(&default, &k, "mine", Duration::from_secs(60)).await;
    assert_eq!(
        server.scan("cachet:*"),
        ["cachet:GET http://example.com/a?b=1"]
    );
    assert_eq!(lookup(&other, &k).await, StoreResponse::NotFound);

    put(&other, &k, "theirs", Duration::from_secs(60)).await;
    assert_eq!(
        server.scan("other-app:*"),
        ["other-app:GET http://example.com/a?b=1"]
    );
    assert_eq!(
        lookup(&default, &k).await,
        StoreResponse::Found("mine".into())
    );
}

#[tokio::test]
async fn a_long_key_is_hashed_behind_a_readable_prefix() {
    let server = RedisServer::start();
    let store = store(&server);
    let base = format!("GET http://example.com/search?q={}", "x".repeat(2_000));
    let (one, two) = (key(&format!("{base}1")), key(&format!("{base}2")));
    put(&store, &one, "one", Duration::from_secs(60)).await;
    put(&store, &two, "two", Duration::from_secs(60)).await;

    let keys = server.scan("cachet:*");
    assert_eq!(keys.len(), 2, "{keys:?}");
    for redis_key in &keys {
        assert!(redis_key.starts_with("cachet:GET http://example.com/search?q=xxx"));
        assert!(redis_key.contains(" #sha256:"), "{redis_key}");
        assert!(redis_key.len() < 7 + RedisStore::HASHED_PREFIX_BYTES + 80);
    }
    assert!(keys.contains(&store.redis_key(&one)));
    assert_eq!(
        lookup(&store, &one).await,
        StoreResponse::Found("one".into())
    );
    assert_eq!(
        lookup(&store, &two).await,
        StoreResponse::Found("two".into())
    );
}

// ---------------------------------------------------------------------------------------
// The cache over Redis.

#[tokio::test]
async fn a_miss_is_stored_in_redis_and_the_next_request_is_a_hit() {
    let server = RedisServer::start();
    let origin = naming_origin().await;
    let store = store(&server);
    let cache = CacheLayer::new(store.clone()).layer(client());
    let url = origin.url("/page");

    let (status, body) = fetch(&cache, &url).await.expect("a miss");
    assert_eq!(
        (status, body.as_ref()),
        (stored_miss(), b"body of /page".as_slice())
    );
    written(&server, &store.redis_key(&key_of(&url))).await;

    let (status, body) = fetch(&cache, &url).await.expect("a hit");
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"body of /page".as_slice())
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn two_caches_on_one_redis_share_their_hits() {
    let server = RedisServer::start();
    let origin = naming_origin().await;
    // Two stores with their own pools, as two processes would have.
    let first = CacheLayer::new(store(&server)).layer(client());
    let second = CacheLayer::new(store(&server)).layer(client());
    let url = origin.url("/shared");

    assert_eq!(fetch(&first, &url).await.expect("a miss").0, stored_miss());
    written(&server, &store(&server).redis_key(&key_of(&url))).await;
    let (status, body) = fetch(&second, &url).await.expect("a hit");
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"body of /shared".as_slice())
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_written_at_once_by_two_caches_both_stay_rfc_9111_4_1() {
    let server = RedisServer::start();
    let origin = Origin::start(|seen| {
        let language = seen.headers["accept-language"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        Reply::ok(format!("in {language}"))
            .header("cache-control", "max-age=600")
            .header("vary", "accept-language")
    })
    .await;
    let first = CacheLayer::new(store(&server)).layer(client());
    let second = CacheLayer::new(store(&server)).layer(client());
    let url = origin.url("/greeting");
    let request = |language: &str| {
        http::Request::get(&url)
            .header("accept-language", language)
            .body(Empty::new())
            .expect("a valid request")
    };

    let (en, fr) = tokio::join!(send(&first, request("en")), send(&second, request("fr")));
    assert_eq!(en.expect("a miss").1, "in en");
    assert_eq!(fr.expect("a miss").1, "in fr");
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.scan("cachet:*").len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", server.scan("cachet:*"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Each cache serves the variant the other one stored.
    let (status, body) = send(&first, request("fr")).await.expect("a hit");
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"in fr".as_slice())
    );
    let (status, body) = send(&second, request("en")).await.expect("a hit");
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"in en".as_slice())
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn verify_over_redis_refuses_an_entry_written_without_the_key() {
    let server = RedisServer::start();
    let origin = naming_origin().await;
    let store = store(&server);
    let keyring = Keyring::new("secret-for-the-redis-test").expect("not empty");
    let cache = CacheLayer::new(VerifyLayer::new(keyring).layer(store.clone())).layer(client());
    let url = origin.url("/signed");
    let redis_key = store.redis_key(&key_of(&url));

    fetch(&cache, &url).await.expect("a miss");
    written(&server, &redis_key).await;
    assert_eq!(
        fetch(&cache, &url).await.expect("a hit").0,
        CacheStatus::Hit
    );

    // Anyone who can reach the Redis can write; without the key it does not verify.
    server.query::<()>(redis::cmd("SET").arg(&redis_key).arg("exploit!"));
    let error = fetch(&cache, &url)
        .await
        .expect_err("a tampered entry is never served");
    assert!(error.is_bad_signature(), "{error:?}");
    assert_eq!(error.cache_key(), Some(&key_of(&url)));
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_reply_cut_mid_way_is_never_served_truncated() {
    let server = RedisServer::start();
    let proxy = CutProxy::start(server.addr()).await;
    let store = RedisStore::builder(proxy.url())
        .max_connections(1)
        .build()
        .expect("valid");

    let k = key("GET http://example.com/cut");
    let value = Bytes::from(vec![0x5a; 100 * 1024]);
    put(&store, &k, value.clone(), Duration::from_secs(60)).await;
    proxy.cut_next_reply_after(1_000);
    match call(&store, StoreRequest::Get(k.clone())).await {
        Ok(StoreResponse::Found(found)) => assert_eq!(found.bytes(), &value, "never a part of it"),
        Ok(other) => panic!("the entry is there: {other:?}"),
        Err(error) => assert!(!error.to_string().is_empty()),
    }
    assert_eq!(proxy.cuts(), 1);
    assert!(store.metrics().discarded_connections() >= 1);
    assert_eq!(lookup(&store, &k).await, StoreResponse::Found(value.into()));

    // Through the cache: the body is whole, from Redis or from the origin.
    let body = Bytes::from(vec![b'o'; 50 * 1024]);
    let served = body.clone();
    let origin =
        Origin::start(move |_| Reply::ok(served.clone()).header("cache-control", "max-age=60"))
            .await;
    let cache = CacheLayer::new(store.clone()).layer(client());
    let url = origin.url("/cut");
    fetch(&cache, &url).await.expect("a miss");
    written(&server, &store.redis_key(&key_of(&url))).await;
    proxy.cut_next_reply_after(2_000);
    let (_, received) = fetch(&cache, &url).await.expect("succeeds");
    assert_eq!(received, body);
    assert_eq!(proxy.cuts(), 2);
}

#[tokio::test]
async fn a_memory_tier_over_signed_redis_serves_repeated_hits_without_redis() {
    use cachet::MemoryStore;
    use cachet::store::Tiered;

    let server = RedisServer::start();
    let origin = naming_origin().await;
    let url = origin.url("/tiered");
    let signed_redis =
        VerifyLayer::new(Keyring::new("tier key").expect("not empty")).layer(store(&server));
    let tiered =
        Tiered::new(MemoryStore::default(), signed_redis).near_ttl(Duration::from_secs(30));
    let cache = CacheLayer::new(tiered).layer(client());

    assert_eq!(fetch(&cache, &url).await.expect("a miss").0, stored_miss());
    written(&server, &format!("cachet:GET {url}")).await;

    // Another process's cache over the same Redis finds it through its own empty memory
    // tier, then keeps it near.
    let other = CacheLayer::new(Tiered::new(
        MemoryStore::default(),
        VerifyLayer::new(Keyring::new("tier key").expect("not empty")).layer(store(&server)),
    ))
    .layer(client());
    assert_eq!(
        fetch(&other, &url).await.expect("a hit").0,
        CacheStatus::Hit
    );
    server.query::<()>(redis::cmd("CONFIG").arg("RESETSTAT"));
    for _ in 0..10 {
        let (status, body) = fetch(&other, &url).await.expect("a hit");
        assert_eq!(
            (status, body.as_ref()),
            (CacheStatus::Hit, b"body of /tiered".as_slice())
        );
    }
    let stats: String = server.query(redis::cmd("INFO").arg("commandstats"));
    assert!(
        !stats.contains("cmdstat_get:"),
        "repeated hits stay in memory: {stats}"
    );
    assert_eq!(origin.requests(), 1);
}

/// A password with a `/`, `?` or `#` of its own (base64 secrets hold `/`) must be
/// percent-encoded; pasted as it is, it is refused, and no part of it shows in the message,
/// which once quoted what followed the `/` as a database.
#[tokio::test]
async fn a_password_with_a_slash_question_mark_or_hash_never_shows_in_a_build_error() {
    let server = RedisServer::start();
    server.query::<()>(
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("s3cr/et"),
    );
    let encoded = format!("redis://:s3cr%2Fet@127.0.0.1:{}/0", server.port());
    let store = RedisStore::new(encoded).expect("a valid url");
    store
        .ping()
        .await
        .expect("percent-encoded, the password works");
    for password in ["s3cr/et", "s3cr?et", "s3cr#et"] {
        let url = format!("redis://app:{password}@127.0.0.1:{}/0", server.port());
        let message = match RedisStore::new(url.as_str()) {
            Ok(store) => panic!("{url} was taken: {store:?}"),
            Err(error) => error.to_string(),
        };
        assert!(!message.contains("s3cr"), "{message}");
        assert!(message.contains("percent-encode"), "{message}");
    }
}

mod cluster;
mod hashed;
mod invalidation;
mod load;
