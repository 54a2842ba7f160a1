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
