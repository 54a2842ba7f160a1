//! What a listing makes of the values Redis holds: a page of large responses is read a
//! little at a time and each is still described and verified, a value too large to read
//! is listed by its size under its cache key, and a hashed key framed for another key is
//! never listed as that key.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cachet::manage::{Entries, EntryInfo, EntryKind};
use cachet::store::{Cursor, StoreRequest};
use cachet::verify::{Keyring, VerifyLayer};
use cachet::{CacheKey, CacheLayer};
use cachet_redis::RedisStore;
use cachet_tests::redis::RedisServer;
use cachet_tests::{Origin, Reply, client, get, read};
use http::StatusCode;
use tower::{Layer, ServiceExt};

use crate::manage::{put, store};

#[tokio::test]
async fn a_page_of_large_signed_responses_is_read_a_little_at_a_time_and_each_described() {
    const RESPONSES: usize = 40;
    let server = RedisServer::start();
    // Redis drops a client whose replies waiting to be sent pass 8 MiB: a listing that
    // read a page's values (here 20 MiB) in one reply would fail, as it would hold Redis
    // up for every other client while it copied them.
    server.query::<()>(
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("client-output-buffer-limit")
            .arg("normal 8mb 8mb 0"),
    );
    let body = Bytes::from(vec![b'x'; 512 << 10]);
    let origin =
        Origin::start(move |_| Reply::ok(body.clone()).header("cache-control", "max-age=600"))
            .await;
    let keyring = Keyring::new("manage test secret").expect("not empty");
    let layer = CacheLayer::new(VerifyLayer::new(keyring).layer(store(&server)));
    let cache = layer.layer(client());
    for i in 0..RESPONSES {
        let url = origin.url(&format!("/large/{i}"));
        let response = cache
            .clone()
            .oneshot(get(&url))
            .await
            .expect("the origin answers");
        read(response.into_body())
            .await
            .expect("the body completes");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.scan("cachet:*").len() < RESPONSES {
        assert!(Instant::now() < deadline, "the cache stores every response");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let entries = layer.entries();
    let stats = entries.stats().await.expect("redis lists");
    assert_eq!(stats.entries, RESPONSES as u64);
    assert!(stats.bytes > (RESPONSES as u64) * (512 << 10), "{stats:?}");
    let mut listed: Vec<EntryInfo> = Vec::new();
    let mut cursor = Cursor::start();
    loop {
        let page = entries.list(cursor, 1_000).await.expect("redis lists");
        listed.extend(page.entries);
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(listed.len(), RESPONSES);
    for entry in &listed {
        // Verified, decoded and judged fresh, as a listing of small entries is.
        assert_eq!(entry.kind, EntryKind::Response, "{entry:?}");
        assert_eq!(entry.status, Some(StatusCode::OK), "{entry:?}");
        assert!(!entry.stale && entry.fresh_until.is_some(), "{entry:?}");
    }
}

#[tokio::test]
async fn a_hashed_entry_too_large_to_read_is_listed_under_its_cache_key_and_can_be_deleted() {
    let server = RedisServer::start();
    // Two caches share a Redis; the other stores larger values than this one reads.
    let other = RedisStore::builder(server.url())
        .max_value_bytes(1 << 20)
        .build()
        .expect("a valid configuration");
    let this = RedisStore::builder(server.url())
        .max_value_bytes(1024)
        .build()
        .expect("a valid configuration");
    let long = format!("GET http://example.com/{}", "a".repeat(600));
    let request = StoreRequest::Put {
        key: CacheKey::from_text(long.as_str()),
        value: Bytes::from(vec![b'x'; 4096]).into(),
        ttl: Duration::from_secs(600),
    };
    other
        .oneshot(request)
        .await
        .expect("redis accepts the write");

    let entries = Entries::new(this);
    let page = entries.list(Cursor::start(), 100).await.expect("lists");
    let keys: Vec<String> = page.entries.iter().map(|e| e.key.to_string()).collect();
    let url = long.strip_prefix("GET ").expect("a GET key");
    let shown = entries.show(url).await.expect("lists").len();
    for entry in &page.entries {
        entries.delete_key(&entry.key).await.expect("deletes");
    }
    let left = server.scan("cachet:*").len();
    assert_eq!((keys, shown, left), (vec![long.clone()], 1, 0));
}

#[tokio::test]
async fn a_hashed_entry_framed_for_another_key_is_not_listed_as_that_key() {
    let server = RedisServer::start();
    let redis = store(&server);
    let long = format!("GET http://example.com/{}", "a".repeat(600));
    let victim = "GET http://example.com/victim";
    put(&redis, &long, "long").await;
    put(&redis, victim, "victim").await;
    // Someone with write access rewrites the hashed entry with a frame naming the victim.
    let mut framed = b"cachet-key".to_vec();
    framed.extend_from_slice(&u32::try_from(victim.len()).expect("short").to_be_bytes());
    framed.extend_from_slice(victim.as_bytes());
    framed.extend_from_slice(b"junk");
    let hashed = redis.redis_key(&CacheKey::from_text(long.as_str()));
    server.query::<()>(redis::cmd("SET").arg(&hashed).arg(framed));

    let entries = Entries::new(redis);
    let page = entries.list(Cursor::start(), 100).await.expect("lists");
    let keys: Vec<String> = page.entries.iter().map(|e| e.key.to_string()).collect();
    assert_eq!(
        keys.iter().filter(|k| *k == victim).count(),
        1,
        "the victim is listed once: {keys:?}"
    );
    let odd = page
        .entries
        .iter()
        .find(|e| e.key.as_str() != victim)
        .expect("two entries");
    assert_eq!(odd.kind, EntryKind::Unreadable, "{odd:?}");
    // Deleting the odd entry by its listed key leaves the victim's alone.
    entries.delete_key(&odd.key).await.expect("deletes");
    assert_eq!(server.scan("cachet:GET http://example.com/victim").len(), 1);
}

/// Redis's own count of bytes sent to its clients.
fn bytes_sent(server: &RedisServer) -> u64 {
    let info: String = server.query(redis::cmd("INFO").arg("stats"));
    info.lines()
        .find_map(|line| line.strip_prefix("total_net_output_bytes:"))
        .and_then(|bytes| bytes.trim().parse().ok())
        .expect("INFO stats counts the bytes it sent")
}

/// Counting entries needs their sizes, not their bytes: a whole page of large values
/// (up to a thousand of them at `max_body_bytes`, gigabytes) was read into the process
/// for `stats`. A hashed key (a long URL) is still counted once, under its own entry.
#[tokio::test]
async fn stats_on_redis_reads_sizes_not_values() {
    const ENTRIES: usize = 20;
    const SIZE: usize = 2 << 20;
    let server = RedisServer::start();
    // Made inside Redis, so that this process never holds them.
    for i in 0..ENTRIES {
        server.query::<()>(
            redis::cmd("EVAL")
                .arg("redis.call('SET', KEYS[1], string.rep('x', ARGV[1]), 'PX', 600000)")
                .arg(1)
                .arg(format!("cachet:GET http://example.com/large/{i}"))
                .arg(SIZE),
        );
    }
    let store = store(&server);
    let long = format!("GET http://example.com/{}", "a".repeat(600));
    put(&store, &long, "long").await;
    let entries = Entries::new(store);
    let before = bytes_sent(&server);
    let stats = entries.stats().await.expect("redis answers");
    let sent = bytes_sent(&server) - before;
    assert_eq!(stats.entries, ENTRIES as u64 + 1);
    assert!(stats.bytes > (ENTRIES * SIZE) as u64, "{stats:?}");
    assert!(
        sent < 1 << 20,
        "stats of {} MiB had Redis send {sent} bytes",
        (ENTRIES * SIZE) >> 20
    );
}

/// Someone else's bytes under a hashed key name no cache key, so the listing shows the
/// entry by the Redis key's own text; deleting by that text, which hashes elsewhere,
/// deleted nothing and said it had.
#[tokio::test]
async fn a_hashed_key_listed_by_its_own_text_is_deleted_by_it() {
    let server = RedisServer::start();
    let store = store(&server);
    let long = format!("GET http://example.com/{}", "a".repeat(600));
    put(&store, &long, "long").await;
    let [redis_key] = &server.scan("cachet:*")[..] else {
        panic!("one key stored")
    };
    server.query::<()>(redis::cmd("SET").arg(redis_key).arg("not a frame"));
    let entries = Entries::new(store);
    let listing = entries.list(Cursor::start(), 10).await.expect("lists");
    let [listed] = &listing.entries[..] else {
        panic!("one entry listed")
    };
    assert_eq!(Some(listed.key.as_str()), redis_key.strip_prefix("cachet:"));
    entries.delete_key(&listed.key).await.expect("deletes");
    assert!(
        server.scan("cachet:*").is_empty(),
        "the listed entry is gone"
    );
}
