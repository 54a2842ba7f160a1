//! §5.2.2 Response directives, §3.5 Authorization, RFC 8246.

use super::*;

pub(super) async fn rfc9111_5_2_2_10_s_maxage_is_honoured_shared_and_ignored_private(mode: Mode) {
    let case = Case::start(mode, |_| {
        Reply::ok("x").header("cache-control", "max-age=1, s-maxage=100")
    })
    .await;
    case.get("/s").await;
    case.advance(50);
    let answer = case.get("/s").await;
    match mode {
        Mode::Shared => assert_eq!(
            (answer.cache_status(), answer.age()),
            ("cachet; hit", Some(50))
        ),
        Mode::Private => assert_eq!(answer.cache_status(), "cachet; fwd=stale; stored"),
    }
}

pub(super) async fn rfc9111_5_2_2_7_private_responses_are_kept_by_the_private_proxy_only(
    mode: Mode,
) {
    let case = Case::start(mode, |_| {
        Reply::ok("mine").header("cache-control", "private, max-age=60")
    })
    .await;
    case.get("/p").await;
    let second = case.get("/p").await;
    let expected = match mode {
        Mode::Shared => "cachet; fwd=uri-miss",
        Mode::Private => "cachet; hit",
    };
    assert_eq!(
        (second.cache_status(), second.body.as_ref()),
        (expected, b"mine".as_slice())
    );
}

pub(super) async fn rfc9111_5_2_2_private_and_no_cache_field_names_are_not_served_from_the_cache(
    mode: Mode,
) {
    let case = Case::start(mode, |_| {
        Reply::ok("x")
            .header(
                "cache-control",
                "max-age=60, private=\"x-user\", no-cache=\"x-token\"",
            )
            .header("x-user", "alice")
            .header("x-token", "t")
    })
    .await;
    let first = case.get("/f").await;
    assert_eq!(
        (
            first.headers["x-user"].as_bytes(),
            first.headers["x-token"].as_bytes()
        ),
        (b"alice".as_slice(), b"t".as_slice()),
        "the first user sees everything"
    );
    let second = case.get("/f").await;
    assert_eq!(second.cache_status(), "cachet; hit");
    assert!(
        !second.headers.contains_key("x-token"),
        "no-cache=\"x-token\""
    );
    match mode {
        Mode::Shared => assert!(!second.headers.contains_key("x-user")),
        Mode::Private => assert_eq!(second.headers["x-user"], "alice"),
    }
}

pub(super) async fn rfc9111_3_5_authorization_responses_are_shared_only_when_the_origin_allows(
    mode: Mode,
) {
    let case = Case::start(mode, |seen| {
        let cc = match seen.path.as_str() {
            "/public" => "public, max-age=60",
            "/s-maxage" => "s-maxage=60",
            "/must-revalidate" => "max-age=60, must-revalidate",
            _ => "max-age=60",
        };
        Reply::ok("for you").header("cache-control", cc)
    })
    .await;
    let auth = [("authorization", "Bearer alice")];
    for path in ["/plain", "/public", "/s-maxage", "/must-revalidate"] {
        case.get_with(path, &auth).await;
        let second = case.get_with(path, &auth).await;
        let expected = match (mode, path) {
            (Mode::Shared, "/plain") => "cachet; fwd=uri-miss",
            (Mode::Private, "/s-maxage") => "cachet; fwd=uri-miss",
            _ => "cachet; hit",
        };
        assert_eq!(second.cache_status(), expected, "{path}");
    }
}

pub(super) async fn rfc9111_3_set_cookie_responses_are_kept_by_the_private_proxy_only(mode: Mode) {
    let case = Case::start(mode, |_| {
        fresh_for_a_minute("x").header("set-cookie", "id=1")
    })
    .await;
    case.get("/c").await;
    let second = case.get("/c").await;
    match mode {
        Mode::Shared => assert_eq!(second.cache_status(), "cachet; fwd=uri-miss"),
        Mode::Private => {
            assert_eq!(second.cache_status(), "cachet; hit");
            assert_eq!(second.headers["set-cookie"], "id=1");
        }
    }
}

/// `must-understand` overrides `no-store` for a status cachet understands, and for any
/// other forbids storing (RFC 9111 §3, §5.2.2.3).
pub(super) async fn rfc9111_5_2_2_3_must_understand_stores_only_statuses_cachet_understands(
    mode: Mode,
) {
    let case = Case::start(mode, |seen| {
        let status = if seen.path == "/known" { 200 } else { 299 };
        Reply::ok("x")
            .status(status)
            .header("cache-control", "no-store, must-understand, max-age=600")
    })
    .await;
    let first = case.get("/unknown").await;
    assert_eq!(
        (first.status, first.cache_status()),
        (299, "cachet; fwd=uri-miss")
    );
    assert_eq!(
        case.get("/unknown").await.cache_status(),
        "cachet; fwd=uri-miss"
    );
    case.get("/known").await;
    assert_eq!(case.get("/known").await.cache_status(), "cachet; hit");
    assert_eq!(case.origin.requests(), 3);
}

pub(super) async fn rfc8246_2_immutable_survives_a_reload_in_the_private_proxy_only(mode: Mode) {
    let case = Case::start(mode, |_| {
        Reply::ok("x").header("cache-control", "max-age=60, immutable")
    })
    .await;
    case.get("/i").await;
    case.advance(1);
    let reload = case.get_with("/i", &[("cache-control", "no-cache")]).await;
    let expected = match mode {
        Mode::Shared => "cachet; fwd=request; stored",
        Mode::Private => "cachet; hit",
    };
    assert_eq!(reload.cache_status(), expected);
}

pub(super) async fn rfc9111_3_1_hop_by_hop_and_connection_named_headers_are_never_served(
    mode: Mode,
) {
    let case = Case::start(mode, |_| {
        fresh_for_a_minute("x")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("x-end-to-end", "kept")
    })
    .await;
    let first = case.get("/hop").await;
    let hit = case.get("/hop").await;
    assert_eq!(hit.cache_status(), "cachet; hit");
    for answer in [&first, &hit] {
        assert!(!answer.headers.contains_key("x-hop"));
        assert!(!answer.headers.contains_key("keep-alive"));
        assert_eq!(answer.headers["x-end-to-end"], "kept");
    }
}

/// An upstream's `Connection` may name fields the proxy's cache sets itself: those the
/// upstream sent are hop-by-hop (RFC 9110 §7.6.1) and go before the cache adds its own
/// `Cache-Status` (RFC 9211 §2) and `Age`.
pub(super) async fn rfc9110_7_6_1_the_upstreams_connection_removes_its_own_cache_status_not_the_proxys(
    mode: Mode,
) {
    let case = Case::start(mode, |_| {
        Reply::ok("x")
            .header("cache-control", "max-age=600")
            .header("connection", "age, cache-status")
            .header("age", "5")
            .header("cache-status", "upstreamcache; hit")
    })
    .await;
    let miss = case.get("/named").await;
    let hit = case.get("/named").await;
    let statuses = |answer: &Answer| -> Vec<String> {
        answer
            .headers
            .get_all("cache-status")
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect()
    };
    assert_eq!(
        (statuses(&miss), miss.age()),
        (vec!["cachet; fwd=uri-miss; stored".to_owned()], None)
    );
    assert_eq!(
        (hit.cache_status(), statuses(&hit).len(), hit.age()),
        ("cachet; hit", 1, Some(0))
    );
}

// Layer-only cases (see the top of the file).
