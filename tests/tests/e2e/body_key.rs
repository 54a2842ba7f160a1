//! Requests cached by their body (`BodyKeyLayer`, POST in `methods`) against a real
//! origin that records what it received: bodies cut short or with trailers reach it as
//! they were sent, POST responses need explicit freshness, and a slow body holds nothing
//! back from other requests.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cachet::{BodyKeyLayer, CacheLayer, CacheMode, CacheStatus, Expiry, KeyedBody, MemoryStore};
use cachet_tests::{Origin, Reply, fetch};
use http::{HeaderMap, Method, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that gives these frames and errors, in order, with no length known.
struct Scripted(VecDeque<Result<Frame<Bytes>, BoxError>>);

impl Body for Scripted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front())
    }
}

/// An origin that reads each request body whole and records, per request, the method and
/// `ok:<body> trailers=<names> cl=<content-length>` or `error`.
pub(crate) async fn recording_origin() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port is free");
    let addr = listener.local_addr().expect("bound");
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let method = request.method().clone();
                    let length = request
                        .headers()
                        .get("content-length")
                        .map_or("-".to_owned(), |v| v.to_str().unwrap_or("?").to_owned());
                    let line = match request.into_body().collect().await {
                        Ok(collected) => {
                            let trailers = collected.trailers().cloned().unwrap_or_default();
                            let names: Vec<&str> = trailers.keys().map(|k| k.as_str()).collect();
                            format!(
                                "{method} ok:{} trailers={} cl={length}",
                                String::from_utf8_lossy(&collected.to_bytes()),
                                names.join(",")
                            )
                        }
                        Err(_) => format!("{method} error"),
                    };
                    seen.lock().expect("not poisoned").push(line);
                    let mut response = Response::new(Full::new(Bytes::from_static(b"done")));
                    response
                        .headers_mut()
                        .insert("cache-control", "max-age=60".parse().expect("valid"));
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, log)
}

/// Sends `method` with `body` through BodyKeyLayer + a cache of GET, HEAD and POST + a
/// hyper client; returns what the origin recorded for it.
async fn through_stack(
    addr: SocketAddr,
    log: &Arc<Mutex<Vec<String>>>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Scripted,
) -> String {
    let stack = ServiceBuilder::new()
        .layer(BodyKeyLayer::new())
        .layer(CacheLayer::new(MemoryStore::default()).methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
        ]))
        .service(Client::builder(TokioExecutor::new()).build_http::<KeyedBody<Scripted>>());
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body).expect("valid request");
    let before = log.lock().expect("not poisoned").len();
    // The call may fail (a body error aborts it); what matters is what the origin got.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        if let Ok(response) = stack.oneshot(request).await {
            let _ = response.into_body().collect().await;
        }
    })
    .await;
    for _ in 0..100 {
        if let Some(line) = log.lock().expect("not poisoned").get(before) {
            return line.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    "nothing".to_owned()
}

fn data(text: &'static str) -> Result<Frame<Bytes>, BoxError> {
    Ok(Frame::data(Bytes::from_static(text.as_bytes())))
}

#[tokio::test]
async fn a_post_body_that_fails_midway_does_not_reach_the_origin_as_a_complete_shorter_request() {
    let (addr, log) = recording_origin().await;
    // Eight bytes, then the client goes away: no length was announced (chunked).
    let failing = || {
        Scripted(VecDeque::from([
            data("amount=1"),
            Err("client went away".into()),
        ]))
    };

    // Control: a PUT, which BodyKeyLayer does not read, never reaches the origin as a
    // complete request.
    let put = through_stack(addr, &log, Method::PUT, "/pay", &[], failing()).await;
    assert!(!put.starts_with("PUT ok"), "{put}");

    // The same body on a POST, read ahead by BodyKeyLayer, must not either
    // (docs/filtering.md: "the origin gets what was read, then the error").
    let post = through_stack(addr, &log, Method::POST, "/pay", &[], failing()).await;
    assert!(
        !post.starts_with("POST ok"),
        "the origin took a truncated body as a complete request: {post}"
    );
}

#[tokio::test]
async fn a_post_body_with_trailers_reaches_the_origin_with_its_trailers() {
    let (addr, log) = recording_origin().await;
    let with_trailers = || {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", "42".parse().expect("valid"));
        Scripted(VecDeque::from([data("abc"), Ok(Frame::trailers(trailers))]))
    };
    let headers = [("trailer", "x-sum")];

    // Control: a PUT, not read ahead, arrives chunked with its trailer.
    let put = through_stack(addr, &log, Method::PUT, "/t", &headers, with_trailers()).await;
    assert_eq!(put, "PUT ok:abc trailers=x-sum cl=-");

    // docs/filtering.md: a body with trailers "is still sent whole".
    let post = through_stack(addr, &log, Method::POST, "/t", &headers, with_trailers()).await;
    assert_eq!(post, "POST ok:abc trailers=x-sum cl=-");
}

type PostStack = cachet::BodyKey<
    cachet::Cache<
        Client<hyper_util::client::legacy::connect::HttpConnector, KeyedBody<Full<Bytes>>>,
        MemoryStore,
    >,
>;

fn post_stack() -> PostStack {
    ServiceBuilder::new()
        .layer(BodyKeyLayer::new())
        .layer(CacheLayer::new(MemoryStore::default()).methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
        ]))
        .service(Client::builder(TokioExecutor::new()).build_http())
}

