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

/// An origin whose resource is at version 1, and one more after each POST: a GET or HEAD is
/// answered with the version as it arrives (body and `X-Version`), fresh for ten
/// minutes with a tag (a `304` to a request that has it); the answers `slow` picks come
/// 300 ms late.
async fn changed_while_fetched(slow: fn(&cachet_tests::Seen) -> bool) -> Origin {
    let version = Arc::new(AtomicUsize::new(1));
    Origin::start(move |seen| {
        if seen.method == http::Method::POST {
            version.fetch_add(1, Ordering::SeqCst);
            return Reply::ok("changed");
        }
        let version = version.load(Ordering::SeqCst);
        let tag = format!("\"{version}\"");
        let reply = if seen
            .headers
            .get("if-none-match")
            .is_some_and(|sent| *sent == tag)
        {
            Reply::ok("").status(304)
        } else {
            Reply::ok(format!("v{version}"))
        };
        let reply = reply
            .header("cache-control", "max-age=600")
            .header("etag", tag)
            .header("x-version", format!("v{version}"));
        if slow(seen) {
            reply.delay(Duration::from_millis(300))
        } else {
            reply
        }
    })
    .await
}

/// Sends `request` through `cache` on a task of its own.
fn in_background(
    cache: &Stack,
    request: Request<Empty<Bytes>>,
) -> tokio::task::JoinHandle<(CacheStatus, http::HeaderMap, Bytes)> {
    let cache = cache.clone();
    tokio::spawn(async move { fetch(&cache, request).await })
}

async fn post(cache: &Stack, url: &str) {
    let post = Request::post(url)
        .body(Empty::new())
        .expect("a valid request");
    fetch(cache, post).await;
}

#[tokio::test]
async fn rfc9111_4_4_a_response_fetched_across_an_invalidation_is_neither_stored_nor_shared() {
    // The first GET is answered late with what the resource was; meanwhile a POST changes
    // it, and a GET after the POST joins the first one's fetch.
    let origin = changed_while_fetched(|seen| seen.headers.contains_key("x-first")).await;
    let cache = shared();
    let url = origin.url("/list");
    let mut first = get(&url);
    first
        .headers_mut()
        .insert("x-first", http::HeaderValue::from_static("1"));
    let before = in_background(&cache, first);
    requests_reach(&origin, 1).await;
    post(&cache, &url).await;
    let after = in_background(&cache, get(&url));
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
}

#[tokio::test]
async fn rfc9111_4_4_a_reload_fetched_across_an_invalidation_in_the_same_instant_is_not_stored() {
    // A test's clock that is not moved: the reload, the POST and the GET after it share
    // one instant, and only the order of events tells them apart.
    let origin = changed_while_fetched(|seen| seen.headers.contains_key("x-first")).await;
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(ManualClock::new()));
    let url = origin.url("/list");
    let mut reload = get(&url);
    reload
        .headers_mut()
        .insert("x-first", http::HeaderValue::from_static("1"));
    reload.extensions_mut().insert(cachet::CacheMode::Reload);
    let before = in_background(&cache, reload);
    requests_reach(&origin, 1).await;
    post(&cache, &url).await;
    assert_eq!(before.await.expect("the reload finishes").2, "v1");
    let (status, _, body) = fetch(&cache, get(&url)).await;
    assert_eq!(
        body, "v2",
        "a GET after the POST is not given the reload from before it ({status:?})"
    );
}

#[tokio::test]
async fn rfc9111_4_4_a_304_or_a_head_answered_before_an_invalidation_updates_nothing_stored() {
    // A stale entry's 304, or a HEAD's answer, from before the POST: the 304 says it
    // stored nothing, and the HEAD does not give the GET stored after the POST the
    // headers from before it.
    let origin = changed_while_fetched(|seen| {
        seen.method == http::Method::HEAD || seen.headers.contains_key("if-none-match")
    })
    .await;
    let clock = ManualClock::new();
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    let url = origin.url("/r");
    fetch(&cache, get(&url)).await;
    clock.advance(Duration::from_secs(601));
    let revalidating = in_background(&cache, get(&url));
    requests_reach(&origin, 2).await;
    post(&cache, &url).await;
    let (status, headers, _) = revalidating.await.expect("the revalidation finishes");
    assert_ne!(
        status,
        CacheStatus::Revalidated {
            reason: cachet::ForwardReason::Stale,
            stored: true
        },
        "{:?}",
        headers.get("cache-status")
    );
    let (_, headers, body) = fetch(&cache, get(&url)).await;
    assert_eq!(body, "v2");
    assert_eq!(headers["x-version"], "v2");

    // The same for a HEAD, with the system clock, whose time the origin's `Date` tells.
    let cache = shared();
    fetch(&cache, get(&url)).await;
    let head = in_background(
        &cache,
        Request::head(&url).body(Empty::new()).expect("valid"),
    );
    requests_reach(&origin, 6).await;
    post(&cache, &url).await;
    fetch(&cache, get(&url)).await;
    head.await.expect("the HEAD finishes");
    let (status, headers, _) = fetch(&cache, get(&url)).await;
    assert_eq!(status, CacheStatus::Hit);
    assert_eq!(
        headers["x-version"], "v3",
        "the HEAD from before the POST freshened the GET"
    );
}

/// A test's clock, or the system clock set back a minute once `back` is set (as NTP or a
/// VM's resume may set it).
#[derive(Clone, Default)]
struct SetBack {
    back: Arc<AtomicBool>,
    manual: Option<ManualClock>,
}

impl cachet::clock::Clock for SetBack {
    fn now(&self) -> std::time::SystemTime {
        let now = self
            .manual
            .as_ref()
            .map_or_else(std::time::SystemTime::now, |clock| clock.now());
        if self.back.load(Ordering::SeqCst) {
            now - Duration::from_secs(60)
        } else {
            now
        }
    }
}

#[tokio::test]
async fn invalidations_stop_nothing_fetched_after_them_whatever_the_clock_says() {
    // Many POSTs, each changing three URIs (its own, `Location`, `Content-Location`),
    // then the clock is set back or stands still: what is fetched after them is stored.
    let origin = Origin::start(|seen| {
        if seen.method == http::Method::POST {
            let path = seen.path.clone();
            return Reply::ok("changed")
                .header("location", format!("{path}/l"))
                .header("content-location", format!("{path}/c"));
        }
        Reply::ok("v").header("cache-control", "max-age=600")
    })
    .await;
    let clocks = [
        SetBack::default(),
        SetBack {
            manual: Some(ManualClock::new()),
            ..SetBack::default()
        },
    ];
    for clock in clocks {
        let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
        for i in 0..1000 {
            post(&cache, &origin.url(&format!("/orders/{i}"))).await;
        }
        clock.back.store(clock.manual.is_none(), Ordering::SeqCst);
        for path in ["/orders/7", "/catalogue"] {
            let url = origin.url(path);
            fetch(&cache, get(&url)).await;
            let (status, _, _) = fetch(&cache, get(&url)).await;
            assert_eq!(
                status,
                CacheStatus::Hit,
                "{path}, {:?}",
                clock.manual.is_some()
            );
        }
    }
}
