use http::Uri;

use super::*;

#[tokio::test]
async fn rfc9111_4_4_one_marker_goes_under_the_get_and_head_keys_of_each_same_origin_target() {
    use http::HeaderValue;
    use http::header::{CONTENT_LOCATION, LOCATION};

    let store = crate::MemoryStore::default();
    let config = Config::default();
    let uri: Uri = "http://a.example/orders?x=1".parse().expect("valid");
    let mut response = HeaderMap::new();
    response.insert(LOCATION, HeaderValue::from_static("/orders/7"));
    response.insert(
        CONTENT_LOCATION,
        HeaderValue::from_static("http://b.example/elsewhere"),
    );
    let targets = [
        ("GET http://a.example/orders?x=1", true),
        ("HEAD http://a.example/orders?x=1", true),
        ("GET http://a.example/orders/7", true),
        ("HEAD http://a.example/orders/7", true),
        ("GET http://b.example/elsewhere", false),
        ("HEAD http://b.example/elsewhere", false),
    ];
    for (key, _) in targets {
        let put = StoreRequest::Put {
            key: CacheKey::from_text(key),
            value: Value::from("stored"),
            ttl: Duration::from_secs(60),
        };
        store.clone().oneshot(put).await.expect("stored");
    }
    invalidate(&mut store.clone(), &uri, &response, &config);

    let mut markers = Vec::new();
    for (key, marked) in targets {
        let found = store
            .clone()
            .oneshot(StoreRequest::Get(CacheKey::from_text(key)))
            .await
            .expect("memory stores never fail");
        let StoreResponse::Found(value) = found else {
            panic!("{key} still holds a value");
        };
        match Record::decode(value.bytes()) {
            Ok(Record::Variants(marker)) => {
                assert!(marked, "{key} is not the same origin's");
                assert!(marker.names.is_empty(), "a marker names no headers");
                markers.push(marker.not_before);
            }
            _ => assert!(!marked, "{key} is marked"),
        }
    }
    assert!(
        markers.windows(2).all(|pair| pair[0] == pair[1]),
        "every key gets the same marker"
    );
}

#[tokio::test]
async fn rfc9111_4_4_a_marker_the_store_fails_is_followed_by_a_delete_then_a_second_try() {
    use tower_test::mock;

    let key = CacheKey::from_text("GET http://a.example/orders");
    let is_marker = |request: &StoreRequest| matches!(request, StoreRequest::Put { key: put, ttl, .. } if *put == key && *ttl == INVALIDATION_TTL);
    let is_delete = |request: &StoreRequest| matches!(request, StoreRequest::Delete(deleted) if *deleted == key);

    // Refused (a Redis full under `noeviction`), then deleted.
    let (mut store, mut handle) = mock::pair::<StoreRequest, StoreResponse>();
    let metrics = Metrics::default();
    let invalidations = crate::cache::write::Invalidations::default();
    let noted = invalidations.note(&key);
    mark(
        &mut store,
        key.clone(),
        &Value::from("marker"),
        noted,
        &metrics,
    );
    // Only the writes hold the store now, so the handle sees the end when they are done.
    drop(store);
    let (request, answer) = handle.next_request().await.expect("the marker is written");
    assert!(is_marker(&request), "{request:?}");
    assert!(
        invalidations.marking(&key),
        "read as being marked while it is written"
    );
    answer.send_error("OOM command not allowed when used memory > 'maxmemory'");
    let (request, answer) = handle.next_request().await.expect("the key is deleted");
    assert!(is_delete(&request), "{request:?}");
    answer.send_response(StoreResponse::Done);
    assert!(
        handle.next_request().await.is_none(),
        "nothing more once the key is gone"
    );
    let unmarked = async {
        while invalidations.marking(&key) {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), unmarked)
        .await
        .expect("no longer marked once the delete is done");
    assert_eq!(metrics.store_errors(), 1);

    // Refused both (a store down or read-only): the marker goes once more, for a memory
    // tier in front to keep.
    let (mut store, mut handle) = mock::pair::<StoreRequest, StoreResponse>();
    let metrics = Metrics::default();
    let invalidations = crate::cache::write::Invalidations::default();
    let noted = invalidations.note(&key);
    mark(
        &mut store,
        key.clone(),
        &Value::from("marker"),
        noted,
        &metrics,
    );
    // Only the writes hold the store now, so the handle sees the end when they are done.
    drop(store);
    let read_only = "READONLY You can't write against a read only replica.";
    let (request, answer) = handle.next_request().await.expect("the marker is written");
    assert!(is_marker(&request), "{request:?}");
    answer.send_error(read_only);
    let (request, answer) = handle.next_request().await.expect("the key is deleted");
    assert!(is_delete(&request), "{request:?}");
    answer.send_error(read_only);
    let (request, answer) = handle.next_request().await.expect("the marker again");
    assert!(is_marker(&request), "{request:?}");
    answer.send_error(read_only);
    assert!(handle.next_request().await.is_none(), "then it gives up");
    let counted = async {
        while metrics.store_errors() < 3 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), counted)
        .await
        .expect("each failure is counted");
}

#[tokio::test]
async fn rfc9111_4_4_a_marker_written_again_after_a_write_falls_back_to_a_delete_too() {
    use tower_test::mock;

    let key = CacheKey::from_text("GET http://a.example/orders");
    let (mut store, mut handle) = mock::pair::<StoreRequest, StoreResponse>();
    let (invalidations, metrics) = (Invalidations::default(), Metrics::default());
    let sent = invalidations.sending(&key);
    mark_again(
        &mut store,
        key.clone(),
        std::time::SystemTime::now(),
        &invalidations,
        &metrics,
    );
    drop(store);
    assert!(
        invalidations.since(Some(sent)),
        "counted as an invalidation"
    );
    let (request, answer) = handle.next_request().await.expect("the marker is written");
    assert!(
        matches!(&request, StoreRequest::Put { key: put, ttl, .. } if *put == key && *ttl == INVALIDATION_TTL),
        "{request:?}"
    );
    assert!(invalidations.marking(&key), "marked while it is written");
    answer.send_error("OOM command not allowed when used memory > 'maxmemory'");
    let (request, answer) = handle.next_request().await.expect("the key is deleted");
    assert!(
        matches!(&request, StoreRequest::Delete(deleted) if *deleted == key),
        "{request:?}"
    );
    answer.send_response(StoreResponse::Done);
    assert!(handle.next_request().await.is_none(), "nothing more");
}
