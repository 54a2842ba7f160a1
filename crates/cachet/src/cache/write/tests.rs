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
    invalidate(&store, &uri, &response, &config);

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
