//! Invalidation while the cache writes: what it read before an invalidation is not
//! written over the marker.

use super::*;
use tower::ServiceExt;

/// Runs `after`, a GET sent after a POST completed, answering the store's requests from
/// `memory`: it must go to the origin, not be answered from the store.
async fn asks_the_origin<F>(
    after: F,
    stored: &mut mock::Handle<StoreRequest, StoreResponse>,
    memory: &MemoryStore,
    handle: &mut Handle,
) where
    F: Future<Output = Result<Response<crate::CacheBody<Full<Bytes>>>, crate::Error>>,
{
    tokio::select! {
        response = after => {
            let response = response.expect("answered");
            let status = response.extensions().get::<CacheStatus>().copied();
            let body = response.into_body().collect().await.expect("completes").to_bytes();
            panic!("the GET after the POST was answered from the store: {status:?} {body:?}");
        }
        request = async {
            loop {
                tokio::select! {
                    request = stored.next_request() => {
                        let (request, send) = request.expect("a store request");
                        send.send_response(memory.clone().oneshot(request).await.expect("memory"));
                    }
                    request = handle.next_request() => return request,
                }
            }
        } => {
            assert!(request.is_some(), "the GET after the POST asks the origin");
        }
    }
}

/// The cache in front of the mock origin.
type Cached<St> = crate::Cache<mock::Mock<Request<String>, Response<Full<Bytes>>>, St>;

/// A POST to `http://example.com/r` through `cache`, answered `200` by the origin: an
/// invalidation of the URI, its response returned.
async fn post_completes<St: crate::store::Store>(
    cache: &mut mock::Spawn<Cached<St>>,
    handle: &mut Handle,
) {
    assert_ready_ok!(cache.poll_ready());
    let post = cache.call(
        Request::post("http://example.com/r")
            .body(String::new())
            .expect("valid"),
    );
    let ((), post) = tokio::join!(
        answer(
            handle,
            Response::new(Full::new(Bytes::from_static(b"done")))
        ),
        post
    );
    post.expect("the POST's answer");
}

#[tokio::test]
async fn a_heads_update_of_the_get_read_before_an_invalidation_does_not_write_over_its_marker() {
    // A HEAD answered before a POST (so its update of the stored GET is allowed) reads
    // the stored GET; the POST's invalidation then writes its marker. The update, read
    // from before the marker, must not be written over it: the GET from before the POST
    // would be a hit again.
    let store = Gated::new();
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(store.clone()));
    handle.allow(4);
    let tagged = |body: &'static str| {
        Response::builder()
            .header("cache-control", "max-age=60")
            .header("etag", "\"1\"")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("test responses are valid")
    };

    assert_ready_ok!(cache.poll_ready());
    let miss = cache.call(get("http://example.com/r"));
    let ((), miss) = tokio::join!(answer(&mut handle, tagged("before")), miss);
    miss.expect("the miss")
        .into_body()
        .collect()
        .await
        .expect("the body completes");
    assert_ready_ok!(cache.poll_ready());
    let hit = cache
        .call(get("http://example.com/r"))
        .await
        .expect("a hit");
    assert_eq!(
        hit.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Hit)
    );

    // The HEAD goes to the origin; its answer freshens the GET, whose read is held.
    assert_ready_ok!(cache.poll_ready());
    let head = cache.call(
        Request::head("http://example.com/r")
            .body(String::new())
            .expect("valid"),
    );
    let head = tokio::spawn(head);
    let (_, send) = handle.next_request().await.expect("the HEAD is forwarded");
    let gets = store.gets.load(SeqCst);
    let open = store.arm();
    send.send_response(tagged(""));
    let head = head.await.expect("joined").expect("the HEAD's answer");
    head.into_body()
        .collect()
        .await
        .expect("the body completes");
    while store.gets.load(SeqCst) == gets {
        tokio::task::yield_now().await;
    }

    // The POST changes the resource, and invalidates the stored GET.
    post_completes(&mut cache, &mut handle).await;
    open.send(()).expect("the held read waits");
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }

    assert_ready_ok!(cache.poll_ready());
    let after = tokio::spawn(cache.call(get("http://example.com/r")));
    tokio::select! {
        response = after => {
            let response = response.expect("joined").expect("answered");
            panic!(
                "the GET from before the POST was served: {:?}",
                response.extensions().get::<CacheStatus>()
            );
        }
        request = handle.next_request() => {
            assert!(request.is_some(), "the GET after the POST asks the origin");
        }
    }
}

