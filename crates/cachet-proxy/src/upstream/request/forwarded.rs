//! Where a request going upstream came from: the forwarding headers a client may not
//! choose, those the proxy sets, and the responses that vary on them.

use std::net::IpAddr;

use cachet::{CacheKey, Filter};
use http::header::{HeaderName, VARY};
use http::{HeaderMap, HeaderValue};

/// Whether a header says where a request came from, or what it first asked for: set by a
/// proxy, and by a client too if nothing in front overwrites it. `Forwarded`, every
/// `X-Forwarded-*`, and the other names frameworks read that way, each also spelt with
/// `_` for `-` (`X_Forwarded_Host`): CGI and WSGI servers hand both spellings to the
/// application as the same variable (`HTTP_X_FORWARDED_HOST`).
pub(super) fn is_forwarded(name: &HeaderName) -> bool {
    const PREFIX: &[u8] = b"x-forwarded-";
    const NAMES: [&[u8]; 5] = [
        b"forwarded",
        b"x-real-ip",
        b"x-original-url",
        b"x-rewrite-url",
        b"x-original-host",
    ];
    let name = name.as_str().as_bytes();
    name.get(..PREFIX.len())
        .is_some_and(|start| reads_as(start, PREFIX))
        || NAMES.iter().any(|forwarded| reads_as(name, forwarded))
}

/// Whether a lower-case header name reads as `expected` once each `_` is taken for `-`.
fn reads_as(name: &[u8], expected: &[u8]) -> bool {
    name.len() == expected.len()
        && name
            .iter()
            .zip(expected)
            .all(|(&b, &e)| b == e || (b == b'_' && e == b'-'))
}

/// Stores no response that varies on a header [`set_forwarded`] sets or removes
/// (`Vary: X-Forwarded-For`, say): the cache tells variants apart by the request as the
/// client sent it, while the upstream answered the request as forwarded, so one client's
/// answer would be another's hit.
#[derive(Debug)]
pub(crate) struct NotVaryingOnForwarding;

impl Filter for NotVaryingOnForwarding {
    fn response(&self, _: &CacheKey, response: &http::response::Parts) -> bool {
        !response
            .headers
            .get_all(VARY)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
            .any(|name| is_forwarded(&name))
    }
}

/// Sets where a request going upstream came from. Unless `trusted` (a load balancer in
/// front sets these headers and overwrites what clients send), the headers of that kind
/// it arrived with ([`is_forwarded`]) are removed (those spelt with `_` even when
/// trusted): the cache key leaves them out, so
/// a client could otherwise have a response built for values it chose stored for
/// everyone. Then the client's address joins `X-Forwarded-For`, and `X-Forwarded-Proto`
/// says `http` (what the proxy listens with) unless a trusted one is there.
pub(in crate::upstream) fn set_forwarded(
    headers: &mut HeaderMap,
    client: Option<&HeaderValue>,
    trusted: bool,
) {
    const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    // A balancer that sets these headers overwrites the spellings it sets, not the ones
    // with `_` (`X_Forwarded_Host`), which an upstream may read as the same: those go
    // even when trusted.
    let removed = |name: &HeaderName| {
        is_forwarded(name) && (!trusted || name.as_str().as_bytes().contains(&b'_'))
    };
    if headers.keys().any(removed) {
        let names: Vec<HeaderName> = headers.keys().filter(|n| removed(n)).cloned().collect();
        for name in names {
            headers.remove(name);
        }
    }
    if let Some(client) = client {
        let value = if headers.contains_key(&X_FORWARDED_FOR) {
            // One line, as `X-Forwarded-For` is read: the earlier hops first.
            let mut chain = Vec::new();
            for hop in headers.get_all(&X_FORWARDED_FOR).iter().chain([client]) {
                if !chain.is_empty() {
                    chain.extend_from_slice(b", ");
                }
                chain.extend_from_slice(hop.as_bytes());
            }
            HeaderValue::from_bytes(&chain).ok()
        } else {
            // No hops before this one (the rule, unless trusted): the connection's value.
            Some(client.clone())
        };
        if let Some(value) = value {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
}

/// A client's address as `X-Forwarded-For` gives it: an IPv4 client of a dual-stack
/// listener (`::ffff:192.0.2.7`) as the IPv4 address origins expect.
pub(in crate::upstream) fn client_address(address: IpAddr) -> Option<HeaderValue> {
    HeaderValue::try_from(address.to_canonical().to_string()).ok()
}
