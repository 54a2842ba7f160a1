//! Coalescing past its bound: a fetch whose body streams for longer than a request may
//! wait for it.

use super::*;

#[tokio::test(start_paused = true)]
async fn once_a_request_waited_for_a_fetch_as_long_as_it_may_no_other_waits_for_it() {
    use tokio::time::Instant;
    use tower::Layer;

    let (origin, mut handle) = mock::pair::<Request<()>, Response<Full<Bytes>>>();
    handle.allow(10);
    let mut cache = CacheLayer::new(MemoryStore::default()).layer(origin);
    let url = "http://example.com/stream";
    std::future::poll_fn(|cx| cache.poll_ready(cx))
        .await
        .expect("ready");
    let leader = cache.call(get(url));
    let ((), leader) = tokio::join!(answer(&mut handle, fresh("stream")), leader);
    // Its body is not read while the others come: a stream its client reads slowly.
    let leader = leader.expect("the leader's miss");
    let mut waited = Vec::new();
    for _ in 0..3 {
        std::future::poll_fn(|cx| cache.poll_ready(cx))
            .await
            .expect("ready");
        let start = Instant::now();
        let request = cache.call(get(url));
        let ((), response) = tokio::join!(answer(&mut handle, fresh("stream")), request);
        response.expect("answered by the origin");
        waited.push(start.elapsed());
    }
    drop(leader);
    // The test's clock is paused: it moves only when every task waits for a timer.
    assert_eq!(waited[0], CacheLayer::<()>::DEFAULT_COALESCE_WAIT);
    assert!(
        waited[1..].iter().all(|waited| waited.is_zero()),
        "each request waited for the same fetch: {waited:?}"
    );
}
