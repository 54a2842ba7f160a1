//! Cases that need a `CacheLayer` setting the proxy has no flag for, or look at what
//! is stored rather than at what the proxy sends on.

use super::*;

type Stack = Cache<Client<HttpConnector, Empty<Bytes>>, MemoryStore>;

async fn through_layer(
    cache: &Stack,
    request: Request<Empty<Bytes>>,
) -> (CacheStatus, http::HeaderMap) {
    let fetched = cachet_tests::fetch(cache, request).await;
    (fetched.status, fetched.headers)
}

#[tokio::test]
async fn rfc9111_3_set_cookie_responses_are_stored_by_a_shared_cache_only_when_enabled() {
    let origin = Origin::start(|_| fresh_for_a_minute("x").header("set-cookie", "id=1")).await;
    let opted_in = CacheLayer::new(MemoryStore::default())
        .store_set_cookie(true)
        .layer(client());
    through_layer(&opted_in, get(&origin.url("/c"))).await;
    let (status, headers) = through_layer(&opted_in, get(&origin.url("/c"))).await;
    assert_eq!(status, CacheStatus::Hit);
    assert_eq!(headers["set-cookie"], "id=1");
}

#[tokio::test]
async fn rfc9111_3_1_hop_by_hop_and_connection_named_headers_are_never_stored() {
    let origin = Origin::start(|_| {
        fresh_for_a_minute("x")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            // A name beside a byte outside ASCII is still named.
            .header("connection", "x-other-hop, \u{e9}")
            .header("x-other-hop", "1")
            .header("keep-alive", "timeout=5")
            // Specific to the proxy the request went through (RFC 9111 §3.1: MUST NOT be
            // stored unless the key names the proxy).
            .header("proxy-authenticate", "Basic realm=\"proxy\"")
            .header("proxy-authentication-info", "nextnonce=\"abc\"")
            .header("x-end-to-end", "kept")
    })
    .await;
    let cache = CacheLayer::new(MemoryStore::default()).layer(client());
    through_layer(&cache, get(&origin.url("/hop"))).await;
    let (status, headers) = through_layer(&cache, get(&origin.url("/hop"))).await;
    assert_eq!(status, CacheStatus::Hit);
    for name in [
        "connection",
        "x-hop",
        "x-other-hop",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authentication-info",
    ] {
        assert!(!headers.contains_key(name), "{name} was stored");
    }
    assert_eq!(headers["x-end-to-end"], "kept");
}
