//! §5.2.1 Request directives, §5.4 Pragma.

use super::*;

pub(super) async fn rfc9111_5_2_1_1_request_max_age_limits_the_age_served(mode: Mode) {
    let case = Case::start(mode, |_| fresh_for_a_minute("x")).await;
    case.get("/ma").await;
    case.advance(20);
    let young_enough = case
        .get_with("/ma", &[("cache-control", "max-age=30")])
        .await;
    assert_eq!(young_enough.cache_status(), "cachet; hit");
    let too_old = case
        .get_with("/ma", &[("cache-control", "max-age=10")])
        .await;
    assert_refetched(&too_old);
    assert_eq!(case.origin.requests(), 2);
}

pub(super) async fn rfc9111_5_2_1_2_max_stale_accepts_a_stale_response_within_its_bound(
    mode: Mode,
) {
    let case = Case::start(mode, |_| {
        Reply::ok("x").header("cache-control", "max-age=10")
    })
    .await;
    case.get("/ms").await;
    case.advance(20);
    for accepted in ["max-stale=30", "max-stale"] {
        let stale = case.get_with("/ms", &[("cache-control", accepted)]).await;
        assert_eq!(
            (stale.cache_status(), stale.age()),
            ("cachet; hit", Some(20)),
            "{accepted}"
        );
    }
    let too_stale = case
        .get_with("/ms", &[("cache-control", "max-stale=5")])
        .await;
    assert_eq!(too_stale.cache_status(), "cachet; fwd=stale; stored");
    assert_eq!(case.origin.requests(), 2);
}

pub(super) async fn rfc9111_5_2_1_3_min_fresh_asks_for_freshness_left(mode: Mode) {
    let case = Case::start(mode, |_| fresh_for_a_minute("x")).await;
    case.get("/mf").await;
    case.advance(30);
    let enough = case
        .get_with("/mf", &[("cache-control", "min-fresh=20")])
        .await;
    assert_eq!(enough.cache_status(), "cachet; hit");
    let not_enough = case
        .get_with("/mf", &[("cache-control", "min-fresh=40")])
        .await;
    assert_refetched(&not_enough);
    assert_eq!(case.origin.requests(), 2);
}

/// Not served from the cache; the origin's answer is stored. (Which `fwd` it names is
/// RFC 9211's business: see the case after this one.)
fn assert_refetched(answer: &Answer) {
    let status = answer.cache_status();
    assert!(
        status.starts_with("cachet; fwd=") && status.ends_with("; stored"),
        "{status}"
    );
}

/// A fresh stored response that a request's `max-age` or `min-fresh` refuses is
/// forwarded with `fwd=request`, not `fwd=stale`: "the cache was able to select a fresh
/// response for the request, but the request's semantics [...] did not allow its use".
pub(super) async fn rfc9211_2_2_fwd_request_when_a_request_directive_refuses_a_fresh_response(
    mode: Mode,
) {
    let case = Case::start(mode, |_| fresh_for_a_minute("x")).await;
    for path in ["/refused/max-age", "/refused/min-fresh"] {
        case.get(path).await;
    }
    case.advance(30);
    for (path, directive) in [
        ("/refused/max-age", "max-age=10"),
        ("/refused/min-fresh", "min-fresh=40"),
    ] {
        let answer = case.get_with(path, &[("cache-control", directive)]).await;
        assert_eq!(
            answer.cache_status(),
            "cachet; fwd=request; stored",
            "{directive}"
        );
    }
}

pub(super) async fn rfc9111_5_2_1_4_a_request_with_no_cache_goes_to_the_origin(mode: Mode) {
    let case = Case::start(mode, |_| fresh_for_a_minute("x")).await;
    case.get("/nc").await;
    let reload = case.get_with("/nc", &[("cache-control", "no-cache")]).await;
    assert_eq!(reload.cache_status(), "cachet; fwd=request; stored");
    assert_eq!(case.origin.requests(), 2);
}

pub(super) async fn rfc9111_5_4_pragma_no_cache_counts_only_without_request_cache_control(
    mode: Mode,
) {
    let case = Case::start(mode, |_| fresh_for_a_minute("x")).await;
    case.get("/pragma").await;
    let pragma = case.get_with("/pragma", &[("pragma", "no-cache")]).await;
    assert_eq!(pragma.cache_status(), "cachet; fwd=request; stored");
    let both = case
        .get_with(
            "/pragma",
            &[("pragma", "no-cache"), ("cache-control", "max-age=600")],
        )
        .await;
    assert_eq!(both.cache_status(), "cachet; hit");
    assert_eq!(case.origin.requests(), 2);
}

pub(super) async fn rfc9111_5_2_1_7_only_if_cached_answers_504_on_a_miss(mode: Mode) {
    let case = Case::start(mode, |_| fresh_for_a_minute("x")).await;
    let only_if_cached = [("cache-control", "only-if-cached")];
    let miss = case.get_with("/oic", &only_if_cached).await;
    assert_eq!(
        (miss.status, miss.cache_status()),
        (504, "cachet; detail=only-if-cached")
    );
    assert_eq!(case.origin.requests(), 0);
    case.get("/oic").await;
    let hit = case.get_with("/oic", &only_if_cached).await;
    assert_eq!((hit.status, hit.cache_status()), (200, "cachet; hit"));
    case.advance(61);
    let stale = case.get_with("/oic", &only_if_cached).await;
    assert_eq!(
        (stale.status, stale.cache_status()),
        (504, "cachet; detail=only-if-cached"),
        "a stale entry is not usable without max-stale"
    );
    assert_eq!(case.origin.requests(), 1);
}
