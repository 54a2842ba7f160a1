//! Stores: where a cache keeps its encoded entries.
//!
//! A store is a [`tower::Service`] over [`StoreRequest`] that answers with a
//! [`StoreResponse`], in bytes. Because it is a service, tower middleware composes around
//! it: `tower::timeout::Timeout` to bound a slow store, a concurrency limit, metrics, or
//! cachet's own signing layer.
//!
//! A store's own operations must be bounded in time: [`MemoryStore`] answers at once,
//! and a store that goes over the network should carry its own timeouts (or be wrapped
//! in a `Timeout`). Whatever a store fails with, the cache fails open: it asks the origin
//! and skips the write.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use cachet::CacheKey;
//! use cachet::store::{MemoryStore, StoreRequest, StoreResponse};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cachet::BoxError> {
//! let store = MemoryStore::new(1 << 20);
//! let key = CacheKey::from_text("GET https://example.com/");
//! store.clone().oneshot(StoreRequest::Put {
//!     key: key.clone(),
//!     value: Bytes::from_static(b"entry").into(),
//!     ttl: Duration::from_secs(60),
//! }).await?;
//! let found = store.oneshot(StoreRequest::Get(key)).await?;
//! assert_eq!(found, StoreResponse::Found(Bytes::from_static(b"entry").into()));
//! # Ok(())
//! # }
//! ```
//!
//! Stores that can list their entries and clear themselves also answer
//! [`StoreRequest::Scan`] and [`StoreRequest::Clear`], which the
//! [management handle](crate::manage) builds on; one that cannot answers with an
//! [`Unsupported`] error.

mod memory;
mod scan;
mod tiered;
mod value;

use std::time::Duration;

use std::future::Future;
use std::task::{Context, Poll};

use tower::{Service, ServiceExt};

pub use memory::MemoryStore;
pub use scan::{Cursor, InvalidCursor, Listed, Page, Scan, Unsupported};
pub use tiered::{ResponseFuture as TieredFuture, Tiered};
pub(crate) use value::Derived;
pub use value::Value;

use crate::{BoxError, CacheKey};

/// What a cache asks of its store.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StoreRequest {
    /// Read the value stored under a key.
    Get(CacheKey),
    /// Store a value under a key, to be forgotten after `ttl`.
    Put {
        /// Where to store it.
        key: CacheKey,
        /// The encoded entry.
        value: Value,
        /// How long the store should keep it.
        ttl: Duration,
    },
    /// Forget the value under a key.
    Delete(CacheKey),
    /// List one page of the stored entries, answered with [`StoreResponse::Page`]. A store
    /// that cannot list answers with an [`Unsupported`] error, never an empty page, and
    /// one given a cursor it cannot read with an [`InvalidCursor`] error.
    Scan(Scan),
    /// Forget every entry this store holds (for a shared store, every entry under its
    /// namespace, and nothing else), answered with [`StoreResponse::Done`]. A store that
    /// cannot answers with an [`Unsupported`] error.
    Clear,
}

/// A store's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreResponse {
    /// The value stored under the key of a [`StoreRequest::Get`].
    Found(Value),
    /// Nothing is stored under the key of a [`StoreRequest::Get`].
    NotFound,
    /// A [`StoreRequest::Put`], [`StoreRequest::Delete`] or [`StoreRequest::Clear`] is
    /// done.
    Done,
    /// A page of entries, the answer to a [`StoreRequest::Scan`].
    Page(Page),
}

/// A [`Service`] that can serve as a cache's store: cheap to clone, sendable, with a
/// future that can be spawned (writes run in the background).
///
/// It is implemented for every service of the right shape; there is nothing to implement
/// by hand.
pub trait Store:
    Service<StoreRequest, Response = StoreResponse, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<T> Store for T where
    T: Service<StoreRequest, Response = StoreResponse, Error = BoxError, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// Runs a store request to its end without anyone waiting for it: at once when the store
/// answers at once (as memory does), else on a spawned Tokio task (skipped, with a
/// warning, outside a Tokio runtime). A failure goes to the handler `on_failure` makes,
/// given the store.
///
/// A store that is ready is called directly, borrowed; only its future is boxed, for a
/// task to finish it if it does not complete at once, and the store is cloned only for a
/// task that waits for it to be ready. The failure handler is made only when it may be
/// needed (the request failed, or runs on): a write the store takes at once clones
/// nothing for it.
pub(crate) fn detach<St, F>(
    store: &mut St,
    request: StoreRequest,
    on_failure: impl FnOnce(&St) -> F,
) where
    St: Service<StoreRequest, Response = StoreResponse, Error = BoxError, Future: Send + 'static>
        + Clone
        + Send
        + 'static,
    F: FnOnce(BoxError) + Send + 'static,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match store.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(error)) => return on_failure(store)(error),
        // Not ready: a task waits for it with a waker that works.
        Poll::Pending => {
            let failed = on_failure(store);
            // The handle that was polled (and holds its place for a slot) goes with the task.
            let polled = std::mem::replace(store, store.clone());
            return spawn(polled.oneshot(request), failed);
        }
    }
    let mut call = Box::pin(store.call(request));
    match call.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(_)) => {}
        Poll::Ready(Err(error)) => on_failure(store)(error),
        Poll::Pending => spawn(call, on_failure(store)),
    }
}

