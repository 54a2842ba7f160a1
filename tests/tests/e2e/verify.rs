//! Signed entries end to end: the scenario of the reference security page, rotation,
//! refetch, and what an error or a log may show.

use std::time::Duration;

use bytes::Bytes;
use cachet::store::{StoreRequest, StoreResponse};
use cachet::verify::{Keyring, Verify, VerifyLayer};
use cachet::{BoxError, CacheKey, CacheLayer, CacheStatus, MemoryStore, OnBadSignature};
use cachet_tests::{Logs, Origin, Reply, client, get, read};
use http::Method;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

const SECRET_A: &str = "secret-key-A-d2f1c0ffee";
const SECRET_B: &str = "secret-key-B-0badcafe";

async fn origin() -> Origin {
    Origin::start(|_| Reply::ok("genuine").header("cache-control", "max-age=600")).await
}

fn keyring(secret: &str) -> Keyring {
    Keyring::new(secret).expect("test secrets are not empty")
}

fn key_of(url: &str) -> CacheKey {
    CacheKey::for_request(&Method::GET, &url.parse().expect("valid URL")).expect("absolute URL")
}

async fn put(
    store: impl Service<StoreRequest, Response = StoreResponse, Error = BoxError>,
    url: &str,
    value: &'static [u8],
) {
    let request = StoreRequest::Put {
        key: key_of(url),
        value: Bytes::from_static(value).into(),
        ttl: Duration::from_secs(600),
    };
    store
        .oneshot(request)
        .await
        .expect("the store accepts the write");
}

/// Fetches through a signed cache over `inner`; returns the status or the error text.
async fn fetch(
    layer: &CacheLayer<Verify<MemoryStore>>,
    url: &str,
) -> Result<(CacheStatus, Bytes), cachet::Error> {
    let response = layer.layer(client()).oneshot(get(url)).await?;
    let status = *response
        .extensions()
        .get::<CacheStatus>()
        .expect("every response has a status");
    Ok((
        status,
        read(response.into_body())
            .await
            .expect("the body completes"),
    ))
}

fn signed(inner: &MemoryStore, keys: Keyring) -> CacheLayer<Verify<MemoryStore>> {
    CacheLayer::new(VerifyLayer::new(keys).layer(inner.clone()))
}

