//! What bounds the proxy's connections: a client that stays silent is closed, and past
//! `--max-connections` the next client waits to be accepted.

use std::net::SocketAddr;
use std::time::Duration;

use cachet_proxy::{Config, Proxy};
use cachet_tests::{Origin, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// The client timeout of these tests: short, so that a silent client is closed at once.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(100);

/// Far longer than any bound the proxy is given here: a test that waits this long has
/// found a connection left open.
const GUARD: Duration = Duration::from_secs(20);

/// A proxy (and its admin listener) with `client_timeout`; stops when the sender drops.
async fn proxy(
    origin: &Origin,
    client_timeout: Duration,
    extra: &[&str],
) -> (SocketAddr, SocketAddr, oneshot::Sender<()>) {
    let upstream = origin.url("");
    let mut args = vec![
        "cachet-proxy",
        "--upstream",
        &upstream,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let config = Config::from_args(args)
        .expect("valid flags")
        .client_timeout(client_timeout);
    let proxy = Proxy::bind(config).await.expect("the proxy binds");
    let addr = proxy.local_addr();
    let admin = proxy.admin_addr().expect("the admin listener is on");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(proxy.serve(async {
        let _ = stopped.await;
    }));
    (addr, admin, stop)
}

/// Connects, sends `bytes`, then nothing; reads what the proxy sends until it closes.
/// `Err` if it is still open after [`GUARD`].
async fn closed_after_sending(addr: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    let mut received = Vec::new();
    match tokio::time::timeout(GUARD, stream.read_to_end(&mut received)).await {
        Ok(_) => Ok(received),
        Err(_) => Err(format!(
            "still open after {GUARD:?}, having received {received:?}"
        )),
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

#[tokio::test]
async fn a_client_that_sends_nothing_is_closed_after_the_client_timeout() {
    let origin = Origin::start(|_| Reply::ok("x")).await;
    let (addr, admin, _stop) = proxy(&origin, CLIENT_TIMEOUT, &[]).await;
    for addr in [addr, admin] {
        closed_after_sending(addr, b"").await.expect("closed");
        closed_after_sending(addr, &PREFACE[..10])
            .await
            .expect("part of the HTTP/2 preface is not enough either");
        closed_after_sending(addr, b"GET / HTTP/1.1\r\nhost: a\r\n")
            .await
            .expect("nor is part of an HTTP/1 head");
        closed_after_sending(addr, b"GET / HTT")
            .await
            .expect("nor is part of one shorter than the HTTP/2 preface");
    }
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn an_http1_0_request_shorter_than_the_preface_is_answered_past_the_client_timeout() {
    // The answer is framed by the connection's close (HTTP/1.0): cut off, it would look
    // whole.
    let origin = Origin::start(|_| {
        Reply::ok("the first part, then the rest")
            .in_frames(2)
            .frames_apart(3 * CLIENT_TIMEOUT)
    })
    .await;
    let (addr, _admin, _stop) = proxy(&origin, CLIENT_TIMEOUT, &[]).await;
    let request = b"GET /drip HTTP/1.0\r\n\r\n";
    assert!(request.len() < PREFACE.len());
    let answer = closed_after_sending(addr, request)
        .await
        .expect("closed once the answer is sent");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer
            .lines()
            .next()
            .is_some_and(|line| line.ends_with(" 200 OK")),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\nthe first part, then the rest"),
        "{answer}"
    );
}

#[tokio::test]
async fn an_http2_client_that_answers_no_ping_is_closed() {
    let origin = Origin::start(|_| Reply::ok("x")).await;
    let (addr, admin, _stop) = proxy(&origin, CLIENT_TIMEOUT, &[]).await;
    // HEADERS for stream 1 (`:method GET`), without END_HEADERS: the header block is
    // never finished.
    let unfinished_headers: &[u8] = &[0, 0, 1, 1, 0x1, 0, 0, 0, 1, 0x82];
    for addr in [addr, admin] {
        let mut hello = [PREFACE, SETTINGS].concat();
        closed_after_sending(addr, &hello)
            .await
            .expect("a client silent after its SETTINGS is closed");
        hello.extend_from_slice(unfinished_headers);
        closed_after_sending(addr, &hello)
            .await
            .expect("a client silent in the middle of a header block is closed");
    }
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn past_max_connections_the_next_client_waits_for_one_to_close() {
    let origin = Origin::start(|_| Reply::ok("answered")).await;
    let (addr, _admin, _stop) = proxy(&origin, GUARD, &["--max-connections", "1"]).await;
    let silent = TcpStream::connect(addr).await.expect("connect");
    // The proxy has accepted the silent one; the next waits in the backlog.
    let mut waiting = TcpStream::connect(addr).await.expect("connect");
    waiting
        .write_all(b"GET /page HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut answer = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_millis(300), waiting.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "answered past the bound: {answer:?}");
    assert_eq!(origin.requests(), 0);

    drop(silent);
    tokio::time::timeout(GUARD, waiting.read_to_end(&mut answer))
        .await
        .expect("answered once the silent client has gone")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("answered"), "{answer}");
}