tokio::task_local! {
    static LATEST: ();
}

/// Runs `read` with every [`Tiered`] it goes through asking its far tier instead of
/// answering from its near one: a value the cache reads to write back must be what the
/// far tier holds now, or a near copy that another process's write has made old would be
/// written over that write, for every process. It applies to calls made while `read` is
/// polled on this task, so a store that hands requests to another task (a `Buffer`)
/// answers as usual.
pub(crate) async fn latest<F: Future>(read: F) -> F::Output {
    LATEST.scope((), read).await
}

/// Whether the current task is inside [`latest`].
fn wants_latest() -> bool {
    LATEST.try_with(|()| ()).is_ok()
}

/// Runs store requests that follow one another and that no one waits for, as [`detach`]
/// runs one: as far as they go at once (to the end, for a store that answers at once),
/// the rest on a spawned Tokio task.
pub(crate) fn detach_all(requests: impl Future<Output = ()> + Send + 'static) {
    let mut requests = Box::pin(requests);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    if requests.as_mut().poll(&mut cx).is_pending() {
        in_background(requests);
    }
}

/// Finishes a store request on a spawned Tokio task (see [`detach`]).
fn spawn<F>(call: F, failed: impl FnOnce(BoxError) + Send + 'static)
where
    F: Future<Output = Result<StoreResponse, BoxError>> + Send + 'static,
{
    in_background(async move {
        if let Err(error) = call.await {
            failed(error);
        }
    });
}

/// Runs `task` on a spawned Tokio task; outside a Tokio runtime, skips it with a warning.
fn in_background(task: impl Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(task)),
        Err(_) => tracing::warn!("a store write needs a Tokio runtime to finish; skipped"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tower_test::mock;

    use super::*;

    fn delete() -> StoreRequest {
        StoreRequest::Delete(CacheKey::from_text("GET http://a.example/"))
    }

    #[tokio::test]
    async fn a_detached_write_waits_for_a_store_that_is_not_ready() {
        let (mut store, mut handle) = mock::pair::<StoreRequest, StoreResponse>();
        handle.allow(0);
        let failures = Arc::new(AtomicUsize::new(0));
        let counted = failures.clone();
        detach(&mut store, delete(), |_| {
            move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        handle.allow(1);
        let (request, send) = handle.next_request().await.expect("the write goes on");
        assert!(matches!(request, StoreRequest::Delete(_)));
        send.send_response(StoreResponse::Done);
        tokio::task::yield_now().await;
        assert_eq!(failures.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_detached_write_that_fails_later_is_reported() {
        let (mut store, mut handle) = mock::pair::<StoreRequest, StoreResponse>();
        handle.allow(1);
        let (report, reported) = tokio::sync::oneshot::channel();
        detach(&mut store, delete(), |_| {
            move |error| {
                let _ = report.send(error.to_string());
            }
        });
        let (_, send) = handle.next_request().await.expect("the write is sent");
        send.send_error("store down");
        let error = reported.await.expect("the failure is reported");
        assert_eq!(error, "store down");
    }

    #[test]
    fn a_store_that_fails_at_once_is_reported_at_once() {
        let (mut store, mut handle) = mock::pair::<StoreRequest, StoreResponse>();
        handle.send_error("refused");
        let failures = Arc::new(AtomicUsize::new(0));
        let counted = failures.clone();
        detach(&mut store, delete(), |_| {
            move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        assert_eq!(failures.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_detached_write_waits_in_the_place_of_the_handle_it_polled() {
        // A store that reserves a slot in `poll_ready` through a fair semaphore, as
        // `Buffer` and `ConcurrencyLimit` do: a handle that was polled keeps its place in
        // the queue until it is dropped.
        let sent = Arc::new(AtomicUsize::new(0));
        let counted = sent.clone();
        let store = tower::limit::ConcurrencyLimit::new(
            tower::service_fn(move |_: StoreRequest| {
                counted.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Ok::<_, BoxError>(StoreResponse::Done))
            }),
            1,
        );
        // Another request holds the only slot.
        let mut busy = store.clone();
        std::future::poll_fn(|cx| busy.poll_ready(cx))
            .await
            .expect("the slot");
        // Kept after the write, as `Plan::Invalidate` keeps its handle until the response
        // future is dropped.
        let mut kept = store.clone();
        detach(&mut kept, delete(), |_| |_| {});
        drop(busy);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            sent.load(Ordering::SeqCst),
            1,
            "the write takes the slot its handle waited for, not a clone behind the kept handle"
        );
        drop(kept);
    }
}
