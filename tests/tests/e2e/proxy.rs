//! `cachet-proxy` in front of a scripted origin: the harness the conformance suite
//! (`rfc9111.rs`) runs through, and what only a proxy does (RFC 9110 §7.6, RFC 9213).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cachet::clock::ManualClock;
use cachet_proxy::{Config, Proxy};
use cachet_tests::{Origin, Reply, read};
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

/// A running proxy, stopped when dropped.
pub(crate) struct RunningProxy {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    /// A client that speaks HTTP/2 to the proxy (cleartext, by prior knowledge).
    http2: Client<HttpConnector, Full<Bytes>>,
    _stop: oneshot::Sender<()>,
}

impl RunningProxy {
    pub(crate) async fn start(origin: &Origin, extra: &[&str]) -> Self {
        Self::launch(origin, extra, &[], None).await
    }

    /// Starts a proxy whose `--secret-key-env` variables are read from `env`.
    pub(crate) async fn start_with_env(
        origin: &Origin,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch(origin, extra, env, None).await
    }

    /// Starts a proxy whose freshness and `Age` follow `clock` ([`Config::clock`]).
    pub(crate) async fn start_with_clock(
        origin: &Origin,
        extra: &[&str],
        clock: ManualClock,
    ) -> Self {
        Self::launch(origin, extra, &[], Some(clock)).await
    }

    async fn launch(
        origin: &Origin,
        extra: &[&str],
        env: &[(&str, &str)],
        clock: Option<ManualClock>,
    ) -> Self {
        Self::launch_for(&origin.url(""), extra, env, clock).await
    }

    async fn launch_for(
        upstream: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        clock: Option<ManualClock>,
    ) -> Self {
        let mut args = vec![
            "cachet-proxy",
            "--upstream",
            upstream,
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let lookup = |name: &str| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).into())
        };
        let mut config = Config::from_args_and_env(args, lookup).expect("valid flags");
        if let Some(clock) = clock {
            config = config.clock(clock);
        }
        let proxy = Proxy::bind(config).await.expect("the proxy binds");
        let addr = proxy.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(proxy.serve(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
            http2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
            _stop: stop,
        }
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        Self::send_with(&self.client, self.addr, method, path, headers).await
    }

    /// The same over HTTP/2: a name given twice goes as two fields.
    pub(crate) async fn send_http2(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        Self::send_with(&self.http2, self.addr, method, path, headers).await
    }

    async fn send_with(
        client: &Client<HttpConnector, Full<Bytes>>,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let response = client.request(request).await.expect("the proxy answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let collected = response
            .into_body()
            .collect()
            .await
            .expect("the body completes");
        Answer {
            status,
            headers,
            trailers: collected.trailers().cloned().unwrap_or_default(),
            body: collected.to_bytes(),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[]).await
    }
}

#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    /// Empty when none came.
    pub(crate) trailers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    /// The `Cache-Status` header without its `ttl`, which depends on the clock; see
    /// [`ttl`](Self::ttl).
    pub(crate) fn cache_status(&self) -> &str {
        let value = self
            .headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        value
            .split_once("; ttl=")
            .map_or(value, |(status, _)| status)
    }

    /// The `Age` header in seconds, if there is one.
    pub(crate) fn age(&self) -> Option<u64> {
        self.headers.get("age")?.to_str().ok()?.parse().ok()
    }

    /// The `ttl` parameter of `Cache-Status` (RFC 9211 §2.5), if there is one.
    pub(crate) fn ttl(&self) -> Option<i64> {
        let value = self.headers.get("cache-status")?.to_str().ok()?;
        value
            .split_once("; ttl=")?
            .1
            .split(';')
            .next()?
            .parse()
            .ok()
    }
}

#[tokio::test]
async fn rfc9110_7_6_1_hop_by_hop_headers_do_not_cross_the_proxy() {
    let origin = Origin::start(|_| {
        Reply::ok("x")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
    })
    .await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let answer = proxy
        .send(
            Method::GET,
            "/hop",
            &[("connection", "x-client-hop"), ("x-client-hop", "1")],
        )
        .await;
    assert!(!answer.headers.contains_key("x-hop") && !answer.headers.contains_key("keep-alive"));
    let seen = &origin.seen()[0];
    assert!(!seen.headers.contains_key("x-client-hop"));
    assert!(seen.headers.contains_key("via"), "RFC 9110 §7.6.3");
}

