//! Answers the cache gives from stored entries, and how it wraps what it forwards.

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{AGE, DATE, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use http_body::Body;

use super::body::{CacheBody, Recorder};
use super::coalesce::Leader;
use super::future::RequestFacts;
use super::layer::Config;
use super::refresh::Claim;
use super::stored::Stored;
use super::write;
use super::{CacheMetadata, CacheStatus, ForwardReason};
use crate::CacheKey;
use crate::entry::{Entry, content_length};
use crate::policy::{self, CacheControl, Freshness, ResponseFacts};
use crate::store::Store;
#[cfg(test)]
use validation::identifies;
pub(crate) use validation::{
    as_not_modified, make_conditional, names_entry, not_modified, respond_not_modified,
    revalidated, storable_by,
};

/// What a stored record does for a request.
pub(crate) enum Step<B> {
    /// Answered from the cache.
    Hit(Response<CacheBody<B>>),
    /// The response varies: look up this variant's key.
    Variant(CacheKey),
    /// Ask the origin, for this reason when it is more than a plain miss.
    Forward(Option<ForwardReason>),
    /// Not usable as it is, but worth keeping while the origin is asked: stale, or fresh
    /// but refused by the request's directives (the reason says which).
    /// Boxed, so that the step that carries a hit's response stays small to move.
    Stale(Box<Entry>, ForwardReason),
}

/// Examines a stored record for a request.
pub(crate) fn examine<St, B>(
    stored: &Stored,
    facts: &mut RequestFacts<St>,
    request: &HeaderMap,
    config: &Config,
) -> Step<B> {
    match stored {
        Stored::Response { entry, freshness } => {
            if facts
                .seen
                .as_ref()
                // An entry stored in the very instant of an invalidation may predate
                // it: only what is stored after it counts (RFC 9111 §4.4).
                .is_some_and(|seen| entry.response_time <= seen.not_before)
            {
                tracing::trace!(key = %facts.key, "stored variant predates an invalidation");
                return Step::Forward(Some(ForwardReason::UriMiss));
            }
            // An entry without a body but with a length is a HEAD's; served to another
            // method (written under its key by another writer), the length would frame a
            // body that never comes.
            if entry.body.is_empty()
                && facts.method != Method::HEAD
                && content_length(&entry.headers).is_some_and(|length| length != Some(0))
            {
                tracing::debug!(key = %facts.key, "a stored response without its body; not serving it");
                return Step::Forward(None);
            }
            // `Age` is in every decoded entry, put there for serving.
            let private = |cc: &CacheControl| {
                cc.private
                    || cc
                        .private_fields
                        .iter()
                        .any(|name| *name != AGE && entry.headers.contains_key(name))
            };
            if config.mode == policy::Mode::Shared && private(&freshness.cc) {
                // Stored by a private cache that shares the store, or copied from one: a
                // shared cache serves no `private` response, nor the fields `private=`
                // names, which it would have left out (RFC 9111 §5.2.2.7).
                tracing::debug!(key = %facts.key, "a private response in a shared cache; not serving it");
                return Step::Forward(None);
            }
            answer(entry, freshness, facts, request, config)
        }
        Stored::Variants(index) if facts.seen.is_none() => {
            let variant = (!index.names.is_empty()).then(|| {
                let view = config.keys.vary_view(request, &index.names);
                let variant = facts.key.variant(&index.names, &view);
                if let Cow::Owned(view) = view {
                    facts.view = Some(Box::new(view));
                }
                variant
            });
            facts.seen = Some(index.clone());
            // An index without names is an invalidation marker: nothing is stored for
            // the URI.
            variant.map_or(Step::Forward(Some(ForwardReason::UriMiss)), Step::Variant)
        }
        Stored::Variants(_) => {
            tracing::debug!(key = %facts.key, "a variant key holds an index; ignoring it");
            Step::Forward(None)
        }
    }
}

/// Answers from a stored response if it may, else says why the request must go on.
fn answer<St, B>(
    entry: &Entry,
    freshness: &Freshness,
    facts: &RequestFacts<St>,
    request: &HeaderMap,
    config: &Config,
) -> Step<B> {
    let names = entry.vary.iter().map(|(name, _)| name);
    // The view the variant's key was made from serves, when the entry varies on the
    // headers the index named (a SHA-256 of a cookie is not cheap).
    let view = match (&facts.view, &facts.seen) {
        (Some(view), Some(seen)) if names.clone().eq(seen.names.iter()) => Cow::Borrowed(&**view),
        _ => config.keys.vary_view(request, names),
    };
    // An entry stored without a header this cache's `Keys::headers` select by (by a cache
    // configured otherwise, sharing the store) cannot tell requests apart by it.
    let selects = |name: &HeaderName| entry.vary.iter().any(|(stored, _)| stored == name);
    if !policy::vary_matches(&entry.vary, &view) || !config.keys.vary_headers().iter().all(selects)
    {
        return Step::Forward(Some(ForwardReason::VaryMiss));
    }
    // A range or a precondition of the client's own (`If-Match`, `If-Unmodified-Since`,
    // `If-Range`) is the origin's to judge against a successful response, fresh or stale:
    // the cache does not evaluate them (RFC 9110 §13.2.1, §14.2), so the request goes on
    // as sent, unrevalidated and unserved stale. A request that takes what is stored
    // (`only-if-cached`, `ForceCache`) gets it whole.
    if facts.conditions && entry.status.is_success() && !facts.force && !facts.cc.only_if_cached {
        tracing::trace!(key = %facts.key, "a range or precondition of the request's own; forwarding");
        return Step::Forward(Some(ForwardReason::Request));
    }
    let lifetime = freshness.lifetime(config.mode);
    let age = freshness.age(facts.time);
    if !facts.force && !policy::usable(config.mode, &facts.cc, &freshness.cc, lifetime, age) {
        // Fresh by the response's own terms, yet refused: the request's directives
        // (`max-age`, `min-fresh`, `no-cache`) decided (RFC 9211 §2.2 `fwd=request`).
        let fresh = age < lifetime && !freshness.cc.no_cache;
        let reason = if fresh {
            ForwardReason::Request
        } else {
            ForwardReason::Stale
        };
        return Step::Stale(Box::new(entry.clone()), reason);
    }
    tracing::trace!(key = %facts.key, age = age.as_secs(), "hit");
    config.metrics.hit();
    // Preconditions count only where the answer would be 2xx (RFC 9110 §13.2.1): a
    // stored 404 is served whole, whatever validators match it.
    if facts.validators
        && entry.status.is_success()
        && (facts.method == Method::GET || facts.method == Method::HEAD)
        && not_modified(entry, request)
    {
        let served = Served::new(&facts.key, facts.time, age, lifetime, CacheStatus::Hit);
        return Step::Hit(respond_not_modified(entry, served, config));
    }
    let status = if facts.collapsed {
        CacheStatus::Collapsed
    } else {
        CacheStatus::Hit
    };
    Step::Hit(respond(
        entry,
        Served::new(&facts.key, facts.time, age, lifetime, status),
        config,
    ))
}

/// A stored entry's freshness lifetime, current age and directives at `now`.
pub(crate) fn freshness(
    entry: &Entry,
    now: SystemTime,
    config: &Config,
) -> (Duration, Duration, CacheControl) {
    let stored = ResponseFacts::of_entry(entry, config.targeted.as_ref());
    let freshness = stored.freshness(entry.request_time);
    (
        freshness.lifetime(config.mode),
        freshness.age(now),
        freshness.cc,
    )
}

/// The stale response to serve at once, and the claim on its key's background refresh
/// (started here, or already running), when `stale-while-revalidate` allows it
/// (RFC 5861 §3) and a refresh can run.
pub(crate) fn stale_while_revalidate<St, B>(
    entry: &Entry,
    facts: &RequestFacts<St>,
    config: &Config,
) -> Option<(Response<CacheBody<B>>, Claim)> {
    let (lifetime, age, cc) = freshness(entry, facts.time, config);
    let window = Duration::from_secs(cc.stale_while_revalidate?);
    // Only for a response that is stale, to a request that sets no limit of its own on
    // age or freshness (a fresh one got here because the request refused it), and that
    // may reach the origin.
    let request = &facts.cc;
    let limited = request.max_age.is_some()
        || request.min_fresh.is_some()
        || request.max_stale.is_some()
        || request.no_cache
        || request.only_if_cached;
    if limited
        || age < lifetime
        || policy::must_revalidate(config.mode, &cc)
        || age.saturating_sub(lifetime) > window
    {
        return None;
    }
    // One refresh per stored response: a variant's does not hold back another's. It may
    // run for what is left of the window.
    let claim = config.refreshing.claim(
        facts.variant.as_ref().unwrap_or(&facts.key),
        window.saturating_sub(age.saturating_sub(lifetime)),
    );
    if matches!(claim, Claim::Unavailable) {
        return None;
    }
    tracing::trace!(key = %facts.key, "serving stale while revalidating");
    config.metrics.hit();
    Some((
        respond(
            entry,
            Served::new(
                &facts.key,
                facts.time,
                age,
                lifetime,
                CacheStatus::StaleWhileRevalidate,
            ),
            config,
        ),
        claim,
    ))
}

/// A stale entry served in place of a failing origin, if `stale-if-error` allows it.
pub(crate) fn stale_on_error<St, B>(
    entry: Entry,
    facts: &RequestFacts<St>,
    origin: Option<StatusCode>,
    config: &Config,
) -> Option<Response<CacheBody<B>>> {
    let now = config.clock.now();
    let (lifetime, age, cc) = freshness(&entry, now, config);
    let staleness = age.saturating_sub(lifetime);
    if !policy::stale_if_error(
        config.mode,
        &facts.cc,
        &cc,
        staleness,
        config.max_stale_if_error,
    ) {
        return None;
    }
    tracing::info!(key = %facts.key, ?origin, stale_secs = staleness.as_secs(), "origin failed; serving stale");
    let status = CacheStatus::StaleIfError {
        origin_status: origin.map(|s| s.as_u16()),
    };
    Some(respond(
        &entry,
        Served::new(&facts.key, now, age, lifetime, status),
        config,
    ))
}

/// How a stored entry is served: for which key, when, how old and how long fresh, and
/// with which status.
pub(crate) struct Served<'a> {
    key: &'a CacheKey,
    now: SystemTime,
    age: Duration,
    lifetime: Duration,
    status: CacheStatus,
}

