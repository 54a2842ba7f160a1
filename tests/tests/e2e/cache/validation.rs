//! Validation and conditional requests through the cache: the client's own validators
//! and preconditions, ranges, and the 304s that update (or may not update) what is stored.

use super::*;

#[tokio::test]
async fn a_range_or_a_precondition_of_the_clients_own_goes_to_the_origin_and_its_answer_is_not_stored()
 {
    // Every answer is fresh for five minutes, the 206 and the 412 too.
    let origin = Origin::start(|seen| {
        let reply = if seen.headers.contains_key("range") {
            Reply::ok("0123")
                .status(206)
                .header("content-range", "bytes 0-3/10")
        } else if seen
            .headers
            .get("if-match")
            .is_some_and(|tag| tag != "\"v1\"")
        {
            Reply::ok("").status(412)
        } else {
            Reply::ok("0123456789")
        };
        reply
            .header("cache-control", "max-age=300")
            .header("etag", "\"v1\"")
    })
    .await;
    let cache = shared();
    let url = origin.url("/r");
    let with = |name: &'static str, value: &'static str| {
        let mut request = get(&url);
        request
            .headers_mut()
            .insert(name, http::HeaderValue::from_static(value));
        request
    };
    let forwarded = CacheStatus::Forwarded {
        reason: ForwardReason::Request,
        stored: false,
    };

    // Asked for first, neither is stored for the plain GET that follows.
    let (status, _, body) = fetch(&cache, with("if-match", "\"other\"")).await;
    assert_eq!((status, body.as_ref()), (miss(false), b"".as_slice()));
    let (status, _, body) = fetch(&cache, get(&url)).await;
    assert_eq!(
        (status, body.as_ref()),
        (miss(true), b"0123456789".as_slice())
    );

    // With the whole response stored, each still reaches the origin.
    let (status, _, body) = fetch(&cache, with("range", "bytes=0-3")).await;
    assert_eq!((status, body.as_ref()), (forwarded, b"0123".as_slice()));
    let (status, _, _) = fetch(&cache, with("if-match", "\"other\"")).await;
    assert_eq!(status, forwarded);
    let (status, _, _) = fetch(
        &cache,
        with("if-unmodified-since", "Mon, 01 Jan 2024 00:00:00 GMT"),
    )
    .await;
    // This origin lets it pass: a whole 200, stored as any.
    assert_eq!(
        status,
        CacheStatus::Forwarded {
            reason: ForwardReason::Request,
            stored: true
        }
    );
    let (status, _, body) = fetch(&cache, get(&url)).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"0123456789".as_slice())
    );
    assert_eq!(origin.requests(), 5);
}

#[tokio::test]
async fn a_range_on_a_stale_entry_is_forwarded_and_only_if_cached_takes_the_stored_one() {
    let origin = Origin::start(|seen| {
        let reply = if seen.headers.contains_key("range") {
            Reply::ok("0123")
                .status(206)
                .header("content-range", "bytes 0-3/10")
        } else {
            Reply::ok("0123456789")
        };
        reply.header("cache-control", "max-age=60, stale-while-revalidate=600")
    })
    .await;
    let clock = ManualClock::new();
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    let url = origin.url("/r");
    let ranged = |extra: Option<(&'static str, &'static str)>| {
        let mut request = get(&url);
        let headers = request.headers_mut();
        headers.insert("range", http::HeaderValue::from_static("bytes=0-3"));
        if let Some((name, value)) = extra {
            headers.insert(name, http::HeaderValue::from_static(value));
        }
        request
    };
    fetch(&cache, get(&url)).await;

    // Taking what is stored, it gets the stored response whole; the origin is not asked.
    let (status, _, body) = fetch(&cache, ranged(Some(("cache-control", "only-if-cached")))).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"0123456789".as_slice())
    );

    // Stale, within stale-while-revalidate: the range still goes to the origin, not the
    // whole stale response to the client.
    clock.advance(Duration::from_secs(120));
    let (status, _, body) = fetch(&cache, ranged(None)).await;
    assert_eq!(
        (status, body.as_ref()),
        (
            CacheStatus::Forwarded {
                reason: ForwardReason::Request,
                stored: false
            },
            b"0123".as_slice()
        )
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn a_head_the_cache_may_not_store_leaves_the_stored_get_alone() {
    // In a shared cache, a HEAD with `Authorization` describes that user's representation
    // (its own `ETag`), not the one stored for everyone: it drops nothing.
    let origin = Origin::start(|seen| {
        let tag = if seen.headers.contains_key("authorization") {
            "\"user\""
        } else {
            "\"v1\""
        };
        Reply::ok("shared")
            .header("etag", tag)
            .header("cache-control", "max-age=600")
    })
    .await;
    let cache = shared();
    let url = origin.url("/p");
    fetch(&cache, get(&url)).await;
    let head = Request::head(&url)
        .header("authorization", "Bearer me")
        .body(Empty::new())
        .expect("a valid request");
    fetch(&cache, head).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _, body) = fetch(&cache, get(&url)).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"shared".as_slice())
    );
}

