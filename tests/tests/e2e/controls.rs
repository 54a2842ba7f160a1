//! Everyday controls: per-request cache modes, bypassing a block of work, always
//! revalidating, and a read-only cache.

use std::time::Duration;

use bytes::Bytes;
use cachet::clock::ManualClock;
use cachet::{Cache, CacheLayer, CacheMode, CacheStatus, ForwardReason, MemoryStore};
use cachet_tests::{Origin, Reply, client, fetch, get, read};
use http::Request;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::{Layer, ServiceExt};

type Stack = Cache<Client<HttpConnector, Empty<Bytes>>, MemoryStore>;

async fn status(cache: &Stack, request: Request<Empty<Bytes>>) -> (u16, CacheStatus) {
    let fetched = fetch(cache, request).await;
    (fetched.code, fetched.status)
}

fn with_mode(url: &str, mode: CacheMode) -> Request<Empty<Bytes>> {
    let mut request = get(url);
    request.extensions_mut().insert(mode);
    request
}

async fn origin() -> Origin {
    Origin::start(|seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=10")
        } else {
            Reply::ok("x")
                .header("cache-control", "max-age=10")
                .header("etag", "\"1\"")
        }
    })
    .await
}

fn forwarded(reason: ForwardReason, stored: bool) -> CacheStatus {
    CacheStatus::Forwarded { reason, stored }
}