impl<'a> Served<'a> {
    pub(crate) fn new(
        key: &'a CacheKey,
        now: SystemTime,
        age: Duration,
        lifetime: Duration,
        status: CacheStatus,
    ) -> Self {
        Self {
            key,
            now,
            age,
            lifetime,
            status,
        }
    }

    fn metadata(&self, entry: &Entry) -> CacheMetadata {
        let fresh_until = policy::fresh_until(self.now, self.age, self.lifetime);
        CacheMetadata {
            key: Some(self.key.clone()),
            from_cache: true,
            stored_at: Some(entry.response_time),
            fresh_until: Some(fresh_until),
            stale: self.age >= self.lifetime,
            revalidated: matches!(self.status, CacheStatus::Revalidated { .. }),
        }
    }
}

/// A response from a stored entry, with its current `Age`.
pub(crate) fn respond<B>(
    entry: &Entry,
    served: Served<'_>,
    config: &Config,
) -> Response<CacheBody<B>> {
    let Served {
        age,
        lifetime,
        status,
        ..
    } = served;
    let mut response = Response::new(CacheBody::stored(entry.body.clone()));
    *response.status_mut() = entry.status;
    // Only versions every hyper server can write are replayed: whatever a store holds,
    // HTTP/0.9 or HTTP/3 in an entry must not reach a connection that cannot send it.
    *response.version_mut() = match entry.version {
        version @ (Version::HTTP_10 | Version::HTTP_2) => version,
        _ => Version::HTTP_11,
    };
    *response.headers_mut() = entry.headers.clone();
    // An entry has at most `MAX_HEADER_FIELDS` fields, so there is room; were there none,
    // the response would go without `Age` rather than not at all.
    let _ = response.headers_mut().try_insert(AGE, age_value(age));
    let ttl = secs(lifetime) - secs(age);
    mark(&mut response, status, Some(ttl), config);
    if config.metadata {
        response.extensions_mut().insert(served.metadata(entry));
    }
    response
}

