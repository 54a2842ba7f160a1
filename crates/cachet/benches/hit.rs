//! The in-memory hit path beside its floor, in one run.
//!
//! The floor hands back a prebuilt response from the same concurrent cache crate that
//! `MemoryStore` uses (a `Bytes` clone and a header-map clone): what any in-memory cache
//! must at least do. Run with `cargo bench -p cachet --bench hit`.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use cachet::{CacheKey, CacheLayer, MemoryStore};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};

const URI: &str = "http://origin.example/assets/app.js?v=42";

/// Polls a future that must finish at once (every step of a memory hit is synchronous).
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory hit finishes on its first poll"),
    }
}

fn request() -> Request<()> {
    Request::get(URI)
        .header("user-agent", "bench/1.0")
        .header("accept", "*/*")
        .body(())
        .expect("the bench request is valid")
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

fn hit(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_hit");
    for size in [1024, 100 * 1024] {
        let body = Bytes::from(vec![b'x'; size]);

        let floor = quick_cache::sync::Cache::<CacheKey, (StatusCode, HeaderMap, Bytes)>::new(1024);
        let (parts, _) = response(&body).into_parts();
        let key = CacheKey::for_request(&http::Method::GET, &request().uri().clone())
            .expect("absolute URI");
        floor.insert(key, (parts.status, parts.headers, body.clone()));
        group.bench_with_input(BenchmarkId::new("floor", size), &size, |b, _| {
            b.iter(|| {
                let request = black_box(request());
                let key =
                    CacheKey::for_request(request.method(), request.uri()).expect("absolute URI");
                let (status, headers, body) = floor.get(&key).expect("prefilled");
                let mut response = Response::new(Full::new(body));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                black_box(response)
            })
        });

        let origin_body = body.clone();
        let origin = service_fn(move |_: Request<()>| {
            let response = response(&origin_body);
            async move { Ok::<_, Infallible>(response) }
        });
        let mut cache = CacheLayer::new(MemoryStore::default()).layer(origin);
        let first = now(cache.ready())
            .and_then(|c| now(c.call(request())))
            .expect("the miss succeeds");
        now(first.into_body().collect()).expect("the body completes");
        group.bench_with_input(BenchmarkId::new("cachet", size), &size, |b, _| {
            b.iter(|| {
                let ready = now(cache.ready()).expect("always ready");
                let response = now(ready.call(black_box(request()))).expect("a hit");
                assert!(
                    response
                        .extensions()
                        .get::<cachet::CacheStatus>()
                        .is_some_and(|s| s.is_hit())
                );
                black_box(response)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, hit);
criterion_main!(benches);
