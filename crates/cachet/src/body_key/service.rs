use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use tower::Service;

use super::BodyDigest;
use super::body::KeyedBody;
use super::future::ResponseFuture;
use super::layer::{BodyKeyLayer, Config};

/// Reads the bodies of requests of some methods (POST by default) before the inner
/// service sees them, and marks each that was read whole with its
/// [`BodyDigest`](super::BodyDigest).
///
/// Made by [`BodyKeyLayer`]. The inner service gets the request with a [`KeyedBody`]
/// that replays what was read, then the rest. A body error while reading is not this
/// service's error: the request goes on, and its body yields the error in its place.
///
/// For a request whose body it reads, what `poll_ready` reserved in the inner service
/// is let go at `call`, and the response future makes a clone of the inner service
/// ready once the body is in: a slow upload holds nothing, and the inner service's
/// backpressure applies when the request goes on, not while bodies are read.
///
/// The request body must be [`Unpin`], as hyper's, `Full` and boxed bodies are; pin
/// another on the heap first (`request.map(Box::pin)`).
#[derive(Clone, Debug)]
pub struct BodyKey<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> BodyKey<S> {
    /// Reads the bodies of POST requests, up to
    /// [`BodyKeyLayer::DEFAULT_MAX_BYTES`]; see [`BodyKeyLayer`] to configure it.
    pub fn new(inner: S) -> Self {
        Self::from_parts(inner, Arc::default())
    }

