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

/// Where a response goes in the store.
pub(crate) struct Placement<St> {
    store: St,
    key: CacheKey,
    /// The index to write under the URI's key when the response varies.
    index: Option<Index>,
    ttl: Duration,
    /// Where the request's key stood among the cache's invalidations when it was sent.
    sent: Option<Sent>,
    invalidations: Invalidations,
    clock: Arc<dyn Clock>,
}

/// A variant index to write, as the request saw it.
struct Index {
    key: CacheKey,
    variants: Variants,
    /// For a request that saw no index: what is stored before this instant is hidden,
    /// should the store hold no index when it is written either.
    unseen: Option<SystemTime>,
}

impl<St: Store> Placement<St> {
    /// A response that varies on `names` goes under its variant's key (from `view`, the
    /// request's headers as [`Keys::vary_view`](crate::Keys) shows them), with the index
    /// under the URI's key; writers that saw the same index write the same one back.
    ///
    /// A request that saw no index, where the store still holds none when the index is
    /// written, writes one that hides what was stored before it began: variants may
    /// outlive their index, and the index (or the invalidation marker that replaced it)
    /// may have been evicted, expired or deleted for an invalidation the store refused,
    /// so older variants of the URI may be there that an invalidation hid. A variant
    /// another cache stored just before, whose index was not yet written, is hidden as
    /// well: a miss, never a response from before an invalidation. The request's own
    /// variant, received after it began, counts. (A request that saw no index because
    /// its lookup failed takes the index the store holds, and hides nothing more.)
    pub(crate) fn new(
        facts: &RequestFacts<St>,
        view: &HeaderMap,
        names: Vec<HeaderName>,
        ttl: Duration,
        config: &Config,
    ) -> Self {
        if names.is_empty() {
            return Self {
                store: facts.store.cloned(),
                key: facts.key.clone(),
                index: None,
                ttl,
                sent: facts.sent,
                invalidations: config.invalidations.clone(),
                clock: config.clock.clone(),
            };
        }
        // An index hides what was stored until its instant inclusive, and times are kept
        // to the millisecond: a millisecond before the request began.
        let unseen = facts.seen.is_none().then(|| {
            facts
                .time
                .checked_sub(Duration::from_millis(1))
                .unwrap_or(UNIX_EPOCH)
        });
        let not_before = facts
            .seen
            .as_ref()
            .map_or(UNIX_EPOCH, |seen| seen.not_before);
        Self {
            store: facts.store.cloned(),
            key: facts.key.variant(&names, view),
            index: Some(Index {
                key: facts.key.clone(),
                variants: Variants { names, not_before },
                unseen,
            }),
            ttl,
            sent: facts.sent,
            invalidations: config.invalidations.clone(),
            clock: config.clock.clone(),
        }
    }

    /// Writes the entry, with `body` as its body (the entry's own is not read), and the
    /// index; returns the entry's value, `None` if it could not be encoded.
    pub(crate) fn put(self, entry: &Entry, body: &[Bytes], metrics: &Metrics) -> Option<Value> {
        let writing = self.invalidations.writing(self.uri_key());
        // Invalidated while it was fetched: it may be from before the change (the origin
        // may have answered it first), so it is not stored, nor handed to the requests
        // waiting for it, which ask the origin instead (RFC 9111 §4.4: the marker hides
        // what was stored before it, not what is written after).
        if self.invalidations.since(self.sent) {
            tracing::debug!(key = %self.key, "invalidated while it was fetched; not storing");
            return None;
        }
        let value = self.encode(entry, body)?;
        let (invalidations, sent) = (self.invalidations.clone(), self.sent);
        self.write(value.clone(), writing, metrics);
        // Invalidated while it was written (the marker then goes again, after it): not
        // handed to the waiters either. A store that answers at once has written both.
        (!invalidations.since(sent)).then_some(value)
    }

    /// As [`put`](Self::put), for a revalidation's update of the response received at
    /// `received` and stored under `stored`: written only if the store still holds that
    /// response there when it is read again (one store round trip), since another
    /// request may have stored a newer one meanwhile, or an invalidation hidden it, and
    /// the update would put the old one back (RFC 9111 §4.3.4 updates what is stored).
    /// Returns whether it is to be written.
    pub(crate) fn update(
        self,
        entry: &Entry,
        (stored, received): (CacheKey, SystemTime),
        metrics: &Metrics,
    ) -> bool {
        let writing = self.invalidations.writing(self.uri_key());
        if self.invalidations.since(self.sent) {
            tracing::debug!(key = %self.key, "invalidated while it was revalidated; not storing");
            return false;
        }
        let Some(value) = self.encode(entry, std::slice::from_ref(&entry.body)) else {
            return false;
        };
        let metrics = metrics.clone();
        detach_all(async move {
            let current = latest(self.store.clone().oneshot(StoreRequest::Get(stored))).await;
            // An invalidation while the store was read: its marker may be there now.
            if self.invalidations.since(self.sent) {
                return tracing::debug!(key = %self.key, "invalidated while it was revalidated; not storing");
            }
            let unchanged = matches!(
                &current,
                Ok(StoreResponse::Found(stored)) if matches!(
                    Record::decode(stored.bytes()),
                    Ok(Record::Response(stored)) if stored.response_time == received
                )
            );
            if unchanged {
                self.write(value, writing, &metrics);
            } else {
                tracing::debug!(key = %self.key, "replaced while it was revalidated; not storing");
            }
        });
        true
    }

