//! Background revalidation for `stale-while-revalidate` (RFC 5861 §3): the caller gets
//! the stale response at once while one request per key refreshes the entry.

use std::collections::HashSet;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::Body;

use super::ForwardReason;
use super::future::{Plan, RequestFacts, Stale, finish};
use super::layer::Config;
use crate::store::Store;
use crate::{BoxError, CacheKey};

/// The keys being refreshed in the background, shared by a layer's caches.
#[derive(Clone, Debug, Default)]
pub(crate) struct Refreshing(Arc<Mutex<HashSet<CacheKey>>>);

/// Holds a key in [`Refreshing`] until the refresh ends, however it ends.
pub(crate) struct RefreshGuard {
    refreshing: Refreshing,
    key: CacheKey,
    /// How long the refresh may run: what is left of the stale-while-revalidate window,
    /// past which requests revalidate in the foreground anyway. An origin that never
    /// answers would otherwise hold the key's claim, and no later stale entry of the key
    /// would be refreshed again.
    within: Duration,
}

/// The answer to a claim on a key's refresh.
pub(crate) enum Claim {
    /// This caller runs the refresh.
    Started(RefreshGuard),
    /// Another caller's refresh is running.
    Running,
    /// There is no Tokio runtime to run a refresh on.
    Unavailable,
}

impl Refreshing {
    /// Claims `key`'s refresh, to run for at most `within`.
    pub(crate) fn claim(&self, key: &CacheKey, within: Duration) -> Claim {
        if tokio::runtime::Handle::try_current().is_err() {
            return Claim::Unavailable;
        }
        let mut keys = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.insert(key.clone()) {
            Claim::Started(RefreshGuard {
                refreshing: self.clone(),
                key: key.clone(),
                within,
            })
        } else {
            Claim::Running
        }
    }
}

impl Drop for RefreshGuard {
    fn drop(&mut self) {
        let mut keys = self
            .refreshing
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        keys.remove(&self.key);
    }
}

/// Runs a forwarded request to its end on a spawned task: a 304 refreshes the stored
/// entry, a full response is recorded and stored as its body is drained. A refresh still
/// running when the guard's time is up is dropped (nothing of it is stored).
pub(crate) fn spawn<F, St, B, E>(
    future: F,
    facts: RequestFacts<St>,
    stale: Stale,
    config: Arc<Config>,
    guard: RefreshGuard,
) where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    St: Store,
    B: Body<Data = Bytes> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    let key = facts.key.clone();
    let within = guard.within;
    let refresh = async move {
        let result = future.await;
        let Ok(response) = finish(
            result,
            &mut Plan::Cache(facts),
            None,
            Some(stale),
            ForwardReason::Stale,
            &config,
        ) else {
            return tracing::debug!(%key, "background revalidation failed; the stale entry stays");
        };
        let mut body = pin!(response.into_body());
        // Read while it is recorded: a body past `max_body_bytes`, or one that may not be
        // stored, would otherwise be read for no one, for as long as the origin sends it,
        // holding the key's claim on refreshes. A recorded body stays recorded to its end.
        while body.is_recording()
            && let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await
        {
            if frame.is_err() {
                return tracing::debug!(%key, "background revalidation body failed; not stored");
            }
        }
        tracing::trace!(%key, "revalidated in the background");
    };
    let task = async move {
        let key = guard.key.clone();
        if tokio::time::timeout(within, refresh).await.is_err() {
            tracing::debug!(%key, "background revalidation outlasted the stale-while-revalidate window; dropped");
        }
        drop(guard);
    };
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}
