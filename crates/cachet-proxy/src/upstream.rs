//! Forwarding: rewriting a request for the upstream, and the service that sends it.
//!
//! [`Upstream::rewrite`] (in [`request`]) turns an incoming request into one for the
//! upstream (absolute URI, `Host`, `Via`, no hop-by-hop headers); it runs above the cache,
//! so the cache keys on the upstream URL. [`Forward`] runs below the cache: it sends the
//! request with a hyper-util client, takes the hop-by-hop headers off the response before
//! the cache sees it, and answers `502` or `504` itself when the upstream cannot, so the
//! cache sees those as ordinary (uncacheable) responses.

mod client_body;
mod hop_by_hop;
mod idle;
mod request;

use client_body::{BodyFailed, ClientBody};
use hop_by_hop::{ConnectionOptions, EndToEndTrailers, strip_hop_by_hop};
use idle::IdleLimit;
pub(crate) use request::{NotVaryingOnForwarding, Refused, Via};
use request::{max_forwards, set_forwarded};

use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, Ready, ready};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use cachet::{KeyedBody, Keys, OneLine};
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{self, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pin_project::pin_project;
use tokio::time::Timeout;
use tower::Service;

use crate::Error;

/// The body of a response from [`Forward`]: the upstream's, streaming (failed if it
/// stalls, its trailers without hop-by-hop fields), or a short one the proxy wrote itself.
pub(crate) type UpstreamBody = Either<IdleLimit<EndToEndTrailers<Incoming>>, Full<Bytes>>;

/// The hyper-util client the proxy sends with: HTTP/1.1 and HTTP/2 (by ALPN) over
/// http or https, rustls with the ring provider and the webpki roots.
pub(crate) type HttpClient =
    Client<HttpsConnector<HttpConnector>, ClientBody<EndToEndTrailers<RequestBody>>>;

/// A request body as it goes upstream: read ahead when a method cached by its body (a
/// POST, when configured) needs its digest for the key, then replayed whole.
pub(crate) type RequestBody = KeyedBody<Incoming>;

pub(crate) fn client() -> Result<HttpClient, Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(Error::tls)?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .build(https))
}

/// The service below the cache: sends a request upstream (saying where it came from, see
/// [`set_forwarded`]), bounding the wait for the response head, and never fails: it
/// answers `502 Bad Gateway` when the upstream cannot be reached or fails, and `504
/// Gateway Timeout` when it is too slow. One per client connection: a hit, which never
/// gets here, pays nothing for the forwarding headers.
#[derive(Clone)]
pub(crate) struct Forward {
    inner: Arc<ForwardInner>,
    /// The client's address, for `X-Forwarded-For`: made once per connection.
    client: Option<HeaderValue>,
}

struct ForwardInner {
    client: HttpClient,
    timeout: Duration,
    trust_forwarded: bool,
    /// How the cache keys requests: its credentials, headers and query parameters alike,
    /// are left out of what a TRACE answered here echoes.
    keys: Keys,
}

impl Forward {
    pub(crate) fn new(
        client: HttpClient,
        timeout: Duration,
        trust_forwarded: bool,
        keys: Keys,
    ) -> Self {
        Self {
            inner: Arc::new(ForwardInner {
                client,
                timeout,
                trust_forwarded,
                keys,
            }),
            client: None,
        }
    }

    /// The same, for the connection of a client at `address`.
    pub(crate) fn for_client(&self, address: IpAddr) -> Self {
        Self {
            inner: self.inner.clone(),
            client: request::client_address(address),
        }
    }
}

