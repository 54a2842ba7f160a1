//! What cachet's own work costs on a request it passes through, beside the bare stand-in
//! origin, in one run and in one process.
//!
//! `benches/forward.rs` measures the same pass-throughs over a real loopback origin, where
//! a round trip of some 15 µs varies by more than cachet's share of it. Here the origin is
//! the in-process stand-in of `benches/hit.rs`: a `service_fn` that builds the response
//! and counts its calls, so what cachet adds is most of what is measured. Each measured
//! request is built, sent through `ready().call()`, and its body read to the end, frame by
//! frame, and checked for its length:
//!
//! - `post`: a `POST` with a 64-byte JSON body, answered `200` with a 1 KiB body (storable
//!   by its headers; the method keeps it out). cachet does not look it up, and on the
//!   `2xx` invalidates the URI (RFC 9111 §4.4): markers under its GET and HEAD keys;
//! - `no_store`: a `GET` answered `Cache-Control: no-store` with a 1 KiB body. cachet looks
//!   it up (a miss, and as a coalescing leader a second look), then passes the response
//!   through without recording it.
//!
//! `bare` is the stand-in alone; `cachet` is `CacheLayer` over `MemoryStore` in front of
//! it. Before measuring, a request of each kind through cachet is checked to be answered
//! `Forwarded { stored: false }` for the expected reason, and after, the origin is checked
//! to have been asked once per measured request.
//!
//! Run with `cargo bench -p cachet-bench --bench pass -- --warm-up-time 1 --measurement-time 3`.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cachet::{CacheLayer, CacheStatus, MemoryStore};
use cachet_bench::hit::Req;
use cachet_bench::pass::{Kind, SIZE, origin};
use cachet_bench::{read_body, send};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::Response;
use http_body::Body;
use tower::{Layer, Service, ServiceExt};

/// Sends `n` requests of `kind` through `service`, one after another, reading each body.
async fn requests<S, B>(service: &mut S, kind: Kind, n: u64)
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    send(service, n, SIZE, || kind.request()).await;
}

fn pass_through(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let mut group = c.benchmark_group("pass_through");
    for kind in Kind::ALL {
        let calls = Arc::new(AtomicU64::new(0));
        let bare = origin(kind, calls.clone());
        let cachet = CacheLayer::new(MemoryStore::default()).layer(bare.clone());

        runtime.block_on(async {
            let response = cachet
                .clone()
                .oneshot(kind.request())
                .await
                .expect("the request succeeds");
            assert!(
                kind.passed_through(response.extensions().get::<CacheStatus>()),
                "cachet passes a {} through unstored, not {:?}",
                kind.name(),
                response.extensions().get::<CacheStatus>()
            );
            read_body(response.into_body()).await.expect("the body");
        });

        for (name, mut service) in [
            ("bare", Contender::Bare(bare)),
            ("cachet", Contender::Cachet(cachet)),
        ] {
            let mut sent = 0;
            let before = calls.load(Ordering::SeqCst);
            group.bench_function(BenchmarkId::new(kind.name(), name), |b| {
                b.iter_custom(|iters| {
                    sent += iters;
                    runtime.block_on(async {
                        let start = Instant::now();
                        match &mut service {
                            Contender::Bare(bare) => requests(bare, kind, iters).await,
                            Contender::Cachet(cachet) => requests(cachet, kind, iters).await,
                        }
                        start.elapsed()
                    })
                })
            });
            assert_eq!(
                calls.load(Ordering::SeqCst) - before,
                sent,
                "every measured {} request of {name} reached the origin",
                kind.name()
            );
        }
    }
    group.finish();
}

enum Contender<B, C> {
    Bare(B),
    Cachet(C),
}

criterion_group!(benches, pass_through);
criterion_main!(benches);
