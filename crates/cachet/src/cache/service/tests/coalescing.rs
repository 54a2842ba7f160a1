//! Coalescing past its bound: a fetch whose body streams for longer than a request may
//! wait for it.

use super::*;

#[tokio::test(start_paused = true)]
async fn once_a_request_waited_for_a_fetch_as_long_as_it_may_no_other_waits_for_it() {
    use tokio::time::Instant;
    use tower::Layer;

    let (origin, mut handle) = mock::pair::<Request<String>, Response<Full<Bytes>>>();
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

/// A service whose `poll_ready` takes one of a few slots (as tower's `ConcurrencyLimit`
/// and a `Buffer` do), held by the readied handle until its call's future ends, or until
/// the handle is dropped.
struct Limited<S> {
    inner: S,
    slots: Arc<tokio::sync::Semaphore>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<S: Clone> Clone for Limited<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            slots: self.slots.clone(),
            slot: None,
        }
    }
}

impl<S, R> Service<R> for Limited<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if self.slot.is_none() {
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => self.slot = Some(slot),
                Err(_) => return Poll::Pending,
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let slot = self.slot.take();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            drop(slot);
            result
        })
    }
}

/// A cache over a mock origin behind a [`Limited`].
type LimitedCache =
    crate::Cache<Limited<mock::Mock<Request<String>, Response<Full<Bytes>>>>, MemoryStore>;

/// A cache over a mock origin behind a `Limited` of `slots` slots.
fn limited(slots: usize) -> (LimitedCache, Handle, Arc<tokio::sync::Semaphore>) {
    use tower::Layer;

    let slots = Arc::new(tokio::sync::Semaphore::new(slots));
    let (origin, mut handle) = mock::pair::<Request<String>, Response<Full<Bytes>>>();
    handle.allow(10);
    let cache = CacheLayer::new(MemoryStore::default()).layer(Limited {
        inner: origin,
        slots: slots.clone(),
        slot: None,
    });
    (cache, handle, slots)
}

#[tokio::test]
async fn a_request_waiting_for_anothers_fetch_holds_no_slot_of_the_service_below() {
    let (cache, mut handle, slots) = limited(1);
    let url = "http://example.com/slow";
    let mut first = tokio_test::task::spawn(cache.clone());
    assert_ready_ok!(first.enter(|cx, mut cache| cache.poll_ready(cx)));
    let leader = first.enter(|_, mut cache| cache.call(get(url)));
    let ((), leader) = tokio::join!(answer(&mut handle, fresh("slow")), leader);
    let leader = leader.expect("the leader's miss");
    assert_eq!(
        slots.available_permits(),
        1,
        "the leader's call gave its slot back"
    );

    let mut second = tokio_test::task::spawn(cache.clone());
    assert_ready_ok!(second.enter(|cx, mut cache| cache.poll_ready(cx)));
    let mut waiter = tokio_test::task::spawn(second.enter(|_, mut cache| cache.call(get(url))));
    assert_pending!(waiter.poll());
    assert_eq!(slots.available_permits(), 1, "the waiter holds no slot");
    let mut third = tokio_test::task::spawn(cache.clone());
    assert_ready_ok!(
        third.enter(|cx, mut cache| cache.poll_ready(cx)),
        "a request for another URL gets ready"
    );
    drop(third);

    leader
        .into_body()
        .collect()
        .await
        .expect("the body completes");
    let response = waiter.await.expect("the waiter's answer");
    assert_eq!(
        response.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Collapsed)
    );
}

#[tokio::test]
async fn a_waiter_sent_to_the_origin_after_all_gets_its_service_ready_first() {
    let (cache, mut handle, slots) = limited(2);
    let url = "http://example.com/private";
    let mut first = tokio_test::task::spawn(cache.clone());
    assert_ready_ok!(first.enter(|cx, mut cache| cache.poll_ready(cx)));
    let mut leader = tokio_test::task::spawn(first.enter(|_, mut cache| cache.call(get(url))));
    assert_pending!(leader.poll());
    let (_, leaders_answer) = handle.next_request().await.expect("the leader asks");
    let mut second = tokio_test::task::spawn(cache.clone());
    assert_ready_ok!(second.enter(|cx, mut cache| cache.poll_ready(cx)));
    let mut waiter = tokio_test::task::spawn(second.enter(|_, mut cache| cache.call(get(url))));
    assert_pending!(waiter.poll());

    // The leader's answer may not be stored, so the waiter goes to the origin: not before
    // it has a slot, which something else holds for now.
    leaders_answer.send_response(
        Response::builder()
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from_static(b"mine")))
            .expect("valid"),
    );
    let _leader = leader.await.expect("the leader's answer");
    let held = slots
        .clone()
        .try_acquire_many_owned(2)
        .expect("no slot is held: the leader's call is over, the waiter holds none");
    assert_pending!(waiter.poll(), "no slot yet");
    assert_pending!(handle.poll_request(), "nothing sent without a slot");
    drop(held);
    let ((), response) = tokio::join!(answer(&mut handle, fresh("yours")), waiter);
    let body = response
        .expect("the waiter's answer")
        .into_body()
        .collect()
        .await;
    assert_eq!(body.expect("a body").to_bytes(), "yours");
}

#[tokio::test(start_paused = true)]
async fn requests_after_a_timed_out_wait_still_wait_for_an_origin_slow_to_answer() {
    use tower::{Layer, ServiceExt};

    let (origin, mut handle) = mock::pair::<Request<String>, Response<Full<Bytes>>>();
    handle.allow(100);
    let cache = CacheLayer::new(MemoryStore::default()).layer(origin);
    let url = "http://example.com/slow-head";
    let leader = tokio::spawn(cache.clone().oneshot(get(url)));
    let (_, leaders_answer) = handle.next_request().await.expect("the leader asks");
    let waiter = tokio::spawn(cache.clone().oneshot(get(url)));
    // The waiter waits as long as it may (the paused clock jumps), then asks the origin.
    let (_, waiters_answer) = handle.next_request().await.expect("the waiter gives up");

    // Three more come just after; the origin answers the leader a moment later.
    let later: Vec<_> = (0..3)
        .map(|_| tokio::spawn(cache.clone().oneshot(get(url))))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    leaders_answer.send_response(fresh("one"));
    let leader = leader.await.expect("joined").expect("the leader's answer");
    leader
        .into_body()
        .collect()
        .await
        .expect("the body completes");
    waiters_answer.send_response(fresh("two"));
    drop(waiter.await);
    tokio::task::yield_now().await;
    let mut asked = 0;
    while let Poll::Ready(Some((_, send))) = handle.poll_request() {
        asked += 1;
        send.send_response(fresh("again"));
    }
    let mut statuses = Vec::new();
    for request in later {
        let response = request.await.expect("joined").expect("answered");
        statuses.push(response.extensions().get::<CacheStatus>().copied());
    }
    assert_eq!(asked, 0, "they asked the origin: {statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|status| *status == Some(CacheStatus::Collapsed)),
        "{statuses:?}"
    );
}
