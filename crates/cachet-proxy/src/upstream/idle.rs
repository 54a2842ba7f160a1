//! A bound on how long the upstream may stay silent in the middle of a body.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cachet::BoxError;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tokio::time::{Instant, Sleep};

/// The upstream's body, failed once the proxy has waited `limit` for its next part: a
/// client is not held, nor a connection kept, by an upstream that stalls after its head
/// (the body fails, so the client sees it cut short and the cache stores nothing). The
/// wait counts from when the proxy asks for the next part, so a client that reads slowly
/// uses none of it.
#[pin_project]
#[derive(Debug)]
pub(crate) struct IdleLimit<B> {
    #[pin]
    body: B,
    /// When the wait for the next part ends, once it has begun.
    #[pin]
    silence: Sleep,
    waiting: bool,
    limit: Duration,
}

impl<B> IdleLimit<B> {
    pub(crate) fn new(body: B, limit: Duration) -> Self {
        Self {
            body,
            silence: tokio::time::sleep(limit),
            waiting: false,
            limit,
        }
    }
}

impl<B> Body for IdleLimit<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            *this.waiting = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if !*this.waiting {
            *this.waiting = true;
            this.silence.as_mut().reset(Instant::now() + *this.limit);
        }
        match this.silence.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                "the upstream sent no part of the body for {:?}",
                this.limit
            )
            .into()))),
            Poll::Pending => Poll::Pending,
        }
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
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::*;

    /// A body whose parts come from a channel, as slowly as they are sent.
    struct Parts(mpsc::Receiver<Bytes>);

    impl Body for Parts {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0
                .poll_recv(cx)
                .map(|part| part.map(|part| Ok(Frame::data(part))))
        }
    }

    const LIMIT: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_once_the_limit_has_passed_waiting() {
        let (send, parts) = mpsc::channel(1);
        let mut body = Box::pin(IdleLimit::new(Parts(parts), LIMIT));
        send.send(Bytes::from_static(b"head")).await.expect("open");
        assert!(body.frame().await.expect("a part").is_ok());
        let started = Instant::now();
        let error = body.frame().await.expect("an end").expect_err("it stalled");
        assert!(
            error.to_string().contains("no part of the body for 10s"),
            "{error}"
        );
        assert_eq!(started.elapsed(), LIMIT);
        drop(send);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_slowly_uses_none_of_the_wait() {
        let (send, parts) = mpsc::channel(1);
        let mut body = Box::pin(IdleLimit::new(Parts(parts), LIMIT));
        send.send(Bytes::from_static(b"one")).await.expect("open");
        assert!(body.frame().await.expect("a part").is_ok());
        // The client reads nothing for three limits; then the next part takes half of one.
        tokio::time::advance(3 * LIMIT).await;
        let late = tokio::spawn(async move {
            tokio::time::sleep(LIMIT / 2).await;
            send.send(Bytes::from_static(b"two")).await.expect("open");
        });
        let frame = body.frame().await.expect("a part").expect("not failed");
        assert_eq!(frame.into_data().expect("data"), "two");
        late.await.expect("sent");
    }
}
