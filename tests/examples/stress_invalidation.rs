//! A randomized stress run of invalidation (RFC 9111 §4.4) against a model, for a person
//! to run by hand: tasks on a multi-thread runtime send GET, HEAD and POST requests for
//! three paths through one cache, and every answer to a GET or HEAD is checked against
//! the POSTs whose responses had come back before it was sent.
//!
//! ```sh
//! cargo run --release -p cachet-tests --example stress_invalidation -- [memory|redis|tiered|all] [SECONDS]
//! ```
//!
//! The origin (a real HTTP/1.1 server on 127.0.0.1) numbers each path's versions: a
//! `POST` makes the next one current and answers with its number; a `GET` or `HEAD` is
//! answered with the current one (in the body and in `X-Version`), fresh for ten minutes.
//! A request sent after a `POST`'s response came back must never be answered with an
//! older version: such an answer is a violation, printed, and the run exits with an
//! error. `redis` and `tiered` (memory over Redis) start a `redis-server` of their own
//! on a free loopback port. It is not a test in CI: a race shows up only now and then,
//! so a run that finds none proves nothing, and a test that can fail by chance is worse
//! than none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachet::store::{Store, Tiered};
use cachet::{CacheLayer, CacheStatus, MemoryStore};
use cachet_redis::RedisStore;
use cachet_tests::redis::RedisServer;
use cachet_tests::{Origin, Reply, client, read};
use http::{Method, Request};
use http_body_util::Empty;
use tower::{Layer, ServiceExt};

const PATHS: usize = 3;
const TASKS: u64 = 16;

/// Each path's current version at the origin, and the newest that a `POST`'s response has
/// reported to a client.
#[derive(Default)]
struct Model {
    current: [AtomicU64; PATHS],
    reported: [AtomicU64; PATHS],
}

#[derive(Default)]
struct Counts {
    requests: AtomicUsize,
    posts: AtomicUsize,
    hits: AtomicUsize,
    violations: AtomicUsize,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "all".to_owned());
    let seconds = match args.next().map(|s| s.parse::<u64>()) {
        None => 5,
        Some(Ok(seconds)) if (1..=120).contains(&seconds) => seconds,
        Some(_) => {
            eprintln!(
                "SECONDS must be a whole number from 1 to 120 (the origin keeps every request it saw)"
            );
            std::process::exit(2);
        }
    };
    let stores: &[&str] = match which.as_str() {
        "all" => &["memory", "redis", "tiered"],
        "memory" => &["memory"],
        "redis" => &["redis"],
        "tiered" => &["tiered"],
        other => {
            eprintln!("unknown store {other:?}: memory, redis, tiered or all");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut violations = 0;
    for &name in stores {
        violations += runtime.block_on(async {
            let duration = Duration::from_secs(seconds);
            match name {
                "memory" => run(name, MemoryStore::default(), duration).await,
                "redis" => {
                    let server = RedisServer::start();
                    run(name, redis(&server), duration).await
                }
                _ => {
                    let server = RedisServer::start();
                    let tiered = Tiered::new(MemoryStore::default(), redis(&server));
                    run(name, tiered, duration).await
                }
            }
        });
    }
    if violations > 0 {
        std::process::exit(1);
    }
}

fn redis(server: &RedisServer) -> RedisStore {
    RedisStore::new(server.url()).expect("the server's URL is valid")
}

/// Runs the mix through a cache over `store` for `duration`; returns the violations.
async fn run<St: Store>(name: &str, store: St, duration: Duration) -> usize {
    let model = Arc::new(Model::default());
    for version in &model.current {
        version.store(1, Ordering::SeqCst);
    }
    let origin = Origin::start({
        let model = model.clone();
        move |seen| {
            let Some(path) = path_index(&seen.path) else {
                return Reply::ok("no such path").status(404);
            };
            let current = &model.current[path];
            let version = if seen.method == Method::POST {
                current.fetch_add(1, Ordering::SeqCst) + 1
            } else {
                current.load(Ordering::SeqCst)
            };
            Reply::ok(version.to_string())
                .header("x-version", version.to_string())
                .header("cache-control", "max-age=600")
        }
    })
    .await;
    let cache = CacheLayer::new(store).layer(client());
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (cache, model, counts, origin) =
                (cache.clone(), model.clone(), counts.clone(), origin.clone());
            tokio::spawn(async move {
                // xorshift, seeded by the task: no two tasks send the same sequence.
                let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (task + 1).wrapping_mul(0xBF58_476D);
                let mut next = move || {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state
                };
                while Instant::now() < deadline {
                    let roll = next();
                    let path = usize::try_from(roll % PATHS as u64).unwrap_or(0);
                    let method = match (roll >> 8) % 10 {
                        0..=6 => Method::GET,
                        7 => Method::HEAD,
                        _ => Method::POST,
                    };
                    let url = origin.url(&format!("/item/{path}"));
                    let request = Request::builder()
                        .method(method.clone())
                        .uri(&url)
                        .body(Empty::<Bytes>::new())
                        .expect("a valid request");
                    let floor = model.reported[path].load(Ordering::SeqCst);
                    let Ok(response) = cache.clone().oneshot(request).await else {
                        eprintln!("{method} {url}: the request failed");
                        continue;
                    };
                    counts.requests.fetch_add(1, Ordering::Relaxed);
                    let status = response.extensions().get::<CacheStatus>().copied();
                    let version = response
                        .headers()
                        .get("x-version")
                        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
                    if read(response.into_body()).await.is_err() {
                        eprintln!("{method} {url}: the body failed");
                        continue;
                    }
                    let Some(version) = version else {
                        eprintln!("{method} {url}: no X-Version");
                        continue;
                    };
                    if method == Method::POST {
                        counts.posts.fetch_add(1, Ordering::Relaxed);
                        model.reported[path].fetch_max(version, Ordering::SeqCst);
                        continue;
                    }
                    if matches!(status, Some(CacheStatus::Hit)) {
                        counts.hits.fetch_add(1, Ordering::Relaxed);
                    }
                    if version < floor {
                        let seen = counts.violations.fetch_add(1, Ordering::Relaxed);
                        if seen < 10 {
                            eprintln!(
                                "violation: {method} {url} sent after version {floor} was reported, answered with version {version} ({status:?})"
                            );
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no task panics");
    }
    origin.stop();
    let violations = counts.violations.load(Ordering::Relaxed);
    println!(
        "{name}: {} requests in {} s ({} POSTs, {} hits): {violations} violations",
        counts.requests.load(Ordering::Relaxed),
        duration.as_secs(),
        counts.posts.load(Ordering::Relaxed),
        counts.hits.load(Ordering::Relaxed),
    );
    violations
}

/// Which of the paths `/item/0` to `/item/2` this is.
fn path_index(path: &str) -> Option<usize> {
    let index: usize = path.strip_prefix("/item/")?.parse().ok()?;
    (index < PATHS).then_some(index)
}
