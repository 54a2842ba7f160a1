//! Per-request control: a request's [`CacheMode`], and [`bypass`] for a block of work.

use std::future::Future;

/// How the cache treats one request, modelled on the Fetch standard's cache modes. Put it
/// in the request's extensions; a request without one is [`Default`](Self::Default).
///
/// ```
/// use cachet::CacheMode;
///
/// let mut request = http::Request::get("https://api.example/rates").body(String::new())?;
/// request.extensions_mut().insert(CacheMode::NoCache);
/// # Ok::<_, http::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheMode {
    /// HTTP caching as usual.
    #[default]
    Default,
    /// Neither look in the cache nor store the response (`fwd=bypass`).
    NoStore,
    /// Ask the origin without looking in the cache, and store the response.
    Reload,
    /// Use a stored response only after the origin confirms it (a conditional request
    /// when it has a validator); store the response.
    NoCache,
    /// Use any stored response, however stale, without asking the origin; on a miss, ask
    /// it and store the response.
    ForceCache,
    /// Use any stored response, however stale; on a miss answer `504 Gateway Timeout`
    /// without asking the origin.
    OnlyIfCached,
}

tokio::task_local! {
    static BYPASS: ();
}

/// Runs `work` with every cache it calls through bypassed, as if each request were
/// [`CacheMode::NoStore`]. It applies to this task only, not to other tasks or threads,
/// and needs no change to the service stack.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let fresh = cachet::bypass(async {
///     // requests made here go straight to the origin
///     42
/// })
/// .await;
/// # assert_eq!(fresh, 42);
/// # }
/// ```
pub async fn bypass<F: Future>(work: F) -> F::Output {
    BYPASS.scope((), work).await
}

/// Whether the current task is inside [`bypass`].
pub(crate) fn bypassed() -> bool {
    BYPASS.try_with(|()| ()).is_ok()
}
