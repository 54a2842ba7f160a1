//! cachet beside tower-http's `FollowRedirect`: which order caches what.

use cachet::{CacheLayer, CacheStatus, MemoryStore};
use cachet_tests::{Origin, Reply, client, get, read};
use tower::{Layer, ServiceExt};
use tower_http::follow_redirect::FollowRedirectLayer;

/// `/old` moved permanently to `/new`; both answers are cacheable for ten minutes.
async fn origin() -> Origin {
    Origin::start(|seen| match seen.path.as_str() {
        "/old" => Reply::ok("")
            .status(301)
            .header("location", "/new")
            .header("cache-control", "max-age=600"),
        _ => Reply::ok("target").header("cache-control", "max-age=600"),
    })
    .await
}

#[tokio::test]
async fn follow_redirect_outside_the_cache_caches_each_hop_under_its_own_url() {
    let origin = origin().await;
    let store = MemoryStore::default();
    let stack = FollowRedirectLayer::new().layer(CacheLayer::new(store.clone()).layer(client()));

    for _ in 0..2 {
        let response = stack
            .clone()
            .oneshot(get(&origin.url("/old")))
            .await
            .expect("followed");
        assert_eq!(read(response.into_body()).await.expect("body"), "target");
    }
    assert_eq!(
        origin.requests(),
        2,
        "the 301 and its target, each fetched once"
    );
    assert_eq!(
        store.len(),
        2,
        "the redirect and the target are separate entries"
    );

    // The target is cached under its own URL too.
    let direct = CacheLayer::new(store)
        .layer(client())
        .oneshot(get(&origin.url("/new")))
        .await
        .expect("a hit");
    assert_eq!(
        direct.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Hit)
    );
}

#[tokio::test]
async fn the_cache_outside_follow_redirect_stores_the_final_answer_under_the_first_url() {
    let origin = origin().await;
    let store = MemoryStore::default();
    let stack = CacheLayer::new(store.clone()).layer(FollowRedirectLayer::new().layer(client()));

    let first = stack
        .clone()
        .oneshot(get(&origin.url("/old")))
        .await
        .expect("followed");
    read(first.into_body()).await.expect("body");
    let second = stack
        .clone()
        .oneshot(get(&origin.url("/old")))
        .await
        .expect("a hit");
    assert_eq!(
        second.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Hit)
    );
    assert_eq!(read(second.into_body()).await.expect("body"), "target");
    assert_eq!(origin.requests(), 2);
    assert_eq!(store.len(), 1, "only the final answer, under /old");
}
