//! Values under hashed Redis keys (cache keys too long to keep whole): a frame changed by
//! one bit is a bad signature, not a silent miss, and another key's value is never served.

use super::*;

/// A URL whose cache key is longer than `RedisStore::MAX_KEY_BYTES`, so it is hashed.
fn long_url(origin: &Origin, name: &str) -> String {
    origin.url(&format!(
        "/{name}?q={}",
        "x".repeat(RedisStore::MAX_KEY_BYTES)
    ))
}

#[tokio::test]
async fn one_changed_bit_in_a_hashed_key_frame_is_a_bad_signature_not_a_miss() {
    let server = RedisServer::start();
    let origin = naming_origin().await;
    let store = store(&server);
    let keyring = Keyring::new("secret-for-the-hashed-test").expect("not empty");
    let layer = CacheLayer::new(VerifyLayer::new(keyring).layer(store.clone()));
    let cache = layer.layer(client());
    let url = long_url(&origin, "long");
    let redis_key = store.redis_key(&key_of(&url));
    assert!(redis_key.contains(" #sha256:"), "hashed: {redis_key}");

    fetch(&cache, &url).await.expect("a miss");
    written(&server, &redis_key).await;
    assert_eq!(
        fetch(&cache, &url).await.expect("a hit").0,
        CacheStatus::Hit
    );

    // The frame is `cachet-key`, the key's length (four bytes) and its text. One bit
    // changed in its label, its length or its text is caught as surely as one in the entry.
    let text_len = key_of(&url).as_str().len();
    for (tampered, offset) in (1..).zip([0, 12, 14 + text_len - 1]) {
        let byte: Vec<u8> = server.query(
            redis::cmd("GETRANGE")
                .arg(&redis_key)
                .arg(offset)
                .arg(offset),
        );
        let flip = |byte: u8| {
            server.query::<()>(
                redis::cmd("SETRANGE")
                    .arg(&redis_key)
                    .arg(offset)
                    .arg(&[byte][..]),
            );
        };
        flip(byte[0] ^ 0x01);
        let error = fetch(&cache, &url)
            .await
            .expect_err("a tampered frame is never a silent miss");
        assert!(error.is_bad_signature(), "byte {offset}: {error:?}");
        assert_eq!(error.cache_key(), Some(&key_of(&url)));
        assert_eq!(layer.metrics().bad_signatures(), tampered);
        flip(byte[0]);
    }
    assert_eq!(
        fetch(&cache, &url).await.expect("restored, a hit").0,
        CacheStatus::Hit
    );
    assert_eq!(origin.requests(), 1);
}

/// Stores the responses of two long URLs through `cache`, then copies the second's value
/// (its frame naming its own key) under the first's Redis key; returns the first URL.
async fn plant<St: cachet::store::Store>(
    server: &RedisServer,
    origin: &Origin,
    cache: &Cache<Http, St>,
    mine: &str,
    theirs: &str,
) -> String {
    let store = store(server);
    let (mine, theirs) = (long_url(origin, mine), long_url(origin, theirs));
    let (my_key, their_key) = (
        store.redis_key(&key_of(&mine)),
        store.redis_key(&key_of(&theirs)),
    );
    for url in [&mine, &theirs] {
        fetch(cache, url).await.expect("a miss");
    }
    written(server, &my_key).await;
    written(server, &their_key).await;
    let value: Vec<u8> = server.query(redis::cmd("GET").arg(&their_key));
    server.query::<()>(redis::cmd("SET").arg(&my_key).arg(value));
    mine
}

/// What a collision of two long keys' Redis keys would leave: one key's framed value
/// under the other's Redis key. Unsigned, it is no entry (a miss); signed, a bad
/// signature. Never is the other key's response served.
#[tokio::test]
async fn another_long_key_value_under_a_hashed_key_is_never_served_for_it() {
    let server = RedisServer::start();
    let origin = naming_origin().await;
    let store = store(&server);
    let unsigned = CacheLayer::new(store.clone()).layer(client());
    let mine = plant(&server, &origin, &unsigned, "mine", "theirs").await;
    let (status, body) = fetch(&unsigned, &mine).await.expect("a miss");
    // Found, but no entry: what a cache without a `Verify` makes of it.
    let unusable = CacheStatus::Forwarded {
        reason: ForwardReason::Miss,
        stored: true,
    };
    assert_eq!(status, unusable);
    assert!(body.starts_with(b"body of /mine"), "{body:?}");
    assert_eq!(origin.requests(), 3);

    let keyring = Keyring::new("secret-for-the-hashed-test").expect("not empty");
    let layer = CacheLayer::new(VerifyLayer::new(keyring).layer(store.clone()));
    let signed = layer.layer(client());
    let mine = plant(&server, &origin, &signed, "signed-mine", "signed-theirs").await;
    let error = fetch(&signed, &mine)
        .await
        .expect_err("another key's entry is never served");
    assert!(error.is_bad_signature(), "{error:?}");
    assert_eq!(layer.metrics().bad_signatures(), 1);
    assert_eq!(origin.requests(), 5);
}

/// A short key's value (an entry with no frame) copied under a long key's hashed Redis key
/// is no entry for it, without a `Verify` too.
#[tokio::test]
async fn a_short_key_entry_copied_under_a_hashed_key_is_not_served_for_it() {
    let server = RedisServer::start();
    let origin = naming_origin().await;
    let store = store(&server);
    let unsigned = CacheLayer::new(store.clone()).layer(client());
    let mine = long_url(&origin, "mine");
    let theirs = origin.url("/theirs");
    let (my_key, their_key) = (
        store.redis_key(&key_of(&mine)),
        store.redis_key(&key_of(&theirs)),
    );
    assert!(my_key.contains(" #sha256:"));
    assert!(!their_key.contains(" #sha256:"));
    for url in [&mine, &theirs] {
        fetch(&unsigned, url).await.expect("a miss");
    }
    written(&server, &my_key).await;
    written(&server, &their_key).await;
    let value: Vec<u8> = server.query(redis::cmd("GET").arg(&their_key));
    server.query::<()>(redis::cmd("SET").arg(&my_key).arg(value));
    let (status, body) = fetch(&unsigned, &mine).await.expect("an answer");
    assert!(
        body.starts_with(b"body of /mine"),
        "another key's response served for {mine}: {status:?} {body:?}"
    );
}
