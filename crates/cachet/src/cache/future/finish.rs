//! What a forwarded request's response becomes: a revalidated entry, a stale one standing
//! in for a failing origin, an invalidation, or a response recorded for the store.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body::Body;

use super::{Plan, Stale};
use crate::cache::answer::{
    as_not_modified, forwarded, names_entry, revalidated, stale_on_error, storable_by,
};
use crate::cache::body::CacheBody;
use crate::cache::coalesce::Leader;
use crate::cache::layer::Config;
use crate::cache::{CacheStatus, ForwardReason, write};
use crate::store::{Store, StoreRequest};
use crate::{BoxError, Error};

/// Completes a forwarded request: refreshes a stale entry on a 304, stands a stale entry
/// in for a failing origin where allowed, invalidates after an unsafe method, and
/// otherwise records the response for the store if it may be stored.
pub(crate) fn finish<St: Store, B: Body<Data = Bytes>, E: Into<BoxError>>(
    result: Result<Response<B>, E>,
    plan: &mut Plan<St>,
    leader: Option<Leader>,
    stale: Option<Stale>,
    reason: ForwardReason,
    config: &Config,
) -> Result<Response<CacheBody<B>>, Error> {
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            // Sent on, whether a stale response stands in or the error goes back.
            config.metrics.forward(reason == ForwardReason::Stale);
            if let (Plan::Cache(facts), Some(stale)) = (plan, stale)
                && let Some(response) = stale_on_error(*stale.entry, facts, None, config)
            {
                return Ok(response);
            }
            return Err(Error::upstream(error));
        }
    };
    match plan {
        Plan::Cache(facts) => {
            let status = response.status();
            // The stored response a full answer replaces (RFC 9111 §4.3.3), unless the
            // origin is failing.
            let mut replaced = None;
            if let Some(stale) = stale {
                if status == StatusCode::NOT_MODIFIED && stale.conditional {
                    return Ok(revalidated(*stale.entry, response, facts, reason, config));
                }
                // A 304 to the client's own validators that names the stored response
                // updates it as a revalidation of the cache's own would (§4.3.4); the
                // client gets its 304.
                if status == StatusCode::NOT_MODIFIED
                    && matches!(facts.method, Method::GET | Method::HEAD)
                    && names_entry(&stale.entry.headers, response.headers())
                {
                    let updated = revalidated(*stale.entry, response, facts, reason, config);
                    return Ok(as_not_modified(updated));
                }
                if status.is_server_error() {
                    if matches!(status.as_u16(), 500 | 502 | 503 | 504)
                        && let Some(stale) =
                            stale_on_error(*stale.entry, facts, Some(status), config)
                    {
                        config.metrics.forward(reason == ForwardReason::Stale);
                        return Ok(stale);
                    }
                } else if status != StatusCode::NOT_MODIFIED {
                    replaced = Some(stale.entry);
                }
            }
            let response = if facts.method == Method::HEAD && status == StatusCode::OK {
                let (parts, body) = response.into_parts();
                write::freshen_get(facts, &parts, config);
                Response::from_parts(parts, body)
            } else {
                response
            };
            let forwarded = forwarded(response, Some(facts), leader, reason, config);
            let stored = !matches!(
                forwarded.extensions().get::<CacheStatus>(),
                Some(CacheStatus::Forwarded { stored: false, .. })
            );
            // An answer the cache may not store would leave the replaced response to be
            // served stale again (for a whole `stale-while-revalidate` window): it is
            // deleted, unless the request, not the answer, is why the answer is not kept.
            if !stored
                && !config.read_only
                && replaced.is_some_and(|entry| storable_by(&entry, facts, config))
            {
                let key = facts.variant.clone().unwrap_or_else(|| facts.key.clone());
                tracing::debug!(%key, "replaced by an answer that is not stored; deleting it");
                write::write(
                    facts.store.cloned(),
                    StoreRequest::Delete(key),
                    &config.metrics,
                );
            }
            // A request cached by its body is a query only when its answer's headers let
            // it be stored (the recorder's, taken at the head: it stays one if its body
            // then fails or grows past the cap).
            if let Some(uri) = &facts.invalidates
                && !stored
                && invalidates(forwarded.status(), config)
            {
                write::invalidate(&mut facts.store.cloned(), uri, forwarded.headers(), config);
            }
            Ok(forwarded)
        }
        Plan::Invalidate { store, uri } => {
            if invalidates(response.status(), config) {
                write::invalidate(store, uri, response.headers(), config);
            }
            Ok(forwarded::<St, B>(response, None, None, reason, config))
        }
        Plan::Pass => Ok(forwarded::<St, B>(response, None, None, reason, config)),
    }
}

/// Whether an unsafe method's response with this status invalidates its URI: a non-error
/// one (RFC 9111 §4.4), in a cache that writes.
fn invalidates(status: StatusCode, config: &Config) -> bool {
    !config.read_only && (status.is_success() || status.is_redirection())
}
