use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

/// The body of a request that went through [`BodyKey`](super::BodyKey): the frames that
/// were read ahead, replayed exactly, then the rest of the original body.
///
/// Data, trailers and an error come in the order the original body gave them. The size
/// hint is exact only where what remains is known and plain data: after an error or
/// trailers read ahead it is open, so that a client such as hyper's sends the body
/// chunked, where trailers can follow and an error can cut it off, and never with a
/// `Content-Length` that would make what was read look whole.
#[pin_project]
pub struct KeyedBody<B: Body> {
    /// The frames read ahead, not yet handed on.
    read: VecDeque<Frame<Bytes>>,
    /// How many data bytes `read` holds.
    remaining: u64,
    #[pin]
    tail: Tail<B>,
}

/// What comes after the frames read ahead.
#[pin_project(project = TailProj)]
enum Tail<B: Body> {
    /// The rest of the original body.
    Body {
        #[pin]
        body: B,
    },
    /// The error the original body gave while it was read ahead; `None` once yielded.
    Error { error: Option<B::Error> },
    /// The original body ended while it was read ahead.
    End,
}

impl<B: Body> KeyedBody<B> {
    /// A body passed through untouched, nothing read ahead: for requests that reach a
    /// service typed for `KeyedBody` without going through [`BodyKeyLayer`](crate::BodyKeyLayer).
    pub fn new(body: B) -> Self {
        Self::replay(VecDeque::new(), 0, ReadTail::Body(body))
    }

    /// The frames read ahead, holding `bytes` data bytes, then `tail`.
    pub(crate) fn replay(read: VecDeque<Frame<Bytes>>, bytes: u64, tail: ReadTail<B>) -> Self {
        let tail = match tail {
            ReadTail::Body(body) => Tail::Body { body },
            ReadTail::Error(error) => Tail::Error { error: Some(error) },
            ReadTail::End => Tail::End,
        };
        Self {
            read,
            remaining: bytes,
            tail,
        }
    }
}

/// How reading ahead stopped.
pub(crate) enum ReadTail<B: Body> {
    /// Before the end: the rest of the body is still to come.
    Body(B),
    /// With an error.
    Error(B::Error),
    /// At the end of the body.
    End,
}

impl<B> Body for KeyedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if let Some(frame) = this.read.pop_front() {
            if let Some(data) = frame.data_ref() {
                *this.remaining -= data.len() as u64;
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        match this.tail.project() {
            TailProj::Body { body } => body.poll_frame(cx),
            TailProj::Error { error } => Poll::Ready(error.take().map(Err)),
            TailProj::End => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty()
            && match &self.tail {
                Tail::Body { body } => body.is_end_stream(),
                Tail::Error { error } => error.is_none(),
                Tail::End => true,
            }
    }

    fn size_hint(&self) -> SizeHint {
        // Trailers read ahead cannot follow a `Content-Length`, whatever the rest says.
        let rest = match &self.tail {
            _ if self.read.iter().any(Frame::is_trailers) => SizeHint::new(),
            Tail::Body { body } => body.size_hint(),
            Tail::End => SizeHint::with_exact(0),
            Tail::Error { .. } => SizeHint::new(),
        };
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(self.remaining));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(self.remaining));
        }
        hint
    }
}

