//! The store's readiness as the cache uses it, and the store handles a request holds.

use super::*;

#[tokio::test]
async fn readiness_follows_the_inner_service() {
    let (mut cache, mut handle) = mock::spawn_layer::<Request<String>, Response<Full<Bytes>>, _>(
        CacheLayer::new(MemoryStore::default()),
    );
    handle.allow(0);
    assert_pending!(cache.poll_ready());
    handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    // The call after a lookup must reach the very service that was made ready; the
    // mock panics if a clone that was never polled is called instead.
    let miss = cache.call(get("http://example.com/b"));
    let ((), response) = tokio::join!(answer(&mut handle, fresh("b")), miss);
    assert!(response.is_ok());
    assert_pending!(cache.poll_ready());
}

type StoreHandle = mock::Handle<StoreRequest, StoreResponse>;

/// Answers the next store read with `response`, returning it; writes before it (a POST's
/// invalidation) are answered `Done`.
async fn store_answers(store: &mut StoreHandle, response: StoreResponse) -> StoreRequest {
    loop {
        let (request, send) = store.next_request().await.expect("the store is asked");
        if matches!(request, StoreRequest::Get(_)) {
            send.send_response(response);
            return request;
        }
        send.send_response(StoreResponse::Done);
    }
}

#[tokio::test]
async fn a_lookup_goes_out_on_the_handle_poll_ready_readied() {
    let (store, mut store_handle) = mock::pair::<StoreRequest, StoreResponse>();
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(store));
    handle.allow(1);
    // One send allowed: the mock panics if a handle that was not made ready is called.
    store_handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    let miss = cache.call(get("http://example.com/s"));
    let (request, (), response) = tokio::join!(
        store_answers(&mut store_handle, StoreResponse::NotFound),
        answer(&mut handle, fresh("s")),
        miss
    );
    assert!(matches!(request, StoreRequest::Get(_)));
    assert!(response.is_ok());
}

/// Sends an OPTIONS, which looks nothing up, through a cache made ready, and answers it.
async fn options_answered<S>(cache: &mut mock::Spawn<S>, handle: &mut Handle)
where
    S: Service<Request<String>>,
    S::Error: std::fmt::Debug,
{
    let options = Request::options("http://example.com/p")
        .body(String::new())
        .expect("a valid request");
    let options = cache.call(options);
    let ((), response) = tokio::join!(answer(handle, fresh("answered")), options);
    response.expect("the OPTIONS is answered");
}

#[tokio::test]
async fn a_store_that_is_not_ready_holds_back_no_request() {
    let (store, mut store_handle) = mock::pair::<StoreRequest, StoreResponse>();
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(store));
    handle.allow(2);
    store_handle.allow(0);
    // An OPTIONS looks nothing up: it goes on while the store is not ready.
    assert_ready_ok!(cache.poll_ready());
    options_answered(&mut cache, &mut handle).await;

    // A GET waits in its own future for a handle of its own, then looks up.
    assert_ready_ok!(cache.poll_ready());
    let mut lookup = tokio_test::task::spawn(cache.call(get("http://example.com/g")));
    assert_pending!(lookup.poll());
    store_handle.allow(1);
    let ((), request, ()) = tokio::join!(
        async {
            let response = lookup.await.expect("answered by the origin");
            assert!(matches!(
                response.extensions().get::<CacheStatus>(),
                Some(CacheStatus::Forwarded { .. })
            ));
        },
        store_answers(&mut store_handle, StoreResponse::NotFound),
        answer(&mut handle, fresh("g"))
    );
    assert!(matches!(request, StoreRequest::Get(_)));
}

/// A memory store that counts its clones, and whose readiness reserves one of a count
/// of slots until its call, or until the handle is dropped, as a concurrency limit's
/// permit does.
#[derive(Default)]
struct Watched {
    memory: MemoryStore,
    clones: Arc<AtomicUsize>,
    reserved: Arc<AtomicUsize>,
    holds: bool,
}

impl Clone for Watched {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, SeqCst);
        Self {
            memory: self.memory.clone(),
            clones: self.clones.clone(),
            reserved: self.reserved.clone(),
            holds: false,
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.holds {
            self.reserved.fetch_sub(1, SeqCst);
        }
    }
}

