//! HTTP caching rules (RFC 9111): what may be stored, for how long, and when a stored
//! response may answer a request.

mod cache_control;
mod serve;
mod vary;

use std::fmt;
use std::time::{Duration, SystemTime};

use http::header::{DATE, ETAG, EXPIRES, LAST_MODIFIED, SET_COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

pub(crate) use cache_control::{CacheControl, RequestDirectives};
pub(crate) use serve::{current_age, must_revalidate, stale_if_error, usable};
pub(crate) use vary::{vary_matches, vary_names, vary_value};

/// Whose cache this is (RFC 9111 §1): shared by many users, or one user's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Mode {
    #[default]
    Shared,
    Private,
}

/// How long a stale entry with a validator is kept beyond its freshness, so it can still
/// be revalidated.
const KEEP_STALE: Duration = Duration::from_secs(60 * 60);

/// The heuristic lifetime for a response with only `Last-Modified` is a tenth of its
/// age when received (RFC 9111 §4.2.2), at most this long.
const MAX_HEURISTIC_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a response is not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Method,
    Status,
    NoStore,
    NotUnderstood,
    Private,
    Authorization,
    SetCookie,
    VaryStar,
    NoFreshnessOrValidator,
    Unreadable,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Method => "the request method is not cacheable",
            Self::Status => "the status is not cacheable",
            Self::NoStore => "no-store",
            Self::NotUnderstood => "must-understand, and the status is not one cachet understands",
            Self::Private => "private response in a shared cache",
            Self::Authorization => {
                "request had Authorization and the response does not allow sharing"
            }
            Self::SetCookie => "Set-Cookie, and storing it is off",
            Self::VaryStar => "Vary: *",
            Self::NoFreshnessOrValidator => "no explicit freshness and no validator",
            Self::Unreadable => {
                "its cache-control cannot be read whole (a quoted string left open, or a \
                 directive that is not a token, such as `private; max-age=600`)"
            }
        })
    }
}

/// The statuses RFC 9110 §15.1 defines as heuristically cacheable.
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The statuses whose caching requirements cachet knows and meets, as `must-understand`
/// asks (RFC 9111 §5.2.2.3): the heuristically cacheable ones, and the redirects 302, 303
/// and 307, which it stores as any response with explicit freshness (RFC 9110 §15.4).
fn understood(status: StatusCode) -> bool {
    heuristically_cacheable(status) || matches!(status.as_u16(), 302 | 303 | 307)
}

/// A freshness lifetime that configuration gives a response (an expiry rule, a default
/// expiry, or the request's own), rather than the response's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Configured {
    pub(crate) lifetime: Duration,
    /// Whether it overrides the response's freshness and its `no-store`, `no-cache`,
    /// `must-revalidate` and `proxy-revalidate` (rules win), or only fills in where the
    /// response gives no explicit freshness (headers win).
    pub(crate) wins: bool,
}

/// What the cache knows of a response while deciding about it.
#[derive(Debug)]
pub(crate) struct ResponseFacts<'a> {
    pub(crate) status: StatusCode,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) cc: CacheControl,
    /// When the response arrived; stands in for a missing `Date`.
    pub(crate) response_time: SystemTime,
    pub(crate) configured: Option<Configured>,
}

/// Everything freshness and age need of a stored response, worked out once so that a hit
/// parses no header.
#[derive(Clone, Debug)]
pub(crate) struct Freshness {
    pub(crate) cc: CacheControl,
    shared_lifetime: Duration,
    private_lifetime: Duration,
    corrected_initial_age: Duration,
    response_time: SystemTime,
}

impl Freshness {
    /// The freshness lifetime in a cache of this mode.
    pub(crate) fn lifetime(&self, mode: Mode) -> Duration {
        match mode {
            Mode::Shared => self.shared_lifetime,
            Mode::Private => self.private_lifetime,
        }
    }

    /// The current age at `now` (RFC 9111 §4.2.3).
    pub(crate) fn age(&self, now: SystemTime) -> Duration {
        self.corrected_initial_age + now.duration_since(self.response_time).unwrap_or_default()
    }
}

