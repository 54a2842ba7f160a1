use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};

/// The body of a response from a [`Cache`](super::Cache): either a stored body, or the
/// inner service's body streaming through (and, for a storable response, being recorded).
#[pin_project(PinnedDrop)]
pub struct CacheBody<B> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
enum Kind<B> {
    Stored {
        data: Option<Bytes>,
    },
    Origin {
        #[pin]
        body: B,
        /// Boxed: most responses have none, and a hit's response is moved several times
        /// on its way out, so the body stays small.
        recorder: Option<Box<Recorder>>,
        /// Whether the body has ended intact. The recorder's store write then waits for
        /// the next poll or for the body's drop, so the last frame reaches the caller first.
        complete: bool,
    },
}

impl<B> CacheBody<B> {
    pub(crate) fn stored(data: Bytes) -> Self {
        let data = (!data.is_empty()).then_some(data);
        Self {
            kind: Kind::Stored { data },
        }
    }
}

impl<B: Body<Data = Bytes>> CacheBody<B> {
    pub(crate) fn origin(body: B, recorder: Option<Recorder>) -> Self {
        // A body that is already complete may never be polled (a HEAD, a 204).
        let complete = body.is_end_stream();
        Self {
            kind: Kind::Origin {
                body,
                recorder: recorder.map(Box::new),
                complete,
            },
        }
    }
}

impl<B> Body for CacheBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Stored { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Origin {
                mut body,
                recorder,
                complete,
            } => {
                if *complete && let Some(recorder) = recorder.take() {
                    recorder.finish();
                }
                let frame = ready!(body.as_mut().poll_frame(cx));
                match &frame {
                    Some(Ok(frame)) => {
                        if let (Some(data), Some(r)) = (frame.data_ref(), recorder.as_mut())
                            && !r.record(data)
                        {
                            *recorder = None;
                        }
                        *complete = body.is_end_stream();
                    }
                    // An aborted body is never stored.
                    Some(Err(_)) => *recorder = None,
                    None => {
                        if let Some(recorder) = recorder.take() {
                            recorder.finish();
                        }
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stored { data } => data.is_none(),
            Kind::Origin { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stored { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Origin { body, .. } => body.size_hint(),
        }
    }
}

#[pinned_drop]
impl<B> PinnedDrop for CacheBody<B> {
    fn drop(self: Pin<&mut Self>) {
        if let KindProj::Origin {
            recorder, complete, ..
        } = self.project().kind.project()
            && *complete
            && let Some(recorder) = recorder.take()
        {
            recorder.finish();
        }
    }
}

impl<B> fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Stored { data } => f
                .debug_struct("CacheBody::Stored")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Origin { recorder, .. } => f
                .debug_struct("CacheBody::Origin")
                .field("recording", &recorder.is_some())
                .finish(),
        }
    }
}

/// Keeps a streaming body's chunks (shared, not copied), up to a cap, and hands them to
/// `commit` once the stream ends intact.
/// The most pieces a recorded body may come in: a body of the default cap's size in 128
/// bytes each, far more than an origin's frames, few enough to keep the bookkeeping small.
const MAX_CHUNKS: usize = 1 << 16;

pub(crate) struct Recorder {
    /// When the response arrived, and until when it is fresh, for the metadata.
    stored_at: SystemTime,
    fresh_until: SystemTime,
    chunks: Vec<Bytes>,
    len: usize,
    max: usize,
    expected: Option<u64>,
    commit: Box<dyn FnOnce(Vec<Bytes>) + Send>,
}

impl Recorder {
    /// A recorder for a body of `expected` length (if known), or `None` when that is
    /// already over the cap.
    pub(crate) fn new(
        (stored_at, fresh_until): (SystemTime, SystemTime),
        max: usize,
        expected: Option<u64>,
        commit: impl FnOnce(Vec<Bytes>) + Send + 'static,
    ) -> Option<Self> {
        if expected.is_some_and(|len| len > max as u64) {
            tracing::debug!(
                content_length = expected,
                max,
                "body larger than the cap; not storing"
            );
            return None;
        }
        Some(Self {
            stored_at,
            fresh_until,
            chunks: Vec::new(),
            len: 0,
            max,
            expected,
            commit: Box::new(commit),
        })
    }

    pub(crate) fn stored_at(&self) -> SystemTime {
        self.stored_at
    }

    pub(crate) fn fresh_until(&self) -> SystemTime {
        self.fresh_until
    }

    /// Records a chunk; `false` once the body has passed the cap, or come in more pieces
    /// than [`MAX_CHUNKS`] (each kept piece costs its own room, whatever its size).
    fn record(&mut self, data: &Bytes) -> bool {
        if data.is_empty() {
            return true;
        }
        if self.chunks.len() == MAX_CHUNKS {
            tracing::debug!(pieces = MAX_CHUNKS, "body in too many pieces; not storing");
            return false;
        }
        self.len += data.len();
        if self.len > self.max {
            tracing::debug!(max = self.max, "body grew past the cap; not storing");
            return false;
        }
        self.chunks.push(data.clone());
        true
    }

    fn finish(self) {
        if self.expected.is_some_and(|len| len != self.len as u64) {
            tracing::debug!(
                expected = self.expected,
                got = self.len,
                "body length differs from Content-Length; not storing"
            );
            return;
        }
        (self.commit)(self.chunks);
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("len", &self.len)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}
