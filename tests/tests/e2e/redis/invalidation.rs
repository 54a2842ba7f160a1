//! Invalidation (RFC 9111 §4.4) over Redis: markers that hold through a memory tier in
//! front and through a Redis that refuses them.

use super::*;

/// An origin whose GET answer carries a version, fresh for ten minutes, that each POST
/// bumps.
async fn changed_by_post() -> Origin {
    let version = Arc::new(AtomicUsize::new(1));
    Origin::start(move |seen| {
        if seen.method == Method::POST {
            version.fetch_add(1, Ordering::SeqCst);
            return Reply::ok("updated");
        }
        Reply::ok(format!("v{}", version.load(Ordering::SeqCst)))
            .header("cache-control", "max-age=600")
    })
    .await
}

fn post(url: &str) -> http::Request<Empty<Bytes>> {
    http::Request::post(url)
        .body(Empty::new())
        .expect("a valid request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_while_redis_is_full_still_hides_what_it_invalidates_rfc_9111_4_4() {
    let server = RedisServer::start();
    let origin = changed_by_post().await;
    let store = store(&server);
    let cache = CacheLayer::new(store.clone()).layer(client());
    let url = origin.url("/doc");
    let redis_key = store.redis_key(&key_of(&url));
    fetch(&cache, &url).await.expect("a miss");
    written(&server, &redis_key).await;
    assert_eq!(
        fetch(&cache, &url).await.expect("a hit"),
        (CacheStatus::Hit, Bytes::from("v1"))
    );

    // Full under `noeviction`: the POST's marker is refused with `OOM`, but a full Redis
    // still deletes.
    server.fill();
    let (_, body) = send(&cache, post(&url)).await.expect("forwarded");
    assert_eq!(body, "updated");
    until(Duration::from_secs(2), "the marker is refused", || {
        store.metrics().refused() > 0
    })
    .await;
    // The delete that follows a refused marker.
    let deadline = Instant::now() + Duration::from_secs(2);
    while exists(&server, &redis_key) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, body) = fetch(&cache, &url).await.expect("answers");
    assert_eq!(body, "v2", "served from before the POST ({status:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_a_post_hid_while_redis_was_full_stay_hidden_once_it_has_room() {
    let server = RedisServer::start();
    let version = Arc::new(AtomicUsize::new(1));
    let origin = Origin::start({
        let version = version.clone();
        move |seen| {
            if seen.method == Method::POST {
                version.fetch_add(1, Ordering::SeqCst);
                return Reply::ok("updated");
            }
            let language = seen
                .headers
                .get("accept-language")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            Reply::ok(format!("{language} v{}", version.load(Ordering::SeqCst)))
                .header("cache-control", "max-age=600")
                .header("vary", "accept-language")
        }
    })
    .await;
    let clock = ManualClock::new();
    let cache = CacheLayer::new(store(&server))
        .clock(clock.clone())
        .layer(client());
    let url = origin.url("/v");
    let index = format!("cachet:GET {url}");
    for language in ["en", "fr"] {
        send(&cache, in_language(&url, language))
            .await
            .expect("a miss");
    }
    until(
        Duration::from_secs(2),
        "the variants and their index",
        || server.scan("cachet:*").len() == 3,
    )
    .await;
    clock.advance(Duration::from_secs(1));

    // Full: the POST's marker is refused, and the index is deleted instead.
    server.fill();
    send(&cache, post(&url)).await.expect("forwarded");
    until(Duration::from_secs(2), "the index is deleted", || {
        !exists(&server, &index)
    })
    .await;
    // Room again; another variant is stored, with a new index.
    server.query::<()>(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0"));
    clock.advance(Duration::from_secs(1));
    let (_, body) = send(&cache, in_language(&url, "de")).await.expect("a miss");
    assert_eq!(body, "de v2");
    written(&server, &index).await;

    let (status, body) = send(&cache, in_language(&url, "en"))
        .await
        .expect("answers");
    assert_eq!(
        body, "en v2",
        "en is served from before the POST ({status:?})"
    );
}

fn in_language(url: &str, language: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(url)
        .header("accept-language", language)
        .body(Empty::new())
        .expect("a valid request")
}

/// Two caches, as of two processes, each with a memory tier (kept a minute) in front of
/// the same Redis, on one clock.
fn two_tiered_caches(
    server: &RedisServer,
    clock: &ManualClock,
) -> [Cache<Http, cachet::store::Tiered<cachet::MemoryStore, RedisStore>>; 2] {
    [(), ()].map(|()| {
        let tiered = cachet::store::Tiered::new(cachet::MemoryStore::default(), store(server))
            .near_ttl(Duration::from_secs(60));
        CacheLayer::new(tiered).clock(clock.clone()).layer(client())
    })
}

/// A second on, a POST to `url` through `cache`; waits until its marker is in Redis under
/// `redis_key`, and returns it, a second before the clock moves on again.
async fn post_through(
    cache: &Cache<Http, cachet::store::Tiered<cachet::MemoryStore, RedisStore>>,
    server: &RedisServer,
    url: &str,
    redis_key: &str,
    clock: &ManualClock,
) -> Option<Vec<u8>> {
    let raw = || server.query::<Option<Vec<u8>>>(redis::cmd("GET").arg(redis_key));
    clock.advance(Duration::from_secs(1));
    let before = raw();
    send(cache, post(url)).await.expect("forwarded");
    until(Duration::from_secs(2), "the marker lands in Redis", || {
        raw() != before
    })
    .await;
    let marker = raw();
    clock.advance(Duration::from_secs(1));
    marker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_written_back_through_a_memory_tier_keeps_another_caches_invalidation() {
    let server = RedisServer::start();
    let version = Arc::new(AtomicUsize::new(1));
    let origin = Origin::start({
        let version = version.clone();
        move |seen| {
            let language = seen
                .headers
                .get("accept-language")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            Reply::ok(format!("{language} v{}", version.load(Ordering::SeqCst)))
                .header("cache-control", "max-age=600")
                .header("vary", "accept-language")
        }
    })
    .await;
    let clock = ManualClock::new();
    let [a, b] = two_tiered_caches(&server, &clock);
    let url = origin.url("/v");
    let index = format!("cachet:GET {url}");
    let raw = |key: &str| server.query::<Option<Vec<u8>>>(redis::cmd("GET").arg(key));

    send(&a, in_language(&url, "en")).await.expect("a miss");
    until(Duration::from_secs(2), "A's index lands in Redis", || {
        raw(&index).is_some()
    })
    .await;
    // The resource changes, and B's POST says so with a marker in Redis; A's memory tier
    // still holds the index from before.
    version.store(2, Ordering::SeqCst);
    let marker = post_through(&b, &server, &url, &index, &clock).await;

    // A stores another variant and writes the index back.
    let (_, fr) = send(&a, in_language(&url, "fr")).await.expect("a miss");
    assert_eq!(fr, "fr v2");
    until(Duration::from_secs(2), "A's index is written back", || {
        raw(&index) != marker
    })
    .await;

    // A cache without a memory tier sees what B's invalidation hid stay hidden.
    let c = CacheLayer::new(store(&server))
        .clock(clock.clone())
        .layer(client());
    let (status, en) = send(&c, in_language(&url, "en")).await.expect("answers");
    assert_eq!(
        en, "en v2",
        "en stored before B's POST is served after it ({status:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_freshened_through_a_memory_tier_keeps_another_caches_invalidation() {
    let server = RedisServer::start();
    let version = Arc::new(AtomicUsize::new(1));
    let origin = Origin::start({
        let version = version.clone();
        move |_| {
            Reply::ok(format!("v{}", version.load(Ordering::SeqCst)))
                .header("cache-control", "max-age=600")
                .header("last-modified", "Mon, 02 Jan 2023 00:00:00 GMT")
        }
    })
    .await;
    let clock = ManualClock::new();
    let [a, b] = two_tiered_caches(&server, &clock);
    let url = origin.url("/p");
    let entry = format!("cachet:GET {url}");
    let raw = |key: &str| server.query::<Option<Vec<u8>>>(redis::cmd("GET").arg(key));

    send(&a, get(&url)).await.expect("a miss");
    written(&server, &entry).await;
    // The resource changes, and B's POST says so with a marker in Redis; A's memory tier
    // still holds the GET response from before.
    version.store(2, Ordering::SeqCst);
    let marker = post_through(&b, &server, &url, &entry, &clock).await;

    // A HEAD response with the same `Last-Modified` would freshen the stored GET; the
    // freshening runs on a task of its own and, seeing the marker, writes nothing.
    let head = http::Request::head(&url)
        .body(Empty::new())
        .expect("a valid request");
    send(&a, head).await.expect("forwarded");
    let deadline = Instant::now() + Duration::from_millis(500);
    while raw(&entry) == marker && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let c = CacheLayer::new(store(&server))
        .clock(clock.clone())
        .layer(client());
    let (status, body) = send(&c, get(&url)).await.expect("answers");
    assert_eq!(
        body, "v2",
        "the GET stored before B's POST is served after it ({status:?})"
    );
}
