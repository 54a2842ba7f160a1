//! Freshness, age and storability of responses (RFC 9111 §3, §4.2).

use std::time::UNIX_EPOCH;

use http::HeaderValue;

use super::*;

/// A header map from static pairs, for the policy tests.
pub(super) fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
        .collect()
}

fn facts(h: &HeaderMap) -> ResponseFacts<'_> {
    configured(h, None)
}

/// Whether a shared cache may store these facts as the answer to a plain GET.
fn shared_get(facts: &ResponseFacts<'_>) -> Result<(), Refusal> {
    facts.storable(
        Mode::Shared,
        false,
        &Method::GET,
        false,
        &RequestDirectives::default(),
    )
}

fn configured(h: &HeaderMap, configured: Option<Configured>) -> ResponseFacts<'_> {
    let response_time = UNIX_EPOCH + Duration::from_secs(1_000_000);
    ResponseFacts::new(StatusCode::OK, h, None, response_time, configured)
}

#[test]
fn a_configured_lifetime_fills_in_only_where_headers_are_silent() {
    let hour = Duration::from_secs(3600);
    let fills = Some(Configured {
        lifetime: hour,
        wins: false,
    });
    let silent = headers(&[]);
    assert_eq!(
        configured(&silent, fills).freshness_lifetime(Mode::Shared),
        hour
    );
    assert_eq!(shared_get(&configured(&silent, fills)), Ok(()));
    let explicit = headers(&[("cache-control", "max-age=5")]);
    assert_eq!(
        configured(&explicit, fills).freshness_lifetime(Mode::Shared),
        Duration::from_secs(5)
    );
    let no_store = headers(&[("cache-control", "no-store")]);
    assert_eq!(
        shared_get(&configured(&no_store, fills)),
        Err(Refusal::NoStore)
    );
}

#[test]
fn a_winning_configured_lifetime_overrides_reuse_directives_but_not_privacy() {
    let hour = Duration::from_secs(3600);
    let wins = Some(Configured {
        lifetime: hour,
        wins: true,
    });
    let api = headers(&[(
        "cache-control",
        "no-store, no-cache, max-age=0, must-revalidate",
    )]);
    let facts = configured(&api, wins);
    assert_eq!(shared_get(&facts), Ok(()));
    assert_eq!(facts.freshness_lifetime(Mode::Shared), hour);
    assert!(!facts.cc.no_cache && !facts.cc.must_revalidate);
    let private = headers(&[("cache-control", "private, no-cache")]);
    assert_eq!(
        shared_get(&configured(&private, wins)),
        Err(Refusal::Private)
    );
}

#[test]
fn s_maxage_applies_only_to_shared_caches() {
    let h = headers(&[("cache-control", "max-age=10, s-maxage=100")]);
    assert_eq!(
        facts(&h).freshness_lifetime(Mode::Shared),
        Duration::from_secs(100)
    );
    assert_eq!(
        facts(&h).freshness_lifetime(Mode::Private),
        Duration::from_secs(10)
    );
}

#[test]
fn expires_counts_from_date_and_invalid_expires_is_stale() {
    let h = headers(&[
        ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("expires", "Sun, 06 Nov 1994 08:50:37 GMT"),
    ]);
    assert_eq!(
        facts(&h).freshness_lifetime(Mode::Shared),
        Duration::from_secs(60)
    );
    let h = headers(&[("expires", "0")]);
    assert_eq!(facts(&h).freshness_lifetime(Mode::Shared), Duration::ZERO);
    assert_eq!(shared_get(&facts(&h)), Ok(()));
}

#[test]
fn authorization_needs_public_s_maxage_or_must_revalidate_in_shared_mode() {
    let auth = true;
    let none = RequestDirectives::default();
    let plain = headers(&[("cache-control", "max-age=60")]);
    assert_eq!(
        facts(&plain).storable(Mode::Shared, false, &Method::GET, auth, &none),
        Err(Refusal::Authorization)
    );
    assert_eq!(
        facts(&plain).storable(Mode::Private, false, &Method::GET, auth, &none),
        Ok(())
    );
    for allowed in [
        "max-age=60, public",
        "s-maxage=60",
        "max-age=60, must-revalidate",
    ] {
        let h: HeaderMap = [(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static(allowed),
        )]
        .into_iter()
        .collect();
        assert_eq!(
            facts(&h).storable(Mode::Shared, false, &Method::GET, auth, &none),
            Ok(()),
            "{allowed}"
        );
    }
}

