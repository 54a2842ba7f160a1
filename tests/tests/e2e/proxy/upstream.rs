//! What the proxy does with what an upstream sends (framing, codings, stalls, protocol
//! switches) and with requests it cannot forward as they came, or that come back to it.

use super::*;

#[tokio::test]
async fn an_upstream_that_stalls_in_its_body_holds_no_client_and_fills_no_entry() {
    // Five bytes of a hundred, then silence for a minute.
    let origin = RawOrigin::start_then(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nCache-Control: max-age=60\r\n\r\nhello",
        Duration::from_secs(60),
    )
    .await;
    let proxy = origin.proxy_with(&["--upstream-timeout", "0.3"]).await;
    let request = "GET /stall HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
    // `raw_answer` waits five seconds at most for the proxy to close the connection.
    let answer = raw_answer(&proxy, request).await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("hello"),
        "cut short after what came: {answer}"
    );
    let again = raw_answer(&proxy, request).await;
    assert!(again.starts_with("http/1.1 200"), "{again}");
    assert!(
        again.contains("cache-status: cachet; fwd=uri-miss"),
        "{again}"
    );
    assert_eq!(origin.lines().len(), 2, "nothing was stored");
}

#[tokio::test]
async fn a_body_framed_by_both_length_and_chunks_reaches_the_client_whole_rfc_9112_6_3() {
    let origin = RawOrigin::start(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n6\r\nhello!\r\n0\r\n\r\n",
    )
    .await;
    let proxy = origin.proxy().await;
    let answer = proxy.get("/both").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "hello!", "the chunks frame it, not the length");
}

#[tokio::test]
async fn a_chunked_answer_with_trailers_is_stored_when_it_says_stored() {
    let origin = RawOrigin::start(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: max-age=60\r\n\r\n\
         2\r\nok\r\n0\r\nX-Checksum: 42\r\n\r\n",
    )
    .await;
    let proxy = origin.proxy().await;
    let request = "GET /trailers HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
    let first = raw_answer(&proxy, request).await;
    assert!(
        first.contains("cache-status: cachet; fwd=uri-miss; stored"),
        "{first}"
    );
    // The write goes on in the background; the next request finds it once it is in.
    let mut served = String::new();
    for _ in 0..50 {
        served = raw_answer(&proxy, request).await;
        if served.contains("cache-status: cachet; hit") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served.contains("cache-status: cachet; hit"), "{served}");
    assert!(served.ends_with("\r\n\r\nok"), "{served}");
    assert_eq!(origin.lines().len(), 1, "the upstream was asked once");
}

#[tokio::test]
async fn a_body_in_a_transfer_coding_besides_chunked_is_a_bad_gateway() {
    // hyper undoes `chunked` only: what it hands on is still in `gzip` (here five
    // stand-in bytes), and only the hop-by-hop `Transfer-Encoding` said so.
    for answer in [
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nCache-Control: max-age=60\r\n\
         Connection: close\r\n\r\n5\r\nCODED\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nCache-Control: max-age=60\r\n\r\nCODED",
    ] {
        let origin = RawOrigin::start(answer).await;
        let proxy = origin.proxy().await;
        let request = "GET /coded HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
        for _ in 0..2 {
            let answered = raw_answer(&proxy, request).await;
            assert!(
                answered.starts_with("http/1.1 502"),
                "{answer:?}: {answered}"
            );
            assert!(answered.contains("transfer coding"), "{answered}");
        }
        assert_eq!(origin.lines().len(), 2, "nothing was stored");
    }
}

#[tokio::test]
async fn an_answer_without_a_body_may_name_the_coding_a_get_would_have_rfc_9112_6_1() {
    // A server MAY send Transfer-Encoding in a response to HEAD, or in a 304 to a GET:
    // neither has a body, so no coded bytes follow.
    for (request, answer, status) in [
        (
            "HEAD /coded HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nCache-Control: max-age=60\r\n\
             Connection: close\r\n\r\n",
            "http/1.1 200",
        ),
        (
            "GET /coded HTTP/1.1\r\nHost: p\r\nIf-None-Match: \"1\"\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip, chunked\r\nETag: \"1\"\r\n\
             Connection: close\r\n\r\n",
            "http/1.1 304",
        ),
    ] {
        let origin = RawOrigin::start(answer).await;
        let proxy = origin.proxy().await;
        let answered = raw_answer(&proxy, request).await;
        assert!(answered.starts_with(status), "{answered}");
    }
}