    fn encode(&self, entry: &Entry, body: &[Bytes]) -> Option<Value> {
        match entry.encode_with_body(body) {
            Ok(bytes) => Some(Value::from(bytes)),
            Err(error) => {
                tracing::warn!(key = %self.key, %error, "entry could not be encoded; not storing");
                None
            }
        }
    }

    /// Writes the entry, then its index; then, if an invalidation of the key was counted
    /// since the request was sent (after the check before the write), a marker of its
    /// own under the URI's key: the invalidation's marker may have been written first,
    /// and the entry or index over it, so one goes again after them (RFC 9111 §4.4). Each
    /// waits for the one before, so that a store whose writes overtake one another (a
    /// pool of connections) writes them in order.
    /// The key of the URI's responses: the index's when the response varies.
    fn uri_key(&self) -> &CacheKey {
        self.index.as_ref().map_or(&self.key, |index| &index.key)
    }

    fn write(self, value: Value, writing: Arc<Writes>, metrics: &Metrics) {
        let Self {
            store,
            key,
            index,
            ttl,
            sent,
            invalidations,
            clock,
        } = self;
        let metrics = metrics.clone();
        detach_all(async move {
            // In the group of writes an invalidation waits for, to the end.
            let _writing = writing;
            let put = StoreRequest::Put {
                key: key.clone(),
                value,
                ttl,
            };
            // The variant goes first, as a plain entry does; under its own key it is found
            // only through an index that names it, whose time also decides whether it
            // counts.
            if let Err(error) = store.clone().oneshot(put).await {
                write_failed(&error, &metrics);
            }
            let uri_key = match index {
                Some(index) => {
                    let uri_key = index.key.clone();
                    write_index(store.clone(), index, ttl.max(MIN_INDEX_TTL), &metrics).await;
                    uri_key
                }
                None => key,
            };
            if invalidations.since(sent) {
                mark_again(&store, uri_key, clock.now(), &invalidations, &metrics);
            }
        });
    }
}

/// Invalidates `key` again after a write that an invalidation of the key, counted
/// meanwhile, may have had its marker written under (RFC 9111 §4.4): a marker of its own,
/// hiding what was stored before `now` (the written entry included), counted and written
/// as any invalidation's is, with the same fallbacks should the store refuse it.
fn mark_again<St: Store>(
    store: &St,
    key: CacheKey,
    now: SystemTime,
    invalidations: &Invalidations,
    metrics: &Metrics,
) {
    tracing::debug!(%key, "invalidated while it was written; marking it again");
    let marker = Variants {
        names: Vec::new(),
        not_before: now,
    };
    let Ok(bytes) = marker.encode() else {
        return tracing::warn!(%key, "invalidation marker could not be encoded");
    };
    let marked = invalidations.note(&key);
    mark(store, key, &Value::from(bytes), marked, metrics);
}

/// Writes a variant index. It goes back as the request saw it when it looked the URI up,
/// unless an invalidation marker or a newer index was written while its response was
/// fetched: that one's time then holds, so that variants from before it stay hidden
/// instead of coming back with the index written over it. It costs one store read for
/// each variant stored, past any memory tier (see [`latest`]), whose copy may be older than
/// another process's marker; a marker written between that read and the write is still
/// lost.
async fn write_index<St: Store>(store: St, index: Index, ttl: Duration, metrics: &Metrics) {
    let Index {
        key,
        variants: mut index,
        unseen,
    } = index;
    let current = match latest(store.clone().oneshot(StoreRequest::Get(key.clone()))).await {
        Ok(StoreResponse::Found(value)) => match Record::decode(value.bytes()) {
            Ok(Record::Variants(current)) => Some(current.not_before),
            _ => None,
        },
        Ok(_) => None,
        // The write is likely to fail the same way, and says so.
        Err(error) => {
            tracing::debug!(%key, %error, "variant index could not be read again");
            None
        }
    };
    index.not_before = match (current, unseen) {
        (Some(current), _) => index.not_before.max(current),
        (None, Some(unseen)) => index.not_before.max(unseen),
        (None, None) => index.not_before,
    };
    let value = match index.encode() {
        Ok(bytes) => Value::from(bytes),
        Err(error) => {
            return tracing::warn!(%error, "variant index could not be encoded; not storing");
        }
    };
    let put = StoreRequest::Put { key, value, ttl };
    if let Err(error) = store.oneshot(put).await {
        write_failed(&error, metrics);
    }
}

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

/// A message's headers without the hop-by-hop ones and those `Connection` names.
pub(crate) fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    const HOP_BY_HOP: [&str; 6] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
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
pub(crate) fn write<St: Store>(store: St, request: StoreRequest, metrics: &Metrics) {
    detach(store, request, || {
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
mod reference;

pub(crate) use head::freshen_get;
use invalidate::mark;
pub(crate) use invalidate::{Invalidations, Sent, Writes, invalidate};
#[cfg(test)]
mod tests;
