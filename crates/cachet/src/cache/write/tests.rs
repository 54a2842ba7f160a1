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

#[test]
fn only_same_origin_locations_are_invalidated() {
    let base: Uri = "http://a.example/items/x?y=1".parse().expect("valid");
    let same = |reference| same_origin(&base, reference).map(|uri| uri.to_string());
    let cases = [
        ("/y", Some("http://a.example/y")),
        ("5", Some("http://a.example/items/5")),
        ("../x", Some("http://a.example/x")),
        ("?q=1", Some("http://a.example/items/x?q=1")),
        ("//a.example/z", Some("http://a.example/z")),
        ("//A.EXAMPLE:80/z", Some("http://A.EXAMPLE:80/z")),
        ("http://A.example/z", Some("http://A.example/z")),
        ("http://a.example:80/z#part", Some("http://a.example:80/z")),
        ("//a.example:8080/z", None),
        ("//b.example/z", None),
        ("http://b.example/y", None),
        ("https://a.example/y", None),
        ("http:y", None),
        ("mailto:someone@a.example", None),
    ];
    for (reference, expected) in cases {
        assert_eq!(same(reference).as_deref(), expected, "{reference}");
    }
    let https: Uri = "https://a.example:443/x".parse().expect("valid");
    assert_eq!(
        same_origin(&https, "//a.example/y").map(|uri| uri.to_string()),
        Some("https://a.example/y".to_owned())
    );
}

/// The examples of RFC 3986 §5.4, but those with another scheme and no authority, which
/// name no origin; fragments are left out.
#[test]
fn rfc3986_5_4_references_resolve_as_the_rfc_resolves_them() {
    let base: Uri = "http://a/b/c/d;p?q".parse().expect("valid");
    let cases = [
        ("g", "http://a/b/c/g"),
        ("./g", "http://a/b/c/g"),
        ("g/", "http://a/b/c/g/"),
        ("/g", "http://a/g"),
        ("//g", "http://g/"),
        ("?y", "http://a/b/c/d;p?y"),
        ("g?y", "http://a/b/c/g?y"),
        ("#s", "http://a/b/c/d;p?q"),
        ("g#s", "http://a/b/c/g"),
        ("g?y#s", "http://a/b/c/g?y"),
        (";x", "http://a/b/c/;x"),
        ("g;x", "http://a/b/c/g;x"),
        ("", "http://a/b/c/d;p?q"),
        (".", "http://a/b/c/"),
        ("./", "http://a/b/c/"),
        ("..", "http://a/b/"),
        ("../", "http://a/b/"),
        ("../g", "http://a/b/g"),
        ("../..", "http://a/"),
        ("../../", "http://a/"),
        ("../../g", "http://a/g"),
        ("../../../g", "http://a/g"),
        ("../../../../g", "http://a/g"),
        ("/./g", "http://a/g"),
        ("/../g", "http://a/g"),
        ("g.", "http://a/b/c/g."),
        (".g", "http://a/b/c/.g"),
        ("g..", "http://a/b/c/g.."),
        ("..g", "http://a/b/c/..g"),
        ("./../g", "http://a/b/g"),
        ("./g/.", "http://a/b/c/g/"),
        ("g/./h", "http://a/b/c/g/h"),
        ("g/../h", "http://a/b/c/h"),
        ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
        ("g;x=1/../y", "http://a/b/c/y"),
        ("g?y/./x", "http://a/b/c/g?y/./x"),
        ("g?y/../x", "http://a/b/c/g?y/../x"),
        ("g#s/./x", "http://a/b/c/g"),
        ("g#s/../x", "http://a/b/c/g"),
        ("http://a/b/../g", "http://a/g"),
    ];
    for (reference, expected) in cases {
        assert_eq!(
            resolve(&base, reference)
                .map(|uri| uri.to_string())
                .as_deref(),
            Some(expected),
            "{reference}"
        );
    }
    assert_eq!(resolve(&base, "g:h"), None);
    assert_eq!(resolve(&base, "http:g"), None);
}