impl fmt::Debug for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forward")
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl Service<Request<RequestBody>> for Forward {
    type Response = Response<UpstreamBody>;
    type Error = Infallible;
    type Future = ForwardFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The legacy client is always ready; its pool waits inside the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> ForwardFuture {
        if request.method() == Method::CONNECT {
            let mut refused = reply(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported");
            // A 405 names what is allowed (RFC 9110 §15.5.6): every other method is
            // forwarded.
            refused.headers_mut().insert(
                ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"),
            );
            return ForwardFuture::answer(refused);
        }
        if let Some(refused) = request.extensions().get::<Refused>() {
            return ForwardFuture::answer(reply(refused.status, refused.reason));
        }
        if let Some(answer) = max_forwards(&mut request, &self.inner.keys) {
            return ForwardFuture::answer(answer);
        }
        set_forwarded(
            request.headers_mut(),
            self.client.as_ref(),
            self.inner.trust_forwarded,
        );
        let timeout = self.inner.timeout;
        let head = request.method() == Method::HEAD;
        // What the client's `Connection` listed, which the rewrite removed from the head.
        let options = request
            .extensions_mut()
            .remove::<ConnectionOptions>()
            .unwrap_or_default();
        let (parts, body) = request.into_parts();
        let (body, body_failed) = ClientBody::new(EndToEndTrailers::new(body, options));
        let request = Request::from_parts(parts, body);
        let call = tokio::time::timeout(timeout, self.inner.client.request(request));
        ForwardFuture {
            state: State::Call {
                call,
                timeout,
                head,
                body_failed,
            },
        }
    }
}

/// The response future of [`Forward`].
#[pin_project]
#[must_use = "futures do nothing unless polled"]
pub(crate) struct ForwardFuture {
    #[pin]
    state: State,
}

#[pin_project(project = StateProj)]
enum State {
    Call {
        #[pin]
        call: Timeout<legacy::ResponseFuture>,
        timeout: Duration,
        /// Whether the request is a HEAD, whose response has no body.
        head: bool,
        /// Whether the client's request body failed, which fails the call too.
        body_failed: BodyFailed,
    },
    Answer {
        #[pin]
        response: Ready<Result<Response<UpstreamBody>, Infallible>>,
    },
}

impl ForwardFuture {
    fn answer(response: Response<Full<Bytes>>) -> Self {
        Self {
            state: State::Answer {
                response: ready(Ok(response.map(Either::Right))),
            },
        }
    }
}

impl fmt::Debug for ForwardFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Call { .. } => "call",
            State::Answer { .. } => "answer",
        };
        f.debug_struct("ForwardFuture")
            .field("state", &state)
            .finish()
    }
}

impl Future for ForwardFuture {
    type Output = Result<Response<UpstreamBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Answer { response } => response.poll(cx),
            StateProj::Call {
                call,
                timeout,
                head,
                body_failed,
            } => {
                let response = match ready!(call.poll(cx)) {
                    // The proxy takes `Upgrade` off every request: a switch was not asked for.
                    Ok(Ok(response)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                        let message = "the upstream switched protocols, which was not asked";
                        tracing::warn!("{message}");
                        reply(StatusCode::BAD_GATEWAY, message).map(Either::Right)
                    }
                    // hyper's client decodes `chunked` only, and `Transfer-Encoding` goes as
                    // hop-by-hop: a body still in another coding would go on, and be
                    // stored, with nothing to say so (RFC 9112 §6.1).
                    Ok(Ok(response))
                        if has_body(*head, response.status())
                            && coded_beyond_chunked(response.headers()) =>
                    {
                        let message = "the upstream's body is in a transfer coding other than chunked, which the proxy does not decode";
                        tracing::warn!("{message}");
                        reply(StatusCode::BAD_GATEWAY, message).map(Either::Right)
                    }
                    Ok(Ok(mut response)) => {
                        // Framed by its transfer coding, which goes as hop-by-hop: a
                        // `Content-Length` beside it MUST go too (RFC 9112 §6.3), or the
                        // client would read the body short.
                        if response.headers().contains_key(TRANSFER_ENCODING) {
                            response.headers_mut().remove(CONTENT_LENGTH);
                        }
                        // Here, not on the way out: above, the cache adds fields of its
                        // own (`Cache-Status`, `Age`) that the upstream's `Connection` may
                        // name.
                        let options = strip_hop_by_hop(response.headers_mut());
                        response.map(|body| {
                            let body = EndToEndTrailers::new(body, options);
                            Either::Left(IdleLimit::new(body, *timeout))
                        })
                    }
                    // The client's fault, not the upstream's: a malformed chunk, say. It
                    // is answered (if the client is still there to read it) and logged as
                    // any other bad request is.
                    Ok(Err(error)) if body_failed.get() => {
                        tracing::debug!(error = %OneLine(&error), "the request body failed");
                        reply(
                            StatusCode::BAD_REQUEST,
                            "bad request: its body could not be read",
                        )
                        .map(Either::Right)
                    }
                    Ok(Err(error)) => {
                        let message = if error.is_connect() {
                            // The client's own message only says "client error (Connect)".
                            let cause = OneLine(error.source().unwrap_or(&error)).to_string();
                            format!("upstream unreachable: {cause}")
                        } else {
                            format!("upstream request failed: {}", OneLine(&error))
                        };
                        tracing::warn!("{message}");
                        reply(StatusCode::BAD_GATEWAY, message).map(Either::Right)
                    }
                    Err(_elapsed) => {
                        // The clock runs from the request's start: a client that is slow
                        // to send its body uses it up too.
                        no_head_within(*timeout, "sending the request").map(Either::Right)
                    }
                };
                Poll::Ready(Ok(response))
            }
        }
    }
}

