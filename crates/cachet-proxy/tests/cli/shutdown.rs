//! Shutting down on a signal: a drain bounded by the upstream timeout, and a second
//! signal that ends it.

use super::*;

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// The program's exit status, once it has exited, waiting at most `limit` (a hang guard).
fn exits_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("the program can be waited for") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_shutdown_is_not_held_past_the_upstream_timeout_by_a_silent_http2_client() {
    let (origin, _) = origin();
    let upstream = format!("http://{origin}");
    let mut proxy = start(&[
        "--upstream",
        &upstream,
        "--listen",
        "127.0.0.1:0",
        "--upstream-timeout",
        "1",
    ]);
    // An HTTP/2 client that sends its preface and settings, then never answers: not the
    // close, nor the ping that comes with it.
    let mut client = TcpStream::connect(proxy.addr).expect("connects");
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .expect("the preface is sent");
    let mut settings = [0u8; 9];
    client
        .read_exact(&mut settings)
        .expect("the proxy's SETTINGS");
    signal(&proxy.child, "-TERM");
    let status = exits_within(&mut proxy.child, Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "still running 10 s after SIGTERM with no request in flight: {status:?}"
    );
}

/// An upstream whose answers never end (server-sent events, say): a chunk every 100 ms.
fn endless_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let origin = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncache-control: no-store\r\ntransfer-encoding: chunked\r\n\r\n",
                );
                while stream.write_all(b"6\r\ntick\r\n\r\n").is_ok() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    origin
}

#[test]
fn a_second_signal_ends_a_shutdown_that_waits_on_a_stream() {
    let upstream = format!("http://{}", endless_origin());
    let mut proxy = start(&["--upstream", &upstream, "--listen", "127.0.0.1:0"]);
    let mut client = TcpStream::connect(proxy.addr).expect("connects");
    client
        .write_all(b"GET /events HTTP/1.1\r\nhost: proxy\r\n\r\n")
        .expect("sent");
    let _ = client.read(&mut [0u8; 64]).expect("the stream starts");
    signal(&proxy.child, "-TERM");
    assert!(
        exits_within(&mut proxy.child, Duration::from_secs(1)).is_none(),
        "the first signal lets the stream go on"
    );
    signal(&proxy.child, "-INT");
    let status = exits_within(&mut proxy.child, Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| !s.success()),
        "a second signal during the drain stops the proxy, saying so: {status:?}"
    );
}

#[test]
fn a_second_signal_right_after_the_first_is_not_lost() {
    let upstream = format!("http://{}", endless_origin());
    for round in 0..3 {
        let mut proxy = start(&[
            "--upstream",
            &upstream,
            "--listen",
            "127.0.0.1:0",
            "--upstream-timeout",
            "10",
        ]);
        let mut client = TcpStream::connect(proxy.addr).expect("connects");
        client
            .write_all(b"GET /events HTTP/1.1\r\nhost: proxy\r\n\r\n")
            .expect("sent");
        let _ = client.read(&mut [0u8; 64]).expect("the stream starts");
        let pid = proxy.child.id();
        let sent = Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}; kill -INT {pid}")])
            .status()
            .expect("sh runs");
        assert!(sent.success());
        let status = exits_within(&mut proxy.child, Duration::from_secs(5));
        assert!(
            status.is_some_and(|s| !s.success()),
            "round {round}: TERM then INT at once; the INT was lost: {status:?}"
        );
    }
}
