//! Forwarding: rewriting a request for the upstream, and the service that sends it.
//!
//! [`Upstream::rewrite`] turns an incoming request into one for the upstream (absolute
//! URI, `Host`, `Via`, no hop-by-hop headers); it runs above the cache, so the cache keys
//! on the upstream URL. [`Forward`] runs below the cache: it sends the request with a
//! hyper-util client and answers `502` or `504` itself when the upstream cannot, so the
//! cache sees those as ordinary (uncacheable) responses.

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
use cachet::KeyedBody;
use http::header::{ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HOST, HeaderName, VIA};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{self, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pin_project::pin_project;
use tokio::time::Timeout;
use tower::Service;

use crate::flags::Upstream;
use crate::{Error, one_line};

/// The body of a response from [`Forward`]: the upstream's, streaming, or a short one the
/// proxy wrote itself.
pub(crate) type UpstreamBody = Either<Incoming, Full<Bytes>>;

/// The headers that describe one connection, not the message (RFC 9110 §7.6.1), besides
/// those `Connection` lists. `TE` goes too, even as `te: trailers`.
static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
];

/// Whether `name` is one of [`HOP_BY_HOP`]: a match on the text, which the lengths of
/// the common headers (`host`, `content-type`, ...) settle without comparing bytes.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

/// Removes the hop-by-hop headers: `Connection`, the headers it lists, and the fixed set
/// of RFC 9110 §7.6.1.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the names spares the hashing of a
    // removal per name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

impl Upstream {
    /// Rewrites a request received by the proxy into the request sent upstream.
    ///
    /// The target becomes the upstream's scheme and authority with the base path joined
    /// to the request's path and query (a request in absolute form keeps only its path and
    /// query: the proxy never forwards anywhere but its upstream). `Host` becomes the
    /// upstream authority, hop-by-hop headers go, a `Via` is added (RFC 9110 §7.6.3) and
    /// the version is left to the client's connection.
    pub(crate) fn rewrite<B>(&self, mut request: Request<B>) -> Request<B> {
        let received = request.version();
        tracing::debug!(method = %request.method(), uri = %request.uri(), version = ?received, "request");

        // A target without an authority is refused by `Forward` (400) and never looked
        // up by the cache.
        let refused = Uri::from_static("/");
        let path = request.uri().path_and_query();
        // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without a Host,
        // and to any with more than one or with one that is not a host (HTTP/2 names the
        // host in its target).
        let mut hosts = request.headers().get_all(HOST).iter();
        let bad_host = match (hosts.next(), hosts.next()) {
            (None, _) => received == Version::HTTP_11,
            (Some(host), None) => !is_host(host.as_bytes()),
            (Some(_), Some(_)) => true,
        };
        *request.uri_mut() = if bad_host {
            tracing::debug!("a request with a bad, missing or second Host; refused");
            refused
        } else if path.is_some_and(|path| has_dot_segment(path.path())) {
            // `..` would climb out of the base path at an origin that resolves it, and
            // the same resource would sit under two keys. Clients resolve dot segments
            // before sending (RFC 3986 §5.2.4); one that did not is refused.
            tracing::debug!("request target has a dot segment; refused");
            refused
        } else {
            match self.target(path) {
                Ok(uri) => uri,
                // Not expected: both halves are valid.
                Err(error) => {
                    tracing::debug!(%error, "request target cannot be joined to the upstream");
                    refused
                }
            }
        };

        let headers = request.headers_mut();
        strip_hop_by_hop(headers);
        headers.insert(HOST, self.host.clone());
        headers.append(VIA, via(received));
        *request.version_mut() = Version::HTTP_11;
        request
    }

    /// The upstream URI for a request's path and query: the base path joined to them.
    fn target(&self, path: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let path = match path {
            // `OPTIONS *` and an authority-form target have no path of their own.
            Some(path) if path.as_str().starts_with('/') => Some(path),
            _ => None,
        };
        let path_and_query = match path {
            // Without a base path the request's own path and query go as they are, with
            // no copy and no second parse.
            Some(path) if self.base_path.is_empty() => path.clone(),
            None if self.base_path.is_empty() => PathAndQuery::from_static("/"),
            path => {
                let path = path.map_or("/", PathAndQuery::as_str);
                let mut target = String::with_capacity(self.base_path.len() + path.len());
                target.push_str(&self.base_path);
                target.push_str(path);
                PathAndQuery::try_from(target)?
            }
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Ok(Uri::from_parts(parts)?)
    }
}

/// Whether a `Host` value is a host and optional port (RFC 3986 §3.2.2: a name, an IP
/// address or an IP literal in brackets), or empty: what it may hold, checked byte by
/// byte.
fn is_host(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(&b))
}

