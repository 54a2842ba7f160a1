//! The memory store's byte bound is the real bound: filled past it with small and large
//! entries, each read once (so its decoded form is kept too), the process grows by no
//! more than the bound and a little slack. A binary of its own, so no other test's
//! allocations muddle the reading.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use cachet::{CacheLayer, CacheStatus, MemoryStore};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};

/// Every step of a memory store hit or miss here finishes on its first poll.
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory step finishes on its first poll"),
    }
}

/// The process's resident set, in bytes.
fn rss() -> u64 {
    let statm =
        std::fs::read_to_string("/proc/self/statm").expect("Linux exposes /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm has a resident count");
    pages * 4096
}

#[test]
fn a_full_memory_store_uses_no_more_than_its_bound() {
    const BOUND: u64 = 32 << 20;
    let store = MemoryStore::new(BOUND);
    let origin = tower::service_fn(|request: Request<String>| {
        // Small entries mostly, a large one now and then.
        let large = request.uri().path().ends_with('0');
        let body = Bytes::from(vec![b'x'; if large { 64 * 1024 } else { 200 }]);
        let response = Response::builder()
            .header("cache-control", "max-age=3600")
            .header("content-type", "text/plain")
            .header("etag", "\"abcdef\"")
            .body(Full::new(body))
            .expect("valid response");
        async move { Ok::<_, Infallible>(response) }
    });
    let mut cache = CacheLayer::new(store.clone()).layer(origin);

    let before = rss();
    for i in 0..100_000u32 {
        let uri = format!("http://origin.example/item/{i}");
        for _ in 0..2 {
            let ready = now(cache.ready()).expect("always ready");
            let response = now(ready.call(
                Request::get(uri.as_str())
                    .body(String::new())
                    .expect("valid request"),
            ))
            .expect("answers");
            assert!(response.extensions().get::<CacheStatus>().is_some());
            now(response.into_body().collect()).expect("bodies complete");
        }
    }
    let grown = rss().saturating_sub(before);
    eprintln!(
        "entries {} weighted {} grown {}",
        store.len(),
        store.weighted_size(),
        grown
    );
    assert!(store.weighted_size() <= BOUND);
    assert!(store.weighted_size() > BOUND / 2, "the store is in use");
    // The allocator keeps some of what evictions free; a fifth of the bound covers it.
    // (With the per-entry overhead left out of the weight, this grew by 1.37 times.)
    assert!(
        grown <= BOUND + BOUND / 5,
        "grew {grown} bytes for a bound of {BOUND}"
    );
}