/// An `Age` header value; the common ones (under an hour) come from a table of static
/// text, so a hit neither allocates nor counts a reference for them.
fn age_value(age: Duration) -> HeaderValue {
    const TABLE: u64 = 3600;
    static SMALL: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
        let numbers: Vec<String> = (0..TABLE).map(|n| n.to_string()).collect();
        // Kept for the life of the process (some 13 KB), as the table is.
        let text: &'static str = numbers.concat().leak();
        let mut start = 0;
        numbers
            .iter()
            .map(|n| {
                let end = start + n.len();
                let value = HeaderValue::from_static(&text[start..end]);
                start = end;
                value
            })
            .collect()
    });
    let seconds = age.as_secs();
    match usize::try_from(seconds) {
        Ok(index) if seconds < TABLE => SMALL[index].clone(),
        _ => HeaderValue::from(seconds),
    }
}

/// Wraps a response from the inner service, recording it for the store if it may be
/// stored.
pub(crate) fn forwarded<St: Store, B: Body<Data = Bytes>>(
    response: Response<B>,
    facts: Option<&RequestFacts<St>>,
    leader: Option<Leader>,
    reason: ForwardReason,
    config: &Config,
) -> Response<CacheBody<B>> {
    config.metrics.forward(reason == ForwardReason::Stale);
    let (mut parts, body) = response.into_parts();
    // A response without `Date` gets the time it was received, forwarded and stored
    // alike (RFC 9110 §6.6.1): a hit replays it, not the time of the hit, so that its
    // age is not counted twice downstream.
    // (A full map takes no more: the response goes on without it.)
    if !parts.headers.contains_key(DATE)
        && let Some(date) = policy::date_value(config.clock.now())
    {
        let _ = parts.headers.try_insert(DATE, date);
    }
    let key = facts
        .filter(|_| config.metadata)
        .map(|facts| facts.key.clone());
    let recorder = facts.and_then(|facts| write::recorder(&parts, facts, leader, config));
    let status = CacheStatus::Forwarded {
        reason,
        stored: recorder.is_some(),
    };
    let metadata = config.metadata.then(|| CacheMetadata {
        key,
        from_cache: false,
        stored_at: recorder.as_ref().map(Recorder::stored_at),
        fresh_until: recorder.as_ref().map(Recorder::fresh_until),
        stale: false,
        revalidated: false,
    });
    let mut response = Response::from_parts(parts, CacheBody::origin(body, recorder));
    mark(&mut response, status, None, config);
    if let Some(metadata) = metadata {
        response.extensions_mut().insert(metadata);
    }
    response
}