    pub(crate) fn from_parts(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// A [`BodyKeyLayer`] with the default configuration.
    pub fn layer() -> BodyKeyLayer {
        BodyKeyLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the service, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for BodyKey<S>
where
    S: Service<Request<KeyedBody<B>>> + Clone,
    B: Body<Data = Bytes> + Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if !self.config.methods.contains(request.method()) {
            return ResponseFuture::called(self.inner.call(request.map(KeyedBody::new)));
        }
        // Only a digest of the body this service reads may key the request.
        request.extensions_mut().remove::<BodyDigest>();
        // What `poll_ready` reserved (a permit, a store handle) is let go now, not held
        // while a client is slow to send: the future makes a clone of its own ready once
        // the body is read, and this handle is made ready again before its next call.
        // (A fresh clone of a `Cache` also starts its per-clone handles again: a cost
        // on requests whose body is read, not on the rest.)
        let fresh = self.inner.clone();
        self.inner = fresh.clone();
        ResponseFuture::read(fresh, request, self.config.max_bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::{HeaderMap, Method, Request};
    use http_body::{Body, Frame, SizeHint};
    use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
    use tower::{Layer, ServiceExt, service_fn};
    use tower_test::mock;

    use super::super::body::tests::{Script, yielded};
    use super::super::{BodyDigest, BodyKeyLayer, KeyedBody};

    /// What the inner service saw: the digest, and the body frame by frame.
    async fn through(
        layer: BodyKeyLayer,
        request: Request<Script>,
    ) -> (Option<BodyDigest>, Vec<String>) {
        let service = layer.layer(service_fn(
            |request: Request<KeyedBody<Script>>| async move {
                let digest = request.extensions().get::<BodyDigest>().copied();
                Ok::<_, Infallible>((digest, yielded(request.into_body()).await))
            },
        ));
        match service.oneshot(request).await {
            Ok(seen) => seen,
            Err(never) => match never {},
        }
    }

    fn post(body: Script) -> Request<Script> {
        Request::post("http://a/search")
            .body(body)
            .expect("test requests are valid")
    }

    #[test]
    fn a_digest_is_the_sha256_of_the_body_in_hex() {
        assert_eq!(
            BodyDigest::of(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(BodyDigest::of(b"abc").as_bytes()[0], 0xba);
    }

    #[tokio::test]
    async fn a_body_within_the_limit_gets_the_digest_of_all_its_frames_and_is_replayed() {
        let (digest, frames) = through(BodyKeyLayer::new(), post(Script::data(&["a", "bc"]))).await;
        assert_eq!(digest, Some(BodyDigest::of(b"abc")));
        // Small frames are gathered into one; the bytes and their order are the body's.
        assert_eq!(frames, ["d:abc"]);

        let at_limit = BodyKeyLayer::new().max_bytes(3);
        let (digest, _) = through(at_limit, post(Script::data(&["a", "bc"]))).await;
        assert_eq!(digest, Some(BodyDigest::of(b"abc")));

        let (digest, frames) = through(BodyKeyLayer::new(), post(Script::data(&[]))).await;
        assert_eq!(digest, Some(BodyDigest::of(b"")));
        assert!(frames.is_empty());
    }

    #[tokio::test]
    async fn empty_data_frames_are_not_kept_however_many_come() {
        let empties = vec![""; 10_000];
        let mut chunks = empties.clone();
        chunks.push("abc");
        let (digest, frames) = through(BodyKeyLayer::new(), post(Script::data(&chunks))).await;
        assert_eq!(digest, Some(BodyDigest::of(b"abc")));
        assert_eq!(frames, ["d:abc"]);
    }

    #[tokio::test]
    async fn a_body_past_the_limit_gets_no_digest_and_is_sent_whole() {
        let small = BodyKeyLayer::new().max_bytes(3);
        let (digest, frames) = through(small, post(Script::data(&["ab", "cd", "ef"]))).await;
        assert_eq!(digest, None);
        // What was read (gathered), then the rest as it comes.
        assert_eq!(frames, ["d:abcd", "d:ef"]);
    }

    #[tokio::test]
    async fn a_body_in_tiny_frames_is_held_in_few() {
        // A frame costs some 100 bytes of its own: 65,536 frames of one byte each, kept as
        // they came, held 6 MiB for a 64 KiB body.
        let bytes = vec!["x"; 64 << 10];
        let future = BodyKeyLayer::new()
            .layer(service_fn(
                |request: Request<KeyedBody<Script>>| async move {
                    Ok::<_, Infallible>(format!("{:?}", request.body()))
                },
            ))
            .oneshot(post(Script::data(&bytes)));
        let described = future.await.expect("answered");
        assert_eq!(
            described, "KeyedBody { read_frames: 16, read_bytes: 65536, tail: \"end\" }",
            "4 KiB a frame"
        );
        let (digest, frames) = through(BodyKeyLayer::new(), post(Script::data(&bytes))).await;
        assert_eq!(digest, Some(BodyDigest::of(&[b'x'; 64 << 10])));
        assert_eq!(frames.concat().replace("d:", "").len(), 64 << 10);
    }

    #[tokio::test]
    async fn a_digest_the_caller_put_on_a_body_it_cannot_vouch_for_is_removed() {
        let mut request = post(Script::data(&["abcd"]));
        request.extensions_mut().insert(BodyDigest::of(b"other"));
        let (digest, _) = through(BodyKeyLayer::new().max_bytes(3), request).await;
        assert_eq!(digest, None);
    }

    #[tokio::test]
    async fn trailers_leave_the_body_without_a_digest_and_are_replayed() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("1"));
        let body = Script::new(vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::trailers(trailers)),
        ]);
        let (digest, frames) = through(BodyKeyLayer::new(), post(body)).await;
        assert_eq!(digest, None);
        assert_eq!(frames, ["d:a", "t:x-sum"]);
    }

    #[tokio::test]
    async fn a_body_error_while_reading_goes_on_to_the_inner_service_in_the_body() {
        let body = Script::new(vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Err("reset"),
            Ok(Frame::data(Bytes::from_static(b"never"))),
        ]);
        let (digest, frames) = through(BodyKeyLayer::new(), post(body)).await;
        assert_eq!(digest, None);
        assert_eq!(frames, ["d:a", "e:reset"]);
    }