impl<'a> ResponseFacts<'a> {
    /// The facts of a stored entry, as of when it was received.
    pub(crate) fn of_entry(entry: &'a crate::entry::Entry, targeted: Option<&HeaderName>) -> Self {
        Self::new(
            entry.status,
            &entry.headers,
            targeted,
            entry.response_time,
            entry.configured,
        )
    }

    /// The facts of a response with these headers, received at `response_time`; `targeted`
    /// is the cache's targeted cache-control field (RFC 9213), if it has one.
    pub(crate) fn new(
        status: StatusCode,
        headers: &'a HeaderMap,
        targeted: Option<&HeaderName>,
        response_time: SystemTime,
        configured: Option<Configured>,
    ) -> Self {
        let mut cc = CacheControl::parse_response(headers, targeted);
        if configured.is_some_and(|c| c.wins) {
            // Rules win: what the response says about reuse yields to configuration;
            // what it says about privacy does not.
            cc.no_store = false;
            cc.no_cache = false;
            cc.must_revalidate = false;
            cc.proxy_revalidate = false;
        }
        Self {
            status,
            headers,
            cc,
            response_time,
            configured,
        }
    }

    /// The freshness and age of this response, stored after a request sent at
    /// `request_time`.
    pub(crate) fn freshness(&self, request_time: SystemTime) -> Freshness {
        Freshness {
            cc: self.cc.clone(),
            shared_lifetime: self.freshness_lifetime(Mode::Shared),
            private_lifetime: self.freshness_lifetime(Mode::Private),
            corrected_initial_age: current_age(
                self.headers,
                request_time,
                self.response_time,
                self.response_time,
            ),
            response_time: self.response_time,
        }
    }

    /// The freshness lifetime (RFC 9111 §4.2.1), heuristic where nothing explicit is given.
    pub(crate) fn freshness_lifetime(&self, mode: Mode) -> Duration {
        let explicit = self.explicit_freshness(mode);
        if let Some(configured) = self
            .configured
            .filter(|configured| configured.wins || explicit.is_none())
        {
            return configured.lifetime;
        }
        if let Some(explicit) = explicit {
            return explicit;
        }
        let Some(last_modified) = http_date(self.headers, LAST_MODIFIED) else {
            return Duration::ZERO;
        };
        if !heuristically_cacheable(self.status) {
            return Duration::ZERO;
        }
        let date = self.date();
        let age = date.duration_since(last_modified).unwrap_or_default();
        (age / 10).min(MAX_HEURISTIC_LIFETIME)
    }

    /// How long a store should keep the response: its freshness, plus as long as it can
    /// still be of use stale: an hour for revalidation when it has a validator, and its
    /// `stale-while-revalidate` and `stale-if-error` windows (the latter at most
    /// `max_stale_if_error`).
    pub(crate) fn retention(&self, mode: Mode, max_stale_if_error: Duration) -> Duration {
        let revalidation = if self.has_validator() {
            KEEP_STALE
        } else {
            Duration::ZERO
        };
        let secs = |window: Option<u64>| Duration::from_secs(window.unwrap_or(0));
        let stale_use = revalidation
            .max(secs(self.cc.stale_while_revalidate))
            .max(secs(self.cc.stale_if_error).min(max_stale_if_error));
        self.freshness_lifetime(mode) + stale_use
    }

    pub(crate) fn explicit_freshness(&self, mode: Mode) -> Option<Duration> {
        let seconds = match (mode, self.cc.s_maxage, self.cc.max_age) {
            (Mode::Shared, Some(s), _) => Some(s),
            (_, _, Some(m)) => Some(m),
            _ => None,
        };
        if let Some(seconds) = seconds {
            return Some(Duration::from_secs(seconds));
        }
        // A targeted field that decides replaces `Expires` too (RFC 9213 §2.2).
        if self.cc.targeted {
            return None;
        }
        let expires = self.headers.get(EXPIRES)?;
        // An invalid Expires means already stale (RFC 9111 §5.3).
        let Some(expires) = expires
            .to_str()
            .ok()
            .and_then(|v| httpdate::parse_http_date(v).ok())
        else {
            return Some(Duration::ZERO);
        };
        Some(expires.duration_since(self.date()).unwrap_or_default())
    }

