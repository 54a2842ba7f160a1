use std::net::IpAddr;
use std::task::{Context, Poll};

use http::StatusCode;

use super::*;
use crate::upstream::hop_by_hop::tests::headers;

fn upstream(url: &str) -> Upstream {
    Upstream::parse(url).expect("a valid upstream")
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
        ("http://origin", "http://elsewhere:9", "http://origin/"),
        (
            "http://origin",
            "http://elsewhere?a=1",
            "http://origin/?a=1",
        ),
        (
            "http://origin/api",
            "http://elsewhere?a=1",
            "http://origin/api/?a=1",
        ),
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
            .body(String::new())
            .expect("a valid request");
        let request = upstream(base).rewrite(request, &Via::random());
        assert_eq!(request.uri().to_string(), expected, "{base} + {target}");
    }
}

#[test]
fn an_ipv4_client_of_a_dual_stack_listener_is_forwarded_as_ipv4() {
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("an address");
    assert_eq!(client_address(mapped).expect("a value"), "192.0.2.7");
    let v6: IpAddr = "2001:db8::1".parse().expect("an address");
    assert_eq!(client_address(v6).expect("a value"), "2001:db8::1");
}

#[test]
fn forwarding_headers_are_replaced_unless_trusted() {
    let client = client_address(IpAddr::from([192, 0, 2, 7]));
    let client = client.as_ref();
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
fn forwarding_headers_are_known_in_either_spelling_of_their_dashes() {
    for name in [
        "x-forwarded-host",
        "x_forwarded_host",
        "x-forwarded_for",
        "x_forwarded-proto",
        "x_real_ip",
        "x_original_url",
        "x_rewrite-url",
        "x_original_host",
        "forwarded",
    ] {
        assert!(is_forwarded(&HeaderName::from_static(name)), "{name}");
    }
    for name in [
        "x-forwarded",
        "x_forwarded",
        "xxforwarded-host",
        "forwarded_",
        "x-real-ipv6",
    ] {
        assert!(!is_forwarded(&HeaderName::from_static(name)), "{name}");
    }
}

/// What the proxy says of a request it refuses: `None` when it forwards it.
fn refused<B>(request: &Request<B>) -> Option<Refused> {
    let refused = request.extensions().get::<Refused>().copied();
    assert_eq!(
        refused.is_some(),
        request.uri().authority().is_none(),
        "a refused request goes to no upstream, and only a refused one"
    );
    refused
}

#[test]
fn a_target_in_asterisk_or_authority_form_is_only_for_options_or_connect_rfc_9112_3_2() {
    let send = |method: Method, target: &str| {
        let request = Request::builder()
            .method(method)
            .uri(target)
            .header(HOST, "proxy")
            .body(String::new())
            .expect("a valid request");
        upstream("http://origin/api").rewrite(request, &Via::random())
    };
    let options = send(Method::OPTIONS, "*");
    assert_eq!(refused(&options), None);
    assert_eq!(
        options.uri().path_and_query().map(|p| p.as_str()),
        Some("*")
    );
    assert_eq!(
        options.uri().authority().map(|a| a.as_str()),
        Some("origin")
    );
    for (method, target, reason) in [
        (Method::GET, "*", "the target * is only for OPTIONS"),
        (Method::HEAD, "*", "the target * is only for OPTIONS"),
        (
            Method::GET,
            "origin:80",
            "a host:port target is only for CONNECT",
        ),
        (
            Method::OPTIONS,
            "origin:80",
            "a host:port target is only for CONNECT",
        ),
    ] {
        let request = send(method.clone(), target);
        let refusal = refused(&request).expect("refused");
        assert_eq!(refusal.status, StatusCode::BAD_REQUEST, "{method} {target}");
        assert!(
            refusal.reason.contains(reason),
            "{method} {target}: {refusal:?}"
        );
    }
}

#[test]
fn a_request_in_a_transfer_coding_other_than_chunked_is_not_implemented_rfc_9112_6_1() {
    let send = |coding: &str| {
        let request = Request::post("/upload")
            .header(HOST, "proxy")
            .header("transfer-encoding", coding)
            .body(String::new())
            .expect("a valid request");
        upstream("http://origin").rewrite(request, &Via::random())
    };
    for coding in [
        "chunked",
        "Chunked",
        " CHUNKED ",
        ", chunked",
        "chunked,",
        "",
    ] {
        assert_eq!(refused(&send(coding)), None, "{coding:?}");
    }
    for coding in ["gzip, chunked", "gzip", "chunked, identity"] {
        let refusal = refused(&send(coding)).expect("refused");
        assert_eq!(refusal.status, StatusCode::NOT_IMPLEMENTED, "{coding}");
        assert!(refusal.reason.contains("transfer coding"), "{coding}");
    }
}

#[test]
fn an_http_1_1_request_without_exactly_one_host_is_refused() {
    let with_hosts = |hosts: &[&str], version| {
        let mut request = Request::builder().uri("/page").version(version);
        for host in hosts {
            request = request.header(HOST, *host);
        }
        upstream("http://origin")
            .rewrite(request.body(String::new()).expect("valid"), &Via::random())
    };
    for (hosts, reason) in [
        (&[][..], "needs a Host"),
        (&["a", "b"], "more than one Host"),
        (&["a/b"], "not a host and port"),
        (&["a b"], "not a host and port"),
        (&["user@a"], "not a host and port"),
        (&["a:99999999"], "not a host and port"),
        (&["a:65536"], "not a host and port"),
        (&["a:x"], "not a host and port"),
        (&["a:+80"], "not a host and port"),
        (&["[::1"], "not a host and port"),
        (&["::1"], "not a host and port"),
        (&["a:b:c"], "not a host and port"),
        (&["::::"], "not a host and port"),
        (&["%%%"], "not a host and port"),
        (&[":80"], "not a host and port"),
        (&["a]"], "not a host and port"),
        (&["[::1]x"], "not a host and port"),
        (&["[zzz]"], "not a host and port"),
        (&["[]"], "not a host and port"),
        (&["%4"], "not a host and port"),
    ] {
        let request = with_hosts(hosts, Version::HTTP_11);
        let refusal = refused(&request).expect("refused");
        assert!(refusal.reason.contains(reason), "{hosts:?}: {refusal:?}");
    }
    let two = with_hosts(&["a", "b"], Version::HTTP_10);
    assert_eq!(two.uri().authority(), None, "more than one in any version");
    for host in [
        "proxy",
        "proxy.example:8080",
        "[::1]:80",
        "[::1]",
        "10.0.0.1",
        "a:65535",
        "a:",
        "my_host",
        "ex%41mple.com",
        "[fe80::1%25eth0]:8080",
        "[v1.x]",
        "a.example.",
        "",
    ] {
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
        assert_eq!(rewritten(target).authority(), None, "{target}");
        let request = Request::get(target)
            .header(HOST, "proxy")
            .body(String::new());
        let request = upstream("http://origin").rewrite(request.expect("valid"), &Via::random());
        let refusal = refused(&request).expect("refused");
        assert!(refusal.reason.contains("dot segment"), "{target}");
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
        let uri = rewritten(target).to_string();
        assert_eq!(uri, format!("http://origin/api{target}"), "{target}");
    }
}

/// The URI a GET of `target` goes upstream with, under the base path `/api`.
fn rewritten(target: &str) -> Uri {
    let request = Request::builder()
        .uri(target)
        .header(HOST, "proxy")
        .body(String::new())
        .expect("valid");
    upstream("http://origin/api")
        .rewrite(request, &Via::random())
        .uri()
        .clone()
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
        .body(String::new())
        .expect("a valid request");
    let via = Via::random();
    request = upstream("http://origin.example:8080/base").rewrite(request, &via);
    assert_eq!(request.version(), Version::HTTP_11);
    let h = request.headers();
    assert_eq!(
        h.get_all(HOST).iter().collect::<Vec<_>>(),
        ["origin.example:8080"]
    );
    assert_eq!(
        h.get_all(VIA).iter().collect::<Vec<_>>(),
        ["1.1 client-side", &format!("2 {}", via.pseudonym)]
    );
    assert!(h.get("x-hop").is_none() && h.get("te").is_none() && h.get("connection").is_none());
    assert_eq!(
        h.get("accept").map(HeaderValue::as_bytes),
        Some(&b"text/html"[..])
    );
}

#[test]
fn a_request_whose_via_names_this_proxy_has_looped_and_is_refused_rfc_9110_7_6_3() {
    let here = Via::random();
    let elsewhere = Via::random();
    assert_ne!(here.pseudonym, elsewhere.pseudonym);
    assert!(here.pseudonym.starts_with("cachet-") && here.pseudonym.len() == 23);
    let with_via = |values: &[&str]| {
        let mut request = Request::get("/page").header(HOST, "proxy");
        for value in values {
            request = request.header(VIA, *value);
        }
        upstream("http://origin").rewrite(request.body(String::new()).expect("valid"), &here)
    };
    let ours = here.pseudonym.as_str();
    for values in [
        vec![format!("1.1 {ours}")],
        vec![format!("1.0 fred, 1.1  {ours} (cachet)")],
        vec!["1.1 a".to_owned(), format!("2 {ours}")],
    ] {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let refusal = refused(&with_via(&values)).expect("refused");
        assert_eq!(refusal.status, StatusCode::LOOP_DETECTED, "{values:?}");
        assert!(refusal.reason.contains("loop detected"), "{values:?}");
    }
    let theirs = format!("1.1 {}", elsewhere.pseudonym);
    let near = format!("1.1 {ours}x, 1.1 x{ours}, {ours} 1.1");
    for values in [[theirs.as_str()], ["1.1 cachet"], [near.as_str()]] {
        assert_eq!(refused(&with_via(&values)), None, "{values:?}");
    }
}

#[test]
fn cookie_fields_are_joined_into_one_rfc_9113_8_2_3() {
    for (fields, joined) in [
        (&["a=1", "b=2", "c=3"][..], "a=1; b=2; c=3"),
        (&["a=1", "", "b=2 "], "a=1; b=2"),
        (&["a=1; b=2"], "a=1; b=2"),
    ] {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|value| ("cookie", *value)).collect();
        let mut map = headers(&pairs);
        join_cookies(&mut map);
        assert_eq!(
            map.get_all(COOKIE).iter().collect::<Vec<_>>(),
            [joined],
            "{fields:?}"
        );
    }
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
            .body(String::new())
            .expect("valid")
    };
    let mut options = request(Method::OPTIONS, "2");
    assert!(max_forwards(&mut options, &Keys::new()).is_none());
    assert_eq!(options.headers()["max-forwards"], "1");

    let answer =
        max_forwards(&mut request(Method::OPTIONS, "0"), &Keys::new()).expect("answered here");
    assert_eq!(answer.status(), StatusCode::OK);
    let trace =
        max_forwards(&mut request(Method::TRACE, "0"), &Keys::new()).expect("answered here");
    assert_eq!(trace.headers()[CONTENT_TYPE], "message/http");
    let body = body_text(trace);
    assert!(body.starts_with("TRACE /x HTTP/1.1\r\n"), "{body}");
    assert!(
        body.contains("accept: */*\r\n") && !body.contains("secret"),
        "{body}"
    );

    for (method, left) in [(Method::GET, "0"), (Method::OPTIONS, "many")] {
        let mut other = request(method, left);
        assert!(max_forwards(&mut other, &Keys::new()).is_none());
        assert_eq!(other.headers()["max-forwards"], left, "left as it is");
    }
}