#[tokio::test]
async fn a_switch_of_protocols_nobody_asked_for_is_a_bad_gateway() {
    let origin = RawOrigin::start(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    )
    .await;
    let proxy = origin.proxy().await;
    let answer = proxy.get("/plain").await;
    assert_eq!(answer.status, 502);
    let body = String::from_utf8_lossy(&answer.body);
    assert!(body.contains("switched protocols"), "{body}");
}

#[tokio::test]
async fn requests_the_proxy_cannot_forward_as_they_came_are_refused_saying_why() {
    let origin = RawOrigin::start("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
    let proxy = origin.proxy().await;
    let options = raw_answer(
        &proxy,
        "OPTIONS * HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(options.starts_with("http/1.1 204"), "{options}");
    assert_eq!(
        origin.lines(),
        ["OPTIONS * HTTP/1.1"],
        "asterisk form goes on as it is"
    );
    for (request, status, reason) in [
        (
            "GET * HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
            "400",
            "the target * is only for options",
        ),
        (
            "GET p:80 HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
            "400",
            "a host:port target is only for connect",
        ),
        (
            "GET /a/../b HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
            "400",
            "dot segment",
        ),
        (
            "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n",
            "400",
            "needs a host",
        ),
        (
            "POST /a HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: gzip, chunked\r\n\
             Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "501",
            "transfer coding other than chunked",
        ),
    ] {
        let answer = raw_answer(&proxy, request).await;
        assert!(
            answer.starts_with(&format!("http/1.1 {status}")),
            "{request}: {answer}"
        );
        assert!(answer.contains(reason), "{request}: {answer}");
    }
    // RFC 9112 §3.2: a Host that is not `host[:port]`.
    for host in [
        "a:99999999",
        "[::1",
        "a:b:c",
        "::::",
        "%%%",
        "user@p",
        "[::1]x",
        "[zzz]",
        "[]",
        "a:+80",
    ] {
        let request = format!("GET /a HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let answer = raw_answer(&proxy, &request).await;
        assert!(answer.starts_with("http/1.1 400"), "{host}: {answer}");
        assert!(answer.contains("not a host and port"), "{host}: {answer}");
    }
    assert_eq!(origin.lines().len(), 1, "none of them reached the upstream");
}

#[tokio::test]
async fn a_request_body_the_client_garbles_is_a_bad_request_not_a_bad_gateway() {
    // An upstream that reads all it is sent and never answers: the request can only end
    // by its body failing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port is free");
    let upstream = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
            });
        }
    });
    let proxy = RunningProxy::launch_for(&upstream, &[], &[], None).await;
    let answer = raw_answer(
        &proxy,
        "POST /p HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         zz\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("http/1.1 400"), "{answer}");
    assert!(answer.ends_with("its body could not be read\n"), "{answer}");
}

#[tokio::test]
async fn a_proxy_that_is_its_own_upstream_refuses_the_request_that_comes_back_rfc_9110_7_6_3() {
    // The address the proxy will listen on, and forward to.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a loopback port is free");
    let config = Config::from_args_and_env(
        [
            "cachet-proxy",
            "--upstream",
            &format!("http://{addr}"),
            "--listen",
            &addr.to_string(),
            "--upstream-timeout",
            "10",
        ],
        |_: &str| None,
    )
    .expect("valid flags");
    let proxy = Proxy::bind(config).await.expect("the proxy binds");
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(proxy.serve(async {
        let _ = stopped.await;
    }));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // A GET would otherwise wait on its own miss until the upstream timeout, and a POST
    // go round until the headers it gathers pass a limit.
    for (method, body) in [(Method::GET, ""), (Method::POST, "x")] {
        let request = Request::builder()
            .method(method.clone())
            .uri(format!("http://{addr}/loop"))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("valid request");
        let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
            .await
            .expect("answered at once, not at the upstream timeout")
            .expect("the proxy answers");
        assert_eq!(response.status(), 508, "{method}");
        let body = read(response.into_body())
            .await
            .expect("the body completes");
        let body = String::from_utf8_lossy(&body);
        assert!(body.starts_with("loop detected"), "{method}: {body}");
    }
}

#[tokio::test]
async fn a_chain_of_proxies_is_no_loop() {
    let origin = Origin::start(|_| Reply::ok("origin")).await;
    let near = RunningProxy::start(&origin, &[]).await;
    let far = RunningProxy::launch_for(&format!("http://{}", near.addr), &[], &[], None).await;
    let answer = far.send(Method::POST, "/chain", &[]).await;
    assert_eq!(
        (answer.status, answer.body.as_ref()),
        (200, b"origin".as_slice())
    );
    let seen = &origin.seen()[0];
    let via: Vec<&str> = seen
        .headers
        .get_all("via")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(via.len(), 2, "{via:?}");
    assert_ne!(via[0], via[1], "each proxy names itself: {via:?}");
}
