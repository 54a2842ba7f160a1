//! Invalidation (RFC 9111 §4.4) through a store that answers late, as Redis does over a
//! network: a write or a read of the cache's own that is under way when an unsafe
//! request's marker is written must not put back what the marker hides.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cachet::CacheStatus;
use cachet::store::{Store, StoreRequest};
use cachet_tests::Seen;
use http::Method;

use super::*;

/// A memory store whose reads answer `get` late, and whose writes land `put` late.
fn slow(get: Duration, put: Duration) -> impl Store {
    let inner = MemoryStore::default();
    tower::service_fn(move |request: StoreRequest| {
        let inner = inner.clone();
        async move {
            match request {
                StoreRequest::Get(_) => {
                    let found = inner.oneshot(request).await;
                    if !get.is_zero() {
                        tokio::time::sleep(get).await;
                    }
                    found
                }
                StoreRequest::Put { .. } => {
                    if !put.is_zero() {
                        tokio::time::sleep(put).await;
                    }
                    inner.oneshot(request).await
                }
                other => inner.oneshot(other).await,
            }
        }
    })
}

/// An origin whose GET answers the path's version (`v0`, fresh for a minute, validated by
/// its `ETag`) and whose POST makes a new one.
fn versioned() -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    let version = Arc::new(AtomicU64::new(0));
    move |seen: &Seen| {
        if seen.method == Method::POST {
            let now = version.fetch_add(1, Ordering::SeqCst) + 1;
            return Reply::ok(format!("posted {now}")).header("cache-control", "no-store");
        }
        let now = version.load(Ordering::SeqCst);
        let tag = format!("\"v{now}\"");
        let matches = seen
            .headers
            .get("if-none-match")
            .is_some_and(|held| held.as_bytes() == tag.as_bytes());
        let reply = if matches {
            Reply::ok("").status(304)
        } else {
            Reply::ok(format!("v{now}"))
        };
        reply
            .header("etag", tag)
            .header("cache-control", "max-age=60")
    }
}

async fn send<St: Store>(
    cache: &Cache<Client<HttpConnector, Empty<Bytes>>, St>,
    method: Method,
    url: &str,
    cache_control: Option<&str>,
) -> (CacheStatus, String) {
    let mut request = Request::builder().method(method).uri(url);
    if let Some(value) = cache_control {
        request = request.header("cache-control", value);
    }
    let request = request.body(Empty::new()).expect("a valid request");
    let response = cache.clone().oneshot(request).await.expect("answered");
    let status = *response
        .extensions()
        .get::<CacheStatus>()
        .expect("a status");
    let body = read(response.into_body()).await.expect("a whole body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A POST's response waits for no marker, so a GET sent right after it, while the marker
/// is still on its way to a slow store, must not be answered from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_after_a_completed_post_gets_what_it_changed_while_the_marker_is_written() {
    let origin = Origin::start(versioned()).await;
    let store = slow(Duration::ZERO, Duration::from_millis(20));
    let cache = CacheLayer::new(store).layer(client());
    let url = origin.url("/x");
    send(&cache, Method::GET, &url, None).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(
        send(&cache, Method::GET, &url, None).await,
        (CacheStatus::Hit, "v0".to_owned())
    );
    send(&cache, Method::POST, &url, None).await;
    let after = send(&cache, Method::GET, &url, None).await;
    assert_eq!(after.1, "v1", "a GET after the POST: {after:?}");
}

/// A revalidation's update reads the store before it writes: an invalidation that lands
/// while it reads must not be written over by the entry from before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revalidation_s_update_does_not_write_over_an_invalidation_made_while_it_read() {
    let origin = Origin::start(versioned()).await;
    let store = slow(Duration::from_millis(30), Duration::ZERO);
    let cache = CacheLayer::new(store).layer(client());
    let url = origin.url("/y");
    send(&cache, Method::GET, &url, None).await;
    // Confirmed by a 304: the update reads the entry again (30 ms), then writes it.
    let revalidated = send(&cache, Method::GET, &url, Some("no-cache")).await;
    assert!(
        matches!(revalidated.0, CacheStatus::Revalidated { stored: true, .. }),
        "{revalidated:?}"
    );
    // The POST completes while that read is under way.
    send(&cache, Method::POST, &url, None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = send(&cache, Method::GET, &url, None).await;
    assert_eq!(after.1, "v1", "a GET 100 ms after the POST: {after:?}");
}
