//! Faults under load: Redis killed, paused, restarted or full while concurrent tasks send
//! requests through the cache.

use super::*;

const TASKS: usize = 8;
const REQUESTS: usize = 6;
/// What a request may take beyond the store's bound: the origin on loopback and
/// scheduling on a small, busy machine (500 ms was once overrun on two cores saturated
/// by a benchmark). A store that waited for Redis instead of timing out would hang
/// until the test resumes Redis, far past it.
const MARGIN: Duration = Duration::from_millis(1000);

/// `TASKS` concurrent tasks each send `REQUESTS` requests over `paths`; every request
/// must succeed with its path's body within `bound`. Returns the statuses per path.
async fn load(
    cache: &Cache<Http, RedisStore>,
    origin: &Origin,
    paths: &[&str],
    bound: Duration,
) -> Vec<(String, CacheStatus)> {
    let paths: Arc<Vec<String>> = Arc::new(paths.iter().map(|p| (*p).to_owned()).collect());
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let cache = cache.clone();
        let paths = paths.clone();
        let origin = origin.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for i in 0..REQUESTS {
                let path = &paths[(task + i) % paths.len()];
                let started = Instant::now();
                let (status, body) = tokio::time::timeout(bound, fetch(&cache, &origin.url(path)))
                    .await
                    .unwrap_or_else(|_| panic!("{path} took longer than {bound:?}"))
                    .unwrap_or_else(|error| panic!("{path} failed: {error:?}"));
                assert_eq!(body, format!("body of {path}"), "the right body for {path}");
                assert!(started.elapsed() <= bound);
                seen.push((path.clone(), status));
            }
            seen
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.expect("no request failed"));
    }
    assert_eq!(seen.len(), TASKS * REQUESTS);
    seen
}

/// Fills the cache for `paths` and checks that each is a hit.
async fn warm(
    cache: &Cache<Http, RedisStore>,
    origin: &Origin,
    server: &RedisServer,
    paths: &[&str],
) {
    for path in paths {
        let url = origin.url(path);
        fetch(cache, &url).await.expect("a miss");
        written(server, &cache.store().redis_key(&key_of(&url))).await;
        assert_eq!(fetch(cache, &url).await.expect("a hit").0, CacheStatus::Hit);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fails_no_request() {
    let server = RedisServer::start();
    let origin = naming_origin().await;
    let store = tight(server.url());
    let layer = CacheLayer::new(store.clone());
    let cache = layer.layer(client());
    warm(&cache, &origin, &server, &["/k/0", "/k/1"]).await;

    server.kill();
    let bound = store.max_operation_time() + MARGIN;
    let seen = load(&cache, &origin, &["/k/0", "/k/1", "/k/2"], bound).await;
    // Nothing comes from Redis; concurrent misses may share one origin fetch.
    assert!(seen.iter().all(|(_, status)| *status != CacheStatus::Hit));
    assert!(store.metrics().errors() > 0);
    assert!(layer.metrics().store_errors() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_under_load_delays_no_request_past_the_bound() {
    let server = RedisServer::start();
    let origin = naming_origin().await;
    let store = tight(server.url());
    let cache = CacheLayer::new(store.clone()).layer(client());
    warm(&cache, &origin, &server, &["/p/0", "/p/1"]).await;

    server.pause();
    let bound = store.max_operation_time() + MARGIN;
    let seen = load(&cache, &origin, &["/p/0", "/p/1", "/p/2"], bound).await;
    server.resume();
    assert!(seen.iter().all(|(_, status)| *status != CacheStatus::Hit));
    assert!(store.metrics().timeouts() > 0, "{:?}", store.metrics());

    // Once it answers again, so does the cache: the entries are still there.
    let url = origin.url("/p/0");
    let deadline = Instant::now() + Duration::from_secs(3);
    while fetch(&cache, &url).await.expect("succeeds").0 != CacheStatus::Hit {
        assert!(Instant::now() < deadline, "no hit within 3 s of resuming");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_load_caches_again_without_a_new_store() {
    let server = RedisServer::start();
    let origin = naming_origin().await;
    let store = tight(server.url());
    let cache = CacheLayer::new(store.clone()).layer(client());
    warm(&cache, &origin, &server, &["/r/0", "/r/1"]).await;

    // Every pooled connection is now dead, and the new server is empty.
    server.restart();
    let bound = store.max_operation_time() + MARGIN;
    load(&cache, &origin, &["/r/0", "/r/1", "/r/2"], bound).await;

    let url = origin.url("/r/2");
    written(&server, &store.redis_key(&key_of(&url))).await;
    assert_eq!(
        fetch(&cache, &url).await.expect("a hit").0,
        CacheStatus::Hit
    );
    assert!(store.metrics().discarded_connections() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_full_under_load_skips_writes_and_still_serves_hits() {
    let server = RedisServer::start();
    let origin = naming_origin().await;
    let store = tight(server.url());
    let cache = CacheLayer::new(store.clone()).layer(client());
    warm(&cache, &origin, &server, &["/f/0", "/f/1"]).await;

    server.fill();
    let bound = store.max_operation_time() + MARGIN;
    let seen = load(&cache, &origin, &["/f/0", "/f/1", "/f/2", "/f/3"], bound).await;
    for (path, status) in &seen {
        let warmed = path == "/f/0" || path == "/f/1";
        // Misses whose writes Redis refuses may still share one origin fetch.
        assert_eq!(*status == CacheStatus::Hit, warmed, "{path}: {status:?}");
    }
    // The writes run after the responses; wait for their refusals.
    let deadline = Instant::now() + Duration::from_secs(2);
    while store.metrics().refused() == 0 {
        assert!(Instant::now() < deadline, "no write was refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.scan("cachet:*").len(), 2, "nothing new was stored");
}
