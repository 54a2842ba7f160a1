use std::time::Duration;

use tower::service_fn;

use super::*;
use crate::MemoryStore;
use crate::store::{Unsupported, Value};

async fn put(store: &MemoryStore, key: &str) {
    let request = StoreRequest::Put {
        key: CacheKey::from_text(key),
        value: Value::from("not an entry"),
        ttl: Duration::from_secs(60),
    };
    store
        .clone()
        .oneshot(request)
        .await
        .expect("memory stores never fail");
}

#[tokio::test]
async fn a_purge_reaches_a_memory_tier_that_holds_what_the_far_tier_lost() {
    let (near, far) = (MemoryStore::default(), MemoryStore::default());
    for store in [&near, &far] {
        put(store, "GET http://a/x").await;
        put(store, "HEAD http://a/x").await;
    }
    // The far tier (say, Redis) evicted the GET; the memory tier still holds it.
    far.clone()
        .oneshot(StoreRequest::Delete(CacheKey::from_text("GET http://a/x")))
        .await
        .expect("memory stores never fail");
    let entries = Entries::new(crate::store::Tiered::new(near.clone(), far.clone()));
    assert_eq!(entries.delete_url("http://a/x").await.expect("deletes"), 1);
    assert_eq!(
        (near.len(), far.len()),
        (0, 0),
        "nothing is left in either tier"
    );
}

#[tokio::test]
async fn a_method_named_twice_finds_each_entry_once() {
    let store = MemoryStore::default();
    for key in [
        "GET http://a/x",
        "POST http://a/x body=sha256:00",
        "POST http://a/x body=sha256:00 content-type=text/plain vary accept=y",
    ] {
        put(&store, key).await;
    }
    let entries = crate::CacheLayer::new(store)
        .methods([Method::GET, Method::HEAD, Method::POST, Method::POST])
        .entries();
    let shown = entries.show("http://a/x").await.expect("memory lists");
    let described: Vec<(&str, bool)> = shown.iter().map(|e| (e.key.as_str(), e.variant)).collect();
    assert_eq!(
        described,
        [
            ("GET http://a/x", false),
            ("POST http://a/x body=sha256:00", false),
            (
                "POST http://a/x body=sha256:00 content-type=text/plain vary accept=y",
                true
            ),
        ]
    );
    assert_eq!(entries.delete_url("http://a/x").await.expect("deletes"), 3);
}

#[tokio::test]
async fn a_url_is_its_own_keys_and_variants_not_longer_urls_sharing_its_prefix() {
    let store = MemoryStore::default();
    for key in [
        "GET http://a/x",
        "GET http://a/x vary accept=y",
        "HEAD http://a/x",
        "GET http://a/xy",
        "GET http://a/x?q",
    ] {
        put(&store, key).await;
    }
    let entries = Entries::new(store.clone());
    let shown = entries.show("HTTP://A:80/x").await.expect("memory lists");
    let keys: Vec<&str> = shown.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "GET http://a/x",
            "GET http://a/x vary accept=y",
            "HEAD http://a/x"
        ]
    );
    assert!(shown.iter().all(|e| e.kind == EntryKind::Unreadable));
    assert!(shown[1].variant && !shown[0].variant);
    assert_eq!(shown[2].method, Some(Method::HEAD));

    assert_eq!(entries.delete_url("http://a/x").await.expect("deletes"), 3);
    assert_eq!(store.len(), 2);
    let stats = entries.stats().await.expect("memory lists");
    assert_eq!((stats.entries, stats.bytes), (2, 24));
}

#[tokio::test]
async fn a_url_without_a_key_is_refused_saying_why() {
    let entries = Entries::new(MemoryStore::default());
    for (url, why) in [
        ("/x", "it needs a scheme and a host"),
        ("http://a b/", "it is not a valid url"),
        ("http://user:pw@h.example/x", "it has user information"),
        (
            "http://h.example:99999/x",
            "its port is not a number from 0 to 65535",
        ),
    ] {
        let error = entries.show(url).await.expect_err(url);
        assert!(error.is_invalid_url(), "{url}: {error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with("no cache key can be made of that url: ") && message.contains(why),
            "{url}: {message}"
        );
    }
}

#[tokio::test]
async fn a_store_that_cannot_list_says_so_and_never_lists_nothing() {
    let refuses = service_fn(|request: StoreRequest| async move {
        match request {
            StoreRequest::Get(_) => Ok(StoreResponse::NotFound),
            StoreRequest::Put { .. } | StoreRequest::Delete(_) => Ok(StoreResponse::Done),
            _ => Err::<_, BoxError>(Unsupported::new("test store", "list").into()),
        }
    });
    let entries = Entries::new(refuses);
    let error = entries
        .list(Cursor::start(), 10)
        .await
        .expect_err("cannot list");
    assert!(error.is_unsupported(), "{error:?}");
    assert_eq!(error.to_string(), "the store cannot list entries");
    assert!(
        entries
            .clear()
            .await
            .expect_err("cannot clear")
            .is_unsupported()
    );
    assert!(entries.stats().await.is_err());
    let key = CacheKey::from_text("GET http://a/");
    assert!(entries.delete_key(&key).await.is_ok());

    // A store that answers what it does not know with `Done` cannot list either.
    let ignores = service_fn(|_: StoreRequest| async { Ok::<_, BoxError>(StoreResponse::Done) });
    let error = Entries::new(ignores)
        .delete_expired()
        .await
        .expect_err("cannot list");
    assert!(error.is_unsupported(), "{error:?}");
}
