//! When a request cached by its body is a query: its answer gets no default lifetime, and
//! one the cache lets pass or does not take to store invalidates its URI, as any unsafe
//! request does.

use super::*;

#[tokio::test]
async fn a_default_expiry_gives_a_post_response_no_lifetime_rfc_9110_9_3_3() {
    // The default expiry stands in for the heuristic, which a POST's answer never gets.
    let origin = Origin::start(|_| Reply::ok("created")).await;
    let stack = ServiceBuilder::new()
        .layer(BodyKeyLayer::new())
        .layer(
            CacheLayer::new(MemoryStore::default())
                .methods([Method::GET, Method::POST])
                .default_expiry(Expiry::After(Duration::from_secs(60))),
        )
        .service(Client::builder(TokioExecutor::new()).build_http());
    let url = origin.url("/search");
    fetch(&stack, post(&url, "q=1")).await;
    let second = fetch(&stack, post(&url, "q=1")).await;
    assert_ne!(
        second.status,
        CacheStatus::Hit,
        "a POST answered from its default expiry"
    );
    assert_eq!(origin.requests(), 2);
    // A GET's answer takes it.
    let get = || {
        Request::get(&url)
            .body(Full::default())
            .expect("valid request")
    };
    fetch(&stack, get()).await;
    assert_eq!(fetch(&stack, get()).await.status, CacheStatus::Hit);
}

#[tokio::test]
async fn a_post_with_a_body_key_whose_answer_is_not_stored_still_invalidates_its_uri_rfc_9111_4_4()
{
    let version = Arc::new(AtomicUsize::new(0));
    let changed = version.clone();
    let origin = Origin::start(move |seen| {
        if seen.method == "POST" {
            changed.fetch_add(1, Ordering::SeqCst);
            return Reply::ok("changed");
        }
        Reply::ok(format!("v{}", changed.load(Ordering::SeqCst)))
            .header("cache-control", "max-age=600")
    })
    .await;
    let url = origin.url("/orders");
    let get = || {
        Request::get(&url)
            .body(Full::default())
            .expect("valid request")
    };
    // Let pass by the cache, or looked up and answered without the explicit freshness a
    // POST's answer needs to be stored (RFC 9110 §9.3.3): no query either way.
    for how in [
        "a no-store mode",
        "bypass",
        "an expiry that says do not cache",
        "an answer without freshness",
    ] {
        let stack = post_stack();
        let before = fetch(&stack, get()).await.body;
        assert_eq!(fetch(&stack, get()).await.status, CacheStatus::Hit, "{how}");
        let mut request = post(&url, "item=1");
        if how == "a no-store mode" {
            request.extensions_mut().insert(CacheMode::NoStore);
        } else if how == "an expiry that says do not cache" {
            request.extensions_mut().insert(Expiry::DoNotCache);
        }
        let posted = if how == "bypass" {
            cachet::bypass(fetch(&stack, request)).await
        } else {
            fetch(&stack, request).await
        };
        assert_eq!(posted.code, 200, "{how}");
        let after = fetch(&stack, get()).await;
        assert_ne!(
            after.status,
            CacheStatus::Hit,
            "{how}: the POST left the GET stored"
        );
        assert_ne!(after.body, before, "{how}");
    }
}
