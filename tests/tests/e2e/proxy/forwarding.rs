//! Forwarding headers through the proxy: what a client says of where a request came from
//! never reaches the upstream unless trusted, and answers that vary on it are not stored.

use super::*;

/// An origin that builds its page from `X-Forwarded-Host`, as many frameworks build links,
/// reading it as CGI and WSGI servers do: `X_Forwarded_Host` is the same variable.
async fn forwarded_host_origin() -> Origin {
    Origin::start(|seen| {
        let host = ["x-forwarded-host", "x_forwarded_host"]
            .into_iter()
            .find_map(|name| seen.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        Reply::ok(format!("links to {host}")).header("cache-control", "max-age=600")
    })
    .await
}

/// An origin that answers for the client `X-Forwarded-For` names, fresh for ten minutes,
/// with this `Vary`.
async fn answering_for_the_client(vary: &'static str) -> Origin {
    Origin::start(move |seen| {
        let client = seen
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nobody");
        Reply::ok(format!("for {client}"))
            .header("cache-control", "max-age=600")
            .header("vary", vary)
    })
    .await
}

#[tokio::test]
async fn an_answer_that_varies_on_the_clients_address_is_not_stored() {
    // The upstream answers for the client the proxy names in `X-Forwarded-For`, which the
    // proxy sets below the cache: the cache would tell variants apart by a header the
    // client did not send.
    let origin = answering_for_the_client("Accept-Encoding, X-Forwarded-For").await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let request = "GET /geo HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
    for from in [[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 1]] {
        let answer = raw_answer_from(&proxy, from, request).await;
        let client = format!("{}.{}.{}.{}", from[0], from[1], from[2], from[3]);
        assert!(answer.ends_with(&format!("for {client}")), "{answer}");
        assert!(
            answer.contains("cache-status: cachet; fwd=uri-miss\r\n"),
            "{answer}"
        );
    }
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn a_clients_forwarding_headers_never_reach_the_upstream_unless_trusted() {
    let origin = forwarded_host_origin().await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let spoofed = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "gopher"),
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "host=evil.example"),
    ];
    let first = proxy.send(Method::GET, "/page", &spoofed).await;
    assert_eq!(first.body.as_ref(), b"links to none");
    let seen = &origin.seen()[0];
    assert!(!seen.headers.contains_key("forwarded"));
    assert_eq!(
        seen.headers["x-forwarded-for"], "127.0.0.1",
        "the client, not its claim"
    );
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    // What was stored is what every client gets: nothing the first one chose.
    let hit = proxy.get("/page").await;
    assert_eq!(
        (hit.cache_status(), hit.body.as_ref()),
        ("cachet; hit", b"links to none".as_slice())
    );

    // Behind a load balancer that sets them, they are kept, and the client is added.
    let origin = forwarded_host_origin().await;
    let proxy = RunningProxy::start(&origin, &["--trust-forwarded"]).await;
    let answer = proxy.send(Method::GET, "/page", &spoofed).await;
    assert_eq!(answer.body.as_ref(), b"links to evil.example");
    let seen = &origin.seen()[0];
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "gopher");
}

#[tokio::test]
async fn forwarding_headers_spelt_with_underscores_never_reach_the_upstream_either() {
    let origin = forwarded_host_origin().await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let spoofed = [
        ("x_forwarded_host", "evil.example"),
        ("x-forwarded_for", "203.0.113.9"),
        ("x_real_ip", "203.0.113.9"),
        ("x_original_url", "/admin"),
    ];
    let first = proxy.send(Method::GET, "/page", &spoofed).await;
    assert_eq!(first.body.as_ref(), b"links to none");
    let seen = &origin.seen()[0];
    for (name, _) in spoofed {
        assert!(!seen.headers.contains_key(name), "{name} was forwarded");
    }
    let hit = proxy.get("/page").await;
    assert_eq!(
        (hit.cache_status(), hit.body.as_ref()),
        ("cachet; hit", b"links to none".as_slice())
    );

    // A balancer in front overwrites the spellings it sets, not these: they go even when
    // forwarding headers are trusted.
    let origin = forwarded_host_origin().await;
    let proxy = RunningProxy::start(&origin, &["--trust-forwarded"]).await;
    let first = proxy
        .send(
            Method::GET,
            "/page",
            &[
                ("x_forwarded_host", "evil.example"),
                ("x-forwarded-host", "lb.example"),
            ],
        )
        .await;
    let seen = &origin.seen()[0];
    assert!(!seen.headers.contains_key("x_forwarded_host"));
    assert_eq!(seen.headers["x-forwarded-host"], "lb.example");
    assert!(!first.body.as_ref().windows(4).any(|w| w == b"evil"));
}

#[tokio::test]
async fn an_answer_that_varies_on_an_underscore_spelling_of_the_clients_address_is_not_stored() {
    // A CGI origin reads `X_Forwarded_For` as the `X-Forwarded-For` the proxy sets.
    let origin = answering_for_the_client("X_Forwarded_For").await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let request = "GET /geo HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
    for from in [[127, 0, 0, 1], [127, 0, 0, 2]] {
        let answer = raw_answer_from(&proxy, from, request).await;
        let client = format!("{}.{}.{}.{}", from[0], from[1], from[2], from[3]);
        assert!(answer.ends_with(&format!("for {client}")), "{answer}");
    }
    assert_eq!(origin.requests(), 2);
}