fn post(url: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(url)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("valid request")
}

#[tokio::test]
async fn a_post_response_without_explicit_freshness_is_not_reused_rfc_9110_9_3_3() {
    // No Cache-Control, no Expires: only a Last-Modified a day old, from which a GET's
    // response would get a heuristic lifetime (RFC 9111 §4.2.2). A POST's may not:
    // "Responses to POST requests are only cacheable when they include explicit freshness
    // information" (RFC 9110 §9.3.3).
    let day_ago =
        httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(86_400));
    let origin =
        Origin::start(move |_| Reply::ok("created").header("last-modified", day_ago.clone())).await;
    let stack = post_stack();
    let url = origin.url("/orders");
    let first = fetch(&stack, post(&url, "item=1")).await;
    assert!(
        matches!(first.status, CacheStatus::Forwarded { stored: false, .. }),
        "{:?}",
        first.status
    );
    let second = fetch(&stack, post(&url, "item=1")).await;
    assert_ne!(
        second.status,
        CacheStatus::Hit,
        "a POST answered from a heuristically fresh entry"
    );
    assert_eq!(origin.requests(), 2);
}

/// A proxy in front of `upstream`, from a configuration file with `settings` (lines of
/// the top level) and `[filters] methods = methods`; it serves until the sender is dropped.
async fn proxy(
    upstream: &str,
    settings: &str,
    methods: &str,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    write!(
        file,
        "upstream = \"{upstream}\"\nlisten = \"127.0.0.1:0\"\n{settings}\n[filters]\nmethods = {methods}\n"
    )
    .expect("written");
    let path = file.path().to_str().expect("a UTF-8 path").to_owned();
    let config =
        cachet_proxy::Config::from_args_and_env(["cachet-proxy", "--config", &path], |_: &str| {
            None
        })
        .expect("valid file");
    let proxy = cachet_proxy::Proxy::bind(config).await.expect("binds");
    let addr = proxy.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(proxy.serve(async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

#[tokio::test]
async fn a_slow_post_body_is_bounded_by_the_proxy_upstream_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An origin that reads the whole request body before it answers.
    let (origin, _log) = recording_origin().await;

    let answer = |methods: &'static str| {
        let upstream = format!("http://{origin}");
        async move {
            let (addr, _stop) = proxy(&upstream, "upstream_timeout = 0.5\n", methods).await;
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("accepts");
            // Ten bytes announced, five sent, then the client goes quiet (keeping the
            // connection open).
            stream
                .write_all(
                    b"POST /slow HTTP/1.1\r\nHost: p\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello",
                )
                .await
                .expect("sent");
            let mut buf = vec![0; 4096];
            let read = tokio::time::timeout(Duration::from_secs(4), stream.read(&mut buf)).await;
            match read {
                Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                Ok(Err(error)) => format!("error: {error}"),
                Err(_) => "no answer within 4s".to_owned(),
            }
        }
    };

    // Control: without POST cached, the slow body counts against the upstream timeout.
    assert_eq!(
        answer("[\"GET\", \"HEAD\"]").await,
        "HTTP/1.1 504 Gateway Timeout"
    );
    // With POST cached (read ahead for its key), it should still be bounded.
    assert_eq!(
        answer("[\"GET\", \"HEAD\", \"POST\"]").await,
        "HTTP/1.1 504 Gateway Timeout"
    );
}

#[tokio::test]
async fn through_the_proxy_a_chunked_post_cut_short_never_reaches_the_origin_complete() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (origin, log) = recording_origin().await;

    let send = |methods: &'static str| {
        let upstream = format!("http://{origin}");
        let log = log.clone();
        async move {
            let (addr, _stop) = proxy(&upstream, "", methods).await;
            let before = log.lock().expect("not poisoned").len();
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("accepts");
            // One chunk, then the client stops sending: no last chunk ever comes.
            stream
                .write_all(
                    b"POST /pay HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n8\r\namount=1\r\n",
                )
                .await
                .expect("sent");
            tokio::time::sleep(Duration::from_millis(100)).await;
            stream.shutdown().await.expect("write half closed");
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
            // What the origin made of it, once it has read the request to its end or
            // its failure; a second with nothing is nothing.
            let mut seen = None;
            for _ in 0..50 {
                seen = log.lock().expect("not poisoned").get(before).cloned();
                if seen.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen.unwrap_or_else(|| "nothing".to_owned())
        }
    };

    // Control: without POST cached, the origin never gets a complete request.
    let control = send("[\"GET\", \"HEAD\"]").await;
    assert!(
        matches!(control.as_str(), "nothing" | "POST error"),
        "{control}"
    );
    // With POST cached, the body is read ahead for its key.
    let cached = send("[\"GET\", \"HEAD\", \"POST\"]").await;
    // The proxy may give up on the request before it reaches the origin, or the origin
    // may see the body fail; it never sees a whole request.
    assert!(
        matches!(cached.as_str(), "nothing" | "POST error"),
        "the origin took a cut-short body as a complete request: {cached}"
    );
}