impl Service<StoreRequest> for Watched {
    type Response = StoreResponse;
    type Error = BoxError;
    type Future = std::future::Ready<Result<StoreResponse, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if !std::mem::replace(&mut self.holds, true) {
            self.reserved.fetch_add(1, SeqCst);
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: StoreRequest) -> Self::Future {
        if std::mem::take(&mut self.holds) {
            self.reserved.fetch_sub(1, SeqCst);
        }
        self.memory.call(request)
    }
}

#[tokio::test]
async fn a_store_made_ready_for_a_request_that_looks_nothing_up_is_let_go() {
    let store = Watched::default();
    let reserved = store.reserved.clone();
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(store));
    handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    assert_eq!(reserved.load(SeqCst), 1, "made ready for a lookup");
    let options = Request::options("http://example.com/p")
        .body(String::new())
        .expect("a valid request");
    let options = cache.call(options);
    // Kept until the next request, a connection left idle would hold the slot.
    assert_eq!(reserved.load(SeqCst), 0);
    let ((), response) = tokio::join!(answer(&mut handle, fresh("answered")), options);
    assert!(response.is_ok());
}

type MockCache = crate::Cache<
    mock::Mock<Request<String>, Response<Full<Bytes>>>,
    mock::Mock<StoreRequest, StoreResponse>,
>;

/// A cache over a mock store whose next readiness fails with `error`: the cache, the
/// inner service's and the store's handles, and the cache's metrics.
fn over_a_failing_store(
    error: &'static str,
) -> (mock::Spawn<MockCache>, Handle, StoreHandle, crate::Metrics) {
    let (store, mut store_handle) = mock::pair::<StoreRequest, StoreResponse>();
    let layer = CacheLayer::new(store);
    let metrics = layer.metrics();
    let (cache, handle) = mock::spawn_layer::<Request<String>, Response<Full<Bytes>>, _>(layer);
    store_handle.send_error(error);
    (cache, handle, store_handle, metrics)
}

#[tokio::test]
async fn a_store_error_counts_only_for_the_lookup_it_was_found_for() {
    let (mut cache, mut handle, mut store_handle, metrics) = over_a_failing_store("a blip");
    handle.allow(2);
    assert_ready_ok!(cache.poll_ready());
    options_answered(&mut cache, &mut handle).await;

    // The store is fine again: the next lookup reads it, with no error from before.
    store_handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    let miss = cache.call(get("http://example.com/g"));
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store_answers(&mut store_handle, StoreResponse::NotFound),
    );
    let (read, (), response) = tokio::join!(read, answer(&mut handle, fresh("g")), miss);
    assert!(read.is_ok(), "the lookup reads the store");
    assert!(response.is_ok());
    assert_eq!(metrics.store_errors(), 0);
}

#[tokio::test]
async fn a_store_that_fails_to_get_ready_sends_the_lookup_to_the_origin() {
    let (mut cache, mut handle, _store_handle, metrics) = over_a_failing_store("store down");
    handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    let miss = cache.call(get("http://example.com/down"));
    let ((), response) = tokio::join!(answer(&mut handle, fresh("origin")), miss);
    let response = response.expect("the cache fails open");
    assert!(matches!(
        response.extensions().get::<CacheStatus>(),
        Some(CacheStatus::Forwarded {
            reason: crate::ForwardReason::Miss,
            ..
        })
    ));
    assert_eq!(metrics.store_errors(), 1);
}

#[tokio::test]
async fn a_hit_clones_no_store_handle() {
    let store = Watched::default();
    let clones = store.clones.clone();
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(store));
    handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    let miss = cache.call(get("http://example.com/h"));
    let ((), response) = tokio::join!(answer(&mut handle, fresh("h")), miss);
    let body = response.expect("a miss").into_body();
    body.collect().await.expect("the body completes");

    // From a clone's second request on, a hit clones no store handle: on more than one
    // core, a count every request bumps is a line they fight over.
    handle.allow(1);
    assert_ready_ok!(cache.poll_ready());
    cache
        .call(get("http://example.com/h"))
        .await
        .expect("a hit");
    let before = clones.load(SeqCst);
    for _ in 0..3 {
        assert_ready_ok!(cache.poll_ready());
        let response = cache
            .call(get("http://example.com/h"))
            .await
            .expect("a hit");
        assert_eq!(
            response.extensions().get::<CacheStatus>(),
            Some(&CacheStatus::Hit)
        );
    }
    assert_eq!(clones.load(SeqCst), before);
}