#[tokio::test]
async fn no_store_mode_neither_reads_nor_writes() {
    let origin = origin().await;
    let cache = CacheLayer::new(MemoryStore::default()).layer(client());
    let url = origin.url("/m");
    status(&cache, get(&url)).await;
    assert_eq!(
        status(&cache, with_mode(&url, CacheMode::NoStore)).await.1,
        forwarded(ForwardReason::Bypass, false)
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn reload_mode_asks_the_origin_and_stores() {
    let origin = origin().await;
    let store = MemoryStore::default();
    let cache = CacheLayer::new(store.clone()).layer(client());
    let url = origin.url("/r");
    assert_eq!(
        status(&cache, with_mode(&url, CacheMode::Reload)).await.1,
        forwarded(ForwardReason::Request, true)
    );
    assert_eq!(
        status(&cache, with_mode(&url, CacheMode::Reload)).await.1,
        forwarded(ForwardReason::Request, true)
    );
    assert_eq!(status(&cache, get(&url)).await.1, CacheStatus::Hit);
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn no_cache_mode_and_always_revalidate_validate_a_fresh_entry() {
    let origin = origin().await;
    let cache = CacheLayer::new(MemoryStore::default()).layer(client());
    let url = origin.url("/nc");
    status(&cache, get(&url)).await;
    assert_eq!(
        status(&cache, with_mode(&url, CacheMode::NoCache)).await.1,
        CacheStatus::Revalidated {
            reason: cachet::ForwardReason::Request,
            stored: true
        }
    );

    let always = CacheLayer::new(MemoryStore::default())
        .always_revalidate(true)
        .layer(client());
    status(&always, get(&url)).await;
    assert_eq!(
        status(&always, get(&url)).await.1,
        CacheStatus::Revalidated {
            reason: cachet::ForwardReason::Request,
            stored: true
        }
    );
    assert_eq!(origin.requests(), 4);
}

#[tokio::test]
async fn no_cache_mode_and_always_revalidate_validate_an_immutable_entry_in_a_private_cache() {
    // RFC 8246 lets a user's reload skip validating a fresh `immutable` response; what
    // the application asks for is not a reload.
    let origin = Origin::start(|seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("").status(304)
        } else {
            Reply::ok("x")
                .header("cache-control", "max-age=600, immutable")
                .header("etag", "\"1\"")
        }
    })
    .await;
    let url = origin.url("/immutable");
    let private = || CacheLayer::new(MemoryStore::default()).private();
    let cache = private().layer(client());
    status(&cache, get(&url)).await;
    let reload = Request::get(&url)
        .header("cache-control", "no-cache")
        .body(Empty::new())
        .expect("a valid request");
    assert_eq!(status(&cache, reload).await.1, CacheStatus::Hit);
    assert_eq!(
        status(&cache, with_mode(&url, CacheMode::NoCache)).await.1,
        CacheStatus::Revalidated {
            reason: cachet::ForwardReason::Request,
            stored: true
        }
    );

    let always = private().always_revalidate(true).layer(client());
    status(&always, get(&url)).await;
    assert_eq!(
        status(&always, get(&url)).await.1,
        CacheStatus::Revalidated {
            reason: cachet::ForwardReason::Request,
            stored: true
        }
    );
    assert_eq!(origin.requests(), 4);
}

#[tokio::test]
async fn force_cache_and_only_if_cached_serve_a_stale_entry_without_the_origin() {
    let origin = origin().await;
    let clock = ManualClock::new();
    let cache = CacheLayer::new(MemoryStore::default())
        .clock(clock.clone())
        .layer(client());
    let url = origin.url("/f");
    status(&cache, get(&url)).await;
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        status(&cache, with_mode(&url, CacheMode::ForceCache))
            .await
            .1,
        CacheStatus::Hit
    );
    assert_eq!(
        status(&cache, with_mode(&url, CacheMode::OnlyIfCached))
            .await
            .1,
        CacheStatus::Hit
    );
    assert_eq!(
        status(
            &cache,
            with_mode(&origin.url("/none"), CacheMode::OnlyIfCached)
        )
        .await,
        (504, CacheStatus::OnlyIfCachedMiss)
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn bypass_covers_a_block_of_work_on_this_task_only() {
    let origin = origin().await;
    let cache = CacheLayer::new(MemoryStore::default()).layer(client());
    let url = origin.url("/b");
    status(&cache, get(&url)).await;
    let inside = cachet::bypass(status(&cache, get(&url))).await;
    assert_eq!(inside.1, forwarded(ForwardReason::Bypass, false));
    let other_task = {
        let cache = cache.clone();
        let url = url.clone();
        cachet::bypass(
            async move { tokio::spawn(async move { status(&cache, get(&url)).await }).await },
        )
        .await
    };
    assert_eq!(
        other_task.expect("no panic").1,
        CacheStatus::Hit,
        "a spawned task is not bypassed"
    );
    assert_eq!(status(&cache, get(&url)).await.1, CacheStatus::Hit);
}

#[tokio::test]
async fn a_read_only_cache_serves_but_never_writes() {
    let origin = origin().await;
    let store = MemoryStore::default();
    let writer = CacheLayer::new(store.clone()).layer(client());
    let reader = CacheLayer::new(store.clone())
        .read_only(true)
        .layer(client());
    let url = origin.url("/ro");
    assert_eq!(
        status(&reader, get(&url)).await.1,
        forwarded(ForwardReason::UriMiss, false)
    );
    assert!(store.is_empty());
    status(&writer, get(&url)).await;
    assert_eq!(status(&reader, get(&url)).await.1, CacheStatus::Hit);
}

#[tokio::test]
async fn metadata_says_where_a_response_came_from_and_until_when_it_is_fresh() {
    use cachet::CacheMetadata;

    let origin = origin().await;
    let clock = ManualClock::new();
    let cache = CacheLayer::new(MemoryStore::default())
        .metadata(true)
        .clock(clock.clone())
        .layer(client());
    let url = origin.url("/meta");
    let metadata = |response: &http::Response<_>| {
        response
            .extensions()
            .get::<CacheMetadata>()
            .cloned()
            .expect("metadata is on")
    };

    let first = cache.clone().oneshot(get(&url)).await.expect("a miss");
    let miss = metadata(&first);
    read(first.into_body()).await.expect("the body completes");
    assert!(!miss.from_cache && !miss.stale);
    let stored_at = miss.stored_at.expect("stored");
    let fresh_until = miss.fresh_until.expect("stored");
    // Ten seconds of freshness, less the age the origin's `Date` gives it on arrival.
    assert!(
        fresh_until <= stored_at + Duration::from_secs(10)
            && fresh_until > stored_at + Duration::from_secs(8)
    );
    assert_eq!(miss.key.map(|k| k.to_string()), Some(format!("GET {url}")));

    clock.advance(Duration::from_secs(3));
    let hit = metadata(&cache.clone().oneshot(get(&url)).await.expect("a hit"));
    assert!(hit.from_cache && !hit.stale && !hit.revalidated);
    assert_eq!(hit.stored_at, Some(stored_at));
    assert_eq!(hit.fresh_until, Some(fresh_until));

    clock.advance(Duration::from_secs(20));
    let revalidated = metadata(&cache.clone().oneshot(get(&url)).await.expect("revalidated"));
    assert!(revalidated.from_cache && revalidated.revalidated);

    // The 504 of an `only-if-cached` request with nothing stored carries it too (every
    // response does), with the key looked up and nothing from the cache.
    let none = origin.url("/meta-none");
    let gateway = cache
        .oneshot(with_mode(&none, CacheMode::OnlyIfCached))
        .await
        .expect("a 504");
    assert_eq!(gateway.status(), 504);
    let nothing = metadata(&gateway);
    assert!(!nothing.from_cache && nothing.stored_at.is_none() && nothing.fresh_until.is_none());
    assert_eq!(
        nothing.key.map(|k| k.to_string()),
        Some(format!("GET {none}"))
    );
}

#[tokio::test]
async fn rfc9111_4_4_a_reload_after_an_invalidation_does_not_bring_back_older_variants() {
    let origin = Origin::start(|seen| {
        let language = seen
            .headers
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        Reply::ok(format!("in {language}"))
            .header("cache-control", "max-age=600")
            .header("vary", "accept-language")
    })
    .await;
    let clock = ManualClock::new();
    let cache = CacheLayer::new(MemoryStore::default())
        .clock(clock.clone())
        .layer(client());
    let url = origin.url("/page");
    let in_language = |language: &'static str| {
        let mut request = get(&url);
        request
            .headers_mut()
            .insert("accept-language", language.parse().expect("valid"));
        request
    };
    status(&cache, in_language("en")).await;
    assert_eq!(status(&cache, in_language("en")).await.1, CacheStatus::Hit);
    clock.advance(Duration::from_secs(1));
    let post = Request::post(&url).body(Empty::new()).expect("valid");
    status(&cache, post).await;
    clock.advance(Duration::from_secs(1));
    let mut reload = in_language("fr");
    reload.extensions_mut().insert(CacheMode::Reload);
    status(&cache, reload).await;
    // The English variant was stored before the POST invalidated the URI.
    assert_ne!(status(&cache, in_language("en")).await.1, CacheStatus::Hit);
    assert_eq!(status(&cache, in_language("fr")).await.1, CacheStatus::Hit);
}
