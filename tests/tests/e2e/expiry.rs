//! Configured expiry: a default for responses that give no freshness, rules by URL, a
//! request's own expiry, and the switch between headers winning and rules winning.

use std::time::Duration;

use bytes::Bytes;
use cachet::clock::ManualClock;
use cachet::{Cache, CacheLayer, CacheStatus, Expiry, ForwardReason, MemoryStore};
use cachet_tests::{Origin, Reply, client, fetch, get};
use http::Request;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::Layer;

type Stack = Cache<Client<HttpConnector, Empty<Bytes>>, MemoryStore>;

const MINUTE: Duration = Duration::from_secs(60);

async fn status(cache: &Stack, request: Request<Empty<Bytes>>) -> CacheStatus {
    fetch(cache, request).await.status
}

/// An origin with an API that forbids caching, a private resource, a short-lived one,
/// and everything else without any freshness.
async fn origin() -> Origin {
    Origin::start(|seen| {
        let reply = Reply::ok("body");
        match seen.path.as_str() {
            "/api" => reply.header("cache-control", "no-store, no-cache, max-age=0"),
            "/private" => reply.header("cache-control", "private, no-cache"),
            "/short" => reply.header("cache-control", "max-age=5"),
            _ => reply,
        }
    })
    .await
}

fn miss() -> CacheStatus {
    CacheStatus::Forwarded {
        reason: ForwardReason::UriMiss,
        stored: true,
    }
}

#[tokio::test]
async fn a_default_expiry_caches_responses_without_freshness_until_it_passes() {
    let origin = origin().await;
    let clock = ManualClock::new();
    let cache = CacheLayer::new(MemoryStore::default())
        .default_expiry(Expiry::After(MINUTE))
        .clock(clock.clone())
        .layer(client());
    let url = origin.url("/plain");
    assert_eq!(status(&cache, get(&url)).await, miss());
    clock.advance(Duration::from_secs(59));
    assert_eq!(status(&cache, get(&url)).await, CacheStatus::Hit);
    clock.advance(Duration::from_secs(2));
    assert!(matches!(
        status(&cache, get(&url)).await,
        CacheStatus::Forwarded {
            reason: ForwardReason::Stale,
            ..
        }
    ));
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn by_default_a_rule_only_fills_in_where_the_headers_are_silent() {
    let origin = origin().await;
    let clock = ManualClock::new();
    let cache = CacheLayer::new(MemoryStore::default())
        .expiry_rule("127.0.0.1", Expiry::After(MINUTE))
        .clock(clock.clone())
        .layer(client());
    let short = origin.url("/short");
    status(&cache, get(&short)).await;
    clock.advance(Duration::from_secs(10));
    assert!(matches!(
        status(&cache, get(&short)).await,
        CacheStatus::Forwarded {
            reason: ForwardReason::Stale,
            ..
        }
    ));
    let api = origin.url("/api");
    status(&cache, get(&api)).await;
    assert!(matches!(
        status(&cache, get(&api)).await,
        CacheStatus::Forwarded { stored: false, .. }
    ));
}

#[tokio::test]
async fn when_rules_win_an_api_that_forbids_caching_is_cached_for_the_rule_lifetime() {
    let origin = origin().await;
    let clock = ManualClock::new();
    let cache = CacheLayer::new(MemoryStore::default())
        .private()
        .expiry_rule("127.0.0.1/api", Expiry::After(MINUTE))
        .rules_win(true)
        .clock(clock.clone())
        .layer(client());
    let api = origin.url("/api");
    assert_eq!(status(&cache, get(&api)).await, miss());
    clock.advance(Duration::from_secs(30));
    assert_eq!(status(&cache, get(&api)).await, CacheStatus::Hit);
    let short = origin.url("/short");
    status(&cache, get(&short)).await;
    clock.advance(Duration::from_secs(10));
    assert!(
        matches!(
            status(&cache, get(&short)).await,
            CacheStatus::Forwarded {
                reason: ForwardReason::Stale,
                ..
            }
        ),
        "a URL no rule matches still follows its headers"
    );
}

#[tokio::test]
async fn when_rules_win_a_shared_cache_still_never_stores_private_responses() {
    let origin = origin().await;
    let cache = CacheLayer::new(MemoryStore::default())
        .expiry_rule("127.0.0.1", Expiry::After(MINUTE))
        .rules_win(true)
        .layer(client());
    let private = origin.url("/private");
    status(&cache, get(&private)).await;
    assert!(matches!(
        status(&cache, get(&private)).await,
        CacheStatus::Forwarded { stored: false, .. }
    ));
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn a_catch_all_do_not_cache_rule_makes_the_rules_an_allowlist() {
    let origin = origin().await;
    let cache = CacheLayer::new(MemoryStore::default())
        .expiry_rule("127.0.0.1/static/", Expiry::After(MINUTE))
        .expiry_rule("*", Expiry::DoNotCache)
        .layer(client());
    let allowed = origin.url("/static/app.js");
    status(&cache, get(&allowed)).await;
    assert_eq!(status(&cache, get(&allowed)).await, CacheStatus::Hit);
    let other = origin.url("/short");
    for _ in 0..2 {
        assert_eq!(
            status(&cache, get(&other)).await,
            CacheStatus::Forwarded {
                reason: ForwardReason::Bypass,
                stored: false
            }
        );
    }
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn a_request_expiry_comes_before_every_rule() {
    let origin = origin().await;
    let clock = ManualClock::new();
    let cache = CacheLayer::new(MemoryStore::default())
        .expiry_rule("*", Expiry::DoNotCache)
        .clock(clock.clone())
        .layer(client());
    let url = origin.url("/plain");
    let with_expiry = || {
        let mut request = get(&url);
        request
            .extensions_mut()
            .insert(Expiry::After(Duration::from_secs(5)));
        request
    };
    assert_eq!(status(&cache, with_expiry()).await, miss());
    assert_eq!(status(&cache, with_expiry()).await, CacheStatus::Hit);
    clock.advance(Duration::from_secs(6));
    assert!(matches!(
        status(&cache, with_expiry()).await,
        CacheStatus::Forwarded {
            reason: ForwardReason::Stale,
            ..
        }
    ));
}

#[tokio::test]
async fn never_expire_keeps_serving_however_much_time_passes() {
    let origin = origin().await;
    let clock = ManualClock::new();
    let cache = CacheLayer::new(MemoryStore::default())
        .default_expiry(Expiry::NeverExpire)
        .clock(clock.clone())
        .layer(client());
    let url = origin.url("/plain");
    status(&cache, get(&url)).await;
    clock.advance(Duration::from_secs(5 * 365 * 24 * 3600));
    assert_eq!(status(&cache, get(&url)).await, CacheStatus::Hit);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_host_rule_holds_for_a_url_whose_query_follows_the_host() {
    let origin = origin().await;
    let cache = CacheLayer::new(MemoryStore::default())
        .expiry_rule(&origin.addr().to_string(), Expiry::DoNotCache)
        .layer(client());
    // No path: it is `/` (RFC 9110 §4.2.3), and the key says so; the rule's host and
    // port are not read as `127.0.0.1` and `PORT?feed`.
    let url = format!("http://{}?feed", origin.addr());
    for _ in 0..2 {
        assert_eq!(
            status(&cache, get(&url)).await,
            CacheStatus::Forwarded {
                reason: ForwardReason::Bypass,
                stored: false
            }
        );
    }
    assert_eq!(origin.requests(), 2);
}
