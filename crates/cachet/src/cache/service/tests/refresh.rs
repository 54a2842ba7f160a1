//! Background refreshes (stale-while-revalidate), which read a body no client reads.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

use crate::clock::ManualClock;
use crate::{CacheLayer, CacheStatus, MemoryStore};

/// A refresh answered with a body that never ends (512 bytes a millisecond) stops reading
/// it once it is past `max_body_bytes`: it could not be stored, nobody else reads it, and
/// the refresh holds the key's claim on refreshes while it reads.
#[tokio::test]
async fn a_refresh_stops_reading_a_body_it_cannot_store() {
    let clock = ManualClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let pulled = Arc::new(AtomicUsize::new(0));
    let (counted, read) = (calls.clone(), pulled.clone());
    let origin = service_fn(move |_: Request<String>| {
        let first = counted.fetch_add(1, SeqCst) == 0;
        let read = read.clone();
        async move {
            let body: BoxBody<Bytes, Infallible> = if first {
                Full::new(Bytes::from_static(b"small")).boxed()
            } else {
                let tick = tokio::time::interval(Duration::from_millis(1));
                Endless { read, tick }.boxed()
            };
            let mut response = Response::new(body);
            response.headers_mut().insert(
                "cache-control",
                http::HeaderValue::from_static("max-age=1, stale-while-revalidate=600"),
            );
            Ok::<_, Infallible>(response)
        }
    });
    let cache = CacheLayer::new(MemoryStore::default())
        .clock(clock.clone())
        .max_body_bytes(4096)
        .layer(origin);
    let get = || {
        Request::get("http://example.com/feed")
            .body(String::new())
            .expect("valid")
    };
    let first = cache.clone().oneshot(get()).await.expect("answered");
    first.into_body().collect().await.expect("whole");
    clock.advance(Duration::from_secs(5));
    let stale = cache.clone().oneshot(get()).await.expect("answered");
    assert_eq!(
        stale.extensions().get::<CacheStatus>(),
        Some(&CacheStatus::StaleWhileRevalidate)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(SeqCst), 2, "refreshed once");
    let read = pulled.load(SeqCst);
    assert!(
        read <= 2 * 4096,
        "the refresh read {read} bytes of a body it could not store"
    );
}

/// A body that never ends: 512 bytes a millisecond, counting what was read.
struct Endless {
    read: Arc<AtomicUsize>,
    tick: tokio::time::Interval,
}

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        ready!(self.tick.poll_tick(cx));
        self.read.fetch_add(512, SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; 512])))))
    }
}