/// A manual clock at a whole second of now, so that an origin's `Date` (in seconds) is
/// exactly its time.
fn whole_second_clock() -> ManualClock {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    ManualClock::starting_at(std::time::UNIX_EPOCH + Duration::from_secs(now.as_secs()))
}

/// An origin dated by `clock` whose `body` has the entity tag `"v1"` and this
/// `Cache-Control`, and which answers `304` to a request conditioned on that tag.
async fn revalidated_by_its_tag(clock: ManualClock, cache_control: &'static str) -> Origin {
    Origin::start_dated(clock, move |seen| {
        let reply = if seen
            .headers
            .get("if-none-match")
            .is_some_and(|tag| tag == "\"v1\"")
        {
            Reply::ok("").status(304)
        } else {
            Reply::ok("body")
        };
        reply
            .header("etag", "\"v1\"")
            .header("cache-control", cache_control)
    })
    .await
}

#[tokio::test]
async fn a_304_that_says_private_leaves_no_shared_copy_behind() {
    // RFC 9111 §4.3.4: the stored response is updated by the 304; when the update may not
    // be stored (a shared cache and `private`), the copy from before it goes too, so that
    // a request that takes stale responses does not get it.
    let clock = whole_second_clock();
    let origin = Origin::start_dated(clock.clone(), |seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("")
                .status(304)
                .header("etag", "\"v1\"")
                .header("cache-control", "private, max-age=60")
        } else {
            Reply::ok("mine")
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=60")
        }
    })
    .await;
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    let url = origin.url("/e");
    fetch(&cache, get(&url)).await;
    clock.advance(Duration::from_secs(120));
    let (status, _, _) = fetch(&cache, get(&url)).await;
    assert_eq!(
        status,
        CacheStatus::Revalidated {
            reason: cachet::ForwardReason::Stale,
            stored: false
        }
    );
    let mut stale_ok = get(&url);
    stale_ok.headers_mut().insert(
        "cache-control",
        http::HeaderValue::from_static("max-stale=3600"),
    );
    let (status, _, _) = fetch(&cache, stale_ok).await;
    assert_ne!(status, CacheStatus::Hit, "served from before the 304");
}

#[tokio::test]
async fn a_background_refresh_for_a_client_with_its_own_validator_freshens_the_entry() {
    // RFC 5861 §3 and RFC 9111 §4.3.1: the client gets the stale response at once; the
    // refresh is the cache's, conditioned on the entry's validator, so its 304 freshens
    // the entry (the client's own validator made it a 304 the cache threw away).
    let clock = whole_second_clock();
    let origin =
        revalidated_by_its_tag(clock.clone(), "max-age=60, stale-while-revalidate=600").await;
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    let url = origin.url("/g");
    fetch(&cache, get(&url)).await;
    clock.advance(Duration::from_secs(120));
    let mut own = get(&url);
    own.headers_mut()
        .insert("if-none-match", http::HeaderValue::from_static("\"other\""));
    let (status, _, _) = fetch(&cache, own).await;
    assert_eq!(status, CacheStatus::StaleWhileRevalidate);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while origin.requests() < 2 {
        assert!(std::time::Instant::now() < deadline, "the refresh went out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refresh = &origin.seen()[1];
    assert_eq!(
        refresh.headers["if-none-match"], "\"v1\"",
        "the cache's validator"
    );
    // The 304 freshened the entry: a hit, not another stale answer and refresh.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let (status, _, body) = fetch(&cache, get(&url)).await;
        if status == CacheStatus::Hit {
            assert_eq!(body.as_ref(), b"body");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {status:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn a_304_to_the_clients_own_validator_freshens_the_stale_entry_it_names() {
    // RFC 9111 §4.3.4: a 304 the cache receives updates the stored response it names,
    // whoever made the request conditional; the client gets the 304 it asked for.
    let clock = whole_second_clock();
    let origin = revalidated_by_its_tag(clock.clone(), "max-age=60").await;
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    let url = origin.url("/a");
    fetch(&cache, get(&url)).await;
    clock.advance(Duration::from_secs(120));
    let mut own = get(&url);
    own.headers_mut()
        .insert("if-none-match", http::HeaderValue::from_static("\"v1\""));
    let answered = cachet_tests::fetch(&cache, own).await;
    assert_eq!(answered.code, 304);
    assert!(answered.body.is_empty());
    assert_eq!(origin.requests(), 2);
    let (status, _, body) = fetch(&cache, get(&url)).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"body".as_slice())
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn a_304_to_a_request_that_may_not_store_deletes_nothing() {
    // The refusal is the request's (its `no-store`), not the 304's: the stored response
    // stays for the next request.
    let clock = whole_second_clock();
    let origin = revalidated_by_its_tag(clock.clone(), "max-age=60").await;
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    let url = origin.url("/n");
    fetch(&cache, get(&url)).await;
    clock.advance(Duration::from_secs(120));
    let with = |directives: &'static str| {
        let mut request = get(&url);
        request
            .headers_mut()
            .insert("cache-control", http::HeaderValue::from_static(directives));
        request
    };
    let (status, _, _) = fetch(&cache, with("no-store")).await;
    assert_eq!(
        status,
        CacheStatus::Revalidated {
            reason: cachet::ForwardReason::Stale,
            stored: false
        }
    );
    let (status, _, body) = fetch(&cache, with("max-stale=3600")).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"body".as_slice())
    );
}

#[tokio::test]
async fn rfc9111_4_3_3_a_full_answer_that_may_not_be_stored_replaces_the_stale_one_all_the_same() {
    // Fresh for 10 s, then served stale for a day while refreshed in the background; the
    // refresh gets a full answer that may not be stored.
    let clock = ManualClock::new();
    let answered = Arc::new(AtomicUsize::new(0));
    let origin = Origin::start_dated(clock.clone(), {
        let answered = answered.clone();
        move |_| {
            if answered.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::ok("old")
                    .header("cache-control", "max-age=10, stale-while-revalidate=86400")
                    .header("etag", "\"1\"")
            } else {
                Reply::ok("new").header("cache-control", "no-store")
            }
        }
    })
    .await;
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    let url = origin.url("/r");
    fetch(&cache, get(&url)).await;
    clock.advance(Duration::from_secs(15));
    let (status, _, body) = fetch(&cache, get(&url)).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::StaleWhileRevalidate, b"old".as_slice())
    );
    requests_reach(&origin, 2).await;
    // The refresh's answer has come: the old response is not served again.
    let mut body = Bytes::new();
    for _ in 0..100 {
        body = fetch(&cache, get(&url)).await.2;
        if body == "new" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(body, "new");
}

