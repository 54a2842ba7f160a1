//! The management API (`cachet::manage::Entries`) over a real `redis-server`, directly
//! and behind `VerifyLayer`: listing pages through everything, purging a URL sends the
//! next request to the origin, expiry follows the cache's clock, clearing stays in the
//! namespace, a cluster is walked master by master, and a store that cannot list says so.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachet::clock::ManualClock;
use cachet::manage::{Entries, EntryKind};
use cachet::store::{Cursor, StoreRequest, StoreResponse};
use cachet::verify::{Keyring, VerifyLayer};
use cachet::{BoxError, CacheKey, CacheLayer, CacheStatus};
use cachet_redis::RedisStore;
use cachet_tests::redis::{RedisCluster, RedisServer};
use cachet_tests::{Origin, Reply, client, get, read};
use tower::{Layer, Service, ServiceExt};

pub(crate) fn store(server: &RedisServer) -> RedisStore {
    RedisStore::new(server.url()).expect("the fixture's URL is valid")
}

pub(crate) async fn put<S>(store: &S, key: &str, value: &'static str)
where
    S: Service<StoreRequest, Response = StoreResponse, Error = BoxError> + Clone,
{
    let request = StoreRequest::Put {
        key: CacheKey::from_text(key),
        value: value.into(),
        ttl: Duration::from_secs(600),
    };
    store
        .clone()
        .oneshot(request)
        .await
        .expect("redis accepts the write");
}

/// Every key a full listing shows, following the pages from the start.
async fn all_keys<St>(entries: &Entries<St>, limit: usize) -> (Vec<String>, usize)
where
    St: Service<StoreRequest, Response = StoreResponse, Error = BoxError> + Clone,
{
    let (mut keys, mut pages, mut cursor) = (Vec::new(), 0, Cursor::start());
    loop {
        let page = entries.list(cursor, limit).await.expect("redis lists");
        pages += 1;
        keys.extend(page.entries.iter().map(|e| e.key.to_string()));
        match page.next {
            Some(next) => cursor = next,
            None => return (keys, pages),
        }
    }
}

/// Waits until the cache's background writes have left `count` entries.
async fn stored<St>(entries: &Entries<St>, count: u64)
where
    St: Service<StoreRequest, Response = StoreResponse, Error = BoxError> + Clone,
{
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = entries.stats().await.expect("redis lists").entries;
        if now == count {
            return;
        }
        assert!(Instant::now() < deadline, "{now} entries, not {count}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An origin whose responses vary on `Accept-Language`, fresh for `/short` 60 seconds
/// and for anything else ten minutes.
async fn varying_origin() -> Origin {
    Origin::start(|seen| {
        let lifetime = if seen.path == "/short" { 60 } else { 600 };
        Reply::ok(format!(
            "{} for {:?}",
            seen.path,
            seen.headers.get("accept-language")
        ))
        .header("cache-control", format!("max-age={lifetime}"))
        .header("vary", "accept-language")
    })
    .await
}

fn get_in(url: &str, language: &'static str) -> http::Request<http_body_util::Empty<Bytes>> {
    let mut request = get(url);
    request
        .headers_mut()
        .insert("accept-language", http::HeaderValue::from_static(language));
    request
}

#[tokio::test]
async fn a_listing_is_paged_and_complete_and_recovers_long_hashed_keys() {
    let server = RedisServer::start();
    let store = store(&server);
    let mut expected = BTreeSet::new();
    for i in 0..150 {
        let key = format!("GET http://example.com/{i}");
        put(&store, &key, "v").await;
        expected.insert(key);
    }
    let long = format!("GET http://example.com/search?q={}", "x".repeat(2_000));
    put(&store, &long, "long").await;
    expected.insert(long.clone());
    // Not under the namespace: never listed.
    server.query::<()>(
        redis::cmd("SET")
            .arg("other-app:GET http://example.com/")
            .arg("x"),
    );

    let entries = Entries::new(store.clone());
    let (keys, pages) = all_keys(&entries, 20).await;
    assert!(pages > 1, "paged");
    let listed: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(listed.len(), keys.len(), "no entry listed twice");
    assert_eq!(listed, expected);

    let shown = entries
        .show("http://example.com/search?q=".to_owned().as_str())
        .await
        .expect("redis lists");
    assert!(shown.is_empty(), "the URL with an empty query has no entry");
    let url = long.strip_prefix("GET ").expect("a GET key");
    let shown = entries.show(url).await.expect("redis lists");
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].key.as_str(), long);
    assert!(
        shown[0]
            .ttl
            .is_some_and(|ttl| ttl <= Duration::from_secs(600))
    );
    // The stored value of a hashed key carries the key in front; the store strips it.
    assert_eq!(
        store
            .clone()
            .oneshot(StoreRequest::Get(CacheKey::from_text(long.as_str())))
            .await
            .expect("redis answers"),
        StoreResponse::Found("long".into())
    );
    let stats = entries.stats().await.expect("redis lists");
    assert_eq!(stats.entries, 151);
}

#[tokio::test]
async fn deleting_a_url_removes_every_variant_so_the_next_request_goes_to_the_origin() {
    let server = RedisServer::start();
    let origin = varying_origin().await;
    let layer = CacheLayer::new(store(&server));
    let cache = layer.layer(client());
    let entries = layer.entries();
    let (page, other) = (origin.url("/page"), origin.url("/other"));

    for (url, language) in [(&page, "en"), (&page, "fr"), (&other, "en")] {
        let response = cache
            .clone()
            .oneshot(get_in(url, language))
            .await
            .expect("the origin answers");
        read(response.into_body())
            .await
            .expect("the body completes");
    }
    // Two variants and an index for /page, one and an index for /other.
    stored(&entries, 5).await;
    let shown = entries.show(&page).await.expect("redis lists");
    let kinds: Vec<(EntryKind, bool)> = shown.iter().map(|e| (e.kind, e.variant)).collect();
    assert_eq!(
        kinds,
        [
            (EntryKind::Variants, false),
            (EntryKind::Response, true),
            (EntryKind::Response, true)
        ]
    );

    assert_eq!(entries.delete_url(&page).await.expect("deletes"), 3);
    assert!(entries.show(&page).await.expect("redis lists").is_empty());
    assert_eq!(entries.show(&other).await.expect("redis lists").len(), 2);

    let requests = origin.requests();
    for language in ["en", "fr"] {
        let response = cache
            .clone()
            .oneshot(get_in(&page, language))
            .await
            .expect("the origin answers");
        assert!(
            matches!(
                response.extensions().get::<CacheStatus>(),
                Some(CacheStatus::Forwarded { .. })
            ),
            "{language} went to the origin"
        );
        read(response.into_body())
            .await
            .expect("the body completes");
    }
    assert_eq!(origin.requests(), requests + 2);
}

#[tokio::test]
async fn delete_expired_deletes_stale_responses_by_the_cache_clock_and_keeps_fresh_ones() {
    let server = RedisServer::start();
    let origin = varying_origin().await;
    let clock = ManualClock::new();
    let layer = CacheLayer::new(store(&server)).clock(clock.clone());
    let cache = layer.layer(client());
    let entries = layer.entries();
    for path in ["/short", "/long"] {
        let response = cache
            .clone()
            .oneshot(get_in(&origin.url(path), "en"))
            .await
            .expect("the origin answers");
        read(response.into_body())
            .await
            .expect("the body completes");
    }
    stored(&entries, 4).await;
    assert_eq!(entries.delete_expired().await.expect("deletes"), 0);

    clock.advance(Duration::from_secs(120));
    let short = entries.show(&origin.url("/short")).await.expect("lists");
    let response = short
        .iter()
        .find(|e| e.kind == EntryKind::Response)
        .expect("the /short response is listed");
    assert!(response.stale);
    assert!(response.fresh_until.is_some_and(|t| t < clock_now(&clock)));

    assert_eq!(entries.delete_expired().await.expect("deletes"), 1);
    let long = entries.show(&origin.url("/long")).await.expect("lists");
    assert!(
        long.iter()
            .any(|e| e.kind == EntryKind::Response && !e.stale),
        "the fresh response stays: {long:?}"
    );
    // The indexes stay; only the stale response went.
    assert_eq!(entries.stats().await.expect("lists").entries, 3);
}

#[tokio::test]
async fn variants_an_invalidation_hid_are_listed_as_invalidated_and_deleted_as_expired() {
    let server = RedisServer::start();
    let origin = varying_origin().await;
    let layer = CacheLayer::new(store(&server));
    let cache = layer.layer(client());
    let entries = layer.entries();
    let page = origin.url("/page");
    let fetch = |language| {
        let cache = cache.clone();
        let page = page.clone();
        async move {
            let response = cache
                .oneshot(get_in(&page, language))
                .await
                .expect("the origin answers");
            read(response.into_body())
                .await
                .expect("the body completes");
        }
    };
    fetch("en").await;
    fetch("fr").await;
    // Each variant and each index written back (four `SET`s) before the POST: an index
    // written back after the POST's marker may be written over it, a window the docs
    // admit, which would make this test about timing.
    let sets = || -> u64 {
        let info: String = server.query(redis::cmd("INFO").arg("commandstats"));
        info.lines()
            .find_map(|line| line.strip_prefix("cmdstat_set:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|calls| calls.parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while sets() < 4 {
        assert!(Instant::now() < deadline, "{} writes, not 4", sets());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stored(&entries, 3).await;
    let hidden = |shown: &[cachet::manage::EntryInfo]| -> Vec<(String, bool)> {
        shown
            .iter()
            .filter(|e| e.variant)
            .map(|e| (e.key.to_string(), e.invalidated))
            .collect()
    };
    let before = entries.show(&page).await.expect("redis lists");
    assert!(
        hidden(&before).iter().all(|(_, hidden)| !hidden),
        "{before:?}"
    );

    // A successful POST invalidates the URL (RFC 9111 §4.4): the index now says so, and
    // the variants stored before it are served no more.
    let mut post = get(&page);
    *post.method_mut() = http::Method::POST;
    let response = cache
        .clone()
        .oneshot(post)
        .await
        .expect("the origin answers");
    read(response.into_body())
        .await
        .expect("the body completes");
    let after = entries.show(&page).await.expect("redis lists");
    let variants = hidden(&after);
    assert_eq!(variants.len(), 2, "{after:?}");
    assert!(variants.iter().all(|(_, hidden)| *hidden), "{after:?}");
    let listed = entries
        .list(Cursor::start(), 100)
        .await
        .expect("redis lists");
    // `SCAN` lists in no order; `show` in key order.
    let mut listed = hidden(&listed.entries);
    listed.sort();
    assert_eq!(listed, variants, "a listing says the same");

    // A variant fetched again is stored after the invalidation.
    let requests = origin.requests();
    fetch("en").await;
    assert_eq!(
        origin.requests(),
        requests + 1,
        "the hidden variant was not served"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    let refetched = loop {
        let shown = entries.show(&page).await.expect("redis lists");
        let variants = hidden(&shown);
        if variants
            .iter()
            .any(|(key, hidden)| key.ends_with("=en") && !hidden)
        {
            break variants;
        }
        assert!(
            Instant::now() < deadline,
            "the new variant is stored: {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        refetched
            .iter()
            .any(|(key, hidden)| key.ends_with("=fr") && *hidden),
        "{refetched:?}"
    );

    assert_eq!(entries.delete_expired().await.expect("deletes"), 1);
    let left = entries.show(&page).await.expect("redis lists");
    assert_eq!(
        hidden(&left)
            .into_iter()
            .map(|(key, _)| key)
            .collect::<Vec<_>>(),
        [format!("GET {page} vary accept-language=en")],
        "the invalidated variant went, the new one stays"
    );
}

fn clock_now(clock: &ManualClock) -> std::time::SystemTime {
    cachet::clock::Clock::now(clock)
}

#[tokio::test]
async fn clear_deletes_the_namespace_and_nothing_else() {
    let server = RedisServer::start();
    let mine = store(&server);
    let theirs = RedisStore::builder(server.url())
        .namespace("other-app:")
        .build()
        .expect("a valid configuration");
    for i in 0..2_500 {
        put(&mine, &format!("GET http://example.com/{i}"), "v").await;
    }
    put(&theirs, "GET http://example.com/0", "theirs").await;
    server.query::<()>(redis::cmd("SET").arg("foreign").arg("x"));
    // A glob character in a namespace matches only itself.
    let starred = RedisStore::builder(server.url())
        .namespace("c*:")
        .build()
        .expect("a valid configuration");
    Entries::new(starred).clear().await.expect("clears");

    Entries::new(mine.clone()).clear().await.expect("clears");
    assert!(server.scan("cachet:*").is_empty());
    assert_eq!(server.scan("other-app:*").len(), 1);
    assert_eq!(server.scan("foreign").len(), 1);

    let unnamed = RedisStore::builder(server.url())
        .namespace("")
        .build()
        .expect("a valid configuration");
    let error = Entries::new(unnamed)
        .clear()
        .await
        .expect_err("nothing to scope it to");
    assert!(error.is_unsupported(), "{error:?}");
    assert_eq!(server.scan("*").len(), 2);
}

#[tokio::test]
async fn a_listing_through_verify_reports_a_tampered_entry_and_lists_the_rest() {
    let server = RedisServer::start();
    let keyring = Keyring::new("manage test secret").expect("not empty");
    let signed = VerifyLayer::new(keyring).layer(store(&server));
    put(&signed, "GET http://example.com/good", "good").await;
    put(&signed, "GET http://example.com/bad", "bad").await;
    // Somebody with access to Redis but not the key rewrites one entry.
    server.query::<()>(
        redis::cmd("SET")
            .arg("cachet:GET http://example.com/bad")
            .arg("forged"),
    );

    let entries = Entries::new(signed);
    let page = entries.list(Cursor::start(), 100).await.expect("lists");
    let mut kinds: Vec<(String, EntryKind)> = page
        .entries
        .iter()
        .map(|e| (e.key.to_string(), e.kind))
        .collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        kinds,
        [
            (
                "GET http://example.com/bad".to_owned(),
                EntryKind::BadSignature
            ),
            // Not an HTTP entry, but verified: the cache cannot read it.
            (
                "GET http://example.com/good".to_owned(),
                EntryKind::Unreadable
            ),
        ]
    );
    assert_eq!(
        entries
            .delete_url("http://example.com/bad")
            .await
            .expect("deletes"),
        1
    );
    assert_eq!(server.scan("cachet:*").len(), 1);
}

#[tokio::test]
async fn a_cluster_is_listed_master_by_master_and_cleared_in_its_namespace() {
    let cluster = RedisCluster::start();
    let store = RedisStore::cluster(cluster.urls())
        .build()
        .expect("valid cluster URLs");
    let mut expected = BTreeSet::new();
    for i in 0..60 {
        let key = format!("GET http://example.com/{i}");
        put(&store, &key, "v").await;
        expected.insert(key);
    }
    let long = format!("GET http://example.com/search?q={}", "x".repeat(2_000));
    put(&store, &long, "long").await;
    expected.insert(long.clone());
    let foreign = cluster.node_for("foreign");
    foreign.query::<()>(redis::cmd("SET").arg("foreign").arg("x"));

    let entries = Entries::new(store.clone());
    let (keys, pages) = all_keys(&entries, 10).await;
    assert!(pages >= cluster.nodes().len(), "every master is walked");
    for bad in ["5", "x-0", "0-abc"] {
        let error = entries
            .list(Cursor::new(bad), 10)
            .await
            .expect_err("not a cluster cursor");
        assert!(error.is_invalid_cursor(), "{bad}: {error:?}");
    }
    let listed: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(listed.len(), keys.len(), "no entry listed twice");
    assert_eq!(listed, expected);
    let url = long.strip_prefix("GET ").expect("a GET key");
    assert_eq!(entries.show(url).await.expect("lists").len(), 1);
    assert_eq!(
        entries
            .delete_url("http://example.com/7")
            .await
            .expect("deletes"),
        1
    );
    assert_eq!(entries.stats().await.expect("lists").entries, 60);

    entries.clear().await.expect("clears");
    for node in cluster.nodes() {
        assert!(node.scan("cachet:*").is_empty());
    }
    assert_eq!(foreign.scan("foreign").len(), 1);
}

#[tokio::test]
async fn a_cursor_redis_did_not_make_is_refused_as_invalid_not_as_a_store_failure() {
    let server = RedisServer::start();
    let redis = store(&server);
    put(&redis, "GET http://example.com/", "v").await;
    let keyring = Keyring::new("manage secret").expect("a secret that is not empty");
    let signed = Entries::new(VerifyLayer::new(keyring).layer(redis.clone()));
    let plain = Entries::new(redis);
    for bad in ["abc", "-1", "1.5", "0-0"] {
        for error in [
            plain.list(Cursor::new(bad), 10).await.expect_err(bad),
            signed.list(Cursor::new(bad), 10).await.expect_err(bad),
        ] {
            assert!(error.is_invalid_cursor(), "{bad}: {error:?}");
            assert!(!error.is_store(), "{bad}: {error:?}");
        }
    }
    let page = plain
        .list(Cursor::new("0"), 10)
        .await
        .expect("a cursor redis made");
    assert_eq!(page.entries.len(), 1);
}

#[tokio::test]
async fn a_store_that_cannot_list_says_so_instead_of_listing_nothing() {
    let server = RedisServer::start();
    let redis = store(&server);
    put(&redis, "GET http://example.com/", "v").await;
    // A store of one's own over Redis that knows only get, put and delete.
    let limited = tower::service_fn(move |request: StoreRequest| {
        let redis = redis.clone();
        async move {
            match request {
                request @ (StoreRequest::Get(_)
                | StoreRequest::Put { .. }
                | StoreRequest::Delete(_)) => redis.oneshot(request).await,
                _ => Err(cachet::store::Unsupported::new("limited store", "list").into()),
            }
        }
    });
    let entries = Entries::new(limited);
    let error = entries
        .list(Cursor::start(), 10)
        .await
        .expect_err("it cannot list");
    assert!(error.is_unsupported(), "{error:?}");
    assert_eq!(error.to_string(), "the store cannot list entries");
    let source = std::error::Error::source(&error).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("limited store cannot list"));
    assert!(
        entries
            .clear()
            .await
            .expect_err("nor clear")
            .is_unsupported()
    );
    assert!(
        entries
            .show("http://example.com/")
            .await
            .expect_err("nor show")
            .is_unsupported()
    );
    let key = CacheKey::from_text("GET http://example.com/");
    entries
        .delete_key(&key)
        .await
        .expect("deleting one key works");
    assert!(server.scan("cachet:*").is_empty());
}