impl<B: Body> fmt::Debug for KeyedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = match self.tail {
            Tail::Body { .. } => "body",
            Tail::Error { .. } => "error",
            Tail::End => "end",
        };
        f.debug_struct("KeyedBody")
            .field("read_frames", &self.read.len())
            .field("read_bytes", &self.remaining)
            .field("tail", &tail)
            .finish()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::HeaderMap;
    use http_body::{Body, Frame, SizeHint};
    use http_body_util::BodyExt;

    use super::{KeyedBody, ReadTail};

    /// A body that gives these frames and errors, in order, with this size hint.
    #[derive(Debug)]
    pub(crate) struct Script {
        pub(crate) items: VecDeque<Result<Frame<Bytes>, &'static str>>,
        pub(crate) hint: SizeHint,
    }

    impl Script {
        pub(crate) fn new(items: Vec<Result<Frame<Bytes>, &'static str>>) -> Self {
            Self {
                items: items.into(),
                hint: SizeHint::new(),
            }
        }

        pub(crate) fn data(chunks: &[&'static str]) -> Self {
            Self::new(
                chunks
                    .iter()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
                    .collect(),
            )
        }
    }

    impl Body for Script {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            Poll::Ready(self.items.pop_front())
        }

        fn size_hint(&self) -> SizeHint {
            self.hint
        }
    }

    /// What a body yields, frame by frame: `d:` data, `t:` trailers (their names), `e:`
    /// errors.
    pub(crate) async fn yielded<B>(mut body: B) -> Vec<String>
    where
        B: Body<Data = Bytes, Error = &'static str> + Unpin,
    {
        let mut seen = Vec::new();
        while let Some(frame) = body.frame().await {
            seen.push(match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => format!("d:{}", String::from_utf8_lossy(&data)),
                    Err(frame) => {
                        let trailers = frame.into_trailers().unwrap_or_default();
                        let names: Vec<&str> = trailers.keys().map(|k| k.as_str()).collect();
                        format!("t:{}", names.join(","))
                    }
                },
                Err(error) => format!("e:{error}"),
            });
        }
        seen
    }

    fn trailers() -> Frame<Bytes> {
        let mut map = HeaderMap::new();
        map.insert("x-sum", http::HeaderValue::from_static("1"));
        Frame::trailers(map)
    }

    fn read(chunks: &[&'static str]) -> (VecDeque<Frame<Bytes>>, u64) {
        let frames: VecDeque<_> = chunks
            .iter()
            .map(|c| Frame::data(Bytes::from_static(c.as_bytes())))
            .collect();
        let bytes = chunks.iter().map(|c| c.len() as u64).sum();
        (frames, bytes)
    }

    #[tokio::test]
    async fn what_was_read_comes_first_then_the_rest_in_order() {
        let (frames, bytes) = read(&["a", "", "bc"]);
        let rest = Script::new(vec![
            Ok(Frame::data(Bytes::from_static(b"d"))),
            Ok(trailers()),
        ]);
        let body = KeyedBody::replay(frames, bytes, ReadTail::Body(rest));
        assert_eq!(yielded(body).await, ["d:a", "d:", "d:bc", "d:d", "t:x-sum"]);
    }

    #[tokio::test]
    async fn trailers_read_ahead_are_replayed_and_then_the_body_ends() {
        let (mut frames, bytes) = read(&["a"]);
        frames.push_back(trailers());
        let body = KeyedBody::<Script>::replay(frames, bytes, ReadTail::End);
        assert!(!body.is_end_stream());
        // Open, so that the body goes chunked: trailers cannot follow a `Content-Length`.
        assert_eq!(
            (body.size_hint().lower(), body.size_hint().upper()),
            (1, None)
        );
        assert_eq!(yielded(body).await, ["d:a", "t:x-sum"]);
    }

    #[tokio::test]
    async fn trailers_read_ahead_leave_the_hint_open_even_when_the_rest_says_it_is_empty() {
        // Reading ahead stops at `is_end_stream` too: a body that says it has ended right
        // after its trailers (and so that nothing remains, `exact(0)`) keeps its tail.
        let (mut frames, bytes) = read(&["ab"]);
        frames.push_back(trailers());
        let mut rest = Script::new(vec![]);
        rest.hint = SizeHint::with_exact(0);
        let body = KeyedBody::replay(frames, bytes, ReadTail::Body(rest));
        // The doc: after trailers read ahead the hint is open, never a `Content-Length`
        // (with one, hyper drops the trailers).
        assert_eq!(
            (body.size_hint().lower(), body.size_hint().upper()),
            (2, None)
        );
    }

    #[tokio::test]
    async fn an_error_met_while_reading_comes_after_what_was_read_and_only_once() {
        let (frames, bytes) = read(&["a", "b"]);
        let mut body = KeyedBody::<Script>::replay(frames, bytes, ReadTail::Error("reset"));
        // Open: a `Content-Length: 2` would make the two bytes a whole body.
        assert_eq!(
            (body.size_hint().lower(), body.size_hint().upper()),
            (2, None)
        );
        assert!(!body.is_end_stream());
        let seen = yielded(&mut body).await;
        assert_eq!(seen, ["d:a", "d:b", "e:reset"]);
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn size_hints_add_what_was_read_to_the_rest() {
        let (frames, bytes) = read(&["abc"]);
        let mut rest = Script::data(&["de"]);
        rest.hint = SizeHint::with_exact(2);
        let mut body = KeyedBody::replay(frames, bytes, ReadTail::Body(rest));
        assert_eq!(body.size_hint().exact(), Some(5));
        let first = body.frame().await;
        assert!(matches!(first, Some(Ok(_))));
        assert_eq!(body.size_hint().exact(), Some(2));

        let (frames, bytes) = read(&["abc"]);
        let mut rest = Script::data(&["de"]);
        rest.hint = SizeHint::new();
        rest.hint.set_lower(1);
        let body = KeyedBody::replay(frames, bytes, ReadTail::Body(rest));
        assert_eq!(
            (body.size_hint().lower(), body.size_hint().upper()),
            (4, None)
        );

        let (frames, bytes) = read(&["abc"]);
        let body = KeyedBody::<Script>::replay(frames, bytes, ReadTail::End);
        assert_eq!(body.size_hint().exact(), Some(3));
    }

    #[tokio::test]
    async fn a_body_passed_through_is_the_original() {
        let mut rest = Script::new(vec![Ok(Frame::data(Bytes::from_static(b"x"))), Err("cut")]);
        rest.hint = SizeHint::with_exact(9);
        let body = KeyedBody::new(rest);
        assert_eq!(body.size_hint().exact(), Some(9));
        assert_eq!(yielded(body).await, ["d:x", "e:cut"]);
        let empty = KeyedBody::new(http_body_util::Empty::<Bytes>::new());
        assert!(empty.is_end_stream());
    }
}
