//! What a private cache stores beside a shared one over the same store (RFC 9111 §5.2.2.7).

use super::*;

#[tokio::test]
async fn rfc9111_5_2_2_7_a_shared_cache_serves_nothing_private_a_private_cache_stored_beside_it() {
    let origin = Origin::start(|seen| match seen.path.as_str() {
        "/mine" => Reply::ok("alice's account").header("cache-control", "private, max-age=600"),
        "/aged" => Reply::ok("shared").header("cache-control", "private=\"age\", max-age=600"),
        _ => Reply::ok("public page")
            .header("cache-control", "private=\"x-user\", max-age=600")
            .header("x-user", "alice"),
    })
    .await;
    let store = MemoryStore::default();
    let private = stack(CacheLayer::new(store.clone()).private());
    let shared = stack(CacheLayer::new(store));
    for path in ["/mine", "/page"] {
        let url = origin.url(path);
        fetch(&private, get(&url)).await;
        let (status, _, _) = fetch(&private, get(&url)).await;
        assert_eq!(
            status,
            CacheStatus::Hit,
            "{path}: the private cache keeps it"
        );
        let (status, _, _) = fetch(&shared, get(&url)).await;
        assert_ne!(
            status,
            CacheStatus::Hit,
            "{path}: not from the private cache's entry"
        );
    }
    assert_eq!(
        origin.requests(),
        4,
        "the shared cache asked the origin for each"
    );
    // What the shared cache stored itself, without the fields `private=` names, it serves
    // (`Age` among them: every entry gets one to be served with).
    let url = origin.url("/aged");
    fetch(&shared, get(&url)).await;
    let (status, _, _) = fetch(&shared, get(&url)).await;
    assert_eq!(status, CacheStatus::Hit);
}

#[tokio::test]
async fn a_variant_fetched_after_a_failed_lookup_keeps_the_other_variants() {
    use cachet::BoxError;
    use cachet::store::{StoreRequest, StoreResponse};

    let version = Arc::new(AtomicUsize::new(1));
    let origin = by_language(version, None).await;
    let memory = MemoryStore::default();
    // A store whose next read fails once `fail_next` is set: a Redis timeout, say.
    let fail_next = Arc::new(AtomicBool::new(false));
    let failing = fail_next.clone();
    let store = tower::service_fn(move |request: StoreRequest| {
        let fails =
            matches!(request, StoreRequest::Get(_)) && failing.swap(false, Ordering::SeqCst);
        let memory = memory.clone();
        async move {
            if fails {
                return Err::<StoreResponse, BoxError>("the store timed out".into());
            }
            memory.oneshot(request).await
        }
    });
    let cache = CacheLayer::new(store).layer(client());
    let url = origin.url("/v");
    for language in ["en", "fr", "de"] {
        cachet_tests::fetch(&cache, in_language(&url, language)).await;
    }
    fail_next.store(true, Ordering::SeqCst);
    let refetched = cachet_tests::fetch(&cache, in_language(&url, "fr")).await;
    assert!(matches!(refetched.status, CacheStatus::Forwarded { .. }));
    // The index it writes is the one the store holds, not one that hides the others.
    for language in ["en", "de", "fr"] {
        let fetched = cachet_tests::fetch(&cache, in_language(&url, language)).await;
        assert_eq!(fetched.status, CacheStatus::Hit, "{language}");
    }
    assert_eq!(origin.requests(), 4);
}
