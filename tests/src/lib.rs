//! Fixtures for cachet's end-to-end tests: a scripted origin server on loopback, and a
//! hyper client to talk to it.

pub mod redis;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use cachet::clock::Clock;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What one test logs through `tracing`, every level.
#[derive(Clone, Debug, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Captures what this thread logs until the guard is dropped (with `#[tokio::test]`'s
    /// one thread, what the tasks it spawns log too).
    pub fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        // Other tests on other threads log through no subscriber; one of theirs that
        // registered a call site while this one was being set may have cached it as
        // never logged (tracing decides that once per call site): ask again.
        tracing::callsite::rebuild_interest_cache();
        (logs, guard)
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().expect("no panics while logging").clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("no panics while logging")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An error in a test body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the origin answers to one request.
#[derive(Clone, Debug)]
pub struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
    fail_after_body: bool,
    /// Sent as this many frames, without `Content-Length` (chunked), when set.
    frames: Option<usize>,
    /// How long to wait before each of those frames after the first.
    frame_gap: Duration,
    delay: Duration,
}

impl Reply {
    /// A 200 with this body.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: body.into(),
            fail_after_body: false,
            frames: None,
            frame_gap: Duration::ZERO,
            delay: Duration::ZERO,
        }
    }

    /// Sets the status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).expect("test statuses are valid");
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Waits this long before answering (a slow origin).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sends the body in `frames` frames of unequal sizes, without `Content-Length`
    /// (HTTP/1.1 chunked).
    pub fn in_frames(mut self, frames: usize) -> Self {
        self.frames = Some(frames.max(1));
        self
    }

    /// Waits `gap` before each frame of a body sent [`in_frames`](Self::in_frames) but the
    /// first (a body that streams slowly).
    pub fn frames_apart(mut self, gap: Duration) -> Self {
        self.frame_gap = gap;
        self
    }

    /// Sends the body, then aborts the stream before it is complete (the declared
    /// `Content-Length` is one byte longer than what is sent).
    pub fn fail_mid_body(mut self) -> Self {
        self.fail_after_body = true;
        self
    }
}

/// The head of a request the origin received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Its method.
    pub method: Method,
    /// Its path and query.
    pub path: String,
    /// Its headers.
    pub headers: HeaderMap,
}

type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A real HTTP/1.1 origin on 127.0.0.1 that answers by a script and counts requests.
#[derive(Clone, Debug)]
pub struct Origin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicUsize>,
    stop: Arc<watch::Sender<bool>>,
}

impl Origin {
    /// Starts an origin that answers every request with `reply`.
    pub async fn start(reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::launch(None, reply).await
    }

    /// Starts an origin whose `Date` header comes from `clock` (unless the script sets
    /// one), so that moving a test's clock moves the origin's time too.
    pub async fn start_dated(
        clock: impl Clock,
        reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::launch(Some(Arc::new(clock)), reply).await
    }

    async fn launch(
        clock: Option<Arc<dyn Clock>>,
        reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port is free");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let origin = Self {
            addr,
            seen: Arc::default(),
            count: Arc::default(),
            stop: Arc::new(watch::channel(false).0),
        };
        let script: Arc<Script> = Arc::new(reply);
        let state = origin.clone();
        let mut stopped = origin.stop.subscribe();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => break,
                    },
                    _ = stopped.wait_for(|stop| *stop) => break,
                };
                let script = script.clone();
                let state = state.clone();
                let clock = clock.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (response, delay) = state.answer(&*script, clock.as_deref(), request);
                    async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(response)
                    }
                });
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    // Dropping the connection closes it.
                    tokio::select! {
                        _ = connection => {}
                        _ = stopped.wait_for(|stop| *stop) => {}
                    }
                });
            }
        });
        origin
    }

    /// Stops listening and closes every open connection: from now on the origin cannot
    /// be reached.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    fn answer(
        &self,
        script: &Script,
        clock: Option<&dyn Clock>,
        request: Request<Incoming>,
    ) -> (Response<BoxBody<Bytes, BoxError>>, Duration) {
        let seen = Seen {
            method: request.method().clone(),
            path: request
                .uri()
                .path_and_query()
                .map_or("/".to_owned(), |p| p.to_string()),
            headers: request.headers().clone(),
        };
        let reply = script(&seen);
        self.seen
            .lock()
            .expect("no test panics while holding the lock")
            .push(seen);
        self.count.fetch_add(1, Ordering::SeqCst);

        let body = if reply.fail_after_body {
            AbortingBody {
                data: Some(reply.body.clone()),
                pause: Box::pin(tokio::time::sleep(Duration::from_millis(20))),
            }
            .boxed()
        } else if let Some(frames) = reply.frames {
            FramedBody::new(&reply.body, frames, reply.frame_gap).boxed()
        } else {
            Full::new(reply.body.clone())
                .map_err(|e| match e {})
                .boxed()
        };
        let mut response = Response::new(body);
        *response.status_mut() = reply.status;
        if reply.fail_after_body {
            response
                .headers_mut()
                .insert("content-length", (reply.body.len() + 1).into());
        }
        for (name, value) in reply.headers {
            response
                .headers_mut()
                .append(name, value.parse().expect("test header values are valid"));
        }
        if let Some(clock) = clock
            && !response.headers().contains_key("date")
        {
            let date = httpdate::fmt_http_date(clock.now());
            response.headers_mut().insert(
                "date",
                date.parse().expect("an HTTP date is a header value"),
            );
        }
        (response, reply.delay)
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The origin's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests reached the origin.
    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// The requests that reached the origin, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("no test panics while holding the lock")
            .clone()
    }
}

