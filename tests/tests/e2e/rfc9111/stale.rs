//! §4.2.4 Serving stale, RFC 5861.

use super::*;

pub(super) async fn rfc5861_4_stale_if_error_serves_the_stored_response_when_the_origin_answers_500(
    mode: Mode,
) {
    let case = Case::start(mode, |seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("broken").status(500)
        } else {
            Reply::ok("good")
                .header("cache-control", "max-age=10, stale-if-error=60")
                .header("etag", "\"e\"")
        }
    })
    .await;
    case.get("/sie").await;
    case.advance(20);
    let served = case.get("/sie").await;
    assert_eq!(
        (served.status, served.body.as_ref(), served.age()),
        (200, b"good".as_slice(), Some(20))
    );
    assert_eq!(
        served.cache_status(),
        "cachet; fwd=stale; fwd-status=500; detail=stale-if-error"
    );
    case.advance(60);
    let too_stale = case.get("/sie").await;
    assert_eq!(
        (too_stale.status, too_stale.body.as_ref()),
        (500, b"broken".as_slice()),
        "past the stale-if-error window the error goes through"
    );
}

pub(super) async fn rfc5861_4_stale_if_error_covers_an_unreachable_origin(mode: Mode) {
    let case = Case::start(mode, |_| {
        Reply::ok("good").header("cache-control", "max-age=10, stale-if-error=60")
    })
    .await;
    case.get("/down").await;
    case.origin.stop();
    case.advance(30);
    let served = case.get("/down").await;
    // The proxy's upstream client turns a connection it cannot make into a 502, which is
    // what the cache sees.
    assert_eq!(
        (served.status, served.body.as_ref(), served.cache_status()),
        (
            200,
            b"good".as_slice(),
            "cachet; fwd=stale; fwd-status=502; detail=stale-if-error"
        )
    );
    case.advance(60);
    assert_eq!(case.get("/down").await.status, 502, "past the window");
}

pub(super) async fn rfc9111_5_2_2_2_must_revalidate_forbids_serving_stale(mode: Mode) {
    let case = Case::start(mode, |seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("broken").status(500)
        } else {
            Reply::ok("good")
                .header(
                    "cache-control",
                    "max-age=1, must-revalidate, stale-if-error=600, stale-while-revalidate=600",
                )
                .header("etag", "\"e\"")
        }
    })
    .await;
    case.get("/mr").await;
    case.advance(5);
    let answer = case
        .get_with("/mr", &[("cache-control", "max-stale=600")])
        .await;
    assert_eq!(
        (answer.status, answer.body.as_ref()),
        (500, b"broken".as_slice()),
        "neither max-stale, stale-if-error nor stale-while-revalidate lets it through"
    );
    assert_eq!(case.origin.requests(), 2);
}

pub(super) async fn rfc9111_5_2_2_8_proxy_revalidate_binds_the_shared_proxy_only(mode: Mode) {
    let case = Case::start(mode, |_| {
        Reply::ok("x").header("cache-control", "max-age=1, proxy-revalidate")
    })
    .await;
    case.get("/pr").await;
    case.advance(5);
    let answer = case
        .get_with("/pr", &[("cache-control", "max-stale=600")])
        .await;
    match mode {
        Mode::Shared => {
            assert_eq!(answer.cache_status(), "cachet; fwd=stale; stored");
            assert_eq!(case.origin.requests(), 2);
        }
        Mode::Private => {
            assert_eq!(answer.cache_status(), "cachet; hit");
            assert_eq!(answer.age(), Some(5));
            assert_eq!(case.origin.requests(), 1);
        }
    }
}

pub(super) async fn rfc5861_3_stale_while_revalidate_yields_to_the_requests_own_limits(mode: Mode) {
    let case = Case::start(mode, |_| {
        Reply::ok("v").header("cache-control", "max-age=60, stale-while-revalidate=600")
    })
    .await;
    case.get("/swr-limits").await;
    case.advance(10);
    // Fresh, but refused by the request: it goes to the origin, not to a stale answer.
    let refused = case
        .get_with("/swr-limits", &[("cache-control", "max-age=0")])
        .await;
    assert_eq!(refused.cache_status(), "cachet; fwd=request; stored");
    let too_little_left = case
        .get_with("/swr-limits", &[("cache-control", "min-fresh=61")])
        .await;
    assert_eq!(
        too_little_left.cache_status(),
        "cachet; fwd=request; stored"
    );
    assert_eq!(case.origin.requests(), 3);

    case.advance(120);
    // Stale, to a request that wants no stale response or not this stale one.
    for limit in ["max-age=600", "max-stale=5", "min-fresh=1"] {
        let answer = case
            .get_with("/swr-limits", &[("cache-control", limit)])
            .await;
        assert_eq!(
            answer.cache_status(),
            "cachet; fwd=stale; stored",
            "{limit}"
        );
        case.advance(120);
    }
    assert_eq!(case.origin.requests(), 6);
    // Stale, to a request that may not reach the origin: a 504, and no refresh either.
    let cached_only = case
        .get_with("/swr-limits", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(cached_only.status, 504);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(case.origin.requests(), 6);
}

pub(super) async fn rfc5861_3_stale_while_revalidate_answers_at_once_and_refreshes_once_per_key(
    mode: Mode,
) {
    let case = Case::start(mode, |seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=600")
                .delay(Duration::from_millis(300))
        } else {
            Reply::ok("first")
                .header("cache-control", "max-age=10, stale-while-revalidate=60")
                .header("etag", "\"1\"")
        }
    })
    .await;
    case.get("/swr").await;
    case.advance(20);
    for _ in 0..5 {
        let stale = case.get("/swr").await;
        assert_eq!(
            (stale.cache_status(), stale.body.as_ref()),
            (
                "cachet; hit; detail=stale-while-revalidate",
                b"first".as_slice()
            )
        );
    }
    // The one background revalidation waits on the slow origin; wait for it.
    let mut refreshed = false;
    for _ in 0..100 {
        if case.get("/swr").await.cache_status() == "cachet; hit" {
            refreshed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refreshed, "refreshed by the 304");
    assert_eq!(
        case.origin.requests(),
        2,
        "stale answers, one background refresh"
    );
}

pub(super) async fn rfc5861_3_past_the_stale_while_revalidate_window_the_request_waits_for_the_origin(
    mode: Mode,
) {
    let case = Case::start(mode, |_| {
        Reply::ok("x").header("cache-control", "max-age=10, stale-while-revalidate=5")
    })
    .await;
    case.get("/late").await;
    case.advance(16);
    assert_eq!(
        case.get("/late").await.cache_status(),
        "cachet; fwd=stale; stored"
    );
    assert_eq!(case.origin.requests(), 2);
}