/// RFC 9111 §4.4 through a store whose writes overtake one another (a pool of Redis
/// connections): an entry whose write was sent before a POST's marker but lands after it
/// stands over the marker until the writer, told the write is done, marks it again; a GET
/// sent after the POST completed, and after its marker was written, must not be a hit on
/// it meanwhile.
#[tokio::test]
async fn rfc9111_4_4_a_get_after_a_post_is_no_hit_on_an_entry_that_landed_over_its_marker() {
    let (store, mut stored) = mock::pair::<StoreRequest, StoreResponse>();
    let memory = MemoryStore::default();
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(store));
    handle.allow(3);

    // A miss: its lookup finds nothing, the origin answers, its entry's write is held.
    assert_ready_ok!(cache.poll_ready());
    let miss = tokio::spawn(cache.call(get("http://example.com/r")));
    let (lookup, found) = stored.next_request().await.expect("the miss looks up");
    assert!(matches!(lookup, StoreRequest::Get(_)), "{lookup:?}");
    found.send_response(StoreResponse::NotFound);
    answer(&mut handle, fresh("before")).await;
    let body = miss.await.expect("joined").expect("the miss").into_body();
    body.collect().await.expect("the body completes");
    let (entry, entry_done) = stored.next_request().await.expect("the entry is written");
    assert!(matches!(entry, StoreRequest::Put { .. }), "{entry:?}");

    // The POST completes; its markers (GET and HEAD keys) land at once.
    post_completes(&mut cache, &mut handle).await;
    for _ in 0..2 {
        let (marker, done) = stored.next_request().await.expect("a marker is written");
        memory.clone().oneshot(marker).await.expect("stored");
        done.send_response(StoreResponse::Done);
    }
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }

    // Then the entry's write lands, over the marker, not yet acknowledged: its writer
    // cannot have marked it again.
    memory.clone().oneshot(entry).await.expect("stored");

    // A GET sent now, after the POST completed and its markers were written.
    assert_ready_ok!(cache.poll_ready());
    asks_the_origin(
        cache.call(get("http://example.com/r")),
        &mut stored,
        &memory,
        &mut handle,
    )
    .await;

    // Acknowledged, the write is followed by the writer's own marker.
    entry_done.send_response(StoreResponse::Done);
    let (again, _held) = stored
        .next_request()
        .await
        .expect("the writer marks it again");
    assert!(matches!(again, StoreRequest::Put { .. }), "{again:?}");
}

/// A GET sent after a POST completed, while the POST's marker is still on its way to the
/// store, skips its lookup; a fetch of another key of its coalescing shard that finishes
/// before it joins sends it to look again, and that look must not read the store either.
#[tokio::test]
async fn rfc9111_4_4_a_second_look_while_the_key_is_being_marked_reads_nothing_stored() {
    let (store, mut stored) = mock::pair::<StoreRequest, StoreResponse>();
    let memory = MemoryStore::default();
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(store));
    handle.allow(4);
    let key = crate::CacheKey::from_text("GET http://example.com/r");
    let other = (0..)
        .map(|n| format!("http://example.com/o{n}"))
        .find(|uri| crate::CacheKey::from_text(format!("GET {uri}")).shard(32) == key.shard(32))
        .expect("a key of the same shard");

    // What the store answers, until the markers come: they are held.
    async fn serve(
        stored: &mut mock::Handle<StoreRequest, StoreResponse>,
        memory: &MemoryStore,
        held: &mut Vec<mock::SendResponse<StoreResponse>>,
    ) -> bool {
        let (request, send) = stored.next_request().await.expect("a store request");
        let marker =
            matches!(&request, StoreRequest::Put { value, .. } if value.bytes().len() < 40);
        if marker {
            held.push(send);
        } else {
            send.send_response(memory.clone().oneshot(request).await.expect("memory"));
        }
        marker
    }
    let mut held = Vec::new();

    // Stored: "before".
    assert_ready_ok!(cache.poll_ready());
    let miss = tokio::spawn(cache.call(get("http://example.com/r")));
    serve(&mut stored, &memory, &mut held).await;
    answer(&mut handle, fresh("before")).await;
    let body = miss.await.expect("joined").expect("the miss").into_body();
    body.collect().await.expect("the body completes");
    serve(&mut stored, &memory, &mut held).await;
    // The POST completes; its markers are held on their way.
    post_completes(&mut cache, &mut handle).await;
    assert!(serve(&mut stored, &memory, &mut held).await, "a marker");
    assert!(serve(&mut stored, &memory, &mut held).await, "a marker");
    // The GET after the POST is called (its lookup skipped); before it is polled, a fetch
    // of another key of its coalescing shard finishes and stores.
    assert_ready_ok!(cache.poll_ready());
    let mut after = tokio_test::task::spawn(cache.call(get("http://example.com/r")));
    assert_ready_ok!(cache.poll_ready());
    let fetch = tokio::spawn(cache.call(get(&other)));
    serve(&mut stored, &memory, &mut held).await;
    answer(&mut handle, fresh("other")).await;
    let body = fetch.await.expect("joined").expect("the fetch").into_body();
    body.collect().await.expect("the body completes");
    serve(&mut stored, &memory, &mut held).await;
    // Polled now: it may look again, but must not read what the held marker hides.
    let polled = after.poll();
    let second_look = async {
        loop {
            let request =
                tokio::time::timeout(std::time::Duration::from_millis(50), stored.next_request())
                    .await;
            let Ok(Some((request, send))) = request else {
                break;
            };
            send.send_response(memory.clone().oneshot(request).await.expect("memory"));
        }
    };
    if polled.is_pending() {
        second_look.await;
    }
    let response = match polled {
        Poll::Ready(response) => response,
        Poll::Pending => {
            tokio::select! {
                response = &mut after => response,
                request = handle.next_request() => {
                    assert!(request.is_some(), "the GET after the POST asks the origin");
                    return;
                }
            }
        }
    };
    let response = response.expect("answered");
    let status = response.extensions().get::<CacheStatus>().copied();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("completes")
        .to_bytes();
    panic!("the GET after the POST was answered from the store: {status:?} {body:?}");
}

