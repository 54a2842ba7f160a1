//! Conditional requests: the client's own validators met by a stored response (RFC 9111
//! §4.3.2), the cache's revalidation of a stale one, and the `304` that updates it
//! (§4.3.4).

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    CONTENT_LENGTH, DATE, ETAG, HeaderName, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    IF_UNMODIFIED_SINCE, LAST_MODIFIED,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::super::body::CacheBody;
use super::super::future::RequestFacts;
use super::super::layer::Config;
use super::super::write::{self, Placement};
use super::{CacheStatus, ForwardReason, Served, respond};
use crate::entry::Entry;
use crate::policy::ResponseFacts;
use crate::store::{Store, StoreRequest};

/// A `304 Not Modified` for a client whose own validators match a fresh stored 2xx
/// response (RFC 9111 §4.3.2).
pub(crate) fn respond_not_modified<B>(
    entry: &Entry,
    served: Served<'_>,
    config: &Config,
) -> Response<CacheBody<B>> {
    as_not_modified(respond(entry, served, config))
}

/// A stored response turned into the `304` that stands for it: no body, no length.
pub(crate) fn as_not_modified<B>(mut response: Response<CacheBody<B>>) -> Response<CacheBody<B>> {
    *response.body_mut() = CacheBody::stored(Bytes::new());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    response.headers_mut().remove(CONTENT_LENGTH);
    response
}

/// Whether a request's `If-None-Match` (or, without it, `If-Modified-Since`) is met by
/// a stored entry, comparing entity tags weakly (RFC 9110 §13.1.2, §13.1.3).
pub(crate) fn not_modified(entry: &Entry, request: &HeaderMap) -> bool {
    let stored = &entry.headers;
    if request.contains_key(IF_NONE_MATCH) {
        // `*` matches any current representation, one without an entity tag too.
        let etag = stored.get(ETAG).map(HeaderValue::as_bytes);
        // Compared weakly: the opaque tag, without `W/`.
        fn weak(tag: &[u8]) -> &[u8] {
            tag.strip_prefix(b"W/").unwrap_or(tag)
        }
        return request
            .get_all(IF_NONE_MATCH)
            .iter()
            .flat_map(|line| entity_tags(line.as_bytes()))
            .any(|tag| {
                tag == b"*" || etag.is_some_and(|etag| weak(tag) == weak(etag.trim_ascii()))
            });
    }
    let date = |headers: &HeaderMap, name| {
        httpdate::parse_http_date(headers.get(name)?.to_str().ok()?).ok()
    };
    // Against `Last-Modified`, or failing that `Date`, or failing that the time the
    // response was received (RFC 9111 §4.3.2).
    date(request, IF_MODIFIED_SINCE).is_some_and(|since| {
        let modified = date(stored, LAST_MODIFIED)
            .or_else(|| date(stored, DATE))
            .unwrap_or(entry.response_time);
        modified <= since
    })
}

/// The entity tags of an `If-None-Match` line: split at the commas outside quotes, as a
/// tag may hold one (`"a,b"`, RFC 9110 §8.8.3), and trimmed. Not `Cache-Control`'s
/// splitter: a backslash in a tag is a byte like any other, not an escape.
fn entity_tags(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let text = rest?;
        let mut quoted = false;
        let comma = text.iter().position(|&b| {
            if b == b'"' {
                quoted = !quoted;
            }
            b == b',' && !quoted
        });
        let (tag, after) = match comma {
            Some(at) => (&text[..at], Some(&text[at + 1..])),
            None => (text, None),
        };
        rest = after;
        Some(tag.trim_ascii())
    })
    .filter(|tag| !tag.is_empty())
}

/// Turns a forwarded request into a conditional one for a stale entry (RFC 9111 §4.3.1);
/// `false` when the entry has no validator, or the request carries conditions of its
/// own, which the origin must judge against the client's copy rather than the cache's.
pub(crate) fn make_conditional(entry: &Entry, request: &mut HeaderMap) -> bool {
    const CONDITIONALS: [HeaderName; 5] = [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
    ];
    let etag = entry.headers.get(ETAG);
    let last_modified = entry.headers.get(LAST_MODIFIED);
    if (etag.is_none() && last_modified.is_none())
        || CONDITIONALS.iter().any(|name| request.contains_key(name))
    {
        return false;
    }
    // A request whose map holds all the names it may (24,576) has no room for the
    // conditions: it goes as it came, with neither, so that no 304 answers a request
    // the cache did not make conditional.
    let added = etag.is_none_or(|etag| request.try_insert(IF_NONE_MATCH, etag.clone()).is_ok())
        && last_modified.is_none_or(|last_modified| {
            request
                .try_insert(IF_MODIFIED_SINCE, last_modified.clone())
                .is_ok()
        });
    if !added {
        request.remove(IF_NONE_MATCH);
    }
    added
}