#[tokio::test]
async fn an_http2_clients_cookie_fields_reach_the_upstream_as_one_rfc_9113_8_2_3() {
    let origin = Origin::start(|seen| {
        let cookies: Vec<&str> = seen
            .headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Reply::ok(cookies.join(" | "))
            .header("cache-control", "max-age=600")
            .header("vary", "Cookie")
    })
    .await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let split = proxy
        .send_http2(
            Method::GET,
            "/me",
            &[("cookie", "session=abc"), ("cookie", "csrf=xyz")],
        )
        .await;
    assert_eq!(split.body.as_ref(), b"session=abc; csrf=xyz");
    assert_eq!(split.cache_status(), "cachet; fwd=uri-miss; stored");
    // The variant stored is the one an HTTP/1.1 client's single field selects.
    let joined = proxy
        .send(Method::GET, "/me", &[("cookie", "session=abc; csrf=xyz")])
        .await;
    assert_eq!(
        (joined.cache_status(), joined.body.as_ref()),
        ("cachet; hit", b"session=abc; csrf=xyz".as_slice())
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn headers_named_in_connection_beside_a_token_beyond_ascii_do_not_cross_rfc_9110_7_6_1() {
    let origin = RawOrigin::start(
        "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nConnection: x-internal, é\r\n\
         X-Internal: origin-only\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let proxy = origin.proxy().await;
    // hyper reads `close` only in a value that is all ASCII.
    let request = "GET /c HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\
                   Connection: x-foo, é\r\nX-Foo: 1\r\n\r\n";
    let answer = raw_answer(&proxy, request).await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(!answer.contains("x-internal: "), "{answer}");
    assert!(!origin.heads()[0].contains("x-foo"), "{:?}", origin.heads());
}

#[tokio::test]
async fn rfc9213_cdn_cache_control_replaces_cache_control_when_the_proxy_is_a_cdn() {
    let origin = Origin::start(|_| {
        Reply::ok("x")
            .header("cache-control", "no-store")
            .header("cdn-cache-control", "max-age=60")
    })
    .await;
    let cdn = RunningProxy::start(&origin, &["--cdn"]).await;
    cdn.get("/cdn").await;
    let hit = cdn.get("/cdn").await;
    assert_eq!(hit.cache_status(), "cachet; hit");
    assert_eq!(
        hit.headers["cache-control"], "no-store",
        "both fields pass on unchanged"
    );

    let plain = RunningProxy::start(&origin, &[]).await;
    plain.get("/cdn").await;
    assert_eq!(
        plain.get("/cdn").await.cache_status(),
        "cachet; fwd=uri-miss"
    );
}

/// Sends raw bytes to the proxy on a connection of their own and returns the answer's
/// `Cache-Status` (the request asks to close the connection).
async fn raw_cache_status(proxy: &RunningProxy, request: &str) -> String {
    raw_answer(proxy, request)
        .await
        .lines()
        .find_map(|line| line.strip_prefix("cache-status: "))
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// Sends raw bytes to the proxy on a connection of their own and returns the whole
/// answer, in lower case (the request asks to close the connection).
async fn raw_answer(proxy: &RunningProxy, request: &str) -> String {
    raw_answer_from(proxy, [127, 0, 0, 1], request).await
}

/// The same, from the loopback address `from` (any of 127.0.0.0/8 is this machine's).
async fn raw_answer_from(proxy: &RunningProxy, from: [u8; 4], request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("a loopback address binds");
    let mut stream = socket.connect(proxy.addr).await.expect("the proxy accepts");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("the request is sent");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the proxy answers and closes")
    .expect("the answer is read");
    String::from_utf8_lossy(&answer).to_lowercase()
}

#[tokio::test]
async fn connect_is_refused_with_what_is_allowed_rfc_9110_15_5_6() {
    let origin = Origin::start(|_| Reply::ok("origin")).await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let answer = raw_answer(
        &proxy,
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("http/1.1 405"), "{answer}");
    assert!(
        answer.contains("\r\nallow: get, head, post, put, delete, options, trace, patch\r\n"),
        "{answer}"
    );
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn a_get_with_a_body_passes_the_cache_by_however_its_length_is_told() {
    let origin = Origin::start(|_| Reply::ok("built").header("cache-control", "max-age=600")).await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let requests = [
        (
            "/chunked",
            "GET /chunked HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\
             Transfer-Encoding: chunked\r\n\r\n4\r\nEVIL\r\n0\r\n\r\n",
        ),
        // `Connection` names the length, so the rewrite's hop-by-hop removal drops it
        // before the cache could see it; the body still goes upstream.
        (
            "/hidden",
            "GET /hidden HTTP/1.1\r\nHost: p\r\nConnection: close, content-length\r\n\
             Content-Length: 4\r\n\r\nEVIL",
        ),
    ];
    for (path, request) in requests {
        assert_eq!(
            raw_cache_status(&proxy, request).await,
            "cachet; fwd=bypass",
            "{path}"
        );
        assert_eq!(
            proxy.get(path).await.cache_status(),
            "cachet; fwd=uri-miss; stored",
            "{path}: nothing was stored for the request with a body"
        );
    }
}

#[tokio::test]
async fn options_with_max_forwards_zero_is_answered_by_the_proxy_rfc_9110_7_6_2() {
    let origin = Origin::start(|_| Reply::ok("origin")).await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let here = proxy
        .send(Method::OPTIONS, "/r", &[("max-forwards", "0")])
        .await;
    assert_eq!((here.status, here.body.as_ref()), (200, b"".as_slice()));
    assert_eq!(origin.requests(), 0, "not forwarded");
    let there = proxy
        .send(Method::OPTIONS, "/r", &[("max-forwards", "3")])
        .await;
    assert_eq!(there.body.as_ref(), b"origin");
    assert_eq!(
        origin.seen()[0].headers["max-forwards"],
        "2",
        "counted down"
    );
}

#[tokio::test]
async fn a_trace_answered_by_the_proxy_echoes_no_credential_rfc_9110_9_3_8() {
    let origin = Origin::start(|_| Reply::ok("origin")).await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let trace = proxy
        .send(
            Method::TRACE,
            "/t?page=2&api_key=SECRET1;access_token=SECRET2&API%5FKEY=SECRET3",
            &[
                ("max-forwards", "0"),
                ("x-api-key", "SECRET4"),
                ("x-auth-token", "SECRET5"),
                ("authorization", "Bearer SECRET6"),
                ("cookie", "session=SECRET7"),
                ("accept", "*/*"),
            ],
        )
        .await;
    assert_eq!(trace.status, 200);
    assert_eq!(origin.requests(), 0, "not forwarded");
    let echo = String::from_utf8_lossy(&trace.body);
    assert!(echo.starts_with("TRACE /t?page=2 HTTP/1.1\r\n"), "{echo}");
    assert!(echo.contains("\r\naccept: */*\r\n"), "{echo}");
    assert!(!echo.contains("SECRET"), "{echo}");
}

/// An upstream that answers every request with the same bytes, written as they are (a
/// response hyper's server would not write), and keeps each request's head.
struct RawOrigin {
    addr: SocketAddr,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl RawOrigin {
    async fn start(answer: &'static str) -> Self {
        Self::start_then(answer, Duration::ZERO).await
    }

    /// Keeps each connection open, silent, for `stall` after its answer.
    async fn start_then(answer: &'static str, stall: Duration) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port is free");
        let addr = listener.local_addr().expect("bound");
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                // A connection of its own: one that stalls holds up no other.
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => break,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    seen.lock().expect("not poisoned").push(head);
                    let _ = stream.write_all(answer.as_bytes()).await;
                    tokio::time::sleep(stall).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { addr, heads }
    }

    /// Each request's head, in lower case.
    fn heads(&self) -> Vec<String> {
        let heads = self.heads.lock().expect("not poisoned");
        heads.iter().map(|head| head.to_lowercase()).collect()
    }

    /// Each request's first line.
    fn lines(&self) -> Vec<String> {
        let heads = self.heads.lock().expect("not poisoned");
        heads
            .iter()
            .map(|head| head.lines().next().unwrap_or_default().to_owned())
            .collect()
    }

    async fn proxy(&self) -> RunningProxy {
        self.proxy_with(&[]).await
    }

    async fn proxy_with(&self, extra: &[&str]) -> RunningProxy {
        RunningProxy::launch_for(&format!("http://{}", self.addr), extra, &[], None).await
    }
}

#[tokio::test]
async fn serve_closes_the_connections_still_open_when_its_drain_bound_has_passed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = Config::from_args_and_env(
        [
            "cachet-proxy",
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
            "--upstream-timeout",
            "1",
        ],
        |_: &str| None,
    )
    .expect("valid flags");
    let proxy = Proxy::bind(config).await.expect("the proxy binds");
    let addr = proxy.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(proxy.serve(async {
        let _ = stopped.await;
    }));
    // An HTTP/2 client that never acknowledges the close.
    let mut client = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("the preface is sent");
    let mut settings = [0u8; 9];
    client
        .read_exact(&mut settings)
        .await
        .expect("the proxy's SETTINGS");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve returns once its drain bound has passed")
        .expect("serve does not panic")
        .expect("serve succeeds");
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        let mut sink = [0u8; 1024];
        while let Ok(read) = client.read(&mut sink).await {
            if read == 0 {
                break;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the connection is still open 3 s after serve returned"
    );
}

mod connections;
mod forwarding;
mod hop_by_hop;
mod upstream;