#[test]
fn neither_freshness_nor_validator_is_not_stored() {
    let h = headers(&[]);
    assert_eq!(shared_get(&facts(&h)), Err(Refusal::NoFreshnessOrValidator));
    let h = headers(&[("etag", "\"v1\"")]);
    assert_eq!(shared_get(&facts(&h)), Ok(()));
}

#[test]
fn rfc9213_2_2_a_targeted_field_that_decides_replaces_expires_too() {
    let cdn = HeaderName::from_static("cdn-cache-control");
    let h = headers(&[
        ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("expires", "Sun, 06 Nov 1994 08:50:37 GMT"),
        ("cdn-cache-control", "public"),
    ]);
    let time = SystemTime::UNIX_EPOCH;
    let targeted = ResponseFacts::new(StatusCode::OK, &h, Some(&cdn), time, None);
    assert_eq!(targeted.explicit_freshness(Mode::Shared), None);
    let plain = ResponseFacts::new(StatusCode::OK, &h, None, time, None);
    assert_eq!(
        plain.explicit_freshness(Mode::Shared),
        Some(Duration::from_secs(60))
    );
}

#[test]
fn expires_is_read_in_all_three_http_date_formats() {
    for expires in [
        "Sun, 06 Nov 1994 08:50:37 GMT",
        "Sunday, 06-Nov-94 08:50:37 GMT",
        "Sun Nov  6 08:50:37 1994",
    ] {
        let mut h = headers(&[("date", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        h.insert(EXPIRES, HeaderValue::from_static(expires));
        assert_eq!(
            facts(&h).freshness_lifetime(Mode::Shared),
            Duration::from_secs(60),
            "{expires}"
        );
    }
}

#[test]
fn other_statuses_need_explicit_freshness_and_partial_content_is_never_stored() {
    let with = |status: u16, cc: &'static str| {
        let h = headers(&[("cache-control", cc)]);
        let facts = ResponseFacts {
            status: StatusCode::from_u16(status).expect("valid"),
            ..facts(&h)
        };
        shared_get(&facts)
    };
    assert_eq!(with(302, "max-age=60"), Ok(()));
    assert_eq!(with(500, "public, max-age=60"), Ok(()));
    assert_eq!(with(302, "no-transform"), Err(Refusal::Status));
    assert_eq!(with(206, "max-age=60"), Err(Refusal::Status));
    assert_eq!(with(304, "max-age=60"), Err(Refusal::Status));
    assert_eq!(with(412, "public, max-age=60"), Err(Refusal::Status));
    assert_eq!(with(416, "public, max-age=60"), Err(Refusal::Status));
}

#[test]
fn retention_covers_freshness_and_only_the_stale_use_there_can_be() {
    let cap = Duration::from_secs(86_400);
    let plain = headers(&[("cache-control", "max-age=60")]);
    assert_eq!(
        facts(&plain).retention(Mode::Shared, cap),
        Duration::from_secs(60)
    );
    let validated = headers(&[("cache-control", "max-age=60"), ("etag", "\"1\"")]);
    assert_eq!(
        facts(&validated).retention(Mode::Shared, cap),
        Duration::from_secs(60 + 3600)
    );
    let windows = headers(&[(
        "cache-control",
        "max-age=60, stale-while-revalidate=30, stale-if-error=99999",
    )]);
    assert_eq!(
        facts(&windows).retention(Mode::Shared, cap),
        Duration::from_secs(60 + 86_400)
    );
}

#[test]
fn rfc9111_5_2_2_3_must_understand_overrides_no_store_for_understood_statuses_only() {
    let with = |status: u16, cc: &'static str| {
        let h = headers(&[("cache-control", cc)]);
        let facts = ResponseFacts {
            status: StatusCode::from_u16(status).expect("valid"),
            ..facts(&h)
        };
        shared_get(&facts)
    };
    let overridden = "no-store, must-understand, max-age=60";
    for status in [200, 301, 302, 303, 307, 404] {
        assert_eq!(with(status, overridden), Ok(()), "{status}");
    }
    for status in [299, 500] {
        assert_eq!(
            with(status, overridden),
            Err(Refusal::NotUnderstood),
            "{status}"
        );
    }
    // Without `no-store` too: the status must be understood to be stored at all.
    assert_eq!(
        with(299, "must-understand, public, max-age=60"),
        Err(Refusal::NotUnderstood)
    );
}

#[test]
fn set_cookie_is_stored_only_when_allowed() {
    let h = headers(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]);
    let none = RequestDirectives::default();
    assert_eq!(
        facts(&h).storable(Mode::Shared, false, &Method::GET, false, &none),
        Err(Refusal::SetCookie)
    );
    assert_eq!(
        facts(&h).storable(Mode::Shared, true, &Method::GET, false, &none),
        Ok(())
    );
}
