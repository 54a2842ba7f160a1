//! `RedisStore` on a three-master Redis Cluster: the store protocol, keys spread over the
//! masters, and a paused master.

use super::*;

#[tokio::test]
async fn the_store_protocol_works_on_a_three_master_cluster() {
    let cluster = RedisCluster::start();
    let store = RedisStore::cluster(cluster.urls())
        .build()
        .expect("valid cluster URLs");
    store_suite(&store, |redis_key| cluster.node_for(redis_key)).await;
}

#[tokio::test]
async fn cluster_keys_spread_over_the_masters_and_caches_share_them() {
    let cluster = RedisCluster::start();
    let store = RedisStore::cluster(cluster.urls())
        .build()
        .expect("valid cluster URLs");
    for i in 0..30 {
        put(
            &store,
            &key(&format!("GET http://example.com/{i}")),
            format!("{i}"),
            Duration::from_secs(60),
        )
        .await;
    }
    let per_node: Vec<usize> = cluster
        .nodes()
        .iter()
        .map(|node| node.scan("cachet:*").len())
        .collect();
    assert_eq!(per_node.iter().sum::<usize>(), 30);
    assert!(
        per_node.iter().all(|&n| n > 0),
        "every master holds some keys: {per_node:?}"
    );

    let origin = naming_origin().await;
    let url = origin.url("/clustered");
    let first = CacheLayer::new(store.clone()).layer(client());
    let second = CacheLayer::new(RedisStore::cluster(cluster.urls()).build().expect("valid"))
        .layer(client());
    assert_eq!(fetch(&first, &url).await.expect("a miss").0, stored_miss());
    let redis_key = store.redis_key(&key_of(&url));
    written(cluster.node_for(&redis_key), &redis_key).await;
    assert_eq!(
        fetch(&second, &url).await.expect("a hit").0,
        CacheStatus::Hit
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_paused_cluster_master_costs_only_its_own_keys() {
    let cluster = RedisCluster::start();
    for node in cluster.nodes() {
        // Else the healthy masters refuse every key once they count the paused one as
        // failed (after the harness's two-second node timeout).
        node.query::<()>(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("cluster-require-full-coverage")
                .arg("no"),
        );
    }
    let store = RedisStore::cluster(cluster.urls())
        .build()
        .expect("valid cluster URLs");
    let paused = &cluster.nodes()[0];
    let mut keys = Vec::new();
    for i in 0..30 {
        let k = key(&format!("GET http://example.com/{i}"));
        let value = Bytes::from(format!("{i}"));
        put(&store, &k, value.clone(), Duration::from_secs(600)).await;
        let on_paused = std::ptr::eq(cluster.node_for(&store.redis_key(&k)), paused);
        keys.push((k, value, on_paused));
    }
    let on_paused = keys.iter().filter(|(_, _, on_paused)| *on_paused).count();
    assert!(
        (1..keys.len()).contains(&on_paused),
        "the keys are spread over the paused master and the others: {on_paused}"
    );

    paused.pause();
    // Keys on the healthy masters are found before, between and after lookups that
    // timed out on the paused one.
    for (k, value, on_paused) in &keys {
        let found = call(&store, StoreRequest::Get(k.clone())).await;
        if *on_paused {
            let error = found
                .expect_err("the paused master does not answer")
                .downcast::<cachet_redis::Error>()
                .expect("a redis store error");
            assert!(error.is_timeout(), "{k:?}: {error}");
        } else {
            assert_eq!(
                found.expect("a healthy master answers"),
                StoreResponse::Found(value.clone().into()),
                "{k:?}"
            );
        }
    }

    paused.resume();
    for (k, value, _) in &keys {
        assert_eq!(
            lookup(&store, k).await,
            StoreResponse::Found(value.clone().into()),
            "{k:?} once every master answers"
        );
    }
}
