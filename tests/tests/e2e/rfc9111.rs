//! The conformance suite: HTTP caching requirements of RFC 9111, RFC 5861, RFC 8246 and
//! RFC 9211, each checked through the real `cachet-proxy` in front of a scripted origin,
//! as a user of the proxy sees them (status, body, `Cache-Status` without its `ttl`,
//! `Age`, and how many requests reached the origin).
//!
//! Every case is an `async fn(Mode)` named after the section it checks; the table at the
//! bottom runs it in `shared` and `private` mode (tests `rfc9111::shared::…` and
//! `rfc9111::private::…`), and a case whose requirement differs by mode says so with a
//! `match`. The proxy and the origin share a [`ManualClock`] (the origin's `Date` comes
//! from it), so time moves only when a case says so and nothing sleeps to go stale.
//!
//! Layer-only cases, which need a `CacheLayer` setting the proxy has no flag for, or
//! look at what is stored rather than at what the proxy sends on:
//! - `store_set_cookie(true)` in a shared cache;
//! - hop-by-hop and `Connection`-named headers left out of the stored entry (the proxy
//!   removes them from everything it sends, stored or not).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cachet::clock::{Clock, ManualClock};
use cachet::{Cache, CacheLayer, CacheStatus, MemoryStore};
use cachet_proxy::Mode;
use cachet_tests::{Origin, Reply, Seen, client, get, read};
use http::{Method, Request};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::{Layer, ServiceExt};

use crate::proxy::{Answer, RunningProxy};

/// One case's world: a scripted origin, a proxy in front of it, and their clock.
struct Case {
    origin: Origin,
    proxy: RunningProxy,
    clock: ManualClock,
}

impl Case {
    async fn start(mode: Mode, script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        // A whole second, so that the origin's `Date` (in seconds) is exactly the clock.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the system clock is past 1970");
        let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(now.as_secs()));
        let origin = Origin::start_dated(clock.clone(), script).await;
        let mode_flag = match mode {
            Mode::Shared => "shared",
            Mode::Private => "private",
        };
        let proxy =
            RunningProxy::start_with_clock(&origin, &["--mode", mode_flag], clock.clone()).await;
        Self {
            origin,
            proxy,
            clock,
        }
    }

    fn advance(&self, seconds: u64) {
        self.clock.advance(Duration::from_secs(seconds));
    }

    /// The clock's time `seconds` from now, as an HTTP date.
    fn date_in(&self, seconds: u64) -> String {
        httpdate::fmt_http_date(self.clock.now() + Duration::from_secs(seconds))
    }

    async fn get(&self, path: &str) -> Answer {
        self.proxy.get(path).await
    }

    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.proxy.send(Method::GET, path, headers).await
    }

    async fn send(&self, method: Method, path: &str) -> Answer {
        self.proxy.send(method, path, &[]).await
    }
}

/// A reply `max-age=60` with this body.
fn fresh_for_a_minute(body: &'static str) -> Reply {
    Reply::ok(body).header("cache-control", "max-age=60")
}

// §4.2 Freshness, §4.2.3 Age, §5.3 Expires

async fn rfc9111_4_2_a_max_age_1_entry_is_refetched_after_expiry(mode: Mode) {
    let case = Case::start(mode, |_| {
        Reply::ok("short").header("cache-control", "max-age=1")
    })
    .await;
    let first = case.get("/r").await;
    assert_eq!(
        (first.status, first.body.as_ref(), first.cache_status()),
        (200, b"short".as_slice(), "cachet; fwd=uri-miss; stored")
    );
    let hit = case.get("/r").await;
    assert_eq!(
        (hit.cache_status(), hit.body.as_ref()),
        ("cachet; hit", b"short".as_slice())
    );
    case.advance(2);
    let again = case.get("/r").await;
    assert_eq!(
        (again.status, again.body.as_ref(), again.cache_status()),
        (200, b"short".as_slice(), "cachet; fwd=stale; stored")
    );
    assert_eq!(case.origin.requests(), 2);
}

