//! Put and get through `Verify` beside raw HMAC-SHA256 over the same bytes, in one run.
//! Run with `cargo bench -p cachet --bench verify`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use cachet::store::{StoreRequest, StoreResponse};
use cachet::verify::{Keyring, Verify};
use cachet::{CacheKey, MemoryStore};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ring::hmac;
use tower::{Service, ServiceExt};

fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("memory store operations finish on their first poll"),
    }
}

fn call<S: Service<StoreRequest, Response = StoreResponse>>(
    store: &mut S,
    request: StoreRequest,
) -> StoreResponse
where
    S::Error: std::fmt::Debug,
{
    let ready = now(store.ready()).expect("memory stores are always ready");
    now(ready.call(request)).expect("memory stores never fail")
}

fn verify(c: &mut Criterion) {
    let key = CacheKey::from_text("GET http://origin.example/assets/app.js?v=42");
    let mac = hmac::Key::new(hmac::HMAC_SHA256, b"bench key");
    let mut group = c.benchmark_group("verify");
    for size in [1024, 100 * 1024] {
        let value = Bytes::from(vec![b'v'; size]);
        let put = || StoreRequest::Put {
            key: key.clone(),
            value: value.clone().into(),
            ttl: Duration::from_secs(60),
        };
        let get = || StoreRequest::Get(key.clone());
        let mut plain = MemoryStore::default();
        let memory = MemoryStore::default();
        let keyring = Keyring::new("bench secret").expect("not empty");
        let mut signed = Verify::new(memory.clone(), keyring.clone());
        // Bytes that crossed from another process arrive as a new value on every read
        // (as from Redis), so each read verifies; a memory store hands back the same
        // value, verified once.
        let fresh_bytes = memory.map_response(|response| match response {
            StoreResponse::Found(value) => StoreResponse::Found(value.bytes().clone().into()),
            other => other,
        });
        let mut signed_remote = Verify::new(fresh_bytes, keyring);
        call(&mut plain, put());
        call(&mut signed, put());

        group.bench_with_input(BenchmarkId::new("hmac_sha256", size), &size, |b, _| {
            b.iter(|| black_box(hmac::sign(&mac, black_box(&value))))
        });
        group.bench_with_input(BenchmarkId::new("put_unsigned", size), &size, |b, _| {
            b.iter(|| call(&mut plain, black_box(put())))
        });
        group.bench_with_input(BenchmarkId::new("put_signed", size), &size, |b, _| {
            b.iter(|| call(&mut signed, black_box(put())))
        });
        group.bench_with_input(BenchmarkId::new("get_unsigned", size), &size, |b, _| {
            b.iter(|| call(&mut plain, black_box(get())))
        });
        group.bench_with_input(
            BenchmarkId::new("get_signed_remote", size),
            &size,
            |b, _| b.iter(|| call(&mut signed_remote, black_box(get()))),
        );
        group.bench_with_input(
            BenchmarkId::new("get_signed_memory", size),
            &size,
            |b, _| b.iter(|| call(&mut signed, black_box(get()))),
        );
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
