//! What the cache writes to its store: responses (under their URI's key or a variant's
//! key), the variant index of responses that vary, and invalidation markers.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONNECTION, HeaderName};
use http::{HeaderMap, Method};

use super::body::Recorder;
use super::coalesce::Leader;
use super::future::RequestFacts;
use super::layer::Config;
use crate::OneLine;
use crate::clock::Clock;
use crate::entry::{Entry, Record, Variants, content_length};
use crate::policy::{self, CacheControl, ResponseFacts};
use crate::store::{Store, StoreRequest, StoreResponse, Value, detach, detach_all, latest};
use crate::{BoxError, CacheKey, Metrics};
use tower::ServiceExt;

/// How long an invalidation marker is kept: entries it hides that outlive it can come
/// back, so it is kept as long as most stored freshness.
const INVALIDATION_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The least time a variant index is kept, so that it outlives most of its variants.
const MIN_INDEX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A recorder for a storable response from the origin, or `None` (with the reason
/// logged) when it may not be stored.
pub(crate) fn recorder<St: Store>(
    parts: &http::response::Parts,
    facts: &RequestFacts<St>,
    leader: Option<Leader>,
    config: &Config,
) -> Option<Recorder> {
    // Whether a response may be stored does not depend on when it arrived, only how long
    // it is kept does: the clock, which costs as much as the rest of a refusal, is read
    // for a response that may be stored. Until then the request's time stands in.
    let mut response = ResponseFacts::new(
        parts.status,
        &parts.headers,
        config.targeted.as_ref(),
        facts.time,
        facts.configured,
    );
    let names = storable_names(&response, parts, facts, config)?;
    if config.invalidations.since(facts.sent) {
        tracing::debug!(key = %facts.key, "invalidated while it was fetched; not storing");
        return None;
    }
    let response_time = after_invalidation(config.clock.now(), facts);
    response.response_time = response_time;
    let ttl = retention(&response, facts, config)?;
    let request = request_headers(facts, &names);
    let view = config.keys.vary_view(&request, &names);
    let head = Entry {
        status: parts.status,
        version: parts.version,
        headers: storable_headers(&parts.headers, &response.cc, config),
        vary: vary_values(&names, &view),
        request_time: facts.time,
        response_time,
        configured: facts.configured,
        body: Bytes::new(),
    };
    let placement = Placement::new(facts, &view, names, ttl, config);
    // A HEAD response's Content-Length describes the GET body it stands for.
    let expected = match content_length(&parts.headers) {
        _ if facts.method == Method::HEAD => None,
        // A length no one can read would make an entry that is never read back.
        Some(None) => {
            tracing::debug!(key = %facts.key, "a content-length that cannot be read; not storing");
            return None;
        }
        length => length.flatten(),
    };
    let metrics = config.metrics.clone();
    // Its waiters wait for its body now (one that is not recorded lets them go at once).
    if let Some(leader) = &leader {
        leader.streaming();
    }
    // Fresh until its age, counted as §4.2.3 does, reaches its lifetime.
    let lifetime = response.freshness_lifetime(config.mode);
    let initial_age = response.freshness(facts.time).age(response_time);
    let fresh_until = policy::fresh_until(response_time, initial_age, lifetime);
    let times = (response_time, fresh_until);
    let sent = facts.sent;
    Recorder::new(times, config.max_body_bytes, expected, move |body| {
        let stored = placement.put(&head, &body, &metrics);
        if let (Some(leader), Some(value)) = (leader, stored) {
            leader.finish(&value, sent);
        }
    })
}

/// The request's headers as a map, for a response stored as a variant of `names`; an
/// empty map, which costs nothing, when it varies on none.
pub(crate) fn request_headers<St>(facts: &RequestFacts<St>, names: &[HeaderName]) -> HeaderMap {
    if names.is_empty() {
        return HeaderMap::new();
    }
    facts.headers.to_map()
}

/// How long to keep a response, and the request headers its variants are told apart by
/// (read once here), or `None` (with the reason logged) when it may not be stored: by RFC
/// 9111, and by the cache's settings (read-only, statuses, the filter). Every path that
/// stores a response asks this (a forwarded one's recorder in its two halves, reading
/// the clock between them), so none of them can skip a setting.
pub(crate) fn may_store<St>(
    response: &ResponseFacts<'_>,
    parts: &http::response::Parts,
    facts: &RequestFacts<St>,
    config: &Config,
) -> Option<(Duration, Vec<HeaderName>)> {
    let names = storable_names(response, parts, facts, config)?;
    Some((retention(response, facts, config)?, names))
}

/// The request headers a response's variants are told apart by, or `None` (with the
/// reason logged) when it may not be stored; what [`may_store`] asks before the time.
fn storable_names<St>(
    response: &ResponseFacts<'_>,
    parts: &http::response::Parts,
    facts: &RequestFacts<St>,
    config: &Config,
) -> Option<Vec<HeaderName>> {
    if config.read_only {
        return None;
    }
    // Only a request with a key gets here: another method than GET or HEAD has its body
    // in its key (see `CacheLayer::methods`) and is stored as a GET would be.
    let method = match facts.method {
        Method::HEAD => Method::HEAD,
        _ => Method::GET,
    };
    if let Err(refusal) = response.storable(
        config.mode,
        config.store_set_cookie(),
        &method,
        facts.authorization,
        &facts.cc,
    ) {
        tracing::debug!(key = %facts.key, %refusal, "not storing");
        return None;
    }
    // Another method's response is reused only with explicit freshness (RFC 9110
    // §9.3.3), given by the response or by the cache's configuration: never a heuristic.
    if !matches!(facts.method, Method::GET | Method::HEAD)
        && facts.configured.is_none()
        && response.explicit_freshness(config.mode).is_none()
    {
        tracing::debug!(key = %facts.key, method = %facts.method, "no explicit freshness; not storing");
        return None;
    }
    // `storable` refused `Vary: *`.
    let names = variant_names(&parts.headers, config).unwrap_or_default();
    if names.len() > crate::entry::MAX_VARIANT_NAMES {
        tracing::debug!(key = %facts.key, "varies on more headers than an index may name; not storing");
        return None;
    }
    // RFC 9111 §3.5 keeps a shared cache from storing an answer to `Authorization` that
    // does not say it may be shared; every credential header is held to that, unless the
    // response's variants are told apart by it (each credential then has its own).
    let shareable =
        response.cc.public || response.cc.s_maxage.is_some() || response.cc.must_revalidate;
    if config.mode == policy::Mode::Shared
        && !shareable
        && let Some(name) = config
            .keys
            .unselected_credential(facts.headers.names(), &names)
    {
        tracing::debug!(key = %facts.key, credential = %name, "the response does not vary on a credential the request carries; not storing");
        return None;
    }
    if parts.headers.len() > crate::entry::MAX_HEADER_FIELDS {
        tracing::debug!(key = %facts.key, "more header fields than an entry may have; not storing");
        return None;
    }
    if !settings_allow(&facts.key, parts, config) {
        return None;
    }
    Some(names)
}

/// How long a store should keep a response, `None` (logged) when it would be of no use.
fn retention<St>(
    response: &ResponseFacts<'_>,
    facts: &RequestFacts<St>,
    config: &Config,
) -> Option<Duration> {
    let ttl = response.retention(config.mode, config.max_stale_if_error);
    if ttl.is_zero() {
        tracing::debug!(key = %facts.key, "stale at once and never of use stale; not storing");
        return None;
    }
    Some(ttl)
}

/// Whether the cache's own settings, its statuses and its filter, let a response be
/// stored under `key`.
fn settings_allow(key: &CacheKey, parts: &http::response::Parts, config: &Config) -> bool {
    if config
        .statuses
        .as_ref()
        .is_some_and(|allowed| !allowed.contains(&parts.status))
    {
        tracing::debug!(%key, status = %parts.status, "status not allowed; not storing");
        return false;
    }
    if config
        .filter
        .as_ref()
        .is_some_and(|filter| !filter.response(key, parts))
    {
        tracing::debug!(%key, "filtered out; not storing");
        return false;
    }
    true
}

/// When a response counts as received: now, but always after an invalidation the request
/// saw, which hides what was stored until its instant inclusive (RFC 9111 §4.4). A
/// response that arrives in that very instant (clocks have finite resolution) is moved a
/// millisecond on, since it was fetched after the invalidation was seen.
pub(crate) fn after_invalidation<St>(now: SystemTime, facts: &RequestFacts<St>) -> SystemTime {
    match &facts.seen {
        Some(seen) if now <= seen.not_before => seen.not_before + Duration::from_millis(1),
        _ => now,
    }
}

/// The request headers a response's variants are told apart by: those its `Vary` names,
/// then those the cache's [`Keys`](crate::Keys) add; `None` for `Vary: *`.
pub(crate) fn variant_names(headers: &HeaderMap, config: &Config) -> Option<Vec<HeaderName>> {
    let mut names = policy::vary_names(headers)?;
    for name in config.keys.vary_headers() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Some(names)
}

/// The request's values of the headers a response varies on.
pub(crate) fn vary_values(
    names: &[HeaderName],
    request: &HeaderMap,
) -> Vec<(HeaderName, Option<http::HeaderValue>)> {
    names
        .iter()
        .map(|name| (name.clone(), policy::vary_value(request, name)))
        .collect()
}

/// The headers a cache keeps (RFC 9111 §3.1): not the hop-by-hop ones, not those
/// `Connection` names, and in a shared cache not those a `private="…"` directive names;
/// nor those a `no-cache="…"` directive names, which may not be reused unvalidated.
pub(crate) fn storable_headers(
    headers: &HeaderMap,
    cc: &CacheControl,
    config: &Config,
) -> HeaderMap {
    let mut kept = end_to_end(headers);
    withhold_fields(&mut kept, cc, config.mode);
    kept
}

/// Removes the fields `cc` names in `no-cache="…"` and, in a shared cache,
/// `private="…"`.
fn withhold_fields(headers: &mut HeaderMap, cc: &CacheControl, mode: policy::Mode) {
    for name in &cc.no_cache_fields {
        headers.remove(name);
    }
    if mode == policy::Mode::Shared {
        for name in &cc.private_fields {
            headers.remove(name);
        }
    }
}

/// A message's headers without the hop-by-hop ones, those `Connection` names, and those
/// specific to the proxy the request went through, which a cache MUST NOT store (RFC 9111
/// §3.1): its key does not name the proxy.
pub(crate) fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    const HOP_BY_HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authentication-info",
        "proxy-authorization",
    ];
    // Read as bytes: a value with a byte outside ASCII among its names still names the
    // others (only that token is no header name).
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .collect();
    let mut kept = headers.clone();
    for name in HOP_BY_HOP {
        kept.remove(name);
    }
    for name in listed {
        kept.remove(name);
    }
    kept
}

/// Writes to the store without delaying the response (see [`detach`]); a failure is
/// counted and logged.
pub(crate) fn write<St: Store>(mut store: St, request: StoreRequest, metrics: &Metrics) {
    detach(&mut store, request, |_| {
        let metrics = metrics.clone();
        move |error| write_failed(&error, &metrics)
    });
}

fn write_failed(error: &BoxError, metrics: &Metrics) {
    metrics.store_error();
    tracing::warn!(error = %OneLine(&**error), "cache store write failed; skipped");
}

mod head;
mod invalidate;
mod placement;
mod reference;

pub(crate) use head::freshen_get;
use invalidate::mark;
pub(crate) use invalidate::{Invalidations, Sent, Writing, invalidate};
pub(crate) use placement::Placement;
use placement::mark_again;
#[cfg(test)]
mod tests;