#[tokio::test]
async fn rfc9111_4_3_4_a_late_304_does_not_put_back_a_response_replaced_meanwhile() {
    // A stale entry is refreshed in the background; its 304 comes late, after a reload
    // has stored a newer response: the 304 names what is no longer stored.
    let clock = ManualClock::new();
    let answered = Arc::new(AtomicUsize::new(0));
    let origin = Origin::start_dated(clock.clone(), {
        let answered = answered.clone();
        move |_| {
            let cache_control = "max-age=10, stale-while-revalidate=100";
            match answered.fetch_add(1, Ordering::SeqCst) {
                0 => Reply::ok("one")
                    .header("cache-control", cache_control)
                    .header("etag", "\"1\""),
                1 => Reply::ok("")
                    .status(304)
                    .header("etag", "\"1\"")
                    .header("cache-control", cache_control)
                    .delay(Duration::from_millis(300)),
                _ => Reply::ok("two")
                    .header("cache-control", cache_control)
                    .header("etag", "\"2\""),
            }
        }
    })
    .await;
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    let url = origin.url("/r");
    fetch(&cache, get(&url)).await;
    clock.advance(Duration::from_secs(15));
    let (status, _, _) = fetch(&cache, get(&url)).await;
    assert_eq!(status, CacheStatus::StaleWhileRevalidate);
    requests_reach(&origin, 2).await;
    let mut reload = get(&url);
    reload.extensions_mut().insert(cachet::CacheMode::Reload);
    assert_eq!(fetch(&cache, reload).await.2, "two");
    // The late 304 comes and goes; the newer response stays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, headers, body) = fetch(&cache, get(&url)).await;
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"two".as_slice())
    );
    assert_eq!(headers["etag"], "\"2\"");
}

/// A background refresh may run for what is left of the stale-while-revalidate window:
/// one whose origin never answers gives up the key's claim then, and a later stale hit
/// refreshes the entry again (else no refresh of the key would ever start again).
#[tokio::test]
async fn a_background_refresh_that_never_ends_gives_up_its_claim_when_the_window_ends() {
    let clock = ManualClock::new();
    let hang = Arc::new(AtomicBool::new(false));
    let origin = Origin::start_dated(clock.clone(), {
        let hang = hang.clone();
        move |_| {
            let reply =
                Reply::ok("v").header("cache-control", "max-age=1, stale-while-revalidate=600");
            if hang.load(Ordering::SeqCst) {
                reply.delay(Duration::from_secs(3600))
            } else {
                reply
            }
        }
    })
    .await;
    let cache = stack(CacheLayer::new(MemoryStore::default()).clock(clock.clone()));
    let url = origin.url("/swr-hangs");
    fetch(&cache, get(&url)).await;
    // A second of the window left: the refresh may run that long. (The store keeps the
    // entry for the whole window, by the runtime's clock: it is there all along.)
    hang.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(600));
    let (status, _, _) = fetch(&cache, get(&url)).await;
    assert_eq!(status, CacheStatus::StaleWhileRevalidate);
    requests_reach(&origin, 2).await;
    hang.store(false, Ordering::SeqCst);
    // The cache's clock stands still, so every hit is within the window; once the hung
    // refresh has given up (a second on the runtime's clock), a hit starts another.
    tokio::time::timeout(Duration::from_secs(10), async {
        while origin.requests() < 3 {
            let (status, _, _) = fetch(&cache, get(&url)).await;
            assert_eq!(status, CacheStatus::StaleWhileRevalidate);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a stale hit refreshes the entry again once the hung refresh gave up");
}
