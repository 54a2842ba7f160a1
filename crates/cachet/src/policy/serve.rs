//! When a stored response may answer a request (RFC 9111 §4.2, §4.2.4, RFC 5861).

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{AGE, DATE};

use super::cache_control::delta_seconds;
use super::{CacheControl, Mode, RequestDirectives, http_date};

/// The current age of a stored response (RFC 9111 §4.2.3).
pub(crate) fn current_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    let date = http_date(headers, DATE).unwrap_or(response_time);
    let age_value = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        // A list-valued Age counts by its first member; an invalid one is ignored (§5.1),
        // and one too large to hold is the greatest (§1.2.2), not invalid.
        .and_then(|v| delta_seconds(v.split(',').next()?.trim().as_bytes()))
        .map_or(Duration::ZERO, Duration::from_secs);
    let apparent_age = response_time.duration_since(date).unwrap_or_default();
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or_default();
    let corrected_age_value = age_value + response_delay;
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = now.duration_since(response_time).unwrap_or_default();
    corrected_initial_age + resident_time
}

/// Whether a stored response with this lifetime and age may answer a request without
/// validation (RFC 9111 §4.2, and the request directives of §5.2.1).
pub(crate) fn usable(
    mode: Mode,
    request_cc: &RequestDirectives,
    response_cc: &CacheControl,
    lifetime: Duration,
    age: Duration,
) -> bool {
    if response_cc.no_cache {
        return false;
    }
    // A private cache keeps serving a fresh `immutable` response through a user's
    // reload (RFC 8246); a shared cache never sees the reload.
    if mode == Mode::Private && response_cc.immutable && age < lifetime && !request_cc.validate_all
    {
        return true;
    }
    if request_cc.no_cache {
        return false;
    }
    if request_cc
        .max_age
        .is_some_and(|max| age > Duration::from_secs(max.into()))
    {
        return false;
    }
    let remaining = lifetime.checked_sub(age).filter(|r| !r.is_zero());
    if let Some(remaining) = remaining {
        return request_cc
            .min_fresh
            .is_none_or(|min| remaining >= Duration::from_secs(min.into()));
    }
    // Stale: only a request's max-stale allows it, and not past a revalidation duty.
    if must_revalidate(mode, response_cc) {
        return false;
    }
    match request_cc.max_stale {
        Some(None) => true,
        Some(Some(max)) => age - lifetime <= Duration::from_secs(max.into()),
        None => false,
    }
}

/// Whether a stale response may never be served without validation (RFC 9111 §4.2.4).
pub(crate) fn must_revalidate(mode: Mode, cc: &CacheControl) -> bool {
    cc.no_cache
        || cc.must_revalidate
        || (mode == Mode::Shared && (cc.proxy_revalidate || cc.s_maxage.is_some()))
}