/// Whether a response of `status` to the request (a HEAD or not) has a body: a HEAD's, a
/// 204's and a 304's never do, whatever `Transfer-Encoding` says (RFC 9112 §6.1, §6.3).
fn has_body(head: bool, status: StatusCode) -> bool {
    !head && status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED
}

/// Whether `Transfer-Encoding` names a coding besides `chunked`, which is all hyper
/// decodes.
fn coded_beyond_chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        // Empty list elements count for nothing (RFC 9110 §5.6.1).
        .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"chunked"))
}

/// The `504` for a request that had no response head within `timeout` of `since`.
pub(crate) fn no_head_within(timeout: Duration, since: &str) -> Response<Full<Bytes>> {
    let message = format!("no response head from the upstream within {timeout:?} of {since}");
    tracing::warn!("{message}");
    reply(StatusCode::GATEWAY_TIMEOUT, message)
}

/// A response the proxy writes itself: a status and a one-line `text/plain` reason, never
/// stored by anyone.
pub(crate) fn reply(status: StatusCode, message: impl fmt::Display) -> Response<Full<Bytes>> {
    let mut body = message.to_string().replace(['\r', '\n'], " ");
    body.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::flags::Upstream;

    #[test]
    fn reply_is_one_line_of_text_and_not_storable() {
        let response = reply(StatusCode::BAD_GATEWAY, "upstream unreachable: a\nb");
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    }

    async fn forward_to(addr: SocketAddr, timeout: Duration) -> (StatusCode, String) {
        // `Incoming` cannot be made by hand, so the request goes through a real server
        // whose only job is to hand it to `Forward`.
        let forward = Forward::new(
            client().expect("the TLS client builds"),
            timeout,
            false,
            Keys::new(),
        );
        let target = Upstream::parse(&format!("http://{addr}")).expect("a valid upstream");
        let via = Via::random();
        let front = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let front_addr = front.local_addr().expect("local addr");
        tokio::spawn(async move {
            let (stream, _) = front.accept().await.expect("accept");
            let service = hyper::service::service_fn(move |request| {
                forward
                    .clone()
                    .oneshot(target.rewrite(request, &via).map(KeyedBody::new))
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
        let stream = tokio::net::TcpStream::connect(front_addr)
            .await
            .expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        let request = Request::get("/x")
            .header("host", "proxy")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = sender
            .send_request(request)
            .await
            .expect("the proxy answers");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn unreachable_upstream_is_a_502_with_the_reason() {
        // A port that was just free: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let (status, body) = forward_to(addr, Duration::from_secs(5)).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(body.starts_with("upstream unreachable: "), "{body}");
        assert_eq!(body.lines().count(), 1, "{body}");
    }

    #[tokio::test]
    async fn silent_upstream_is_a_504_after_the_timeout() {
        // Accepts connections and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = silent.local_addr().expect("local addr");
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        let (status, body) = forward_to(addr, Duration::from_millis(200)).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            body,
            "no response head from the upstream within 200ms of sending the request\n"
        );
    }
}
