//! What cachet adds to requests that reach the origin, beside the bare client, in one run.
//!
//! A real hyper origin ([`cachet_bench::Origin`]) listens on 127.0.0.1, as a task on the
//! same runtime as the client, so that a round trip costs the work done at both ends and
//! not the kernel's time to wake another thread (which varies threefold on loopback with
//! the machine's other load). The requests go through one hyper-util client (HTTP/1.1,
//! pooled connections, `TCP_NODELAY`), bare or with `CacheLayer` over `MemoryStore` in
//! front:
//!
//! - `miss`: a `GET` of a storable response (`Cache-Control: public, max-age=3600`), 1 KiB
//!   and 100 KiB, to a URL never asked before, so that every request is a miss that the
//!   tee records and writes to the store; the time from sending the request to the first
//!   byte of the body (`*_first_byte`) and to its end (`*_last_byte`). The store keeps
//!   filling, so past its 64 MiB bound the misses also pay for eviction, as a busy cache
//!   does. The bare client asks the same fresh URLs.
//! - `pass_through`: a `POST` (64-byte body, 1 KiB answer) and a `GET` answered
//!   `Cache-Control: no-store` (1 KiB), to the last byte.
//! - `coalesced`: 32 tasks ask for one URL at once on an empty cache (a new URL per
//!   burst), each reading its body; the time of the whole burst, on a multi-thread
//!   runtime with two workers. After each contender, the number of requests the origin
//!   saw per burst is printed.
//!
//! Every measured request is checked to have reached the origin (the origin's count moves
//! by the number of requests sent), and cachet's answers are checked for what cachet did
//! (a miss that is stored, a pass-through that is not).
//!
//! Run with `cargo bench -p cachet-bench --bench forward -- --warm-up-time 1 --measurement-time 3`.

use std::fmt::Debug;
use std::pin::pin;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use cachet::{CacheLayer, CacheStatus, ForwardReason, MemoryStore};
use cachet_bench::{Origin, read_body};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};

/// Concurrent requests in a coalesced burst.
const BURST: usize = 32;

type Req = Request<Full<Bytes>>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

fn get(uri: &str) -> Req {
    Request::get(uri)
        .header("user-agent", "bench/1.0")
        .body(Full::default())
        .expect("the bench request is valid")
}

fn post(uri: &str) -> Req {
    Request::post(uri)
        .header("user-agent", "bench/1.0")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(&[b' '; 64])))
        .expect("the bench request is valid")
}

/// When the first byte of the body and its end arrived, counted from the request.
struct Timing {
    first_byte: Duration,
    last_byte: Duration,
}

/// Sends `request`, reads the body to its end, checks its length and times it.
async fn timed<S, B>(service: &mut S, request: Req, size: usize) -> Timing
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    let start = Instant::now();
    let response = service
        .ready()
        .await
        .expect("the service is ready")
        .call(request)
        .await
        .expect("the origin answers");
    let mut body = pin!(response.into_body());
    let mut first_byte = None;
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("the body reads to its end").into_data() {
            if first_byte.is_none() && data.has_remaining() {
                first_byte = Some(start.elapsed());
            }
            len += data.remaining();
        }
    }
    let last_byte = start.elapsed();
    assert_eq!(len, size, "the whole body came back");
    Timing {
        first_byte: first_byte.unwrap_or(last_byte),
        last_byte,
    }
}

fn status<B>(response: &Response<B>) -> CacheStatus {
    *response
        .extensions()
        .get::<CacheStatus>()
        .expect("cachet marks every response")
}

/// Which service a bench sends its requests through.
#[derive(Clone, Copy)]
enum Contender {
    /// The hyper-util client alone.
    Bare,
    /// `CacheLayer` over `MemoryStore` in front of the same client.
    Cachet,
}

fn miss(c: &mut Criterion) {
    let runtime = current_thread();
    let origin = Origin::start(runtime.handle());
    let client = client();
    let store = MemoryStore::default();
    let layer = CacheLayer::new(store.clone());
    let cache = layer.layer(client.clone());
    let mut fresh = 0_u64;
    let mut next_url = |size: usize| {
        fresh += 1;
        origin.url(&format!("/bytes/{size}?miss={fresh}"))
    };

    let mut group = c.benchmark_group("miss");
    for size in [1024, 100 * 1024] {
        // A fresh URL is a miss that is stored: the next request for it is a hit.
        let url = next_url(size);
        runtime.block_on(async {
            let response = cache.clone().oneshot(get(&url)).await.expect("a miss");
            assert!(
                matches!(
                    status(&response),
                    CacheStatus::Forwarded {
                        reason: ForwardReason::UriMiss,
                        stored: true,
                        ..
                    }
                ),
                "a fresh URL is a miss that cachet stores, not {:?}",
                status(&response)
            );
            read_body(response.into_body()).await.expect("the body");
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let response = cache.clone().oneshot(get(&url)).await.expect("answers");
                if status(&response) == CacheStatus::Hit {
                    break;
                }
                read_body(response.into_body()).await.expect("the body");
                assert!(Instant::now() < deadline, "the miss was never stored");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });

        for (measure, first_byte) in [("first_byte", true), ("last_byte", false)] {
            for (name, service) in [("bare", Contender::Bare), ("cachet", Contender::Cachet)] {
                let mut sent = 0_u64;
                let before = origin.requests();
                group.bench_function(BenchmarkId::new(format!("{name}_{measure}"), size), |b| {
                    b.iter_custom(|iters| {
                        let urls: Vec<String> = (0..iters).map(|_| next_url(size)).collect();
                        sent += iters;
                        let mut bare = client.clone();
                        let mut cache = cache.clone();
                        runtime.block_on(async {
                            let mut total = Duration::ZERO;
                            for url in &urls {
                                let timing = match service {
                                    Contender::Bare => timed(&mut bare, get(url), size).await,
                                    Contender::Cachet => timed(&mut cache, get(url), size).await,
                                };
                                total += if first_byte {
                                    timing.first_byte
                                } else {
                                    timing.last_byte
                                };
                            }
                            total
                        })
                    })
                });
                assert_eq!(
                    origin.requests() - before,
                    sent,
                    "every measured request of {name} reached the origin"
                );
            }
        }
    }
    group.finish();
    // Let the last writes land, then check that the misses were stored.
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    assert!(!store.is_empty(), "cachet stored the misses");
    assert_eq!(layer.metrics().store_errors(), 0, "no store write failed");
}

