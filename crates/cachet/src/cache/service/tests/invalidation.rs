//! Invalidation while the cache writes: what it read before an invalidation is not
//! written over the marker.

use super::*;

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
    assert_ready_ok!(cache.poll_ready());
    let post = cache.call(
        Request::post("http://example.com/r")
            .body(String::new())
            .expect("valid"),
    );
    let ((), post) = tokio::join!(
        answer(
            &mut handle,
            Response::new(Full::new(Bytes::from_static(b"done")))
        ),
        post
    );
    post.expect("the POST's answer");
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
