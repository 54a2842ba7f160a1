//! Invalidation across variants (RFC 9111 §4.4): a POST hides every variant stored before it,
//! whatever becomes of the variant index or the marker.

use super::*;

/// The resource at `url` changes (to version 2) a second on, and a POST to it says so;
/// then another second passes.
async fn changed_by_post(cache: &Stack, url: &str, version: &AtomicUsize, clock: &ManualClock) {
    version.store(2, Ordering::SeqCst);
    clock.advance(Duration::from_secs(1));
    let post = Request::post(url)
        .body(Empty::new())
        .expect("a valid request");
    fetch(cache, post).await;
    clock.advance(Duration::from_secs(1));
}

#[tokio::test]
async fn rfc9111_4_4_a_variant_fetched_across_an_invalidation_does_not_bring_back_older_ones() {
    let version = Arc::new(AtomicUsize::new(1));
    // The German answer is slow: the resource changes while it is on its way.
    let origin = by_language(version.clone(), Some("de")).await;
    let clock = ManualClock::new();
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    let url = origin.url("/v");
    fetch(&cache, in_language(&url, "fr")).await;
    clock.advance(Duration::from_secs(1));

    let slow = fetch(&cache, in_language(&url, "de"));
    let change = async {
        // Once the German request has read the index and gone to the origin, a POST.
        tokio::time::timeout(Duration::from_secs(5), async {
            while origin.requests() < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the German request reaches the origin");
        changed_by_post(&cache, &url, &version, &clock).await;
    };
    tokio::join!(slow, change);

    // Storing the German answer writes the index back, but not as it was before the
    // POST: the French answer from before it stays hidden.
    let (_, _, body) = fetch(&cache, in_language(&url, "fr")).await;
    assert_eq!(body, "fr v2", "fr is not served from before the POST");
    // Nor is the German answer itself, which the origin gave before the change.
    let (_, _, body) = fetch(&cache, in_language(&url, "de")).await;
    assert_eq!(body, "de v2", "de is not stored from before the POST");
}

#[tokio::test]
async fn rfc9111_4_4_a_response_fetched_across_an_invalidation_is_neither_stored_nor_shared() {
    // The first GET is answered with what the resource was when it arrived, 300 ms late;
    // meanwhile a POST changes the resource, and a GET after it joins the first's fetch.
    let version = Arc::new(AtomicUsize::new(1));
    let changed = version.clone();
    let origin = Origin::start(move |seen| {
        if seen.method == http::Method::POST {
            changed.store(2, Ordering::SeqCst);
            return Reply::ok("changed");
        }
        let reply = Reply::ok(format!("v{}", changed.load(Ordering::SeqCst)))
            .header("cache-control", "max-age=600");
        if changed.load(Ordering::SeqCst) == 1 {
            reply.delay(Duration::from_millis(300))
        } else {
            reply
        }
    })
    .await;
    let cache = shared();
    let url = origin.url("/list");
    let before = tokio::spawn({
        let cache = cache.clone();
        let url = url.clone();
        async move { fetch(&cache, get(&url)).await }
    });
    requests_reach(&origin, 1).await;
    let post = Request::post(&url)
        .body(Empty::new())
        .expect("a valid request");
    fetch(&cache, post).await;
    let after = tokio::spawn({
        let cache = cache.clone();
        let url = url.clone();
        async move { fetch(&cache, get(&url)).await }
    });
    let (_, _, body) = before.await.expect("the first GET finishes");
    assert_eq!(body, "v1", "the first GET gets what the origin gave it");
    let (status, _, body) = after.await.expect("the second GET finishes");
    assert_eq!(
        body, "v2",
        "a GET after the POST is not given the answer from before it ({status:?})"
    );
    let (status, _, body) = fetch(&cache, get(&url)).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"v2".as_slice())
    );
    assert_eq!(version.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn rfc9111_4_4_variants_outliving_their_index_stay_hidden_after_an_invalidation() {
    use cachet::CacheKey;
    use cachet::store::StoreRequest;

    let version = Arc::new(AtomicUsize::new(1));
    let origin = by_language(version.clone(), None).await;
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    let cache = stack(CacheLayer::new(store.clone()).clock(clock.clone()));
    let url = origin.url("/v");
    for language in ["en", "fr"] {
        fetch(&cache, in_language(&url, language)).await;
        clock.advance(Duration::from_secs(1));
    }
    let (status, _, body) = fetch(&cache, in_language(&url, "fr")).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"fr v1".as_slice())
    );

    // The index goes (expired or evicted) while the variants stay; then a POST changes
    // the resource. Its marker goes under the URI's key all the same, and hides them.
    let uri: http::Uri = url.parse().expect("a valid URL");
    let index = CacheKey::for_request(&http::Method::GET, &uri).expect("a GET has a key");
    store
        .clone()
        .oneshot(StoreRequest::Delete(index))
        .await
        .expect("deleted");
    changed_by_post(&cache, &url, &version, &clock).await;
    for language in ["en", "fr"] {
        let (_, _, body) = fetch(&cache, in_language(&url, language)).await;
        assert_eq!(
            body,
            format!("{language} v2"),
            "{language} is not served from before the POST"
        );
    }
}

#[tokio::test]
async fn rfc9111_4_4_variants_an_evicted_marker_hid_stay_hidden_under_a_new_index() {
    use cachet::CacheKey;
    use cachet::store::StoreRequest;

    let version = Arc::new(AtomicUsize::new(1));
    let origin = by_language(version.clone(), None).await;
    let clock = ManualClock::new();
    let store = MemoryStore::default();
    let cache = stack(CacheLayer::new(store.clone()).clock(clock.clone()));
    let url = origin.url("/v");
    for language in ["en", "fr"] {
        fetch(&cache, in_language(&url, language)).await;
        clock.advance(Duration::from_secs(1));
    }
    changed_by_post(&cache, &url, &version, &clock).await;
    let (_, _, body) = fetch(&cache, in_language(&url, "fr")).await;
    assert_eq!(body, "fr v2");

    // The URI's key, the marker with the index written over it, is evicted; the
    // variants stay. Another variant is stored, with a new index.
    let uri: http::Uri = url.parse().expect("a valid URL");
    let index = CacheKey::for_request(&http::Method::GET, &uri).expect("a GET has a key");
    store
        .clone()
        .oneshot(StoreRequest::Delete(index))
        .await
        .expect("deleted");
    clock.advance(Duration::from_secs(1));
    let (_, _, body) = fetch(&cache, in_language(&url, "de")).await;
    assert_eq!(body, "de v2");

    let (status, _, body) = fetch(&cache, in_language(&url, "en")).await;
    assert_eq!(
        body, "en v2",
        "en is served from before the POST ({status:?})"
    );
    let (status, _, _) = fetch(&cache, in_language(&url, "de")).await;
    assert_eq!(
        status,
        CacheStatus::Hit,
        "the new index's own variant counts"
    );
}