/// A store that lets `permits` requests at a time reach memory: `poll_ready` takes a
/// permit, as `tower::limit::ConcurrencyLimit` does, and the call holds it until it ends.
struct Limited {
    inner: MemoryStore,
    semaphore: Arc<tokio::sync::Semaphore>,
    acquiring: Option<
        Pin<Box<dyn std::future::Future<Output = tokio::sync::OwnedSemaphorePermit> + Send>>,
    >,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Limited {
    fn new(permits: usize) -> Self {
        Self {
            inner: MemoryStore::default(),
            semaphore: Arc::new(tokio::sync::Semaphore::new(permits)),
            acquiring: None,
            permit: None,
        }
    }
}

impl Clone for Limited {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            semaphore: self.semaphore.clone(),
            acquiring: None,
            permit: None,
        }
    }
}

impl tower::Service<cachet::store::StoreRequest> for Limited {
    type Response = cachet::store::StoreResponse;
    type Error = cachet::BoxError;
    type Future = Pin<
        Box<
            dyn std::future::Future<Output = Result<cachet::store::StoreResponse, cachet::BoxError>>
                + Send,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), cachet::BoxError>> {
        if self.permit.is_none() {
            let semaphore = self.semaphore.clone();
            let acquiring = self.acquiring.get_or_insert_with(|| {
                Box::pin(async move { semaphore.acquire_owned().await.expect("never closed") })
            });
            let permit = std::task::ready!(acquiring.as_mut().poll(cx));
            self.acquiring = None;
            self.permit = Some(permit);
        }
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: cachet::store::StoreRequest) -> Self::Future {
        let permit = self.permit.take().expect("called when ready");
        let future = tower::Service::call(&mut self.inner, request);
        Box::pin(async move {
            let answer = future.await;
            drop(permit);
            answer
        })
    }
}

