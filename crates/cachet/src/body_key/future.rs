use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::Request;
use http::request::Parts;
use http_body::{Body, Frame};
use pin_project::pin_project;
use ring::digest;
use tower::Service;

use super::BodyDigest;
use super::body::{KeyedBody, ReadTail};

/// The response future of [`BodyKey`](super::BodyKey): reads the request body ahead,
/// then calls the inner service.
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<S, B>
where
    S: Service<Request<KeyedBody<B>>>,
    B: Body,
{
    #[pin]
    state: State<S, B>,
}

#[pin_project(project = StateProj)]
#[expect(
    clippy::large_enum_variant,
    reason = "one state lives in each response future; boxing the request head would allocate per request"
)]
enum State<S, B>
where
    S: Service<Request<KeyedBody<B>>>,
    B: Body,
{
    /// Reading the body ahead; taken when it stops.
    Read { reading: Option<Reading<S, B>> },
    /// Waiting for the inner service to be ready for the request; taken when called.
    Ready {
        service: S,
        request: Option<Request<KeyedBody<B>>>,
    },
    /// The inner service's response.
    Call {
        #[pin]
        future: S::Future,
    },
}

/// Data frames smaller than this are gathered into one as they are read: each frame kept
/// costs about a hundred bytes of its own, so a peer sending a byte per frame would make
/// the read-ahead hold a hundred times its byte limit.
const GATHER_BELOW: usize = 4096;

/// A request whose body is being read ahead, and the service to call with it, made ready
/// once the body is read: a body that is slow to come holds nothing the service reserves.
struct Reading<S, B> {
    service: S,
    parts: Parts,
    body: B,
    read: VecDeque<Frame<Bytes>>,
    /// Small data frames' bytes not yet in `read`, which come after it.
    gathered: BytesMut,
    bytes: u64,
    max_bytes: u64,
    /// The digest so far; `None` once trailers are seen, which no digest covers.
    digest: Option<digest::Context>,
}

/// Why reading ahead stopped.
enum Stop<E> {
    /// The body ended; `at_end` when its last poll said so, rather than its
    /// `is_end_stream`.
    Whole { at_end: bool },
    /// The body is longer than the limit.
    Over,
    /// The body failed.
    Error(E),
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<KeyedBody<B>>>,
    B: Body<Data = Bytes> + Unpin,
{
    /// The inner service was called at once: nothing to read.
    pub(crate) fn called(future: S::Future) -> Self {
        Self {
            state: State::Call { future },
        }
    }

    /// Reads `request`'s body, up to `max_bytes`, then makes `service` ready and calls it.
    pub(crate) fn read(service: S, request: Request<B>, max_bytes: usize) -> Self {
        let max_bytes = u64::try_from(max_bytes).unwrap_or(u64::MAX);
        if request.body().size_hint().lower() > max_bytes {
            // Too long to be read whole: no reason to hold any of it.
            return Self {
                state: State::Ready {
                    service,
                    request: Some(request.map(KeyedBody::new)),
                },
            };
        }
        let (parts, body) = request.into_parts();
        let reading = Reading {
            service,
            parts,
            body,
            read: VecDeque::new(),
            gathered: BytesMut::new(),
            bytes: 0,
            max_bytes,
            digest: Some(digest::Context::new(&digest::SHA256)),
        };
        Self {
            state: State::Read {
                reading: Some(reading),
            },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<KeyedBody<B>>>,
    B: Body<Data = Bytes> + Unpin,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Read { reading } => {
                    let Some(read) = reading.as_mut() else {
                        unreachable!("the read state is replaced as it is left")
                    };
                    let stop = ready!(read.poll_read(cx));
                    if let Some(read) = reading.take() {
                        let (service, request) = read.finish(stop);
                        this.state.set(State::Ready {
                            service,
                            request: Some(request),
                        });
                    }
                }
                StateProj::Ready { service, request } => {
                    ready!(service.poll_ready(cx))?;
                    let Some(request) = request.take() else {
                        unreachable!("the ready state is replaced as it is left")
                    };
                    let future = service.call(request);
                    this.state.set(State::Call { future });
                }
                StateProj::Call { future } => return future.poll(cx),
            }
        }
    }
}

impl<S, B> Reading<S, B>
where
    S: Service<Request<KeyedBody<B>>>,
    B: Body<Data = Bytes> + Unpin,
{
    /// Reads frames as they come until the body ends, fails or passes the limit.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Stop<B::Error>> {
        loop {
            if self.body.is_end_stream() {
                return Poll::Ready(Stop::Whole { at_end: false });
            }
            let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => return Poll::Ready(Stop::Whole { at_end: true }),
                Some(Err(error)) => return Poll::Ready(Stop::Error(error)),
                Some(Ok(frame)) => frame,
            };
            let over = match frame.data_ref() {
                // An empty data frame carries nothing to replay; keeping it would let a
                // peer grow the read-ahead without ever reaching the byte limit.
                Some(data) if data.is_empty() => continue,
                Some(data) => {
                    self.bytes = self.bytes.saturating_add(data.len() as u64);
                    if let Some(digest) = &mut self.digest {
                        digest.update(data);
                    }
                    self.bytes > self.max_bytes
                }
                None => {
                    self.digest = None;
                    false
                }
            };
            match frame.into_data() {
                Ok(data) if data.len() < GATHER_BELOW => {
                    self.gathered.extend_from_slice(&data);
                    if self.gathered.len() >= GATHER_BELOW {
                        self.keep_gathered();
                    }
                }
                Ok(data) => {
                    self.keep_gathered();
                    self.read.push_back(Frame::data(data));
                }
                Err(frame) => {
                    self.keep_gathered();
                    self.read.push_back(frame);
                }
            }
            if over {
                return Poll::Ready(Stop::Over);
            }
        }
    }

    /// Keeps the bytes gathered so far as one data frame, in order.
    fn keep_gathered(&mut self) {
        if !self.gathered.is_empty() {
            self.read
                .push_back(Frame::data(self.gathered.split().freeze()));
        }
    }

    /// The service and the request for it, its body replaying what was read, and its
    /// digest if the body was read whole.
    fn finish(mut self, stop: Stop<B::Error>) -> (S, Request<KeyedBody<B>>) {
        self.keep_gathered();
        let Self {
            service,
            mut parts,
            body,
            read,
            bytes,
            digest,
            ..
        } = self;
        let (tail, digest) = match stop {
            Stop::Whole { at_end } => {
                let tail = if at_end {
                    ReadTail::End
                } else {
                    ReadTail::Body(body)
                };
                (tail, digest.map(|d| BodyDigest::from_ring(&d.finish())))
            }
            Stop::Over => (ReadTail::Body(body), None),
            Stop::Error(error) => (ReadTail::Error(error), None),
        };
        if let Some(digest) = digest {
            parts.extensions.insert(digest);
        }
        let request = Request::from_parts(parts, KeyedBody::replay(read, bytes, tail));
        (service, request)
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<KeyedBody<B>>>,
    B: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Read { .. } => "read",
            State::Ready { .. } => "ready",
            State::Call { .. } => "call",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
