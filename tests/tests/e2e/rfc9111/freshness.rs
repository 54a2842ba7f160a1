//! §4.2 Freshness, §4.2.3 Age, §5.3 Expires.

use super::*;

pub(super) async fn rfc9111_4_2_a_max_age_1_entry_is_refetched_after_expiry(mode: Mode) {
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

pub(super) async fn rfc9111_4_2_3_a_hit_carries_its_age_and_the_origins_date(mode: Mode) {
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

pub(super) async fn rfc9211_2_5_ttl_is_the_remaining_freshness_and_negative_once_stale(mode: Mode) {
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
pub(super) async fn rfc9111_5_3_expires_is_read_in_all_three_date_formats(mode: Mode) {
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
pub(super) async fn rfc9111_5_3_an_invalid_expires_is_stale(mode: Mode) {
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
