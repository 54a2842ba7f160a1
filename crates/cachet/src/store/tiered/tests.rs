use bytes::Bytes;

use super::*;
use crate::store::{MemoryStore, Store};

fn key() -> CacheKey {
    CacheKey::from_text("GET http://a/")
}

async fn call<S>(store: &S, request: StoreRequest) -> StoreResponse
where
    S: Service<StoreRequest, Response = StoreResponse, Error = BoxError> + Clone,
{
    store
        .clone()
        .oneshot(request)
        .await
        .expect("memory stores never fail")
}

fn put(value: &'static str, ttl: u64) -> StoreRequest {
    StoreRequest::Put {
        key: key(),
        value: Value::from(value),
        ttl: Duration::from_secs(ttl),
    }
}

#[tokio::test(start_paused = true)]
async fn a_far_hit_is_kept_near_for_at_most_the_near_ttl() {
    let (near, far) = (MemoryStore::default(), MemoryStore::default());
    let tiered = Tiered::new(near.clone(), far.clone()).near_ttl(Duration::from_secs(2));
    call(&far, put("v1", 600)).await;

    let StoreResponse::Found(first) = call(&tiered, StoreRequest::Get(key())).await else {
        panic!("the far tier has it");
    };
    assert_eq!(near.len(), 1, "promoted to the near tier");

    // Another process replaces the entry in the far tier; the near copy hides that
    // for at most the near TTL.
    call(&far, put("v2", 600)).await;
    let StoreResponse::Found(second) = call(&tiered, StoreRequest::Get(key())).await else {
        panic!("the near tier has it");
    };
    assert_eq!(second.bytes(), first.bytes());
    assert!(
        std::ptr::eq(second.bytes().as_ptr(), first.bytes().as_ptr()),
        "the same value, decoded once"
    );

    tokio::time::advance(Duration::from_secs(2)).await;
    let found = call(&tiered, StoreRequest::Get(key())).await;
    assert_eq!(
        found,
        StoreResponse::Found(Value::from(Bytes::from_static(b"v2")))
    );
}

#[tokio::test]
async fn listings_come_from_the_far_tier_and_clear_reaches_both() {
    let (near, far) = (MemoryStore::default(), MemoryStore::default());
    let tiered = Tiered::new(near.clone(), far.clone());
    call(&tiered, put("v", 600)).await;
    call(
        &far,
        StoreRequest::Put {
            key: CacheKey::from_text("GET http://far-only/"),
            value: Value::from("w"),
            ttl: Duration::from_secs(600),
        },
    )
    .await;
    let scan = StoreRequest::Scan(crate::store::Scan::new(crate::store::Cursor::start()));
    let StoreResponse::Page(page) = call(&tiered, scan).await else {
        panic!("memory tiers list");
    };
    assert_eq!(page.items().len(), 2);
    call(&tiered, StoreRequest::Clear).await;
    assert_eq!((near.len(), far.len()), (0, 0));
}

#[test]
fn tiers_that_are_send_but_not_sync_make_a_store() {
    fn store<S: crate::store::Store>(_: &S) {}
    let far = tower::util::BoxCloneService::new(MemoryStore::default());
    store(&Tiered::new(MemoryStore::default(), far));
}

#[tokio::test]
async fn a_near_tier_that_fails_leaves_gets_to_the_far_tier() {
    let (near, mut handle) = tower_test::mock::pair::<StoreRequest, StoreResponse>();
    let far = MemoryStore::default();
    call(&far, put("v", 600)).await;
    let mut tiered = Tiered::new(near, far);
    handle.send_error("near tier down");
    let found = tiered
        .ready()
        .await
        .expect("the far tier answers for it")
        .call(StoreRequest::Get(key()))
        .await
        .expect("a far hit");
    assert_eq!(found, StoreResponse::Found(Value::from("v")));
    // The far hit is offered to the near tier, which is no longer failing.
    let (request, send) = handle.next_request().await.expect("a promotion");
    assert!(matches!(request, StoreRequest::Put { .. }));
    send.send_response(StoreResponse::Done);
}