fn pass_through(c: &mut Criterion) {
    let runtime = current_thread();
    let origin = Origin::start(runtime.handle());
    let client = client();
    let cache = CacheLayer::new(MemoryStore::default()).layer(client.clone());
    let size = 1024;
    let post_url = origin.url(&format!("/bytes/{size}"));
    let no_store_url = origin.url(&format!("/no-store/{size}"));

    runtime.block_on(async {
        for (request, expected) in [
            (post(&post_url), ForwardReason::Method),
            (get(&no_store_url), ForwardReason::UriMiss),
        ] {
            let method = request.method().clone();
            let response = cache.clone().oneshot(request).await.expect("answers");
            assert!(
                matches!(
                    status(&response),
                    CacheStatus::Forwarded { reason, stored: false, .. } if reason == expected
                ),
                "cachet passes a {method} through unstored, not {:?}",
                status(&response)
            );
            read_body(response.into_body()).await.expect("the body");
        }
    });

    let mut group = c.benchmark_group("pass_through");
    for (kind, method, url) in [
        ("post", Method::POST, &post_url),
        ("no_store", Method::GET, &no_store_url),
    ] {
        for (name, service) in [("bare", Contender::Bare), ("cachet", Contender::Cachet)] {
            let mut sent = 0_u64;
            let before = origin.requests();
            group.bench_function(BenchmarkId::new(kind, name), |b| {
                b.iter_custom(|iters| {
                    sent += iters;
                    let mut bare = client.clone();
                    let mut cache = cache.clone();
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let request = if method == Method::POST {
                                post(url)
                            } else {
                                get(url)
                            };
                            let timing = match service {
                                Contender::Bare => timed(&mut bare, request, size).await,
                                Contender::Cachet => timed(&mut cache, request, size).await,
                            };
                            total += timing.last_byte;
                        }
                        total
                    })
                })
            });
            assert_eq!(
                origin.requests() - before,
                sent,
                "every measured {kind} request of {name} reached the origin"
            );
        }
    }
    group.finish();
}

/// Sends [`BURST`] requests for `url` at once from as many tasks, reading every body.
async fn burst<S, B>(service: &S, url: &str, size: usize)
where
    S: Service<Req, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Debug,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Error: Debug,
{
    let tasks: Vec<_> = (0..BURST)
        .map(|_| {
            let mut service = service.clone();
            let request = get(url);
            tokio::spawn(async move {
                let response = service
                    .ready()
                    .await
                    .expect("the service is ready")
                    .call(request)
                    .await
                    .expect("the origin answers");
                read_body(response.into_body()).await.expect("the body")
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("the task completes"), size);
    }
}

fn coalesced(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime with two workers");
    let origin = Origin::start(runtime.handle());
    let client = client();
    let cache = CacheLayer::new(MemoryStore::default()).layer(client.clone());
    let size = 1024;
    let mut fresh = 0_u64;

    let mut group = c.benchmark_group("coalesced");
    for (name, service) in [("bare", Contender::Bare), ("cachet", Contender::Cachet)] {
        let mut origin_requests = Vec::new();
        group.bench_function(BenchmarkId::new(name, BURST), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    fresh += 1;
                    let url = origin.url(&format!("/bytes/{size}?burst={fresh}"));
                    let before = origin.requests();
                    let start = Instant::now();
                    runtime.block_on(async {
                        match service {
                            Contender::Bare => burst(&client, &url, size).await,
                            Contender::Cachet => burst(&cache, &url, size).await,
                        }
                    });
                    total += start.elapsed();
                    origin_requests.push(origin.requests() - before);
                }
                total
            })
        });
        let counts = origin_requests;
        let mut histogram = std::collections::BTreeMap::new();
        for &n in &counts {
            *histogram.entry(n).or_insert(0_u64) += 1;
        }
        let histogram: Vec<String> = histogram
            .iter()
            .map(|(n, bursts)| format!("{n} in {bursts}"))
            .collect();
        println!(
            "coalesced/{name}/{BURST}: origin requests per burst of {BURST} concurrent misses \
             for one key, over {} bursts: {}",
            counts.len(),
            histogram.join(", ")
        );
        match service {
            Contender::Bare => assert!(
                counts.iter().all(|&n| n == BURST as u64),
                "every request of the bare client reaches the origin"
            ),
            Contender::Cachet => assert!(
                counts.iter().all(|&n| n == 1),
                "a burst of {BURST} concurrent misses for one key reaches the origin once"
            ),
        }
    }
    group.finish();
}

criterion_group!(benches, miss, pass_through, coalesced);
criterion_main!(benches);