/// A request body: empty, or one that never sends a byte (a client gone quiet).
enum Quiet {
    Empty,
    Stalled,
}

impl Body for Quiet {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match *self {
            Quiet::Empty => Poll::Ready(None),
            Quiet::Stalled => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Quiet::Empty)
    }
}

#[tokio::test]
async fn a_post_whose_body_is_slow_holds_no_store_capacity_from_other_requests() {
    let origin = Origin::start(|_| Reply::ok("x").header("cache-control", "max-age=60")).await;
    let stack = ServiceBuilder::new()
        .layer(BodyKeyLayer::new())
        .layer(CacheLayer::new(Limited::new(1)).methods([Method::GET, Method::HEAD, Method::POST]))
        .service(Client::builder(TokioExecutor::new()).build_http::<KeyedBody<Quiet>>());

    let answers_get = |path: &'static str| {
        let stack = stack.clone();
        let url = origin.url(path);
        async move {
            let get = Request::get(url).body(Quiet::Empty).expect("valid request");
            tokio::time::timeout(Duration::from_secs(3), stack.oneshot(get))
                .await
                .is_ok()
        }
    };
    // A request of `method` whose client sends its head, then nothing; left running.
    let stalled = |method: Method| {
        let mut caller = stack.clone();
        let url = origin.url("/search");
        async move {
            caller.ready().await.expect("ready");
            let request = Request::builder()
                .method(method)
                .uri(url)
                .body(Quiet::Stalled)
                .expect("valid request");
            let call = tokio::spawn(tower::Service::call(&mut caller, request));
            tokio::time::sleep(Duration::from_millis(100)).await;
            call.abort_handle()
        }
    };

    assert!(answers_get("/a").await, "the store answers");
    // Control: a stalled PUT (not read ahead) holds nothing back.
    let put = stalled(Method::PUT).await;
    assert!(answers_get("/b").await, "a GET beside a stalled PUT");
    put.abort();
    // A stalled POST, read ahead for its key, must not either.
    let post = stalled(Method::POST).await;
    let answered = answers_get("/c").await;
    post.abort();
    assert!(
        answered,
        "a GET waited on the store capacity a stalled POST body holds"
    );
}

#[tokio::test]
async fn a_post_called_on_the_handle_made_ready_goes_through_with_what_poll_ready_reserved() {
    // tower's usual idiom: make the service ready, call it, await the answer, keeping the
    // handle for the next request. The store lets one request in at a time.
    let origin = Origin::start(|_| Reply::ok("x").header("cache-control", "max-age=60")).await;
    let mut stack = ServiceBuilder::new()
        .layer(BodyKeyLayer::new())
        .layer(CacheLayer::new(Limited::new(1)).methods([Method::GET, Method::HEAD, Method::POST]))
        .service(Client::builder(TokioExecutor::new()).build_http::<KeyedBody<Quiet>>());
    // GET, not read ahead, is the control.
    for method in [Method::GET, Method::POST] {
        let request = Request::builder()
            .method(method.clone())
            .uri(origin.url("/ready"))
            .body(Quiet::Empty)
            .expect("valid request");
        let ready = stack.ready().await.expect("ready");
        let answered =
            tokio::time::timeout(Duration::from_secs(3), tower::Service::call(ready, request))
                .await;
        assert!(
            answered.is_ok(),
            "{method}: the call waits for store room that its own ready handle holds"
        );
    }
}

mod query;