#[tokio::test]
async fn a_far_read_under_way_when_its_key_is_written_here_keeps_nothing_near() {
    let near = MemoryStore::default();
    let (far, mut handle) = tower_test::mock::pair::<StoreRequest, StoreResponse>();
    let tiered = Tiered::new(near.clone(), far);
    // A read that misses near and waits on the far tier...
    let read = tokio::spawn(tiered.clone().oneshot(StoreRequest::Get(key())));
    let (request, answer_read) = handle.next_request().await.expect("a far read");
    assert!(matches!(request, StoreRequest::Get(_)));
    // ...while a write (an invalidation marker, say) goes through this store.
    let write = tokio::spawn(tiered.clone().oneshot(put("new", 600)));
    let (request, answer_write) = handle.next_request().await.expect("a far write");
    assert!(matches!(request, StoreRequest::Put { .. }));
    answer_write.send_response(StoreResponse::Done);
    write.await.expect("runs").expect("written");
    // The read ends with what was there before the write.
    answer_read.send_response(StoreResponse::Found(Value::from("old")));
    let found = read.await.expect("runs").expect("read");
    assert_eq!(found, StoreResponse::Found(Value::from("old")));
    assert_eq!(
        call(&near, StoreRequest::Get(key())).await,
        StoreResponse::Found(Value::from("new")),
        "the near tier keeps the write, not the older read"
    );
    // A later read that nothing overtook is kept near as before.
    let read = tokio::spawn(
        tiered
            .clone()
            .oneshot(StoreRequest::Get(CacheKey::from_text("GET http://b/"))),
    );
    let (_, answer_read) = handle.next_request().await.expect("a far read");
    answer_read.send_response(StoreResponse::Found(Value::from("b")));
    read.await.expect("runs").expect("read");
    assert_eq!(near.len(), 2);
}

#[tokio::test]
async fn a_far_read_that_ends_while_a_delete_is_under_way_keeps_nothing_near() {
    let near = MemoryStore::default();
    let (far, mut handle) = tower_test::mock::pair::<StoreRequest, StoreResponse>();
    let tiered = Tiered::new(near.clone(), far);
    // A purge: gone from the near tier at once, the far tier not answered yet...
    let delete = tokio::spawn(tiered.clone().oneshot(StoreRequest::Delete(key())));
    let (request, answer_delete) = handle.next_request().await.expect("a far delete");
    assert!(matches!(request, StoreRequest::Delete(_)));
    // ...when a read misses near and the far tier answers it with what it still had.
    let read = tokio::spawn(tiered.clone().oneshot(StoreRequest::Get(key())));
    let (_, answer_read) = handle.next_request().await.expect("a far read");
    answer_read.send_response(StoreResponse::Found(Value::from("old")));
    read.await.expect("runs").expect("read");
    answer_delete.send_response(StoreResponse::Done);
    delete.await.expect("runs").expect("deleted");
    assert_eq!(
        call(&near, StoreRequest::Get(key())).await,
        StoreResponse::NotFound,
        "the purge is not undone near"
    );
    // The same when the delete is answered first, before the read ends.
    let delete = tokio::spawn(tiered.clone().oneshot(StoreRequest::Delete(key())));
    let (_, answer_delete) = handle.next_request().await.expect("a far delete");
    let mut read = tokio_test::task::spawn(tiered.clone().oneshot(StoreRequest::Get(key())));
    assert!(read.poll().is_pending(), "waits on the far tier");
    let (_, answer_read) = handle.next_request().await.expect("a far read");
    answer_read.send_response(StoreResponse::Found(Value::from("old")));
    answer_delete.send_response(StoreResponse::Done);
    delete.await.expect("runs").expect("deleted");
    read.await.expect("read");
    assert_eq!(
        call(&near, StoreRequest::Get(key())).await,
        StoreResponse::NotFound,
        "the purge is not undone near"
    );
    // Once nothing is pending, reads are kept near again.
    let read = tokio::spawn(tiered.clone().oneshot(StoreRequest::Get(key())));
    let (_, answer_read) = handle.next_request().await.expect("a far read");
    answer_read.send_response(StoreResponse::Found(Value::from("new")));
    read.await.expect("runs").expect("read");
    assert_eq!(near.len(), 1);
}

#[tokio::test]
async fn puts_and_deletes_reach_both_tiers() {
    let (near, far) = (MemoryStore::default(), MemoryStore::default());
    let tiered = Tiered::new(near.clone(), far.clone());
    call(&tiered, put("v", 600)).await;
    assert_eq!((near.len(), far.len()), (1, 1));
    call(&tiered, StoreRequest::Delete(key())).await;
    assert_eq!(
        call(&near, StoreRequest::Get(key())).await,
        StoreResponse::NotFound
    );
    assert_eq!(
        call(&far, StoreRequest::Get(key())).await,
        StoreResponse::NotFound
    );
}