async fn rfc9111_4_2_3_a_hit_carries_its_age_and_the_origins_date(mode: Mode) {
    let case = Case::start(mode, |seen| {
        let reply = fresh_for_a_minute("dated");
        if seen.path == "/aged" {
            reply.header("age", "10")
        } else {
            reply
        }
    })
    .await;
    let filled_at = httpdate::fmt_http_date(case.clock.now());
    case.get("/dated").await;
    case.get("/aged").await;
    case.advance(7);
    let hit = case.get("/dated").await;
    assert_eq!(hit.cache_status(), "cachet; hit");
    assert_eq!(hit.age(), Some(7));
    assert_eq!(
        hit.headers["date"],
        filled_at.as_str(),
        "the stored Date is kept"
    );
    let aged = case.get("/aged").await;
    assert_eq!(aged.cache_status(), "cachet; hit");
    assert_eq!(aged.age(), Some(17), "the origin's Age counts");
    assert_eq!(case.origin.requests(), 2);
}

async fn rfc9211_2_5_ttl_is_the_remaining_freshness_and_negative_once_stale(mode: Mode) {
    let case = Case::start(mode, |seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("origin is down").status(500)
        } else {
            Reply::ok("old")
                .header("cache-control", "max-age=60, stale-if-error=600")
                .header("etag", "\"e\"")
        }
    })
    .await;
    let first = case.get("/ttl").await;
    assert_eq!(
        first.ttl(),
        None,
        "a forwarded response has no stored freshness"
    );
    case.advance(5);
    assert_eq!(case.get("/ttl").await.ttl(), Some(55));
    case.advance(95);
    let stale = case.get("/ttl").await;
    assert_eq!(
        stale.cache_status(),
        "cachet; fwd=stale; fwd-status=500; detail=stale-if-error"
    );
    assert_eq!(stale.ttl(), Some(-40));
}