/// As above, for a HEAD response's update of the stored GET (RFC 9111 §4.3.5): checked
/// against invalidations before it is sent, its write can still land after a POST's marker,
/// and nothing marks the key again.
#[tokio::test]
async fn rfc9111_4_4_a_get_after_a_post_is_no_hit_on_a_heads_update_that_landed_over_its_marker() {
    let (store, mut stored) = mock::pair::<StoreRequest, StoreResponse>();
    let memory = MemoryStore::default();
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(store));
    handle.allow(4);
    let tagged = |body: &'static str| {
        Response::builder()
            .header("cache-control", "max-age=60")
            .header("etag", "\"1\"")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("test responses are valid")
    };
    let get_key = crate::CacheKey::from_text("GET http://example.com/r");
    // Answers every store request from memory but the GET key's writes, which it returns.
    async fn pump(
        stored: &mut mock::Handle<StoreRequest, StoreResponse>,
        memory: &MemoryStore,
        get_key: &crate::CacheKey,
    ) -> Option<(StoreRequest, mock::SendResponse<StoreResponse>)> {
        loop {
            let next =
                tokio::time::timeout(std::time::Duration::from_millis(50), stored.next_request());
            let Ok(Some((request, send))) = next.await else {
                return None;
            };
            if matches!(&request, StoreRequest::Put { key, .. } if key == get_key) {
                return Some((request, send));
            }
            send.send_response(memory.clone().oneshot(request).await.expect("memory"));
        }
    }
    let apply = |request: StoreRequest, send: mock::SendResponse<StoreResponse>| {
        let memory = memory.clone();
        async move { send.send_response(memory.oneshot(request).await.expect("memory")) }
    };

    // Stored: "before".
    assert_ready_ok!(cache.poll_ready());
    let miss = tokio::spawn(cache.call(get("http://example.com/r")));
    let (request, send) = stored.next_request().await.expect("the lookup");
    send.send_response(memory.clone().oneshot(request).await.expect("memory"));
    answer(&mut handle, tagged("before")).await;
    let body = miss.await.expect("joined").expect("the miss").into_body();
    body.collect().await.expect("the body completes");
    let (request, send) = pump(&mut stored, &memory, &get_key)
        .await
        .expect("the entry");
    apply(request, send).await;

    // A HEAD answered before the POST: its update of the GET entry is held on its way.
    assert_ready_ok!(cache.poll_ready());
    let head = tokio::spawn(
        cache.call(
            Request::head("http://example.com/r")
                .body(String::new())
                .expect("valid"),
        ),
    );
    let pumped = async {
        let update = pump(&mut stored, &memory, &get_key).await;
        update.expect("the GET's entry is freshened")
    };
    let (update, ()) = tokio::join!(pumped, async {
        answer(&mut handle, tagged("")).await;
    });
    let head = head.await.expect("joined").expect("the HEAD");
    head.into_body()
        .collect()
        .await
        .expect("the body completes");

    // The POST completes; its markers land; then the update lands over the GET's.
    post_completes(&mut cache, &mut handle).await;
    let (marker, send) = pump(&mut stored, &memory, &get_key)
        .await
        .expect("the GET's marker");
    apply(marker, send).await;
    pump(&mut stored, &memory, &get_key).await; // the HEAD key's marker, and the rest
    // The update lands, not yet acknowledged: it cannot have been marked again.
    let (written, done) = update;
    memory.clone().oneshot(written).await.expect("stored");

    // A GET after the POST completed and its markers were written.
    assert_ready_ok!(cache.poll_ready());
    asks_the_origin(
        cache.call(get("http://example.com/r")),
        &mut stored,
        &memory,
        &mut handle,
    )
    .await;

    // Acknowledged, the update is followed by a marker of its own (1d060f5).
    done.send_response(StoreResponse::Done);
    let _again = pump(&mut stored, &memory, &get_key)
        .await
        .expect("the update is marked again");
}