/// Serves a stale entry that the origin confirmed with `304 Not Modified`, its headers
/// updated from the 304 (RFC 9111 §3.2, §4.3.4), and stores the updated entry. A 304 that
/// names another representation than the entry's updates nothing: the entry is served
/// as it was stored, and not stored again.
pub(crate) fn revalidated<St: Store, B>(
    mut entry: Entry,
    not_modified: Response<B>,
    facts: &RequestFacts<St>,
    reason: ForwardReason,
    config: &Config,
) -> Response<CacheBody<B>> {
    let identified = identifies(&entry.headers, not_modified.headers());
    // Whether this request could store the entry as it was: if so, and not as the 304
    // leaves it, the 304 is what forbids it.
    let was_storable = identified && storable_by(&entry, facts, config);
    // Stored again only when the 304 updated it whole.
    // Where the entry was, and when it was received, for its update to find it again.
    let snapshot = (
        facts.variant.clone().unwrap_or_else(|| facts.key.clone()),
        entry.response_time,
    );
    let (now, updated) = if identified {
        let now = write::after_invalidation(config.clock.now(), facts);
        let whole = entry.update_headers(&write::end_to_end(not_modified.headers()), now);
        if !whole {
            tracing::debug!(key = %facts.key, "the 304 has more fields than an entry holds; serving, not storing");
        }
        entry.request_time = facts.time;
        entry.response_time = now;
        (now, whole)
    } else {
        tracing::debug!(key = %facts.key, "the 304 names another representation; not updating");
        (config.clock.now(), false)
    };

    config.metrics.forward(reason == ForwardReason::Stale);
    let (stored, storing) = storable(&entry, facts, config);
    let storing = storing.filter(|_| updated);
    let storable = storing.is_some();
    if was_storable && !storable && !config.read_only {
        // The entry as it was is out of date, and the 304 forbids storing its update (it
        // says `private` or `no-store`, say, or has more fields than an entry holds): a
        // request that takes stale responses must not get the copy from before it. (A
        // refusal this request causes, its `Authorization` or `no-store`, deletes nothing.)
        let key = facts.variant.clone().unwrap_or_else(|| facts.key.clone());
        write::write(
            facts.store.cloned(),
            StoreRequest::Delete(key),
            &config.metrics,
        );
    }
    let mut stored_now = false;
    if let Some((ttl, names)) = storing {
        let request = write::request_headers(facts, &names);
        let view = config.keys.vary_view(&request, &names);
        // What is stored is what a fresh response would store: without the fields the
        // `Cache-Control` names in `no-cache=` or (shared) `private=`, which reach this
        // client only (RFC 9111 §5.2.2.4, §5.2.2.7), and with this request's values of
        // the headers the response now varies on.
        let kept = Entry {
            headers: write::storable_headers(&entry.headers, &stored.cc, config),
            vary: write::vary_values(&names, &view),
            ..entry.clone()
        };
        stored_now = Placement::new(facts, &view, names, ttl, config).update(
            &kept,
            snapshot,
            &config.metrics,
        );
    }
    tracing::trace!(key = %facts.key, "revalidated");
    let freshness = stored.freshness(entry.request_time);
    let status = CacheStatus::Revalidated {
        reason,
        stored: stored_now,
    };
    let served = Served::new(
        &facts.key,
        now,
        freshness.age(now),
        freshness.lifetime(config.mode),
        status,
    );
    respond(&entry, served, config)
}

/// Whether this request could store the stored entry as it is: if so, and the origin's
/// answer may not be stored, the answer is what forbids it (a refusal the request itself
/// causes, its `Authorization` or `no-store`, says nothing of the entry).
pub(crate) fn storable_by<St: Store>(
    entry: &Entry,
    facts: &RequestFacts<St>,
    config: &Config,
) -> bool {
    storable(entry, facts, config).1.is_some()
}

/// A stored entry's facts, and where and for how long this request may store it, judged
/// as a fresh response would be, settings included.
fn storable<'e, St: Store>(
    entry: &'e Entry,
    facts: &RequestFacts<St>,
    config: &Config,
) -> (ResponseFacts<'e>, Option<(Duration, Vec<HeaderName>)>) {
    let stored = ResponseFacts::of_entry(entry, config.targeted.as_ref());
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = entry.status;
    parts.version = entry.version;
    parts.headers = entry.headers.clone();
    let storing = write::may_store(&stored, &parts, facts, config);
    (stored, storing)
}

/// Whether a `304` to a request with the client's own validators names the stored
/// response with these headers (RFC 9111 §4.3.4): it must carry a validator, since the
/// client's copy may be another than the cache's, and that validator must be the entry's.
pub(crate) fn names_entry(entry: &HeaderMap, not_modified: &HeaderMap) -> bool {
    (not_modified.contains_key(ETAG) || not_modified.contains_key(LAST_MODIFIED))
        && identifies(entry, not_modified)
}

/// Whether a `304` identifies the stored response with these headers for update (RFC 9111
/// §4.3.4): by its entity tag when it has one (a strong tag must be the entry's own, a
/// weak one must match the entry's weakly), else by its `Last-Modified`, which must be
/// the entry's; a 304 with neither stands for the one entry the request was made
/// conditional on.
pub(super) fn identifies(entry: &HeaderMap, not_modified: &HeaderMap) -> bool {
    if let Some(new) = not_modified.get(ETAG) {
        let Some(old) = entry.get(ETAG) else {
            return false;
        };
        return match new.as_bytes().strip_prefix(b"W/") {
            // Weak comparison (RFC 9110 §8.8.3.2): the opaque tags alone.
            Some(tag) => tag == old.as_bytes().strip_prefix(b"W/").unwrap_or(old.as_bytes()),
            None => new == old,
        };
    }
    not_modified
        .get(LAST_MODIFIED)
        .is_none_or(|new| entry.get(LAST_MODIFIED) == Some(new))
}
