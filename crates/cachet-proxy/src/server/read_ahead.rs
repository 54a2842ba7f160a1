//! A bound, from the request's start, on the answer to a request whose body is read
//! ahead for its key.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Method, Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use pin_project::pin_project;
use tokio::time::Timeout;
use tower::Service;

use super::ProxyBody;
use crate::upstream::no_head_within;

/// Answers `504` to a request of `methods` that has no response head within `timeout`
/// of its start. A body read ahead for its key comes before the upstream is asked, and
/// so before the upstream's own bound starts: without this, a client slow to send it
/// would hold the request open past `--upstream-timeout`. Other requests pass as they
/// are, with no timer of their own.
#[derive(Clone)]
pub(super) struct ReadAheadBound<S> {
    inner: S,
    methods: Arc<[Method]>,
    timeout: Duration,
}

impl<S> ReadAheadBound<S> {
    pub(super) fn new(inner: S, methods: Arc<[Method]>, timeout: Duration) -> Self {
        Self {
            inner,
            methods,
            timeout,
        }
    }
}

type Answer = Result<Response<ProxyBody>, cachet::Error>;

impl<S> Service<Request<Incoming>> for ReadAheadBound<S>
where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = cachet::Error>,
{
    type Response = Response<ProxyBody>;
    type Error = cachet::Error;
    type Future = AnswerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), cachet::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let bounded = self.methods.contains(request.method());
        let answer = self.inner.call(request);
        if bounded {
            let timeout = self.timeout;
            AnswerFuture::Bounded {
                answer: tokio::time::timeout(timeout, answer),
                timeout,
            }
        } else {
            AnswerFuture::Unbounded { answer }
        }
    }
}

/// The response future of [`ReadAheadBound`].
#[pin_project(project = AnswerProj)]
#[must_use = "futures do nothing unless polled"]
pub(super) enum AnswerFuture<F> {
    Unbounded {
        #[pin]
        answer: F,
    },
    Bounded {
        #[pin]
        answer: Timeout<F>,
        timeout: Duration,
    },
}

impl<F: Future<Output = Answer>> Future for AnswerFuture<F> {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        match self.project() {
            AnswerProj::Unbounded { answer } => answer.poll(cx),
            AnswerProj::Bounded { answer, timeout } => match ready!(answer.poll(cx)) {
                Ok(answer) => Poll::Ready(answer),
                Err(_elapsed) => {
                    let response = no_head_within(*timeout, "the request's start");
                    Poll::Ready(Ok(response.map(Either::Right)))
                }
            },
        }
    }
}
