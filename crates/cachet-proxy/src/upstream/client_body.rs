//! The client's request body on its way upstream, which says whether it failed.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

/// A request body as the client sends it, passed upstream as it is, noting whether
/// reading it from the client failed (a malformed chunk, a client gone in the middle).
/// The hyper client's error then says only that the request failed, as it does when
/// the upstream fails, and with an HTTP/2 upstream not even why: [`BodyFailed`] tells the
/// forward that the fault was the client's.
#[pin_project]
#[derive(Debug)]
pub(crate) struct ClientBody<B> {
    #[pin]
    body: B,
    failed: BodyFailed,
}

impl<B> ClientBody<B> {
    /// The body, and what says whether it failed.
    pub(crate) fn new(body: B) -> (Self, BodyFailed) {
        let failed = BodyFailed::default();
        let body = Self {
            body,
            failed: failed.clone(),
        };
        (body, failed)
    }
}

/// Whether a [`ClientBody`] failed; shared by the body, which the hyper client polls, and
/// the future waiting for the upstream's answer.
#[derive(Clone, Debug, Default)]
pub(crate) struct BodyFailed(Arc<AtomicBool>);

impl BodyFailed {
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl<B: Body> Body for ClientBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.body.poll_frame(cx));
        if let Some(Err(_)) = frame {
            // Before the error is handed on: the client's error reaches the forward after it.
            this.failed.0.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::*;

    /// A body of one data frame, then an error, as a malformed chunk gives.
    struct Failing {
        sent: bool,
    }

    impl Body for Failing {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            if self.sent {
                return Poll::Ready(Some(Err("bad chunk")));
            }
            self.sent = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"a")))))
        }
    }

    #[tokio::test]
    async fn a_body_that_fails_says_so_and_one_that_ends_does_not() {
        let (body, failed) = ClientBody::new(Failing { sent: false });
        assert!(!failed.get());
        assert_eq!(body.collect().await.err(), Some("bad chunk"));
        assert!(failed.get());

        let (body, failed) = ClientBody::new(Full::new(Bytes::from("whole")));
        assert_eq!(
            body.collect().await.expect("infallible").to_bytes(),
            "whole"
        );
        assert!(!failed.get());
    }
}