/// A body that sends its data, pauses (so the head and data go out), then fails
/// instead of ending.
struct AbortingBody {
    data: Option<Bytes>,
    pause: Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for AbortingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        ready!(self.pause.as_mut().poll(cx));
        Poll::Ready(Some(Err("origin aborted the body".into())))
    }
}

/// A body sent frame by frame, its length unknown to the receiver.
struct FramedBody {
    frames: std::collections::VecDeque<Bytes>,
    gap: Duration,
    /// The wait before the next frame, once one has been sent.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl FramedBody {
    /// `body` cut into `count` frames, each about twice the size of the one before, `gap`
    /// apart.
    fn new(body: &Bytes, count: usize, gap: Duration) -> Self {
        let mut frames = std::collections::VecDeque::new();
        let mut rest = body.clone();
        for index in 0..count {
            let remaining = count - index;
            let size = if remaining == 1 {
                rest.len()
            } else {
                // Past the width of `usize`, as with any count too large, one byte.
                u32::try_from(remaining)
                    .ok()
                    .and_then(|shift| rest.len().checked_shr(shift))
                    .unwrap_or(0)
                    .max(1)
                    .min(rest.len())
            };
            frames.push_back(rest.split_to(size));
        }
        Self {
            frames,
            gap,
            pause: None,
        }
    }
}

impl hyper::body::Body for FramedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(pause) = self.pause.as_mut() {
            ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        let frame = self.frames.pop_front();
        if !self.gap.is_zero() && !self.frames.is_empty() {
            self.pause = Some(Box::pin(tokio::time::sleep(self.gap)));
        }
        Poll::Ready(frame.map(|data| Ok(Frame::data(data))))
    }
}

/// A plain hyper client for requests without a body.
pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A GET request without a body.
pub fn get(url: &str) -> Request<Empty<Bytes>> {
    Request::get(url)
        .body(Empty::new())
        .expect("test URLs are valid")
}

/// Reads a whole body.
/// What a service in front of the origin answered, its body read in full.
#[derive(Debug)]
pub struct Fetched {
    /// The response's status code.
    pub code: u16,
    /// What the cache did.
    pub status: cachet::CacheStatus,
    /// The response's headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Sends `request` through a clone of `service`, which must answer and put a
/// [`CacheStatus`](cachet::CacheStatus) in the response, and reads the body in full.
pub async fn fetch<S, ReqB, ResB>(service: &S, request: Request<ReqB>) -> Fetched
where
    S: tower::Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    S::Error: std::fmt::Debug,
    ResB: hyper::body::Body,
    ResB::Error: std::fmt::Debug,
{
    use tower::ServiceExt;
    let response = service
        .clone()
        .oneshot(request)
        .await
        .expect("the request succeeds");
    Fetched {
        code: response.status().as_u16(),
        status: *response
            .extensions()
            .get::<cachet::CacheStatus>()
            .expect("every response has a status"),
        headers: response.headers().clone(),
        body: read(response.into_body())
            .await
            .expect("the body completes"),
    }
}

/// Reads a body in full.
pub async fn read<B>(body: B) -> Result<Bytes, B::Error>
where
    B: hyper::body::Body,
{
    Ok(body.collect().await?.to_bytes())
}
