//! Request coalescing through the cache: concurrent misses for one key reach the origin once,
//! and a miss of one variant waits for no other variant's fetch or refresh.

use super::*;

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