    fn date(&self) -> SystemTime {
        http_date(self.headers, DATE).unwrap_or(self.response_time)
    }

    pub(crate) fn has_validator(&self) -> bool {
        self.headers.contains_key(ETAG) || self.headers.contains_key(LAST_MODIFIED)
    }

    /// Whether the response may be stored (RFC 9111 §3), given the request it answers.
    pub(crate) fn storable(
        &self,
        mode: Mode,
        store_set_cookie: bool,
        method: &Method,
        authorization: bool,
        request_cc: &RequestDirectives,
    ) -> Result<(), Refusal> {
        if method != Method::GET && method != Method::HEAD {
            return Err(Refusal::Method);
        }
        // Final statuses are stored when heuristically cacheable, or with explicit
        // freshness or `public` (RFC 9111 §3). Partial content is never combined (§3.3),
        // and a 304 is not a response to store; nor are a 412 and a 416, answers to a
        // request's own precondition or range, which its key leaves out. Freshness is
        // read only where the status does not decide.
        let explicitly_cacheable = || self.cc.public || self.explicit_freshness(mode).is_some();
        let status = self.status.as_u16();
        if status < 200
            || matches!(status, 206 | 304 | 412 | 416)
            || !(heuristically_cacheable(self.status) || explicitly_cacheable())
        {
            return Err(Refusal::Status);
        }
        // `must-understand` lets only a status cachet understands be stored, and then
        // overrides `no-store` (RFC 9111 §3, §5.2.2.3).
        if self.cc.must_understand && !understood(self.status) {
            return Err(Refusal::NotUnderstood);
        }
        if (self.cc.no_store && !self.cc.must_understand) || request_cc.no_store {
            return Err(Refusal::NoStore);
        }
        // What a broken quote hid may have forbidden storing: fail closed.
        if self.cc.unreadable {
            return Err(Refusal::Unreadable);
        }
        if mode == Mode::Shared {
            if self.cc.private {
                return Err(Refusal::Private);
            }
            // RFC 9111 §3.5.
            if authorization
                && !(self.cc.public || self.cc.s_maxage.is_some() || self.cc.must_revalidate)
            {
                return Err(Refusal::Authorization);
            }
        }
        if !store_set_cookie && self.headers.contains_key(SET_COOKIE) {
            return Err(Refusal::SetCookie);
        }
        if vary_names(self.headers).is_none() {
            return Err(Refusal::VaryStar);
        }
        if self.explicit_freshness(mode).is_none()
            && self.configured.is_none()
            && !self.has_validator()
        {
            return Err(Refusal::NoFreshnessOrValidator);
        }
        Ok(())
    }
}

/// When a response that is `age` old at `at` and fresh for `lifetime` stops being fresh
/// (RFC 9111 §4.2), or `at` where that is past the clock's range.
pub(crate) fn fresh_until(at: SystemTime, age: Duration, lifetime: Duration) -> SystemTime {
    let until = if lifetime >= age {
        at.checked_add(lifetime - age)
    } else {
        at.checked_sub(age - lifetime)
    };
    until.unwrap_or(at)
}

pub(crate) fn http_date(headers: &HeaderMap, name: HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(headers.get(name)?.to_str().ok()?).ok()
}

/// `time` as an HTTP date's value, `None` for a time no HTTP date can say (before 1970,
/// after 9999), which `httpdate` would panic on: times come from a clock, and from stored
/// bytes that may say anything.
pub(crate) fn date_value(time: SystemTime) -> Option<HeaderValue> {
    const LAST: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    if since.as_secs() > LAST {
        return None;
    }
    HeaderValue::from_str(&httpdate::fmt_http_date(time)).ok()
}

#[cfg(test)]
mod tests;