/// The `504 Gateway Timeout` for an `only-if-cached` request with nothing usable
/// stored (RFC 9111 §5.2.1.7) under `key` (`None` for a request the cache passes by).
pub(crate) fn only_if_cached_miss<B>(
    key: Option<&CacheKey>,
    config: &Config,
) -> Response<CacheBody<B>> {
    let mut response = Response::new(CacheBody::stored(Bytes::new()));
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    mark(&mut response, CacheStatus::OnlyIfCachedMiss, None, config);
    if config.metadata {
        response.extensions_mut().insert(CacheMetadata {
            key: key.cloned(),
            from_cache: false,
            stored_at: None,
            fresh_until: None,
            stale: false,
            revalidated: false,
        });
    }
    response
}

/// Records what the cache did: the [`CacheStatus`] extension and, when configured, the
/// `Cache-Status` header, with the stored response's remaining freshness as `ttl` (RFC
/// 9211 §2.5; negative once stale) when it was served from the cache.
pub(crate) fn mark<B>(
    response: &mut Response<B>,
    status: CacheStatus,
    ttl: Option<i64>,
    config: &Config,
) {
    if config.cache_status_header {
        let value = status.header_value();
        let value = match ttl {
            Some(ttl) => {
                // One buffer, frozen into the value: a hit allocates once for this.
                use std::fmt::Write;
                let mut text = BytesMut::with_capacity(value.len() + 16);
                text.extend_from_slice(value.as_bytes());
                // Writing to a BytesMut cannot fail.
                let _ = write!(text, "; ttl={ttl}");
                HeaderValue::from_maybe_shared(text.freeze()).unwrap_or(value)
            }
            None => value,
        };
        // A map already holding all the names it may (24,576) goes without the header;
        // the extension below still says what the cache did.
        let _ = response
            .headers_mut()
            .try_append(HeaderName::from_static("cache-status"), value);
    }
    response.extensions_mut().insert(status);
}

/// Whole seconds, as a signed number for `ttl` arithmetic.
fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
mod validation;