#[tokio::test]
async fn a_read_to_write_back_asks_the_far_tier_and_keeps_its_answer_near() {
    let (near, far) = (MemoryStore::default(), MemoryStore::default());
    let tiered = Tiered::new(near.clone(), far.clone()).near_ttl(Duration::from_secs(60));
    call(&tiered, put("old", 600)).await;
    // Another process replaces the entry in the far tier (an invalidation marker, say).
    call(&far, put("new", 600)).await;
    assert_eq!(
        call(&tiered, StoreRequest::Get(key())).await,
        StoreResponse::Found(Value::from("old")),
        "a lookup may see the near copy for up to the near TTL"
    );
    let latest = crate::store::latest(call(&tiered, StoreRequest::Get(key()))).await;
    assert_eq!(latest, StoreResponse::Found(Value::from("new")));
    assert_eq!(
        call(&near, StoreRequest::Get(key())).await,
        StoreResponse::Found(Value::from("new")),
        "the near copy is brought up to date"
    );
}

/// A near tier that runs `hook` once, at its next `poll_ready`: what another task does
/// between a promotion's check and its copy's arrival.
#[derive(Clone)]
struct Hooked {
    memory: MemoryStore,
    hook: Arc<Mutex<Option<Hook>>>,
}

type Hook = Box<dyn FnOnce() + Send>;

impl Service<StoreRequest> for Hooked {
    type Response = StoreResponse;
    type Error = BoxError;
    type Future = <MemoryStore as Service<StoreRequest>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let hook = self.hook.lock().expect("not poisoned").take();
        if let Some(hook) = hook {
            hook();
        }
        self.memory.poll_ready(cx)
    }

    fn call(&mut self, request: StoreRequest) -> Self::Future {
        self.memory.call(request)
    }
}

#[tokio::test]
async fn a_write_made_while_a_far_read_is_promoted_is_not_hidden_by_the_promotion() {
    let (near, far) = (MemoryStore::default(), MemoryStore::default());
    let hook = Arc::new(Mutex::new(None));
    let hooked = Hooked {
        memory: near,
        hook: hook.clone(),
    };
    let tiered = Tiered::new(hooked, far.clone());
    call(&far, put("old", 600)).await;
    // The write goes through this store (near and far) just before the promotion's copy.
    let writer = tiered.clone();
    *hook.lock().expect("not poisoned") = Some(Box::new(move || {
        let mut write = std::pin::pin!(writer.oneshot(put("new", 600)));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(
            write.as_mut().poll(&mut cx).is_ready(),
            "memory answers at once"
        );
    }));
    let read = tiered.clone().call(StoreRequest::Get(key())).await;
    assert_eq!(
        read.expect("read"),
        StoreResponse::Found(Value::from("old"))
    );
    assert!(
        hook.lock().expect("not poisoned").is_none(),
        "the write ran"
    );
    let StoreResponse::Found(after) = call(&tiered, StoreRequest::Get(key())).await else {
        panic!("stored")
    };
    assert_eq!(after.bytes(), "new", "the promotion hid the write");
}

/// A far tier that reads `memory` at once but answers a get only `delay` later: a Redis
/// reply that is slow to arrive.
fn slow_replies(memory: MemoryStore, delay: Duration) -> impl Store {
    tower::service_fn(move |request: StoreRequest| {
        let delay = matches!(request, StoreRequest::Get(_)).then_some(delay);
        let read = memory.clone().call(request);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(answer) = std::pin::pin!(read).poll(&mut cx) else {
            panic!("memory answers at once");
        };
        async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            answer
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_slow_far_answer_hides_another_process_write_no_longer_than_the_near_ttl() {
    let (near, far) = (MemoryStore::default(), MemoryStore::default());
    let slow = slow_replies(far.clone(), Duration::from_millis(600));
    let tiered = Tiered::new(near.clone(), slow).near_ttl(Duration::from_secs(1));
    call(&far, put("old", 600)).await;

    // A read misses near and the far tier reads "old" at once...
    let mut read = tokio_test::task::spawn(tiered.clone().oneshot(StoreRequest::Get(key())));
    assert!(read.poll().is_pending(), "waits on the far reply");
    // ...just before another process writes "new" there.
    call(&far, put("new", 600)).await;
    // The reply arrives 600 ms later and is kept near.
    tokio::time::advance(Duration::from_millis(600)).await;
    assert_eq!(
        read.await.expect("read"),
        StoreResponse::Found(Value::from("old"))
    );
    assert_eq!(near.len(), 1, "promoted");

    // Just past the near TTL after the other write, it is seen here.
    tokio::time::advance(Duration::from_millis(401)).await;
    assert_eq!(
        call(&tiered, StoreRequest::Get(key())).await,
        StoreResponse::Found(Value::from("new")),
        "the near copy outlived the near TTL counted from the far read"
    );
}
