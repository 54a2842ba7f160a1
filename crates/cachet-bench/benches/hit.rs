//! A fresh in-memory hit through cachet, beside the floor and the Rust peers, in one run.
//!
//! Every contender is a `tower::Service` in front of the same stand-in for a hyper-util
//! client (a `service_fn` that builds the origin's response and counts its calls). Each
//! measured request is built (URI parsed, two headers), sent through `ready().call()`,
//! and its body read to the end, frame by frame, and checked for its length:
//!
//! - `floor`: a prebuilt response handed back from `quick_cache` (the concurrent cache
//!   `MemoryStore` is built on), keyed by cachet's `CacheKey`: a header-map clone and a
//!   `Bytes` clone;
//! - `floor_moka`: the same from moka, the floor issue #6 names (the peers' cache);
//! - `cachet`: `CacheLayer` over `MemoryStore`;
//! - `cachet_signed`: `CacheLayer` over `VerifyLayer` over `MemoryStore`;
//! - `cachet_tiered`: `CacheLayer` over `Tiered<MemoryStore, Verify<MemoryStore>>`, the
//!   memory tier in front of a signed far tier (memory standing in for Redis): a repeated
//!   hit comes from the memory tier, neither verified nor decoded again;
//! - `http_cache_tower`: http-cache-tower's `HttpCacheLayer` over its `MokaManager`
//!   (its in-memory manager), default options;
//! - `tower_http_cache`: tower-http-cache's `CacheLayer` over its `InMemoryBackend`
//!   (moka), with a one-hour TTL.
//!
//! The origin answers `Cache-Control: public, max-age=3600`. Before measuring, each
//! contender is warmed until a request no longer reaches the origin, and checked again
//! after: a bench that measured anything but hits panics.
//!
//! Group `hit` runs one task on a current-thread runtime; group `hit_2_tasks` splits each
//! batch of requests over two tasks on a multi-thread runtime with two workers, and
//! reports the batch's wall time per request.
//!
//! Run with `cargo bench -p cachet-bench --bench hit -- --warm-up-time 1 --measurement-time 3`.

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachet::store::Tiered;
use cachet::verify::{Keyring, VerifyLayer};
use cachet::{CacheLayer, MemoryStore};
use cachet_bench::hit::{Floor, Req, origin_response, request};
use cachet_bench::send;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use http::Response;
use http_body::Body;
use http_body_util::Full;
use tokio::runtime::Runtime;
use tower::{Layer, Service, service_fn};

/// The stand-in for a hyper-util client: answers every request with the origin's
/// response and counts the calls.
fn origin(
    body: Bytes,
    calls: Arc<AtomicU64>,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |_: Req| {
        calls.fetch_add(1, Ordering::SeqCst);
        ready(Ok::<_, Infallible>(origin_response(&body)))
    })
}

/// Sends `n` requests for `uri` through `service`, one after another, reading each body.
async fn requests<S, B>(mut service: S, uri: Arc<str>, n: u64, size: usize)
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    send(&mut service, n, size, || request(&uri)).await;
}

#[derive(Clone, Copy)]
enum Tasks {
    /// One task on a current-thread runtime.
    One,
    /// Two tasks on a multi-thread runtime with two workers.
    Two,
}

/// Warms `service` until a request for `uri` no longer reaches the origin, checks that
/// the next ones do not either, measures it, and checks again that the origin was not
/// asked.
fn contender<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    (runtime, tasks): (&Runtime, Tasks),
    name: &str,
    service: S,
    calls: &AtomicU64,
    (uri, size): (&Arc<str>, usize),
) where
    S: Service<Req, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Debug,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Error: Debug,
{
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let before = calls.load(Ordering::SeqCst);
            requests(service.clone(), uri.clone(), 1, size).await;
            if calls.load(Ordering::SeqCst) == before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never answered {uri} from its cache; its configuration must store \
                 `Cache-Control: public, max-age=3600`"
            );
            // Give a write in the background (cachet's) a chance to land.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let before = calls.load(Ordering::SeqCst);
        requests(service.clone(), uri.clone(), 100, size).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before,
            "{name} reached the origin after warm-up: what would be measured is not a hit"
        );
    });
    let before = calls.load(Ordering::SeqCst);

    group.bench_function(BenchmarkId::new(name, size), |b| match tasks {
        Tasks::One => b.iter_custom(|iters| {
            let batch = requests(service.clone(), uri.clone(), iters, size);
            runtime.block_on(async {
                let start = Instant::now();
                batch.await;
                start.elapsed()
            })
        }),
        Tasks::Two => b.iter_custom(|iters| {
            let first = iters / 2;
            let a = requests(service.clone(), uri.clone(), first, size);
            let b = requests(service.clone(), uri.clone(), iters - first, size);
            runtime.block_on(async {
                let start = Instant::now();
                let a = tokio::spawn(a);
                let b = tokio::spawn(b);
                a.await.expect("the first task completes");
                b.await.expect("the second task completes");
                start.elapsed()
            })
        }),
    });
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "{name} reached the origin while measured: not every measured request was a hit"
    );
}

fn group(c: &mut Criterion, name: &str, tasks: Tasks) {
    let runtime = match tasks {
        Tasks::One => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime"),
        Tasks::Two => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime with two workers"),
    };
    let run = (&runtime, tasks);
    let mut group = c.benchmark_group(name);
    for size in [1024, 100 * 1024] {
        let body = Bytes::from(vec![b'x'; size]);
        let uri: Arc<str> = format!("http://origin.example/assets/app.js?size={size}").into();
        let target = (&uri, size);
        let calls = Arc::new(AtomicU64::new(0));
        let origin = || origin(body.clone(), calls.clone());

        let floor = Floor::quick_cache(&uri, &body);
        contender(&mut group, run, "floor", floor, &calls, target);

        let floor = Floor::moka(&uri, &body);
        contender(&mut group, run, "floor_moka", floor, &calls, target);

        let cachet = CacheLayer::new(MemoryStore::default()).layer(origin());
        contender(&mut group, run, "cachet", cachet, &calls, target);

        let keyring = Keyring::new("bench secret").expect("a secret that is not empty");
        let signed = CacheLayer::new(VerifyLayer::new(keyring).layer(MemoryStore::default()))
            .layer(origin());
        contender(&mut group, run, "cachet_signed", signed, &calls, target);

        // Signed as a shared store is: the far tier (here memory standing in for Redis)
        // verified, the near tier in front of it keeping what crossed.
        let keyring = Keyring::new("bench secret").expect("a secret that is not empty");
        let far = VerifyLayer::new(keyring).layer(MemoryStore::default());
        let tiered = CacheLayer::new(Tiered::new(MemoryStore::default(), far)).layer(origin());
        contender(&mut group, run, "cachet_tiered", tiered, &calls, target);

        let manager = http_cache::MokaManager::default();
        let peer = http_cache_tower::HttpCacheLayer::new(manager).layer(origin());
        contender(&mut group, run, "http_cache_tower", peer, &calls, target);

        let backend = tower_http_cache::backend::memory::InMemoryBackend::new(10_000);
        let peer = tower_http_cache::CacheLayer::builder(backend)
            .ttl(Duration::from_secs(3600))
            .build()
            .layer(origin());
        contender(&mut group, run, "tower_http_cache", peer, &calls, target);
    }
    group.finish();
}

fn hit(c: &mut Criterion) {
    group(c, "hit", Tasks::One);
    group(c, "hit_2_tasks", Tasks::Two);
}

criterion_group!(benches, hit);
criterion_main!(benches);
