//! A lookup's read from the store: sent from `call` on a handle made ready, or on the
//! request's own handle once it is ready, failed, or skipped.

use super::*;

/// A read from the store of a request's facts.
#[pin_project(project = StoreCallProj)]
pub(crate) enum StoreCall<F> {
    /// To send on the request's own handle, once that is ready.
    Ready(Option<StoreRequest>),
    /// Sent.
    Called(#[pin] F),
    /// Not sent: the store failed to get ready for it.
    Failed(Option<BoxError>),
    /// Not sent: the key is being invalidated, so nothing stored for it is read.
    Skipped,
}

impl<F> StoreCall<F> {
    pub(crate) fn get(key: CacheKey) -> Self {
        Self::Ready(Some(StoreRequest::Get(key)))
    }

    /// A read of `key` for a request for `uri_key` (its own, or a variant's): skipped
    /// while a marker of `uri_key`'s shard is on its way to the store, which may still
    /// hold what the marker hides (RFC 9111 §4.4).
    pub(crate) fn unless_marked(uri_key: &CacheKey, key: CacheKey, config: &Config) -> Self {
        if config.invalidations.marking(uri_key) {
            Self::Skipped
        } else {
            Self::get(key)
        }
    }
}

impl<F: Future<Output = Result<StoreResponse, BoxError>>> StoreCall<F> {
    pub(super) fn poll_with<St>(
        mut self: Pin<&mut Self>,
        store: &mut StoreHandle<St>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StoreResponse, BoxError>>
    where
        St: Service<StoreRequest, Response = StoreResponse, Error = BoxError, Future = F> + Clone,
    {
        loop {
            match self.as_mut().project() {
                StoreCallProj::Ready(request) => {
                    let store = store.own();
                    ready!(store.poll_ready(cx))?;
                    let request = request.take().expect("a store read is sent once");
                    self.set(Self::Called(store.call(request)));
                }
                StoreCallProj::Called(future) => return future.poll(cx),
                StoreCallProj::Failed(error) => {
                    let error = error.take().expect("a store failure is reported once");
                    return Poll::Ready(Err(error));
                }
                StoreCallProj::Skipped => return Poll::Ready(Ok(StoreResponse::NotFound)),
            }
        }
    }
}