/// Whether a path has a `.` or `..` segment, written out or percent-encoded (`%2e`), with
/// parameters after it (`..;x`, which some servers read as `..`), or between separators
/// that some origins also take for `/`: `\`, `%2f`, `%5c`.
fn has_dot_segment(path: &str) -> bool {
    // Most paths have neither a backslash nor an escape: no copy for them.
    if path.contains(['\\', '%']) {
        let path = ["%2f", "%2F", "%5c", "%5C", "\\"]
            .iter()
            .fold(path.to_owned(), |path, separator| {
                path.replace(separator, "/")
            });
        return has_dot_segment_between_slashes(&path);
    }
    has_dot_segment_between_slashes(path)
}

fn has_dot_segment_between_slashes(path: &str) -> bool {
    path.split('/').any(|segment| {
        let segment = segment.split(';').next().unwrap_or_default();
        let mut rest = segment.as_bytes();
        let mut dots = 0;
        while !rest.is_empty() && dots <= 2 {
            rest = match rest {
                [b'.', tail @ ..] => tail,
                [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
                _ => return false,
            };
            dots += 1;
        }
        (1..=2).contains(&dots) && rest.is_empty()
    })
}

fn via(version: Version) -> HeaderValue {
    // Constants: `from_static` checks its text each time it runs.
    const VIA_09: HeaderValue = HeaderValue::from_static("0.9 cachet");
    const VIA_10: HeaderValue = HeaderValue::from_static("1.0 cachet");
    const VIA_11: HeaderValue = HeaderValue::from_static("1.1 cachet");
    const VIA_2: HeaderValue = HeaderValue::from_static("2 cachet");
    const VIA_3: HeaderValue = HeaderValue::from_static("3 cachet");
    match version {
        Version::HTTP_09 => VIA_09,
        Version::HTTP_10 => VIA_10,
        Version::HTTP_2 => VIA_2,
        Version::HTTP_3 => VIA_3,
        _ => VIA_11,
    }
}

/// Whether a header says where a request came from, or what it first asked for: set by a
/// proxy, and by a client too if nothing in front overwrites it. `Forwarded`, every
/// `X-Forwarded-*`, and the other names frameworks read that way.
fn is_forwarded(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("x-forwarded-")
        || matches!(
            name,
            "forwarded" | "x-real-ip" | "x-original-url" | "x-rewrite-url" | "x-original-host"
        )
}

/// Sets where a request going upstream came from. Unless `trusted` (a load balancer in
/// front sets these headers and overwrites what clients send), the headers of that kind
/// it arrived with ([`is_forwarded`]) are removed: the cache key leaves them out, so
/// a client could otherwise have a response built for values it chose stored for
/// everyone. Then the client's address joins `X-Forwarded-For`, and `X-Forwarded-Proto`
/// says `http` (what the proxy listens with) unless a trusted one is there.
pub(crate) fn set_forwarded(headers: &mut HeaderMap, client: Option<IpAddr>, trusted: bool) {
    const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    if !trusted && headers.keys().any(is_forwarded) {
        let names: Vec<HeaderName> = headers
            .keys()
            .filter(|n| is_forwarded(n))
            .cloned()
            .collect();
        for name in names {
            headers.remove(name);
        }
    }
    if let Some(client) = client {
        // One line, as `X-Forwarded-For` is read: the earlier hops first.
        let mut chain = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(&client.to_string());
        if let Ok(value) = HeaderValue::from_str(&chain) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
}

/// The hyper-util client the proxy sends with: HTTP/1.1 and HTTP/2 (by ALPN) over
/// http or https, rustls with the ring provider and the webpki roots.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

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
    client: Option<IpAddr>,
}

struct ForwardInner {
    client: HttpClient,
    timeout: Duration,
    trust_forwarded: bool,
}

impl Forward {
    pub(crate) fn new(client: HttpClient, timeout: Duration, trust_forwarded: bool) -> Self {
        Self {
            inner: Arc::new(ForwardInner {
                client,
                timeout,
                trust_forwarded,
            }),
            client: None,
        }
    }

    /// The same, for the connection of a client at `address`.
    pub(crate) fn for_client(&self, address: IpAddr) -> Self {
        Self {
            inner: self.inner.clone(),
            client: Some(address),
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
        if request.uri().authority().is_none() {
            return ForwardFuture::answer(reply(
                StatusCode::BAD_REQUEST,
                "bad request: its target, or its Host",
            ));
        }
        if let Some(answer) = max_forwards(&mut request) {
            return ForwardFuture::answer(answer);
        }
        set_forwarded(
            request.headers_mut(),
            self.client,
            self.inner.trust_forwarded,
        );
        let timeout = self.inner.timeout;
        let call = tokio::time::timeout(timeout, self.inner.client.request(request));
        ForwardFuture {
            state: State::Call { call, timeout },
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
            StateProj::Call { call, timeout } => {
                let response = match ready!(call.poll(cx)) {
                    Ok(Ok(response)) => response.map(Either::Left),
                    Ok(Err(error)) => {
                        let message = if error.is_connect() {
                            // The client's own message only says "client error (Connect)".
                            let cause = error.source().map_or_else(|| one_line(&error), one_line);
                            format!("upstream unreachable: {cause}")
                        } else {
                            format!("upstream request failed: {}", one_line(&error))
                        };
                        tracing::warn!("{message}");
                        reply(StatusCode::BAD_GATEWAY, message).map(Either::Right)
                    }
                    Err(_elapsed) => {
                        // The clock runs from the request's start: a client that is slow
                        // to send its body uses it up too.
                        let message = format!(
                            "no response head from the upstream within {timeout:?} of \
                             sending the request"
                        );
                        tracing::warn!("{message}");
                        reply(StatusCode::GATEWAY_TIMEOUT, message).map(Either::Right)
                    }
                };
                Poll::Ready(Ok(response))
            }
        }
    }
}

/// A response the proxy writes itself: a status and a one-line `text/plain` reason, never
/// stored by anyone.
/// `Max-Forwards` on a TRACE or OPTIONS (RFC 9110 §7.6.2): at 0 the proxy answers as the
/// final recipient (OPTIONS with an empty 200, TRACE with the request it would have
/// forwarded, credentials left out); above 0 it counts one down. Any other request, or
/// a value that is not a number, goes on as it is.
fn max_forwards<B>(request: &mut Request<B>) -> Option<Response<Full<Bytes>>> {
    const MAX_FORWARDS: HeaderName = HeaderName::from_static("max-forwards");
    if !matches!(*request.method(), Method::OPTIONS | Method::TRACE) {
        return None;
    }
    let left: u64 = request
        .headers()
        .get(&MAX_FORWARDS)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if left > 0 {
        request
            .headers_mut()
            .insert(MAX_FORWARDS, HeaderValue::from(left - 1));
        return None;
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    if request.method() == Method::TRACE {
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut message = format!("TRACE {target} HTTP/1.1\r\n");
        for (name, value) in request.headers() {
            let secret = matches!(
                name.as_str(),
                "authorization" | "proxy-authorization" | "cookie"
            );
            if let (false, Ok(value)) = (secret, value.to_str()) {
                message.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        message.push_str("\r\n");
        *response.body_mut() = Full::new(Bytes::from(message));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("message/http"));
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(response)
}

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

    fn upstream(url: &str) -> Upstream {
        Upstream::parse(url).expect("a valid upstream")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("a valid name"),
                HeaderValue::from_str(value).expect("a valid value"),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_are_removed_rfc_9110_7_6_1() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Session"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-session", "abc"),
            ("x-other", "1"),
            ("content-type", "text/html"),
            ("cache-control", "max-age=60"),
            ("authorization", "Bearer t"),
            ("trailer", "x-checksum"),
        ]);
        strip_hop_by_hop(&mut map);
        let mut left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            ["authorization", "cache-control", "content-type", "trailer"]
        );
    }

    #[test]
    fn the_quick_check_knows_every_hop_by_hop_name() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            "host",
            "content-type",
            "cache-control",
            "via",
            "trailer",
            "x-te",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn a_connection_header_alone_still_strips_what_it_lists() {
        let mut map = headers(&[("x-session", "abc"), ("connection", "X-Session")]);
        strip_hop_by_hop(&mut map);
        assert!(map.is_empty(), "{map:?}");
    }

    #[test]
    fn connection_with_garbage_tokens_does_not_panic() {
        let mut map = headers(&[("connection", ", ,bad name,\t,close"), ("close", "x")]);
        map.append(
            CONNECTION,
            HeaderValue::from_bytes(b"\xff\xfe").expect("opaque bytes are a valid value"),
        );
        strip_hop_by_hop(&mut map);
        assert!(map.is_empty(), "{map:?}");
    }

    #[test]
    fn rewrite_targets_the_upstream_with_the_base_path() {
        let cases = [
            (
                "http://origin:3000",
                "/a/b?x=1",
                "http://origin:3000/a/b?x=1",
            ),
            ("http://origin:3000/", "/", "http://origin:3000/"),
            (
                "https://origin/api",
                "/users?page=2",
                "https://origin/api/users?page=2",
            ),
            ("https://origin/api/", "/", "https://origin/api/"),
            (
                "http://origin/api",
                "http://elsewhere:9/p?q",
                "http://origin/api/p?q",
            ),
            ("http://origin/api", "*", "http://origin/api/"),
            ("http://origin", "*", "http://origin/"),
            ("http://origin", "http://elsewhere:9", "http://origin/"),
            (
                "http://origin",
                "http://elsewhere:9/p?q=%20",
                "http://origin/p?q=%20",
            ),
        ];
        for (base, target, expected) in cases {
            let request = Request::builder()
                .uri(target)
                .header(HOST, "proxy")
                .body(())
                .expect("a valid request");
            let request = upstream(base).rewrite(request);
            assert_eq!(request.uri().to_string(), expected, "{base} + {target}");
        }
    }

    #[test]
    fn forwarding_headers_are_replaced_unless_trusted() {
        let client = Some(IpAddr::from([192, 0, 2, 7]));
        let arrived = headers(&[
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "198.51.100.2"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-scheme", "http"),
            ("x-real-ip", "1.2.3.4"),
            ("x-original-url", "/admin"),
            ("accept", "*/*"),
        ]);
        let mut untrusted = arrived.clone();
        set_forwarded(&mut untrusted, client, false);
        assert_eq!(
            untrusted,
            headers(&[
                ("accept", "*/*"),
                ("x-forwarded-for", "192.0.2.7"),
                ("x-forwarded-proto", "http"),
            ])
        );
        let mut trusted = arrived.clone();
        set_forwarded(&mut trusted, client, true);
        assert_eq!(
            trusted["x-forwarded-for"],
            "198.51.100.1, 198.51.100.2, 192.0.2.7"
        );
        assert_eq!(trusted["x-forwarded-proto"], "https");
        assert_eq!(trusted["x-forwarded-host"], "evil.example");
        assert_eq!(trusted.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn an_http_1_1_request_without_exactly_one_host_is_refused() {
        let with_hosts = |hosts: &[&str], version| {
            let mut request = Request::builder().uri("/page").version(version);
            for host in hosts {
                request = request.header(HOST, *host);
            }
            upstream("http://origin").rewrite(request.body(()).expect("valid"))
        };
        for hosts in [&[][..], &["a", "b"], &["a/b"], &["a b"], &["user@a"]] {
            let request = with_hosts(hosts, Version::HTTP_11);
            assert_eq!(request.uri().authority(), None, "{hosts:?}");
        }
        let two = with_hosts(&["a", "b"], Version::HTTP_10);
        assert_eq!(two.uri().authority(), None, "more than one in any version");
        for host in ["proxy", "proxy.example:8080", "[::1]:80", "10.0.0.1", ""] {
            let one = with_hosts(&[host], Version::HTTP_11);
            assert_eq!(one.uri().to_string(), "http://origin/page", "{host:?}");
        }
        for version in [Version::HTTP_10, Version::HTTP_2] {
            let request = with_hosts(&[], version);
            assert_eq!(
                request.uri().to_string(),
                "http://origin/page",
                "{version:?}"
            );
        }
    }

    #[test]
    fn a_target_with_a_dot_segment_is_refused() {
        for target in [
            "/../secret",
            "/a/./b",
            "/a/..",
            "/a/%2e%2e/b",
            "/%2E",
            "/a/.%2E/b?x=1",
            "/a/..;/b",
            "/a/..%2fb",
            "/a/..%5Cb",
            "/a/..\\b",
        ] {
            let request = Request::builder()
                .uri(target)
                .header(HOST, "proxy")
                .body(())
                .expect("valid");
            let request = upstream("http://origin/api").rewrite(request);
            assert_eq!(request.uri().authority(), None, "{target}");
        }
        for target in [
            "/a..b/",
            "/.well-known/x",
            "/a/.../b",
            "/%2ea",
            "/a/b?x=/../",
            "/projects/group%2Fname",
            "/a;v=1/b",
        ] {
            let request = Request::builder()
                .uri(target)
                .header(HOST, "proxy")
                .body(())
                .expect("valid");
            let request = upstream("http://origin/api").rewrite(request);
            assert_eq!(
                request.uri().to_string(),
                format!("http://origin/api{target}"),
                "{target}"
            );
        }
    }

    #[test]
    fn rewrite_sets_host_via_and_version_and_strips_hop_by_hop() {
        let mut request = Request::builder()
            .uri("/page")
            .version(Version::HTTP_2)
            .header("host", "proxy.example")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("te", "trailers")
            .header("via", "1.1 client-side")
            .header("accept", "text/html")
            .body(())
            .expect("a valid request");
        request = upstream("http://origin.example:8080/base").rewrite(request);
        assert_eq!(request.version(), Version::HTTP_11);
        let h = request.headers();
        assert_eq!(
            h.get_all(HOST).iter().collect::<Vec<_>>(),
            ["origin.example:8080"]
        );
        assert_eq!(
            h.get_all(VIA).iter().collect::<Vec<_>>(),
            ["1.1 client-side", "2 cachet"]
        );
        assert!(h.get("x-hop").is_none() && h.get("te").is_none() && h.get("connection").is_none());
        assert_eq!(
            h.get("accept").map(HeaderValue::as_bytes),
            Some(&b"text/html"[..])
        );
    }

    #[test]
    fn max_forwards_at_zero_is_answered_here_and_counted_down_above_rfc_9110_7_6_2() {
        let request = |method: Method, left: &str| {
            Request::builder()
                .method(method)
                .uri("http://origin/x")
                .header("max-forwards", left)
                .header("accept", "*/*")
                .header("authorization", "Bearer secret")
                .body(())
                .expect("valid")
        };
        let mut options = request(Method::OPTIONS, "2");
        assert!(max_forwards(&mut options).is_none());
        assert_eq!(options.headers()["max-forwards"], "1");

        let answer = max_forwards(&mut request(Method::OPTIONS, "0")).expect("answered here");
        assert_eq!(answer.status(), StatusCode::OK);
        let trace = max_forwards(&mut request(Method::TRACE, "0")).expect("answered here");
        assert_eq!(trace.headers()[CONTENT_TYPE], "message/http");
        let body = body_text(trace);
        assert!(body.starts_with("TRACE /x HTTP/1.1\r\n"), "{body}");
        assert!(
            body.contains("accept: */*\r\n") && !body.contains("secret"),
            "{body}"
        );

        for (method, left) in [(Method::GET, "0"), (Method::OPTIONS, "many")] {
            let mut other = request(method, left);
            assert!(max_forwards(&mut other).is_none());
            assert_eq!(other.headers()["max-forwards"], left, "left as it is");
        }
    }

    /// The text of a `Full` body, which is ready at once.
    fn body_text(response: Response<Full<Bytes>>) -> String {
        use http_body::Body;
        let mut body = std::pin::pin!(response.into_body());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                String::from_utf8_lossy(&frame.into_data().expect("data")).into_owned()
            }
            _ => String::new(),
        }
    }

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
        let forward = Forward::new(client().expect("the TLS client builds"), timeout, false);
        let target = upstream(&format!("http://{addr}"));
        let front = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let front_addr = front.local_addr().expect("local addr");
        tokio::spawn(async move {
            let (stream, _) = front.accept().await.expect("accept");
            let service = hyper::service::service_fn(move |request| {
                forward
                    .clone()
                    .oneshot(target.rewrite(request).map(KeyedBody::new))
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
