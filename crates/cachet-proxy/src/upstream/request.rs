//! What a request becomes on its way upstream: the target joined to the upstream's base
//! path, `Host`, `Via`, no hop-by-hop headers, the forwarding headers, and what is
//! refused or answered here instead (a bad `Host`, a dot segment, `Max-Forwards: 0`).

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, HeaderName, VIA};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Full;

use cachet::Keys;

use super::hop_by_hop::strip_hop_by_hop;
use crate::flags::Upstream;

/// Why the proxy answers a request itself instead of forwarding it. The rewrite finds the
/// fault and puts this on the request, whose target it leaves without an authority, so
/// that the cache looks nothing up; [`Forward`](super::Forward) answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) status: StatusCode,
    /// One line that says what was wrong.
    pub(crate) reason: &'static str,
}

impl Refused {
    const fn bad(reason: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason,
        }
    }
}

impl Upstream {
    /// Rewrites a request received by the proxy into the request sent upstream.
    ///
    /// The target becomes the upstream's scheme and authority with the base path joined
    /// to the request's path and query (a request in absolute form keeps only its path and
    /// query: the proxy never forwards anywhere but its upstream); `OPTIONS *` stays `*`.
    /// `Host` becomes the upstream authority, hop-by-hop headers go (what `Connection`
    /// listed is kept on the request, as [`ConnectionOptions`], for its trailers), several
    /// `Cookie` fields become one ([`join_cookies`]), this proxy's `via` is added (RFC
    /// 9110 §7.6.3) and the version is left to the client's connection. A request the
    /// proxy cannot forward as it came is marked [`Refused`]; one whose `Via` already
    /// names `via` has come round a loop.
    ///
    /// [`ConnectionOptions`]: super::hop_by_hop::ConnectionOptions
    pub(crate) fn rewrite<B>(&self, mut request: Request<B>, via: &Via) -> Request<B> {
        let received = request.version();
        tracing::debug!(method = %request.method(), uri = %request.uri(), version = ?received, "request");

        let target = refusal(&request, via).map_or_else(
            || {
                self.target(request.method(), request.uri())
                    // Not expected: both halves are valid.
                    .map_err(|_| {
                        Refused::bad("bad request: its target cannot be joined to the upstream's")
                    })
            },
            Err,
        );
        *request.uri_mut() = match target {
            Ok(uri) => uri,
            Err(refused) => {
                if refused.status == StatusCode::LOOP_DETECTED && via.may_warn() {
                    // A misconfigured upstream that leads back here is worth a warning;
                    // a client that learns the pseudonym (a `TRACE` shows it) could send
                    // it on every request, so there is one a minute at most.
                    tracing::warn!("{}", refused.reason);
                } else {
                    tracing::debug!(reason = refused.reason, "refused");
                }
                request.extensions_mut().insert(refused);
                Uri::from_static("/")
            }
        };

        let headers = request.headers_mut();
        let options = strip_hop_by_hop(headers);
        join_cookies(headers);
        headers.insert(HOST, self.host.clone());
        headers.append(VIA, via.value(received));
        *request.version_mut() = Version::HTTP_11;
        // For the trailers, which only the forward sees. Seldom any: most requests are
        // spared the extensions' allocation.
        if !options.is_empty() {
            request.extensions_mut().insert(options);
        }
        request
    }

    /// The upstream URI for a request's target: the base path joined to its path and query
    /// (`/` for an absolute-form target without a path), or `*` for `OPTIONS *`.
    fn target(&self, method: &Method, uri: &Uri) -> Result<Uri, http::Error> {
        let path = match uri.path_and_query() {
            // Asterisk form (RFC 9112 §3.2.4): the server as a whole, whatever its base path.
            // The same section has `OPTIONS http://host` (no path, no query) go on as `*`,
            // but `http::Uri` gives that target the path `/`, as it does `http://host/`:
            // the two cannot be told apart here, and both go on as `/`.
            Some(path) if path.as_str() == "*" && *method == Method::OPTIONS => path.clone(),
            // Without a base path the request's own path and query go as they are, with
            // no copy and no second parse.
            Some(path) if self.base_path.is_empty() && path.as_str().starts_with('/') => {
                path.clone()
            }
            path => {
                let path = path.map_or("", PathAndQuery::as_str);
                let mut target = String::with_capacity(self.base_path.len() + path.len() + 1);
                target.push_str(&self.base_path);
                // An absolute-form target with an empty path has the path `/` (RFC 9112
                // §3.2.1), its query kept.
                if !path.starts_with('/') {
                    target.push('/');
                }
                target.push_str(path);
                PathAndQuery::try_from(target)?
            }
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path);
        Ok(Uri::from_parts(parts)?)
    }
}

