//! Sends `N` requests that cachet passes through, bare or through cachet, for a profiler
//! to watch.
//!
//! ```sh
//! cargo build --release -p cachet-bench --example profile_pass
//! valgrind --tool=callgrind target/release/examples/profile_pass cachet post 100000
//! valgrind --tool=dhat target/release/examples/profile_pass cachet no_store 100000
//! perf record --call-graph dwarf target/release/examples/profile_pass cachet post 2000000
//! ```
//!
//! The contender is `bare` (the stand-in origin of `benches/pass.rs` alone) or `cachet`
//! (`CacheLayer` over `MemoryStore` in front of it); then the kind, `post` (a `POST` with
//! a 64-byte body, answered with 1 KiB) or `no_store` (a `GET` answered `Cache-Control:
//! no-store`, 1 KiB); then the number of requests. Each request is built, sent, and its
//! body read to the end, as in the bench; through cachet every answer is checked to be a
//! pass-through, and the run fails unless the origin was asked once per request.
//! Subtracting a run of `N` from one of `2N` leaves the cost of `N` requests, and `cachet`
//! less `bare` what cachet adds to each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cachet::{CacheLayer, CacheStatus, MemoryStore};
use cachet_bench::pass::{Kind, SIZE, origin};
use cachet_bench::read_body;
use tower::{Layer, Service, ServiceExt};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: profile_pass bare|cachet post|no_store N";
    let contender = args.next().expect(usage);
    let kind = args
        .next()
        .as_deref()
        .and_then(Kind::from_name)
        .expect(usage);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).expect(usage);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let calls = Arc::new(AtomicU64::new(0));
    let mut bare = origin(kind, calls.clone());
    let mut cachet = CacheLayer::new(MemoryStore::default()).layer(bare.clone());
    runtime.block_on(async {
        for _ in 0..n {
            let body = match contender.as_str() {
                "bare" => {
                    let response = bare.ready().await.expect("ready");
                    let response = response.call(kind.request()).await.expect("answers");
                    read_body(response.into_body()).await.expect("a body")
                }
                "cachet" => {
                    let service = cachet.ready().await.expect("ready");
                    let response = service.call(kind.request()).await.expect("answers");
                    let status = response.extensions().get::<CacheStatus>().copied();
                    let body = read_body(response.into_body()).await.expect("a body");
                    assert!(
                        kind.passed_through(status.as_ref()),
                        "cachet passes a {} through unstored, not {status:?}",
                        kind.name()
                    );
                    body
                }
                other => panic!("{usage} (not {other})"),
            };
            assert_eq!(body, SIZE, "the whole body came back");
        }
    });
    assert_eq!(
        calls.load(Ordering::SeqCst),
        n,
        "every request reached the origin"
    );
}