    #[tokio::test]
    async fn only_the_configured_methods_are_read() {
        let get = Request::get("http://a/")
            .body(Script::data(&["a"]))
            .expect("valid");
        let (digest, frames) = through(BodyKeyLayer::new(), get).await;
        assert_eq!(digest, None);
        assert_eq!(frames, ["d:a"]);

        let put = || {
            Request::put("http://a/")
                .body(Script::data(&["a"]))
                .expect("valid")
        };
        let (digest, _) = through(BodyKeyLayer::new(), put()).await;
        assert_eq!(digest, None);
        let (digest, _) = through(BodyKeyLayer::new().methods([Method::PUT]), put()).await;
        assert_eq!(digest, Some(BodyDigest::of(b"a")));
    }

    /// A body that never gives a frame, and says it is long.
    #[derive(Debug)]
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(1 << 20)
        }
    }

    #[test]
    fn a_body_known_to_be_too_long_is_not_read_at_all() {
        let service = BodyKeyLayer::new().layer(service_fn(
            |request: Request<KeyedBody<Stalled>>| async move {
                Ok::<_, Infallible>(request.extensions().get::<BodyDigest>().copied())
            },
        ));
        let request = Request::post("http://a/").body(Stalled).expect("valid");
        let mut call = task::spawn(service.oneshot(request));
        assert_eq!(assert_ready!(call.poll()).ok().flatten(), None);
    }

    #[tokio::test]
    async fn readiness_follows_the_inner_service_and_the_future_waits_for_its_own() {
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<KeyedBody<Script>>, (), _>(BodyKeyLayer::new());
        handle.allow(0);
        assert_pending!(service.poll_ready());
        handle.allow(1);
        assert_ready_ok!(service.poll_ready());
        // The future calls a clone it makes ready once the body is read (the mock panics
        // if a clone that was never made ready is called): it waits for room of its own.
        let mut call = task::spawn(service.call(post(Script::data(&["q"]))));
        assert_pending!(call.poll());
        handle.allow(1);
        let answer = async {
            let (request, send) = handle
                .next_request()
                .await
                .expect("the inner service is called");
            assert_eq!(
                request.extensions().get::<BodyDigest>(),
                Some(&BodyDigest::of(b"q"))
            );
            send.send_response(());
        };
        let ((), response) = tokio::join!(answer, call);
        assert!(response.is_ok());
    }
}