/// Whether a stale response may stand in for an origin that failed (RFC 5861 §4): within
/// the `stale-if-error` window of the request or the response, never past `cap`, and
/// never where §4.2.4 forbids serving stale.
pub(crate) fn stale_if_error(
    mode: Mode,
    request_cc: &RequestDirectives,
    response_cc: &CacheControl,
    staleness: Duration,
    cap: Duration,
) -> bool {
    if must_revalidate(mode, response_cc) {
        return false;
    }
    let window = request_cc
        .stale_if_error
        .map(u64::from)
        .max(response_cc.stale_if_error);
    window.is_some_and(|w| staleness <= Duration::from_secs(w).min(cap))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use http::HeaderValue;

    use super::*;
    use crate::policy::tests::headers;

    #[test]
    fn an_invalid_age_is_ignored_a_list_counts_by_its_first_member_and_overflow_is_the_most() {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        let most = 2_147_483_648;
        for (age, expected) in [
            ("-5", 0),
            ("x", 0),
            ("7, 9", 7),
            ("18446744073709551615", most),
            ("18446744073709551616", most),
            ("99999999999999999999999999", most),
        ] {
            let mut h = HeaderMap::new();
            h.insert(AGE, HeaderValue::from_static(age));
            assert_eq!(
                current_age(&h, t(100), t(100), t(100)),
                Duration::from_secs(expected),
                "{age}"
            );
        }
    }

    #[test]
    fn age_follows_rfc_9111_4_2_3() {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        // Date says the origin answered 2 s before we got it; Age says 5 s upstream;
        // the request took 1 s; we have held it 10 s.
        let mut h = headers(&[("age", "5")]);
        h.insert(
            DATE,
            HeaderValue::from_str(&httpdate::fmt_http_date(t(98))).expect("dates are valid values"),
        );
        assert_eq!(
            current_age(&h, t(99), t(100), t(110)),
            Duration::from_secs(16)
        );
    }

    #[test]
    fn request_directives_limit_what_is_usable() {
        let none = CacheControl::default();
        let any = RequestDirectives::default();
        let lifetime = Duration::from_secs(60);
        assert!(usable(
            Mode::Shared,
            &any,
            &none,
            lifetime,
            Duration::from_secs(59)
        ));
        assert!(!usable(Mode::Shared, &any, &none, lifetime, lifetime));
        let max_age = RequestDirectives {
            max_age: Some(10),
            ..RequestDirectives::default()
        };
        assert!(!usable(
            Mode::Shared,
            &max_age,
            &none,
            lifetime,
            Duration::from_secs(11)
        ));
        let stale_ok = RequestDirectives {
            max_stale: Some(Some(30)),
            ..RequestDirectives::default()
        };
        assert!(usable(
            Mode::Shared,
            &stale_ok,
            &none,
            lifetime,
            Duration::from_secs(90)
        ));
        assert!(!usable(
            Mode::Shared,
            &stale_ok,
            &none,
            lifetime,
            Duration::from_secs(91)
        ));
        let must = CacheControl {
            must_revalidate: true,
            ..CacheControl::default()
        };
        assert!(!usable(
            Mode::Shared,
            &stale_ok,
            &must,
            lifetime,
            Duration::from_secs(61)
        ));
    }

    #[test]
    fn stale_if_error_is_bounded_by_window_cap_and_revalidation_duties() {
        let none = CacheControl::default();
        let any = RequestDirectives::default();
        let sie = CacheControl {
            stale_if_error: Some(60),
            ..CacheControl::default()
        };
        let day = Duration::from_secs(86_400);
        assert!(stale_if_error(
            Mode::Shared,
            &any,
            &sie,
            Duration::from_secs(60),
            day
        ));
        assert!(!stale_if_error(
            Mode::Shared,
            &any,
            &sie,
            Duration::from_secs(61),
            day
        ));
        assert!(!stale_if_error(
            Mode::Shared,
            &any,
            &sie,
            Duration::from_secs(30),
            Duration::from_secs(10)
        ));
        let must = CacheControl {
            must_revalidate: true,
            ..sie.clone()
        };
        assert!(!stale_if_error(
            Mode::Shared,
            &any,
            &must,
            Duration::from_secs(1),
            day
        ));
        assert!(!stale_if_error(
            Mode::Shared,
            &any,
            &none,
            Duration::from_secs(1),
            day
        ));
    }

    #[test]
    fn immutable_survives_a_reload_only_in_a_private_cache() {
        let reload = RequestDirectives {
            no_cache: true,
            ..RequestDirectives::default()
        };
        let immutable = CacheControl {
            immutable: true,
            ..CacheControl::default()
        };
        let (lifetime, age) = (Duration::from_secs(60), Duration::from_secs(1));
        assert!(usable(Mode::Private, &reload, &immutable, lifetime, age));
        assert!(!usable(Mode::Shared, &reload, &immutable, lifetime, age));
        let asked_by_the_application = RequestDirectives {
            validate_all: true,
            ..reload
        };
        assert!(!usable(
            Mode::Private,
            &asked_by_the_application,
            &immutable,
            lifetime,
            age
        ));
        assert!(!usable(
            Mode::Private,
            &reload,
            &immutable,
            lifetime,
            lifetime
        ));
    }
}
