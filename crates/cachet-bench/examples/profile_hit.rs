//! Serves `N` fresh in-memory hits through one contender, for a profiler to watch.
//!
//! ```sh
//! cargo build --release -p cachet-bench --example profile_hit
//! valgrind --tool=callgrind target/release/examples/profile_hit cachet 1024 100000
//! valgrind --tool=dhat target/release/examples/profile_hit floor 1024 100000
//! perf record --call-graph dwarf target/release/examples/profile_hit signed 1024 2000000
//! ```
//!
//! The contender is `floor` (a prebuilt response from `quick_cache`, keyed by cachet's
//! `CacheKey`, as in `benches/hit.rs`), `floor_moka` (the same from moka), `cachet` (`CacheLayer` over `MemoryStore`) or
//! `signed` (`CacheLayer` over `VerifyLayer` over `MemoryStore`); then the body size and
//! the number of hits. Each request is built, sent, and its body read to the end, as in
//! the bench; the origin is asked once, to fill the cache, and the run fails if it is
//! asked again. Subtracting a run of `N` from one of `2N` leaves the cost of `N` hits.

use std::convert::Infallible;
use std::future::ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use cachet::store::Tiered;
use cachet::verify::{Keyring, VerifyLayer};
use cachet::{CacheLayer, MemoryStore};
use cachet_bench::hit::{Floor, Req, origin_response, request};
use cachet_bench::send;
use http::Response;
use http_body::Body;
use tower::{Layer, Service, service_fn};

async fn hits<S, B>(mut service: S, uri: &str, n: u64, size: usize)
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    send(&mut service, n, size, || request(uri)).await;
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: profile_hit floor|floor_moka|cachet|signed|tiered SIZE N";
    let contender = args.next().expect(usage);
    let size: usize = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).expect(usage);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let body = Bytes::from(vec![b'x'; size]);
    let uri = format!("http://origin.example/assets/app.js?size={size}");
    let calls = Arc::new(AtomicU64::new(0));
    let origin = {
        let (body, calls) = (body.clone(), calls.clone());
        service_fn(move |_: Req| {
            calls.fetch_add(1, Ordering::SeqCst);
            ready(Ok::<_, Infallible>(origin_response(&body)))
        })
    };
    runtime.block_on(async {
        match contender.as_str() {
            "floor" => {
                let floor = Floor::quick_cache(&uri, &body);
                hits(floor, &uri, n, size).await;
            }
            "floor_moka" => {
                let floor = Floor::moka(&uri, &body);
                hits(floor, &uri, n, size).await;
            }
            "cachet" => {
                let cachet = CacheLayer::new(MemoryStore::default()).layer(origin);
                hits(cachet.clone(), &uri, 1, size).await;
                tokio::task::yield_now().await;
                hits(cachet, &uri, n, size).await;
            }
            "signed" => {
                let keyring = Keyring::new("bench secret").expect("a secret that is not empty");
                let signed =
                    CacheLayer::new(VerifyLayer::new(keyring).layer(MemoryStore::default()))
                        .layer(origin);
                hits(signed.clone(), &uri, 1, size).await;
                tokio::task::yield_now().await;
                hits(signed, &uri, n, size).await;
            }
            "tiered" => {
                let keyring = Keyring::new("bench secret").expect("a secret that is not empty");
                let far = VerifyLayer::new(keyring).layer(MemoryStore::default());
                let tiered =
                    CacheLayer::new(Tiered::new(MemoryStore::default(), far)).layer(origin);
                hits(tiered.clone(), &uri, 1, size).await;
                tokio::task::yield_now().await;
                hits(tiered, &uri, n, size).await;
            }
            other => panic!("{usage} (not {other})"),
        }
    });
    assert!(
        calls.load(Ordering::SeqCst) <= 1,
        "the origin was asked again: not every request was a hit"
    );
}
