//! A Redis hit beside Redis's own `GET`, on the same server in the same run.
//!
//! The bench starts its own `redis-server` on a free loopback port (it panics if there
//! is none to start) and measures, for a 1 KiB and a 100 KiB value:
//!
//! - `raw_get`: `GET` on one multiplexed connection of the Redis client: the floor;
//! - `deadpool_default_get`: `GET` through deadpool-redis's own pool, which sends a
//!   `PING` each time a connection is taken out: what `RedisStore` avoids;
//! - `store_get`: `StoreRequest::Get` through `RedisStore`;
//! - `signed_get`: the same through `Verify<RedisStore>` (HMAC-SHA256 checked);
//! - `cache_hit`: a whole request answered by `CacheLayer` over `RedisStore`, from the
//!   request to the response (body not read), entry decoded.
//!
//! Run with `cargo bench -p cachet-redis -- --warm-up-time 1 --measurement-time 3`.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachet::store::{StoreRequest, StoreResponse};
use cachet::verify::{Keyring, VerifyLayer};
use cachet::{CacheKey, CacheLayer, CacheStatus};
use cachet_redis::RedisStore;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use deadpool_redis::redis;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

/// A `redis-server` of the bench's own, killed on drop.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a loopback port is free")
            .port();
        let dir = std::env::temp_dir().join(format!("cachet-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the temporary directory is writable");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "this bench starts its own redis-server and could not ({error}); \
                     install it (Debian: `apt-get install redis-server`)"
                )
            });
        let server = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    fn answers(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection))
            .is_ok()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn response(body: &Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "application/javascript")
        .header("cache-control", "public, max-age=3600")
        .header("etag", "\"abc123\"")
        .header(
            "date",
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        )
        .body(Full::new(body.clone()))
        .expect("the bench response is valid")
}

fn redis_hit(c: &mut Criterion) {
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let store = RedisStore::new(server.url()).expect("a valid URL");
    let signed =
        VerifyLayer::new(Keyring::new("bench secret").expect("not empty")).layer(store.clone());
    let raw = runtime.block_on(async {
        redis::Client::open(server.url())
            .expect("a valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the bench's redis-server accepts connections")
    });
    let deadpool = deadpool_redis::Config::from_url(server.url())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("a pool");

    let mut group = c.benchmark_group("redis_hit");
    for size in [1024, 100 * 1024] {
        let value = Bytes::from(vec![b'x'; size]);
        let key = CacheKey::from_text(format!("GET http://origin.example/bench/{size}"));
        let redis_key = store.redis_key(&key);
        let signed_key = CacheKey::from_text(format!("GET http://origin.example/signed/{size}"));
        runtime.block_on(async {
            let put = |key: &CacheKey| StoreRequest::Put {
                key: key.clone(),
                value: value.clone().into(),
                ttl: Duration::from_secs(3600),
            };
            let plain = store.clone().oneshot(put(&key)).await;
            let signed = signed.clone().oneshot(put(&signed_key)).await;
            for written in [plain, signed] {
                assert_eq!(written.expect("redis accepts"), StoreResponse::Done);
            }
        });

        group.bench_with_input(BenchmarkId::new("raw_get", size), &size, |b, _| {
            b.to_async(&runtime).iter(|| {
                let mut connection = raw.clone();
                let redis_key = redis_key.clone();
                async move {
                    let found: Vec<u8> = redis::cmd("GET")
                        .arg(&redis_key)
                        .query_async(&mut connection)
                        .await
                        .expect("the value is there");
                    black_box(found)
                }
            })
        });

        group.bench_with_input(
            BenchmarkId::new("deadpool_default_get", size),
            &size,
            |b, _| {
                b.to_async(&runtime).iter(|| async {
                    let mut connection = deadpool.get().await.expect("a connection");
                    let found: Vec<u8> = redis::cmd("GET")
                        .arg(&redis_key)
                        .query_async(&mut connection)
                        .await
                        .expect("the value is there");
                    black_box(found)
                })
            },
        );

        group.bench_with_input(BenchmarkId::new("store_get", size), &size, |b, _| {
            b.to_async(&runtime).iter(|| async {
                let found = store
                    .clone()
                    .oneshot(StoreRequest::Get(key.clone()))
                    .await
                    .expect("redis answers");
                assert!(matches!(found, StoreResponse::Found(_)));
                black_box(found)
            })
        });

        group.bench_with_input(BenchmarkId::new("signed_get", size), &size, |b, _| {
            b.to_async(&runtime).iter(|| async {
                let found = signed
                    .clone()
                    .oneshot(StoreRequest::Get(signed_key.clone()))
                    .await
                    .expect("the entry verifies");
                assert!(matches!(found, StoreResponse::Found(_)));
                black_box(found)
            })
        });

        let uri = format!("http://origin.example/cache/{size}");
        let origin_body = value.clone();
        let origin = service_fn(move |_: Request<String>| {
            let response = response(&origin_body);
            async move { Ok::<_, Infallible>(response) }
        });
        let layer = CacheLayer::new(store.clone());
        let cache = layer.layer(origin);
        runtime.block_on(async {
            let request = || {
                Request::get(&uri)
                    .body(String::new())
                    .expect("a valid request")
            };
            let first = cache.clone().oneshot(request()).await.expect("a miss");
            first
                .into_body()
                .collect()
                .await
                .expect("the body completes");
            // The write runs in the background; wait until the entry is a hit.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let response = cache.clone().oneshot(request()).await.expect("answers");
                if response.extensions().get::<CacheStatus>() == Some(&CacheStatus::Hit) {
                    break;
                }
                assert!(Instant::now() < deadline, "the entry was never stored");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let forwarded = layer.metrics().forwarded();
        group.bench_with_input(BenchmarkId::new("cache_hit", size), &size, |b, _| {
            b.to_async(&runtime).iter(|| async {
                let request = Request::get(&uri)
                    .body(String::new())
                    .expect("a valid request");
                let response = cache.clone().oneshot(request).await.expect("a hit");
                debug_assert_eq!(
                    response.extensions().get::<CacheStatus>(),
                    Some(&CacheStatus::Hit)
                );
                black_box(response)
            })
        });
        assert_eq!(
            layer.metrics().forwarded(),
            forwarded,
            "every measured request was a hit"
        );
    }
    group.finish();
    assert_eq!(store.metrics().errors(), 0, "no operation failed");
}

criterion_group!(benches, redis_hit);
criterion_main!(benches);
