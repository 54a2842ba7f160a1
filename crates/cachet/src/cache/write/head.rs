//! A HEAD response's update of the stored GET response it describes (RFC 9111 §4.3.5).

use http::HeaderMap;
use http::header::{ETAG, LAST_MODIFIED};
use tower::ServiceExt;

use super::{mark_again, may_store, storable_headers, withhold_fields, write, write_failed};
use crate::cache::future::RequestFacts;
use crate::cache::layer::Config;
use crate::entry::{Entry, Record, content_length};
use crate::policy::{self, CacheControl, ResponseFacts};
use crate::store::{Store, StoreRequest, StoreResponse, latest};

/// Freshens the stored GET response of a URI from a HEAD response to it (RFC 9111
/// §4.3.5), when both describe the same representation: each of `ETag`,
/// `Last-Modified` and `Content-Length` the HEAD response carries equals the stored one
/// (see [`representation`]); one that differs deletes the stored GET. It reads the
/// store, so it runs on a spawned task; a GET stored as variants is left alone.
pub(crate) fn freshen_get<St: Store>(
    facts: &RequestFacts<St>,
    head: &http::response::Parts,
    config: &Config,
) {
    let Some(get_key) = facts.key.for_get().filter(|_| !config.read_only) else {
        return;
    };
    // Answered before an invalidation, it may describe what the GET stored after it
    // replaced (see `Placement::put`).
    if config.invalidations.since(facts.sent) {
        return;
    }
    let now = config.clock.now();
    let response = ResponseFacts::new(
        head.status,
        &head.headers,
        config.targeted.as_ref(),
        now,
        facts.configured,
    );
    // Its headers would be stored with the GET's entry, so the HEAD response is judged as
    // any response to store is: a shared cache keeps no `Set-Cookie`, nothing `private`
    // or `no-store`, no answer to `Authorization` it may not store (RFC 9111 §3, §3.5),
    // and the statuses and the filter have their say. One it may not store says nothing
    // of the stored GET: it may be another user's (an answer to `Authorization`).
    if may_store(&response, head, facts, config).is_none() {
        return;
    }
    // A HEAD response that varies describes variants, not the one GET response stored
    // for the URI: it leaves that alone.
    if !policy::vary_names(&head.headers).is_some_and(|names| names.is_empty()) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut store = facts.store.cloned();
    let update = storable_headers(&head.headers, &response.cc, config);
    let request_time = facts.time;
    let (mode, max_stale_if_error) = (config.mode, config.max_stale_if_error);
    let targeted = config.targeted.clone();
    let metrics = config.metrics.clone();
    let (invalidations, sent) = (config.invalidations.clone(), facts.sent);
    let writing = invalidations.writing(&get_key);
    runtime.spawn(async move {
        // In the group of writes an invalidation waits for, to the end.
        let _writing = writing;
        let found = latest(store.clone().oneshot(StoreRequest::Get(get_key.clone()))).await;
        let Ok(StoreResponse::Found(value)) = found else {
            return;
        };
        // An invalidation counted while the entry was read may have written its marker
        // over it; what follows would write over the marker.
        if invalidations.since(sent) {
            return;
        }
        let Ok(Record::Response(mut entry)) = Record::decode(value.bytes()) else {
            return;
        };
        match representation(&entry, &update) {
            Representation::Same => {}
            Representation::Unknown => return,
            // Changed since it was stored: stale (§4.3.5), and gone, so that the next GET
            // asks the origin.
            Representation::Changed => {
                tracing::trace!(key = %get_key, "a HEAD response says the stored GET changed");
                return write(store, StoreRequest::Delete(get_key), &metrics);
            }
        }
        if !entry.update_headers(&update, now) {
            // More fields than an entry holds: the stored GET stays as it was.
            return;
        }
        // The HEAD's `Cache-Control` now stands for the entry's, and may name fields the
        // stored headers hold.
        let merged = CacheControl::parse_response(&entry.headers, targeted.as_ref());
        withhold_fields(&mut entry.headers, &merged, mode);
        entry.request_time = request_time;
        entry.response_time = now;
        let freshened = ResponseFacts::of_entry(&entry, targeted.as_ref());
        let ttl = freshened.retention(mode, max_stale_if_error);
        if let Ok(bytes) = entry.encode() {
            tracing::trace!(key = %get_key, "freshened from a HEAD response");
            let put = StoreRequest::Put {
                key: get_key.clone(),
                value: bytes.into(),
                ttl,
            };
            if let Err(error) = store.clone().oneshot(put).await {
                write_failed(&error, &metrics);
            }
            // An invalidation counted since the check above may have had its marker
            // written first, and the update over it.
            if invalidations.since(sent) {
                mark_again(&mut store, get_key, now, &invalidations, &metrics);
            }
        }
    });
}

/// What a HEAD response says of the stored GET response's representation.
#[derive(Debug, PartialEq, Eq)]
enum Representation {
    /// Every `ETag`, `Last-Modified` and `Content-Length` it has matches the entry's.
    Same,
    /// One of them differs.
    Changed,
    /// It has none of them.
    Unknown,
}

/// Compares the fields a HEAD response carries with the stored entry (RFC 9111 §4.3.5):
/// validators by value, `Content-Length` with the stored body's length.
fn representation(stored: &Entry, head: &HeaderMap) -> Representation {
    let mut compared = false;
    for name in [ETAG, LAST_MODIFIED] {
        if let Some(value) = head.get(&name) {
            if stored.headers.get(&name) != Some(value) {
                return Representation::Changed;
            }
            compared = true;
        }
    }
    if let Some(length) = content_length(head) {
        if length != u64::try_from(stored.body.len()).ok() {
            return Representation::Changed;
        }
        compared = true;
    }
    if compared {
        Representation::Same
    } else {
        Representation::Unknown
    }
}