#[tokio::test]
async fn tampered_and_foreign_entries_are_reported_as_bad_signatures() {
    let origin = origin().await;
    let url = origin.url("/get");
    let inner = MemoryStore::default();
    let cache = signed(&inner, keyring(SECRET_A));

    fetch(&cache, &url)
        .await
        .expect("the first request fills the cache");
    assert_eq!(
        fetch(&cache, &url).await.expect("a hit").0,
        CacheStatus::Hit
    );

    // Written straight into the inner store, without the key.
    put(inner.clone(), &url, b"exploit!").await;
    let error = fetch(&cache, &url)
        .await
        .expect_err("a tampered entry is never served");
    assert!(error.is_bad_signature());
    assert_eq!(error.cache_key(), Some(&key_of(&url)));

    // Signed, but with another key.
    put(
        VerifyLayer::new(keyring(SECRET_B)).layer(inner.clone()),
        &url,
        b"forged",
    )
    .await;
    assert!(
        fetch(&cache, &url)
            .await
            .expect_err("a foreign signature fails")
            .is_bad_signature()
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn an_entry_copied_to_another_key_fails() {
    let origin = origin().await;
    let inner = MemoryStore::default();
    let cache = signed(&inner, keyring(SECRET_A));
    fetch(&cache, &origin.url("/a")).await.expect("fills /a");

    let StoreResponse::Found(entry) = inner
        .clone()
        .oneshot(StoreRequest::Get(key_of(&origin.url("/a"))))
        .await
        .expect("memory never fails")
    else {
        panic!("the entry for /a is stored");
    };
    let copy = StoreRequest::Put {
        key: key_of(&origin.url("/b")),
        value: entry,
        ttl: Duration::from_secs(600),
    };
    inner
        .clone()
        .oneshot(copy)
        .await
        .expect("memory never fails");
    assert!(
        fetch(&cache, &origin.url("/b"))
            .await
            .expect_err("a moved entry fails")
            .is_bad_signature()
    );
}

#[tokio::test]
async fn rotation_keeps_old_entries_valid_until_the_old_secret_is_removed() {
    let origin = origin().await;
    let url = origin.url("/rotate");
    let inner = MemoryStore::default();
    fetch(&signed(&inner, keyring(SECRET_A)), &url)
        .await
        .expect("signed with A");

    let rotated = signed(
        &inner,
        keyring(SECRET_B)
            .with_previous(SECRET_A)
            .expect("not empty"),
    );
    assert_eq!(
        fetch(&rotated, &url).await.expect("A still verifies").0,
        CacheStatus::Hit
    );

    let b_only = signed(&inner, keyring(SECRET_B));
    assert!(
        fetch(&b_only, &url)
            .await
            .expect_err("A is gone")
            .is_bad_signature()
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn refetch_repairs_a_tampered_entry() {
    let origin = origin().await;
    let url = origin.url("/repair");
    let inner = MemoryStore::default();
    let cache = signed(&inner, keyring(SECRET_A)).on_bad_signature(OnBadSignature::Refetch);

    fetch(&cache, &url).await.expect("fills the cache");
    put(inner.clone(), &url, b"exploit!").await;

    let (status, body) = fetch(&cache, &url)
        .await
        .expect("refetch answers from the origin");
    assert!(!status.is_hit());
    assert_eq!(body, "genuine");
    let (status, body) = fetch(&cache, &url)
        .await
        .expect("the repaired entry verifies");
    assert_eq!(
        (status, body.as_ref()),
        (CacheStatus::Hit, b"genuine".as_slice())
    );
    assert_eq!(origin.requests(), 2);
    assert_eq!(cache.metrics().bad_signatures(), 1);
}

#[tokio::test]
async fn a_bad_signature_never_shows_the_secret_in_errors_or_logs() {
    let (logs, _guard) = Logs::capture();

    let origin = origin().await;
    let url = origin.url("/leak");
    let inner = MemoryStore::default();
    let keys = keyring(SECRET_A);
    let cache = signed(&inner, keys.clone());
    fetch(&cache, &url).await.expect("fills the cache");
    put(inner.clone(), &url, b"exploit!").await;
    tracing::callsite::rebuild_interest_cache();
    let error = fetch(&cache, &url).await.expect_err("tampered");

    let mut shown = format!("{error} {error:?} {keys:?} {cache:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        shown.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    let logged = logs.text();
    assert!(
        logged.contains("tampered"),
        "the refusal is logged: {logged}"
    );
    assert!(shown.contains("bad signature"), "{shown}");
    for text in [&shown, &logged] {
        assert!(!text.contains(SECRET_A), "the secret leaked: {text}");
    }
}

#[tokio::test]
async fn verify_composes_with_other_store_middleware() {
    let origin = origin().await;
    let url = origin.url("/timeout");
    let inner = MemoryStore::default();
    let store = ServiceBuilder::new()
        .timeout(Duration::from_secs(5))
        .layer(VerifyLayer::new(keyring(SECRET_A)))
        .service(inner.clone());
    let cache = CacheLayer::new(store);

    let first = cache
        .layer(client())
        .oneshot(get(&url))
        .await
        .expect("a miss");
    read(first.into_body()).await.expect("the body completes");
    let hit = cache
        .layer(client())
        .oneshot(get(&url))
        .await
        .expect("a hit");
    assert_eq!(
        hit.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::Hit)
    );

    put(inner, &url, b"exploit!").await;
    let error = cache
        .layer(client())
        .oneshot(get(&url))
        .await
        .expect_err("tampered");
    assert!(
        error.is_bad_signature(),
        "found through the timeout's error: {error:?}"
    );
}