/// Joins a request's `Cookie` fields into one, their values separated by `; `. An HTTP/2
/// client may split its cookies into a field each (RFC 9113 §8.2.3), and they MUST be
/// joined so before the request goes on over HTTP/1.1, where a second `Cookie` line is
/// not expected (RFC 6265 §5.4) and servers read only one of them. Done above the cache,
/// so that a response that varies on `Cookie` is the same variant to every client,
/// whichever way it sent them.
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(COOKIE).iter();
    let (Some(_), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = Vec::new();
    for value in headers.get_all(COOKIE) {
        // A field may end with the separator (`a=1; `): it is added once.
        let mut value = value.as_bytes().trim_ascii();
        while let Some(rest) = value.strip_suffix(b";") {
            value = rest.trim_ascii_end();
        }
        if value.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value);
    }
    // Valid values joined by `; ` are a valid value: no byte is added that one may not hold.
    if let Ok(joined) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, joined);
    }
}

/// What is wrong with a request the proxy will not forward, if anything: it has been
/// here before (its `Via` names `via`), or its `Host`, its target, or a transfer coding
/// it cannot pass on.
fn refusal<B>(request: &Request<B>, via: &Via) -> Option<Refused> {
    if via.is_named_in(request.headers()) {
        return Some(Refused {
            status: StatusCode::LOOP_DETECTED,
            reason: "loop detected: the request came back to the proxy that forwarded it (its Via names this proxy)",
        });
    }
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without a Host, and
    // to any with more than one or with one that is not a host (HTTP/2 names the host in
    // its target).
    let mut hosts = request.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if request.version() == Version::HTTP_11 => {
            return Some(Refused::bad(
                "bad request: an HTTP/1.1 request needs a Host",
            ));
        }
        (Some(host), None) if !is_host(host.as_bytes()) => {
            return Some(Refused::bad("bad request: its Host is not a host and port"));
        }
        (Some(_), Some(_)) => return Some(Refused::bad("bad request: it has more than one Host")),
        _ => {}
    }
    let uri = request.uri();
    if uri.scheme().is_none() && uri.authority().is_some() && request.method() != Method::CONNECT {
        // Authority form (RFC 9112 §3.2.3) names no resource: it is for CONNECT alone.
        return Some(Refused::bad(
            "bad request: a host:port target is only for CONNECT",
        ));
    }
    if uri.path() == "*" && request.method() != Method::OPTIONS {
        return Some(Refused::bad(
            "bad request: the target * is only for OPTIONS",
        ));
    }
    if has_dot_segment(uri.path()) {
        // `..` would climb out of the base path at an origin that resolves it, and the
        // same resource would sit under two keys. Clients resolve dot segments before
        // sending (RFC 3986 §5.2.4); one that did not is refused.
        return Some(Refused::bad(
            "bad request: its path has a dot segment (. or ..)",
        ));
    }
    // The connection's server decoded `chunked`; any other coding would be lost when the
    // body is sent on (RFC 9112 §6.1).
    if super::coded_beyond_chunked(request.headers()) {
        return Some(Refused {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: "not implemented: a request body in a transfer coding other than chunked",
        });
    }
    None
}

