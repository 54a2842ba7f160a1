//! `cachet-proxy` on a shared Redis: proxies share hits, and signed entries written
//! without the key (through `redis-cli`, or by a proxy with another key) are refused.

use std::process::Command;

use cachet_tests::redis::RedisServer;
use cachet_tests::{Logs, Origin, Reply};

use crate::proxy::RunningProxy;

const KEY_A: (&str, &str) = ("CACHET_KEY_A", "3f1c0ffee0d1e5c0ffee3f1c0ffee0d1");
const KEY_B: (&str, &str) = ("CACHET_KEY_B", "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0");

async fn origin() -> Origin {
    Origin::start(|_| Reply::ok("genuine").header("cache-control", "max-age=600")).await
}

/// Overwrites a key with `redis-cli`, as an operator or attacker with access to Redis would.
fn redis_cli_set(redis: &RedisServer, key: &str, value: &str) {
    let status = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &redis.port().to_string(),
            "SET",
            key,
            value,
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("redis-cli runs (installed with redis-server)");
    assert!(status.success());
}

#[tokio::test]
async fn a_redis_that_refuses_the_proxy_is_logged_with_its_reason() {
    let redis = RedisServer::start();
    let origin = origin().await;
    let (logs, _guard) = Logs::capture();
    let store = format!("{}/99", redis.url());
    let proxy = RunningProxy::start(&origin, &["--store", &store]).await;
    for _ in 0..2 {
        let answer = proxy.get("/refused").await;
        assert_eq!(answer.body, "genuine", "the origin answers");
    }
    // The write is made after the answer: wait for its warning.
    for _ in 0..2000 {
        if logs.text().contains("cache store write failed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let logged = logs.text();
    for warning in [
        "Redis does not answer yet",
        "cache store read failed",
        "cache store write failed",
    ] {
        let line = logged
            .lines()
            .find(|line| line.contains(warning))
            .unwrap_or_else(|| panic!("no {warning:?} in {logged}"));
        assert!(
            line.contains("WARN") && line.contains("DB index is out of range"),
            "the warning gives Redis's reason: {line}"
        );
    }
}

#[tokio::test]
async fn two_proxies_on_one_redis_share_hits() {
    let redis = RedisServer::start();
    let origin = origin().await;
    let store = redis.url();
    let first = RunningProxy::start(&origin, &["--store", &store]).await;
    let second = RunningProxy::start(&origin, &["--store", &store]).await;
    assert_eq!(
        first.get("/shared").await.cache_status(),
        "cachet; fwd=uri-miss; stored"
    );
    let hit = second.get("/shared").await;
    assert_eq!(
        (hit.cache_status(), hit.body.as_ref()),
        ("cachet; hit", b"genuine".as_slice())
    );
    assert_eq!(origin.requests(), 1);
    assert_eq!(
        redis.scan("cachet:*").len(),
        1,
        "one entry under the default namespace"
    );
}

#[tokio::test]
async fn a_signed_entry_overwritten_with_redis_cli_gets_a_502_saying_the_signature_failed() {
    let redis = RedisServer::start();
    let origin = origin().await;
    let store = redis.url();
    let proxy = RunningProxy::start_with_env(
        &origin,
        &["--store", &store, "--secret-key-env", KEY_A.0],
        &[KEY_A],
    )
    .await;
    proxy.get("/item").await;
    assert_eq!(proxy.get("/item").await.cache_status(), "cachet; hit");

    let key = format!("cachet:GET {}", origin.url("/item"));
    assert_eq!(redis.scan("cachet:*"), std::slice::from_ref(&key));
    redis_cli_set(&redis, &key, "exploit!");
    let refused = proxy.get("/item").await;
    assert_eq!(refused.status, 502);
    let body = String::from_utf8_lossy(&refused.body);
    assert!(body.contains("failed signature verification"), "{body}");
    assert!(!body.contains(KEY_A.1));

    let repairing = RunningProxy::start_with_env(
        &origin,
        &[
            "--store",
            &store,
            "--secret-key-env",
            KEY_A.0,
            "--on-bad-signature",
            "refetch",
        ],
        &[KEY_A],
    )
    .await;
    let repaired = repairing.get("/item").await;
    assert_eq!(
        (repaired.status, repaired.body.as_ref()),
        (200, b"genuine".as_slice())
    );
    assert_eq!(
        proxy.get("/item").await.cache_status(),
        "cachet; hit",
        "the repaired entry verifies"
    );
}

#[tokio::test]
async fn a_proxy_with_another_key_is_refused_and_rotation_keeps_the_old_key_working() {
    let redis = RedisServer::start();
    let origin = origin().await;
    let store = redis.url();
    let with_a = RunningProxy::start_with_env(
        &origin,
        &["--store", &store, "--secret-key-env", KEY_A.0],
        &[KEY_A],
    )
    .await;
    with_a.get("/rotate").await;

    let with_b = RunningProxy::start_with_env(
        &origin,
        &["--store", &store, "--secret-key-env", KEY_B.0],
        &[KEY_B],
    )
    .await;
    assert_eq!(
        with_b.get("/rotate").await.status,
        502,
        "an entry signed with A fails under B alone"
    );

    let rotated = RunningProxy::start_with_env(
        &origin,
        &[
            "--store",
            &store,
            "--secret-key-env",
            KEY_B.0,
            "--secret-key-env",
            KEY_A.0,
        ],
        &[KEY_A, KEY_B],
    )
    .await;
    let old = rotated.get("/rotate").await;
    assert_eq!(
        (old.status, old.cache_status()),
        (200, "cachet; hit"),
        "B signs, A still verifies"
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn the_redis_namespace_flag_prefixes_every_key() {
    let redis = RedisServer::start();
    let origin = origin().await;
    let proxy = RunningProxy::start(
        &origin,
        &["--store", &redis.url(), "--redis-namespace", "edge1:"],
    )
    .await;
    proxy.get("/ns").await;
    assert_eq!(redis.scan("edge1:*").len(), 1);
    assert!(redis.scan("cachet:*").is_empty());
}

#[tokio::test]
async fn a_proxy_answers_from_the_upstream_while_redis_is_down_and_caches_again_once_it_is_back() {
    let redis = RedisServer::start();
    let origin = origin().await;
    let proxy = RunningProxy::start(&origin, &["--store", &redis.url()]).await;
    proxy.get("/before").await;
    assert_eq!(proxy.get("/before").await.cache_status(), "cachet; hit");

    redis.kill();
    for _ in 0..3 {
        let answer = proxy.get("/down").await;
        assert_eq!(
            (answer.status, answer.body.as_ref()),
            (200, b"genuine".as_slice())
        );
        // Redis cannot say whether anything is stored: a plain miss.
        assert_eq!(answer.cache_status(), "cachet; fwd=miss; stored");
    }

    redis.restart();
    let mut cached_again = false;
    for _ in 0..20 {
        proxy.get("/after").await;
        if proxy.get("/after").await.cache_status() == "cachet; hit" {
            cached_again = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(cached_again, "caching resumes without restarting the proxy");
}

#[tokio::test]
async fn two_proxies_on_a_redis_cluster_share_hits() {
    let cluster = cachet_tests::redis::RedisCluster::start();
    let nodes: Vec<String> = cluster
        .urls()
        .iter()
        .map(|url| {
            url.trim_start_matches("redis://")
                .trim_end_matches('/')
                .to_owned()
        })
        .collect();
    let store = format!("redis+cluster://{}", nodes.join(","));
    let origin = origin().await;
    let first = RunningProxy::start(&origin, &["--store", &store]).await;
    let second = RunningProxy::start(&origin, &["--store", &store]).await;
    for i in 0..6 {
        first.get(&format!("/spread/{i}")).await;
        assert_eq!(
            second.get(&format!("/spread/{i}")).await.cache_status(),
            "cachet; hit"
        );
    }
    assert_eq!(origin.requests(), 6);
}

/// Waits (boundedly) until Redis holds `count` entries under the default namespace: a
/// proxy writes an entry after the response it came with.
async fn entries_in_redis(redis: &RedisServer, count: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while redis.scan("cachet:*").len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "the entry never reached Redis"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn with_a_memory_tier_a_repeated_hit_needs_no_redis() {
    let redis = RedisServer::start();
    let origin = origin().await;
    let store = redis.url();
    let tiered = RunningProxy::start(&origin, &["--store", &store, "--memory-tier", "60s"]).await;
    let plain = RunningProxy::start(&origin, &["--store", &store]).await;
    assert_eq!(
        tiered.get("/hot").await.cache_status(),
        "cachet; fwd=uri-miss; stored"
    );
    // Written through to Redis, where the proxy without a tier finds it.
    entries_in_redis(&redis, 1).await;
    assert_eq!(plain.get("/hot").await.cache_status(), "cachet; hit");

    redis.pause();
    let from_memory = tiered.get("/hot").await;
    let without_tier = plain.get("/hot").await;
    redis.resume();
    assert_eq!(
        (from_memory.cache_status(), from_memory.body.as_ref()),
        ("cachet; hit", b"genuine".as_slice())
    );
    assert_ne!(
        without_tier.cache_status(),
        "cachet; hit",
        "without a tier, a hit needs Redis"
    );
    assert_eq!(without_tier.body.as_ref(), b"genuine", "it fails open");
}