/// Bodies of random frames (sizes around the gathering threshold, trailers or an error
/// at the end, random limits), seeded so every run is the same: what the inner service
/// reads is the body, in order, with its digest only when read whole, and a size hint
/// that holds.
#[cfg(test)]
mod random_frames {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::{HeaderMap, Request};
    use http_body::{Body, Frame, SizeHint};
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt, service_fn};

    use super::super::{BodyDigest, BodyKeyLayer, KeyedBody};

    /// Frames and errors in order; an exact size hint while only data remains, and
    /// `is_end_stream` once empty (when `says_end`).
    #[derive(Debug)]
    struct Random {
        items: VecDeque<Result<Frame<Bytes>, &'static str>>,
        says_end: bool,
    }

    impl Body for Random {
        type Data = Bytes;
        type Error = &'static str;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            Poll::Ready(self.items.pop_front())
        }
        fn is_end_stream(&self) -> bool {
            self.says_end && self.items.is_empty()
        }
        fn size_hint(&self) -> SizeHint {
            let mut bytes = 0u64;
            for item in &self.items {
                match item {
                    Ok(frame) => match frame.data_ref() {
                        Some(data) => bytes += data.len() as u64,
                        None => {
                            let mut hint = SizeHint::new();
                            hint.set_lower(bytes);
                            return hint;
                        }
                    },
                    Err(_) => {
                        let mut hint = SizeHint::new();
                        hint.set_lower(bytes);
                        return hint;
                    }
                }
            }
            SizeHint::with_exact(bytes)
        }
    }

    #[derive(Debug, PartialEq)]
    enum Event {
        Data(Vec<u8>),
        Trailers,
        Error(&'static str),
    }

    /// Adjacent data merged, empty data dropped.
    fn push(events: &mut Vec<Event>, event: Event) {
        match (events.last_mut(), event) {
            (_, Event::Data(d)) if d.is_empty() => {}
            (Some(Event::Data(last)), Event::Data(d)) => last.extend_from_slice(&d),
            (_, event) => events.push(event),
        }
    }

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[tokio::test]
    async fn random_frames_are_replayed_in_order_nothing_lost_or_duplicated() {
        for seed in 0..3000u64 {
            let mut rng = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xDEAD_BEEF);
            let n = rng.below(40) as usize;
            let mut items = VecDeque::new();
            let mut expected = Vec::new();
            let mut all_data = Vec::new();
            let mut counter = 0u8;
            let mut ended_by_error = false;
            let mut has_trailers = false;
            for _ in 0..n {
                let len = match rng.below(6) {
                    0 => 0,
                    1 | 2 => rng.below(16) as usize,
                    3 => rng.below(4096) as usize,
                    4 => 4090 + rng.below(12) as usize,
                    _ => rng.below(12000) as usize,
                };
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        counter = counter.wrapping_add(1);
                        counter
                    })
                    .collect();
                all_data.extend_from_slice(&data);
                push(&mut expected, Event::Data(data.clone()));
                items.push_back(Ok(Frame::data(Bytes::from(data))));
            }
            match rng.below(4) {
                0 => {
                    let mut map = HeaderMap::new();
                    map.insert("x-sum", http::HeaderValue::from_static("1"));
                    items.push_back(Ok(Frame::trailers(map)));
                    push(&mut expected, Event::Trailers);
                    has_trailers = true;
                }
                1 => {
                    items.push_back(Err("reset"));
                    push(&mut expected, Event::Error("reset"));
                    ended_by_error = true;
                }
                _ => {}
            }
            let max_bytes = match rng.below(4) {
                0 => rng.below(64) as usize,
                1 => rng.below(20000) as usize,
                2 => all_data.len(),
                _ => 64 << 10,
            };
            let says_end = rng.below(2) == 0;
            let body = Random { items, says_end };
            let hint_before = body.size_hint();
            let request = Request::post("http://a/search").body(body).expect("valid");
            let service = BodyKeyLayer::new().max_bytes(max_bytes).layer(service_fn(
                |request: Request<KeyedBody<Random>>| async move {
                    let digest = request.extensions().get::<BodyDigest>().copied();
                    let mut body = request.into_body();
                    let hint = body.size_hint();
                    let mut seen = Vec::new();
                    while let Some(frame) = body.frame().await {
                        match frame {
                            Ok(frame) => match frame.into_data() {
                                Ok(data) => push(&mut seen, Event::Data(data.to_vec())),
                                Err(_) => push(&mut seen, Event::Trailers),
                            },
                            Err(error) => push(&mut seen, Event::Error(error)),
                        }
                    }
                    Ok::<_, Infallible>((digest, hint, seen))
                },
            ));
            let (digest, hint, seen) = match service.oneshot(request).await {
                Ok(seen) => seen,
                Err(never) => match never {},
            };
            assert_eq!(seen, expected, "seed {seed}");
            let whole = !ended_by_error && !has_trailers && all_data.len() <= max_bytes;
            let want = whole.then(|| BodyDigest::of(&all_data));
            // A body known too long is not read (no digest either).
            let known_long = hint_before.lower() > max_bytes as u64;
            if known_long {
                assert_eq!(digest, None, "seed {seed}");
            } else {
                assert_eq!(digest, want, "seed {seed}");
            }
            // Size hint: lower never above the data to come, upper never below it.
            let total = all_data.len() as u64;
            assert!(hint.lower() <= total, "seed {seed}: {hint:?} vs {total}");
            if let Some(upper) = hint.upper() {
                assert!(upper >= total, "seed {seed}: {hint:?} vs {total}");
                // Exact only where nothing but data was to come.
                assert!(
                    !has_trailers && !ended_by_error,
                    "seed {seed}: exact hint {hint:?} before trailers or an error"
                );
            }
        }
    }
}