/// Whether a `Host` value is a host and optional port (RFC 9110 §7.2: `uri-host [ ":"
/// port ]`), or empty (RFC 9112 §3.2, for a target without an authority). The host is an
/// IP literal in brackets (an IPv6 address, with a zone ID or not, or an `IPvFuture`), or
/// a name or IPv4 address of the bytes a reg-name holds (RFC 3986 §3.2.2), not empty; no
/// user info (`user@`); the port, if any, digits that fit in 16 bits. So `a:b:c`, `[::1`,
/// `[::1]x`, `[zzz]`, `::::` and `a:99999999` are not hosts. It runs on every request,
/// hits included: a scan of the bytes, nothing copied.
fn is_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    let (host, port) = if value.starts_with(b"[") {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let (literal, rest) = (&value[1..end], &value[end + 1..]);
        if !is_ip_literal(literal) {
            return false;
        }
        match rest {
            [] => (&value[..=end], None),
            [b':', port @ ..] => (&value[..=end], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    // Unreserved and sub-delims bytes, and `%` with two hex digits (RFC 3986 §3.2.2).
    let reg_name = |host: &[u8]| {
        let mut rest = host;
        while let Some((&b, tail)) = rest.split_first() {
            rest = match b {
                b'%' => match tail {
                    [high, low, after @ ..]
                        if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() =>
                    {
                        after
                    }
                    _ => return false,
                },
                _ if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) => tail,
                _ => return false,
            };
        }
        true
    };
    !host.is_empty()
        && (host.starts_with(b"[") || reg_name(host))
        && port.is_none_or(|port| {
            port.iter().all(u8::is_ascii_digit)
                && (port.is_empty()
                    || std::str::from_utf8(port).is_ok_and(|port| port.parse::<u16>().is_ok()))
        })
}

/// Whether the text between an IP literal's brackets is an IPv6 address (with a zone ID
/// after `%25`, RFC 6874) or an `IPvFuture` (`v1.x`, RFC 3986 §3.2.2).
fn is_ip_literal(literal: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = literal {
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, address) = (&rest[..dot], &rest[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !address.is_empty()
            && address
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b));
    }
    let address = literal
        .windows(3)
        .position(|window| window == b"%25")
        .map_or(literal, |zone| &literal[..zone]);
    std::str::from_utf8(address).is_ok_and(|address| address.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Whether a path has a `.` or `..` segment, written out or percent-encoded (`%2e`), with
/// parameters after it (`..;x`, which some servers read as `..`), or between separators
/// that some origins also take for `/`: `\`, `%2f`, `%5c`.
fn has_dot_segment(path: &str) -> bool {
    // Runs on every request, hits included: one pass over the bytes, no copy.
    let mut rest = path.as_bytes();
    loop {
        let Some((at, len)) = separator(rest) else {
            return is_dot_segment(rest);
        };
        if is_dot_segment(&rest[..at]) {
            return true;
        }
        rest = &rest[at + len..];
    }
}

/// Where the first separator of a path starts, and its length: `/`, `\`, `%2f`, `%5c`.
fn separator(path: &[u8]) -> Option<(usize, usize)> {
    path.iter().enumerate().find_map(|(at, &b)| match b {
        b'/' | b'\\' => Some((at, 1)),
        b'%' => match path.get(at + 1..at + 3) {
            Some([b'2', f]) if f.eq_ignore_ascii_case(&b'f') => Some((at, 3)),
            Some([b'5', c]) if c.eq_ignore_ascii_case(&b'c') => Some((at, 3)),
            _ => None,
        },
        _ => None,
    })
}

/// Whether a segment is `.` or `..` (each dot perhaps `%2e`), parameters after `;` aside.
fn is_dot_segment(segment: &[u8]) -> bool {
    let mut rest = segment.split(|&b| b == b';').next().unwrap_or_default();
    let mut dots = 0;
    while !rest.is_empty() && dots <= 2 {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return false,
        };
        dots += 1;
    }
    (1..=2).contains(&dots) && rest.is_empty()
}

/// What a proxy adds to the `Via` of a request it forwards (RFC 9110 §7.6.3): the
/// protocol it was received with, and a pseudonym of this proxy, `cachet-` and 16 hex
/// digits chosen at random when it starts. A request whose `Via` already names the
/// pseudonym has come back (an upstream that is the proxy itself, or a chain of proxies
/// that leads back to it), and is refused rather than sent round again until a header
/// limit or the upstream timeout stops it, as the RFC asks of a proxy.
#[derive(Clone, Debug)]
pub(crate) struct Via {
    pseudonym: String,
    /// `Via` values for HTTP/0.9, 1.0, 1.1, 2 and 3, made once: a request clones one.
    values: [HeaderValue; 5],
    /// When a loop was last warned of, in seconds since the epoch (shared by clones).
    warned: Arc<AtomicU64>,
}

impl Via {
    /// A new pseudonym, unlike any other proxy's.
    pub(crate) fn random() -> Self {
        // std's hasher keys come from the system's randomness: hashed, they make a number
        // no other process (nor another proxy of this one) picks, with no crate for it.
        let pseudonym = format!(
            "cachet-{:016x}",
            std::hash::RandomState::new().hash_one(std::process::id())
        );
        let value = |protocol: &str| {
            HeaderValue::try_from(format!("{protocol} {pseudonym}"))
                .expect("a protocol and a pseudonym of hex digits are a valid Via")
        };
        let values = [
            value("0.9"),
            value("1.0"),
            value("1.1"),
            value("2"),
            value("3"),
        ];
        Self {
            pseudonym,
            values,
            warned: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether a loop may be warned of now: once a minute at most.
    pub(crate) fn may_warn(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let last = self.warned.load(Ordering::Relaxed);
        now >= last.saturating_add(60)
            && self
                .warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The `Via` value for a request received with `version`.
    fn value(&self, version: Version) -> HeaderValue {
        let at = match version {
            Version::HTTP_09 => 0,
            Version::HTTP_10 => 1,
            Version::HTTP_2 => 3,
            Version::HTTP_3 => 4,
            _ => 2,
        };
        self.values[at].clone()
    }

    /// Whether a `Via` of `headers` names this proxy: some entry's `received-by` is its
    /// pseudonym.
    fn is_named_in(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(VIA)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .any(|entry| received_by(entry) == Some(self.pseudonym.as_bytes()))
    }
}

/// The `received-by` of one `Via` entry (`1.1 proxy.example:8080 (comment)`): its second
/// word.
fn received_by(entry: &[u8]) -> Option<&[u8]> {
    entry
        .split(u8::is_ascii_whitespace)
        .filter(|word| !word.is_empty())
        .nth(1)
}

/// `Max-Forwards` on a TRACE or OPTIONS (RFC 9110 §7.6.2): at 0 the proxy answers as the
/// final recipient (OPTIONS with an empty 200, TRACE with the request it would have
/// forwarded, credentials left out: `Authorization`, `Cookie`, and the headers and query
/// parameters `keys` takes for credentials, the cache's); above 0 it counts one down. Any
/// other request, or a value that is not a number, goes on as it is.
pub(super) fn max_forwards<B>(
    request: &mut Request<B>,
    keys: &Keys,
) -> Option<Response<Full<Bytes>>> {
    const MAX_FORWARDS: HeaderName = HeaderName::from_static("max-forwards");
    if !matches!(*request.method(), Method::OPTIONS | Method::TRACE) {
        return None;
    }
    let left: u64 = request
        .headers()
        .get(&MAX_FORWARDS)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if left > 0 {
        request
            .headers_mut()
            .insert(MAX_FORWARDS, HeaderValue::from(left - 1));
        return None;
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    if request.method() == Method::TRACE {
        // A page's script may send TRACE and read the answer, but not the credentials its
        // browser adds: echoed, they would be handed to it (cross-site tracing).
        let is_credential = |name: &str| keys.is_credential(name);
        let uri = request.uri();
        let mut message = format!("TRACE {}", uri.path());
        let query = uri
            .query()
            .map(|query| without_credentials(query, is_credential));
        if let Some(query) = query.filter(|query| !query.is_empty()) {
            message.push('?');
            message.push_str(&query);
        }
        message.push_str(" HTTP/1.1\r\n");
        for (name, value) in request.headers() {
            let secret = matches!(
                name.as_str(),
                "authorization" | "proxy-authorization" | "cookie"
            ) || is_credential(name.as_str());
            if let (false, Ok(value)) = (secret, value.to_str()) {
                message.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        message.push_str("\r\n");
        *response.body_mut() = Full::new(Bytes::from(message));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("message/http"));
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(response)
}

/// A query without the parameters whose names are credentials (`is_credential` decodes
/// percent-escapes),
/// whether `&` or `;` comes before them (some origins split at either); the rest is kept
/// as it was sent.
fn without_credentials(query: &str, is_credential: impl Fn(&str) -> bool) -> String {
    let mut kept = String::with_capacity(query.len());
    let mut dropped = false;
    for part in query.split_inclusive(['&', ';']) {
        let pair = part.trim_end_matches(['&', ';']);
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        if is_credential(name) {
            dropped = true;
        } else {
            kept.push_str(part);
        }
    }
    if dropped {
        // The separator that came before a last pair dropped.
        let end = kept.trim_end_matches(['&', ';']).len();
        kept.truncate(end);
    }
    kept
}

mod forwarded;
pub(crate) use forwarded::NotVaryingOnForwarding;
#[cfg(test)]
use forwarded::is_forwarded;
pub(super) use forwarded::{client_address, set_forwarded};
#[cfg(test)]
mod tests;
