use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
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

impl<B> CacheBody<B> {
    /// Whether the body is still being recorded for the store: a body read for nobody
    /// else (a background refresh's) is worth reading on only while it is.
    pub(crate) fn is_recording(&self) -> bool {
        matches!(
            &self.kind,
            Kind::Origin {
                recorder: Some(_),
                ..
            }
        )
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
                        // Trailers are the last frame, and a server that has written
                        // them may drop the body without asking for the end.
                        *complete = body.is_end_stream() || frame.is_trailers();
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

/// Past the first [`FEW`] chunks, frames smaller than this are copied together rather than
/// kept one by one, so that what a recording keeps grows with the body's bytes, not with
/// how finely it was cut. A body in few frames (most are) is kept without a copy.
const SMALL: usize = 4096;
const FEW: usize = 64;

/// Keeps a streaming body's chunks (shared, not copied, but for small ones), up to a cap,
/// and hands them to `commit` once the stream ends intact.
pub(crate) struct Recorder {
    /// When the response arrived, and until when it is fresh, for the metadata.
    stored_at: SystemTime,
    fresh_until: SystemTime,
    chunks: Vec<Bytes>,
    /// Small frames copied together, kept as a chunk once they are no longer small.
    small: BytesMut,
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
            small: BytesMut::new(),
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

    /// Records a chunk; `false` once the body has passed the cap.
    fn record(&mut self, data: &Bytes) -> bool {
        if data.is_empty() {
            // Nothing to keep, and no room to take among the first few chunks.
            return true;
        }
        self.len += data.len();
        if self.len > self.max {
            tracing::debug!(max = self.max, "body grew past the cap; not storing");
            return false;
        }
        if data.len() < SMALL && self.chunks.len() >= FEW {
            self.small.extend_from_slice(data);
            if self.small.len() >= SMALL {
                self.chunks.push(self.small.split().freeze());
            }
        } else {
            self.keep_small();
            self.chunks.push(data.clone());
        }
        true
    }

    /// Keeps the small frames copied so far as a chunk, in their place in the body.
    fn keep_small(&mut self) {
        if !self.small.is_empty() {
            self.chunks.push(self.small.split().freeze());
        }
    }

    fn finish(mut self) {
        if self.expected.is_some_and(|len| len != self.len as u64) {
            tracing::debug!(
                expected = self.expected,
                got = self.len,
                "body length differs from Content-Length; not storing"
            );
            return;
        }
        self.keep_small();
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::UNIX_EPOCH;

    use super::*;

    /// What a recorder hands to its store when fed `frames`: the chunks, or `None`.
    fn recorded(frames: impl IntoIterator<Item = Bytes>) -> Option<Vec<Bytes>> {
        let kept = Arc::new(Mutex::new(None));
        let commit = kept.clone();
        let mut recorder = Recorder::new((UNIX_EPOCH, UNIX_EPOCH), 1 << 20, None, move |chunks| {
            *commit.lock().expect("not poisoned") = Some(chunks);
        })
        .expect("no length to refuse");
        for frame in frames {
            assert!(recorder.record(&frame), "under the cap");
        }
        recorder.finish();
        kept.lock().expect("not poisoned").take()
    }

    #[test]
    fn small_frames_are_kept_together_and_large_ones_as_they_came_in_order() {
        let ones = recorded(std::iter::repeat_n(Bytes::from_static(b"x"), 70_000)).expect("stored");
        assert!(
            ones.len() <= FEW + 70_000 / SMALL + 1,
            "{} chunks",
            ones.len()
        );
        assert_eq!(ones.iter().map(Bytes::len).sum::<usize>(), 70_000);

        let large = Bytes::from(vec![b'L'; SMALL]);
        let mixed = [
            Bytes::from_static(b"a"),
            Bytes::new(),
            large.clone(),
            Bytes::from_static(b"b"),
        ];
        let chunks = recorded(mixed).expect("stored");
        let body: Vec<u8> = chunks
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .collect();
        assert_eq!(body, [&b"a"[..], &large, b"b"].concat());
        assert!(
            chunks.iter().any(|chunk| chunk.as_ptr() == large.as_ptr()),
            "a large frame is shared, not copied"
        );
        // Past the first few chunks, small frames in between are copied together, in place.
        let frames = (0..FEW).map(|_| Bytes::from_static(b"-")).chain([
            Bytes::from_static(b"a"),
            large.clone(),
            Bytes::from_static(b"b"),
        ]);
        let chunks = recorded(frames).expect("stored");
        let body: Vec<u8> = chunks
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .collect();
        assert_eq!(body, [&[b'-'; FEW][..], b"a", &large, b"b"].concat());
    }
}