#[test]
fn a_trace_answered_here_leaves_out_the_configured_credentials() {
    let keys = Keys::new().credentials(["x-session", "token"]);
    let mut trace = Request::builder()
        .method(Method::TRACE)
        .uri("http://origin/x?a=1&token=s1;Token=s2&b=2&%74oken=s3")
        .header("max-forwards", "0")
        .header("x-session", "s4")
        .header("accept", "*/*")
        .body(String::new())
        .expect("valid");
    let body = body_text(max_forwards(&mut trace, &keys).expect("answered here"));
    assert!(body.starts_with("TRACE /x?a=1&b=2 HTTP/1.1\r\n"), "{body}");
    assert!(body.contains("accept: */*\r\n"), "{body}");
    assert!(!body.contains("s1") && !body.contains("s4"), "{body}");
}

#[test]
fn credentials_leave_the_query_with_their_separators() {
    let keys = Keys::new().credentials(["api_key"]);
    let is_credential = |name: &str| keys.is_credential(name);
    for (query, kept) in [
        ("a=1&b=2", "a=1&b=2"),
        ("a=1&", "a=1&"),
        ("api_key=s", ""),
        ("api_key=s&a=1", "a=1"),
        ("a=1&api_key=s", "a=1"),
        ("a=1;api_key=s&b=2", "a=1;b=2"),
        ("a=1&API%5Fkey=s&api_key&b", "a=1&b"),
        ("api_keyx=1", "api_keyx=1"),
    ] {
        assert_eq!(without_credentials(query, is_credential), kept, "{query}");
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
fn a_loop_is_warned_of_once_a_minute_at_most() {
    let via = Via::random();
    assert!(via.may_warn(), "the first time");
    assert!(!via.may_warn(), "not again at once");
    assert!(!via.clone().may_warn(), "nor by a clone");
}