/// A [`Gated`] store whose marker writes (small puts) wait until `release`.
#[derive(Clone)]
struct SlowMarkers {
    gated: Gated,
    held: Arc<Mutex<Vec<oneshot::Sender<()>>>>,
}

impl SlowMarkers {
    fn release(&self) {
        self.held.lock().expect("not poisoned").clear();
    }
}

impl Service<StoreRequest> for SlowMarkers {
    type Response = StoreResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<StoreResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: StoreRequest) -> Self::Future {
        if matches!(&request, StoreRequest::Put { value, .. } if value.bytes().len() < 40) {
            let (release, wait) = oneshot::channel();
            self.held.lock().expect("not poisoned").push(release);
            let mut gated = self.gated.clone();
            return Box::pin(async move {
                let _ = wait.await;
                gated.call(request).await
            });
        }
        Box::pin(self.gated.call(request))
    }
}

/// A GET sent after a POST completed, while the POST's marker is on its way (its lookup
/// skipped), joins a coalescing leader whose second look read the store before the POST:
/// it must not be handed what that look found, the entry from before the POST.
#[tokio::test]
async fn rfc9111_4_4_a_waiter_that_joins_after_a_post_is_not_handed_a_second_look_from_before_it() {
    let gated = Gated::new();
    let store = SlowMarkers {
        gated: gated.clone(),
        held: Arc::default(),
    };
    let (mut cache, mut handle) = mock::spawn_layer(CacheLayer::new(store.clone()));
    handle.allow(4);

    // A fetch of /r is under way.
    assert_ready_ok!(cache.poll_ready());
    let mut first = tokio_test::task::spawn(cache.call(get("http://example.com/r")));
    assert_pending!(first.poll());
    let (_, send) = handle.next_request().await.expect("the first fetch");
    // Another GET reads the store (nothing yet), its answer held.
    let open_lookup = gated.arm();
    assert_ready_ok!(cache.poll_ready());
    let mut leader = tokio_test::task::spawn(cache.call(get("http://example.com/r")));
    assert_pending!(leader.poll());
    // The first fetch stores "before" and finishes.
    send.send_response(fresh("before"));
    let body = first.await.expect("joined").into_body();
    body.collect().await.expect("the body completes");
    // The held lookup answers nothing; its request leads now and looks again, which
    // reads "before" at once and answers late (a remote store's round trip).
    open_lookup.send(()).expect("the held read waits for it");
    let open_second_look = gated.arm();
    assert_pending!(leader.poll());

    // The POST completes; its markers are on their way.
    post_completes(&mut cache, &mut handle).await;

    // A GET after the POST: its lookup is skipped; it joins the leader.
    assert_ready_ok!(cache.poll_ready());
    let mut after = tokio_test::task::spawn(cache.call(get("http://example.com/r")));
    assert_pending!(after.poll());

    // The second look's answer comes, read from before the POST.
    open_second_look
        .send(())
        .expect("the second look waits for it");
    let _ = leader.poll();
    store.release();
    let response = tokio::select! {
        response = &mut after => response.expect("answered"),
        request = handle.next_request() => {
            assert!(request.is_some(), "the GET after the POST asks the origin");
            return;
        }
    };
    let body = response
        .into_body()
        .collect()
        .await
        .expect("completes")
        .to_bytes();
    assert_ne!(
        body, "before",
        "the GET after the POST got the entry from before it"
    );
}