/// `Expires` one minute ahead in an IMF-fixdate, an RFC 850 date and an asctime date
/// (RFC 9110 §5.6.7).
async fn rfc9111_5_3_expires_is_read_in_all_three_date_formats(mode: Mode) {
    let case = Case::start(mode, |seen| {
        let expires = seen
            .headers
            .get("x-expires")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        Reply::ok("dated").header("expires", expires)
    })
    .await;
    let imf = case.date_in(60);
    let formats = [
        ("/imf", imf.clone()),
        ("/rfc850", rfc850(&imf)),
        ("/asctime", asctime(&imf)),
    ];
    for (path, expires) in &formats {
        let first = case.get_with(path, &[("x-expires", expires)]).await;
        assert_eq!(
            first.cache_status(),
            "cachet; fwd=uri-miss; stored",
            "{expires}"
        );
    }
    case.advance(30);
    for (path, expires) in &formats {
        let hit = case.get(path).await;
        assert_eq!(hit.cache_status(), "cachet; hit", "{expires} is fresh");
        assert_eq!(hit.ttl(), Some(30), "{expires}");
    }
    case.advance(31);
    for (path, expires) in &formats {
        let stale = case.get_with(path, &[("x-expires", expires)]).await;
        assert_eq!(
            stale.cache_status(),
            "cachet; fwd=stale",
            "{expires} expired (the refetch, with an Expires now past, is not stored)"
        );
    }
    assert_eq!(case.origin.requests(), 6);
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` as `Sunday, 06-Nov-94 08:49:37 GMT`.
fn rfc850(imf: &str) -> String {
    let parts: Vec<&str> = imf.split(' ').collect();
    let day = match parts[0] {
        "Mon," => "Monday",
        "Tue," => "Tuesday",
        "Wed," => "Wednesday",
        "Thu," => "Thursday",
        "Fri," => "Friday",
        "Sat," => "Saturday",
        _ => "Sunday",
    };
    format!(
        "{day}, {}-{}-{} {} GMT",
        parts[1],
        parts[2],
        &parts[3][2..],
        parts[4]
    )
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` as `Sun Nov  6 08:49:37 1994`.
fn asctime(imf: &str) -> String {
    let parts: Vec<&str> = imf.split(' ').collect();
    let day: u8 = parts[1].parse().expect("an IMF-fixdate day is a number");
    format!(
        "{} {} {day:>2} {} {}",
        parts[0].trim_end_matches(','),
        parts[2],
        parts[4],
        parts[3]
    )
}

/// An invalid `Expires` (here `0` and text) means already expired (§5.3), so no
/// heuristic freshness from `Last-Modified` applies either.
async fn rfc9111_5_3_an_invalid_expires_is_stale(mode: Mode) {
    let case = Case::start(mode, |seen| {
        let expires = if seen.path == "/zero" {
            "0"
        } else {
            "next week"
        };
        Reply::ok("x")
            .header("expires", expires)
            .header("last-modified", "Sat, 01 Jan 2000 00:00:00 GMT")
    })
    .await;
    for path in ["/zero", "/text"] {
        case.get(path).await;
        let again = case.get(path).await;
        assert!(
            !again.cache_status().starts_with("cachet; hit"),
            "{path}: {}",
            again.cache_status()
        );
    }
    assert_eq!(case.origin.requests(), 4);
}

// §4.1 Vary

async fn rfc9111_4_1_two_vary_accept_variants_are_both_kept(mode: Mode) {
    let case = Case::start(mode, |seen| {
        let accept = seen
            .headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        Reply::ok(format!("as {accept}"))
            .header("cache-control", "max-age=60")
            .header("vary", "Accept")
    })
    .await;
    for round in 0..2 {
        let html = case.get_with("/v", &[("accept", "text/html")]).await;
        let json = case.get_with("/v", &[("accept", "application/json")]).await;
        let none = case.get("/v").await;
        assert_eq!(
            (html.body.as_ref(), json.body.as_ref(), none.body.as_ref()),
            (
                b"as text/html".as_slice(),
                b"as application/json".as_slice(),
                b"as none".as_slice()
            )
        );
        if round == 1 {
            for answer in [&html, &json, &none] {
                assert_eq!(answer.cache_status(), "cachet; hit");
            }
        }
    }
    assert_eq!(case.origin.requests(), 3);
}

async fn rfc9111_4_1_vary_star_is_never_stored(mode: Mode) {
    let case = Case::start(mode, |_| fresh_for_a_minute("x").header("vary", "*")).await;
    assert_eq!(
        case.get("/star").await.cache_status(),
        "cachet; fwd=uri-miss"
    );
    assert_eq!(
        case.get("/star").await.cache_status(),
        "cachet; fwd=uri-miss"
    );
    assert_eq!(case.origin.requests(), 2);
}

// §4.3 Validation

async fn rfc9111_4_3_a_stale_entry_is_revalidated_and_the_304_serves_the_stored_body(mode: Mode) {
    let case = Case::start(mode, |seen| {
        if seen
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"")
        {
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=60")
        } else {
            Reply::ok("stored body")
                .header("cache-control", "max-age=1")
                .header("etag", "\"v1\"")
        }
    })
    .await;
    case.get("/etag").await;
    case.advance(5);
    let revalidated = case.get("/etag").await;
    assert_eq!(
        (revalidated.status, revalidated.body.as_ref()),
        (200, b"stored body".as_slice())
    );
    assert_eq!(
        revalidated.cache_status(),
        "cachet; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(revalidated.headers["cache-control"], "max-age=60", "§3.2");
    case.advance(30);
    let hit = case.get("/etag").await;
    assert_eq!(
        (hit.cache_status(), hit.body.as_ref(), hit.age()),
        ("cachet; hit", b"stored body".as_slice(), Some(30)),
        "the 304 made the entry fresh again"
    );
    assert_eq!(case.origin.requests(), 2);
}

async fn rfc9111_4_3_2_a_clients_matching_validator_gets_304_from_a_fresh_entry(mode: Mode) {
    let case = Case::start(mode, |_| {
        fresh_for_a_minute("body").header("etag", "W/\"7\"")
    })
    .await;
    case.get("/v").await;
    let matched = case.get_with("/v", &[("if-none-match", "\"7\"")]).await;
    assert_eq!(
        (matched.status, matched.body.len(), matched.cache_status()),
        (304, 0, "cachet; hit")
    );
    let other = case.get_with("/v", &[("if-none-match", "\"8\"")]).await;
    assert_eq!(
        (other.status, other.body.as_ref()),
        (200, b"body".as_slice())
    );
    assert_eq!(case.origin.requests(), 1);
}

async fn rfc9111_4_3_5_a_head_response_freshens_the_stored_get(mode: Mode) {
    let case = Case::start(mode, |seen| {
        let cc = if seen.method == Method::HEAD {
            "max-age=600"
        } else {
            "max-age=10"
        };
        Reply::ok("body")
            .header("cache-control", cc)
            .header("etag", "\"same\"")
    })
    .await;
    case.get("/h").await;
    case.advance(20);
    let head = case.send(Method::HEAD, "/h").await;
    assert_eq!(head.status, 200);
    // The freshening reads the store on a task of its own; `only-if-cached` looks
    // without asking the origin until it has run.
    let mut freshened = None;
    for _ in 0..100 {
        let answer = case
            .get_with("/h", &[("cache-control", "only-if-cached")])
            .await;
        if answer.status == 200 {
            freshened = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let freshened = freshened.expect("the HEAD freshens the stored GET");
    assert_eq!(
        (freshened.cache_status(), freshened.body.as_ref()),
        ("cachet; hit", b"body".as_slice())
    );
    assert_eq!(case.origin.requests(), 2);
}

// §4.4 Invalidation

async fn rfc9111_4_4_a_post_invalidates_the_stored_get_and_its_variants(mode: Mode) {
    let case = Case::start(mode, |seen| {
        Reply::ok(format!("{} answer", seen.method))
            .header("cache-control", "max-age=600")
            .header("vary", "accept")
    })
    .await;
    case.get_with("/item", &[("accept", "a")]).await;
    case.get_with("/item", &[("accept", "b")]).await;
    assert_eq!(
        case.get_with("/item", &[("accept", "a")])
            .await
            .cache_status(),
        "cachet; hit"
    );
    case.advance(1);
    let post = case.send(Method::POST, "/item").await;
    assert_eq!(
        (post.body.as_ref(), post.cache_status()),
        (b"POST answer".as_slice(), "cachet; fwd=method")
    );
    for variant in ["a", "b"] {
        let after = case.get_with("/item", &[("accept", variant)]).await;
        assert_eq!(
            (after.body.as_ref(), after.cache_status()),
            (b"GET answer".as_slice(), "cachet; fwd=uri-miss; stored"),
            "variant {variant} was invalidated"
        );
    }
    assert_eq!(
        case.get_with("/item", &[("accept", "a")])
            .await
            .cache_status(),
        "cachet; hit",
        "caching resumes"
    );
    assert_eq!(case.origin.requests(), 5);
}

/// The POST comes in the same clock tick as the variants were stored: they must still
/// be hidden, even after one of them is stored again.
async fn rfc9111_4_4_an_invalidation_in_the_same_instant_hides_every_variant(mode: Mode) {
    let case = Case::start(mode, |seen| {
        Reply::ok(format!("{} answer", seen.method))
            .header("cache-control", "max-age=600")
            .header("vary", "accept")
    })
    .await;
    case.get_with("/item", &[("accept", "a")]).await;
    case.get_with("/item", &[("accept", "b")]).await;
    case.send(Method::POST, "/item").await;
    for variant in ["a", "b"] {
        let after = case.get_with("/item", &[("accept", variant)]).await;
        assert_eq!(
            after.cache_status(),
            "cachet; fwd=uri-miss; stored",
            "variant {variant} was invalidated"
        );
    }
}

async fn rfc9111_4_4_location_and_content_location_of_the_same_origin_are_invalidated(mode: Mode) {
    let case = Case::start(mode, |seen| match (&seen.method, seen.path.as_str()) {
        (&Method::PUT, _) => Reply::ok("")
            .status(201)
            .header("location", "/other")
            .header("content-location", "/described"),
        (&Method::DELETE, _) => Reply::ok("").status(204),
        _ => fresh_for_a_minute("cached"),
    })
    .await;
    for path in ["/other", "/described", "/target", "/gone"] {
        case.get(path).await;
        assert_eq!(case.get(path).await.cache_status(), "cachet; hit", "{path}");
    }
    case.send(Method::PUT, "/target").await;
    case.send(Method::DELETE, "/gone").await;
    for path in ["/other", "/described", "/target", "/gone"] {
        assert_eq!(
            case.get(path).await.cache_status(),
            "cachet; fwd=uri-miss; stored",
            "{path} was invalidated"
        );
    }
}

// §4.2.4 Serving stale, RFC 5861

async fn rfc5861_4_stale_if_error_serves_the_stored_response_when_the_origin_answers_500(
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

async fn rfc5861_4_stale_if_error_covers_an_unreachable_origin(mode: Mode) {
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

async fn rfc9111_5_2_2_2_must_revalidate_forbids_serving_stale(mode: Mode) {
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

async fn rfc9111_5_2_2_8_proxy_revalidate_binds_the_shared_proxy_only(mode: Mode) {
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

async fn rfc5861_3_stale_while_revalidate_answers_at_once_and_refreshes_once_per_key(mode: Mode) {
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

async fn rfc5861_3_past_the_stale_while_revalidate_window_the_request_waits_for_the_origin(
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

// §5.2.1 Request directives, §5.4 Pragma

async fn rfc9111_5_2_1_1_request_max_age_limits_the_age_served(mode: Mode) {
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

async fn rfc9111_5_2_1_2_max_stale_accepts_a_stale_response_within_its_bound(mode: Mode) {
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

async fn rfc9111_5_2_1_3_min_fresh_asks_for_freshness_left(mode: Mode) {
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
async fn rfc9211_2_2_fwd_request_when_a_request_directive_refuses_a_fresh_response(mode: Mode) {
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

async fn rfc9111_5_2_1_4_a_request_with_no_cache_goes_to_the_origin(mode: Mode) {
    let case = Case::start(mode, |_| fresh_for_a_minute("x")).await;
    case.get("/nc").await;
    let reload = case.get_with("/nc", &[("cache-control", "no-cache")]).await;
    assert_eq!(reload.cache_status(), "cachet; fwd=request; stored");
    assert_eq!(case.origin.requests(), 2);
}

async fn rfc9111_5_4_pragma_no_cache_counts_only_without_request_cache_control(mode: Mode) {
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

async fn rfc9111_5_2_1_7_only_if_cached_answers_504_on_a_miss(mode: Mode) {
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

// §5.2.2 Response directives, §3.5 Authorization, RFC 8246

async fn rfc9111_5_2_2_10_s_maxage_is_honoured_shared_and_ignored_private(mode: Mode) {
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

async fn rfc9111_5_2_2_7_private_responses_are_kept_by_the_private_proxy_only(mode: Mode) {
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

async fn rfc9111_5_2_2_private_and_no_cache_field_names_are_not_served_from_the_cache(mode: Mode) {
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

async fn rfc9111_3_5_authorization_responses_are_shared_only_when_the_origin_allows(mode: Mode) {
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

async fn rfc9111_3_set_cookie_responses_are_kept_by_the_private_proxy_only(mode: Mode) {
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

async fn rfc8246_2_immutable_survives_a_reload_in_the_private_proxy_only(mode: Mode) {
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

async fn rfc9111_3_1_hop_by_hop_and_connection_named_headers_are_never_served(mode: Mode) {
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

// Layer-only cases (see the top of the file).

type Stack = Cache<Client<HttpConnector, Empty<Bytes>>, MemoryStore>;

async fn through_layer(
    cache: &Stack,
    request: Request<Empty<Bytes>>,
) -> (CacheStatus, http::HeaderMap) {
    let response = cache
        .clone()
        .oneshot(request)
        .await
        .expect("the request succeeds");
    let status = *response
        .extensions()
        .get::<CacheStatus>()
        .expect("every response has a status");
    let headers = response.headers().clone();
    read(response.into_body())
        .await
        .expect("the body completes");
    (status, headers)
}

#[tokio::test]
async fn rfc9111_3_set_cookie_responses_are_stored_by_a_shared_cache_only_when_enabled() {
    let origin = Origin::start(|_| fresh_for_a_minute("x").header("set-cookie", "id=1")).await;
    let opted_in = CacheLayer::new(MemoryStore::default())
        .store_set_cookie(true)
        .layer(client());
    through_layer(&opted_in, get(&origin.url("/c"))).await;
    let (status, headers) = through_layer(&opted_in, get(&origin.url("/c"))).await;
    assert_eq!(status, CacheStatus::Hit);
    assert_eq!(headers["set-cookie"], "id=1");
}

#[tokio::test]
async fn rfc9111_3_1_hop_by_hop_and_connection_named_headers_are_never_stored() {
    let origin = Origin::start(|_| {
        fresh_for_a_minute("x")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("x-end-to-end", "kept")
    })
    .await;
    let cache = CacheLayer::new(MemoryStore::default()).layer(client());
    through_layer(&cache, get(&origin.url("/hop"))).await;
    let (status, headers) = through_layer(&cache, get(&origin.url("/hop"))).await;
    assert_eq!(status, CacheStatus::Hit);
    for name in ["connection", "x-hop", "keep-alive"] {
        assert!(!headers.contains_key(name), "{name} was stored");
    }
    assert_eq!(headers["x-end-to-end"], "kept");
}

/// Runs each case through the proxy in both modes: `rfc9111::shared::<case>` and
/// `rfc9111::private::<case>`.
macro_rules! in_both_modes {
    ($($(#[$attr:meta])* $case:ident),+ $(,)?) => {
        mod shared {
            $(
                $(#[$attr])*
                #[tokio::test]
                async fn $case() {
                    super::$case(cachet_proxy::Mode::Shared).await;
                }
            )+
        }
        mod private {
            $(
                $(#[$attr])*
                #[tokio::test]
                async fn $case() {
                    super::$case(cachet_proxy::Mode::Private).await;
                }
            )+
        }
    };
}

in_both_modes![
    rfc9111_4_2_a_max_age_1_entry_is_refetched_after_expiry,
    rfc9111_4_2_3_a_hit_carries_its_age_and_the_origins_date,
    rfc9211_2_5_ttl_is_the_remaining_freshness_and_negative_once_stale,
    rfc9111_5_3_expires_is_read_in_all_three_date_formats,
    rfc9111_5_3_an_invalid_expires_is_stale,
    rfc9111_4_1_two_vary_accept_variants_are_both_kept,
    rfc9111_4_1_vary_star_is_never_stored,
    rfc9111_4_3_a_stale_entry_is_revalidated_and_the_304_serves_the_stored_body,
    rfc9111_4_3_2_a_clients_matching_validator_gets_304_from_a_fresh_entry,
    rfc9111_4_3_5_a_head_response_freshens_the_stored_get,
    rfc9111_4_4_a_post_invalidates_the_stored_get_and_its_variants,
    rfc9111_4_4_an_invalidation_in_the_same_instant_hides_every_variant,
    rfc9111_4_4_location_and_content_location_of_the_same_origin_are_invalidated,
    rfc5861_4_stale_if_error_serves_the_stored_response_when_the_origin_answers_500,
    rfc5861_4_stale_if_error_covers_an_unreachable_origin,
    rfc9111_5_2_2_2_must_revalidate_forbids_serving_stale,
    rfc9111_5_2_2_8_proxy_revalidate_binds_the_shared_proxy_only,
    rfc5861_3_stale_while_revalidate_answers_at_once_and_refreshes_once_per_key,
    rfc5861_3_past_the_stale_while_revalidate_window_the_request_waits_for_the_origin,
    rfc9111_5_2_1_1_request_max_age_limits_the_age_served,
    rfc9111_5_2_1_2_max_stale_accepts_a_stale_response_within_its_bound,
    rfc9111_5_2_1_3_min_fresh_asks_for_freshness_left,
    rfc9211_2_2_fwd_request_when_a_request_directive_refuses_a_fresh_response,
    rfc9111_5_2_1_4_a_request_with_no_cache_goes_to_the_origin,
    rfc9111_5_4_pragma_no_cache_counts_only_without_request_cache_control,
    rfc9111_5_2_1_7_only_if_cached_answers_504_on_a_miss,
    rfc9111_5_2_2_10_s_maxage_is_honoured_shared_and_ignored_private,
    rfc9111_5_2_2_7_private_responses_are_kept_by_the_private_proxy_only,
    rfc9111_5_2_2_private_and_no_cache_field_names_are_not_served_from_the_cache,
    rfc9111_3_5_authorization_responses_are_shared_only_when_the_origin_allows,
    rfc9111_3_set_cookie_responses_are_kept_by_the_private_proxy_only,
    rfc8246_2_immutable_survives_a_reload_in_the_private_proxy_only,
    rfc9111_3_1_hop_by_hop_and_connection_named_headers_are_never_served,
];
