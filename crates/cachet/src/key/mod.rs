//! Cache keys: the method class plus the absolute URI (and, for another method, the
//! request body's digest), and the settings that shape them.

mod keys;

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, Method, Uri};

use crate::BodyDigest;

pub use keys::{DefaultKey, KeyStrategy, Keys, RequestHead};

/// The key a response is stored under.
///
/// It is the method class (`GET` or `HEAD`, so a HEAD never fills a GET entry) followed
/// by the absolute URI: scheme, authority, path and query, with the scheme and host in
/// lower case, a default port left out and an empty path written `/`, so two origins
/// never share an entry and one URI has one key. A URI
/// with user information or a port that is not a number has none.
///
/// ```
/// use cachet::CacheKey;
///
/// let uri = "HTTPS://Example.COM:443/a?b=1".parse().unwrap_or_default();
/// let key = CacheKey::for_request(&http::Method::GET, &uri);
/// assert_eq!(key.map(|k| k.to_string()).as_deref(), Some("GET https://example.com/a?b=1"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(Arc<str>);

impl CacheKey {
    /// The key for a request, or `None` when the request cannot be cached by key: a method
    /// other than GET and HEAD, or a URI without a scheme and authority.
    pub fn for_request(method: &Method, uri: &Uri) -> Option<Self> {
        let class = match *method {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            _ => return None,
        };
        Self::build(class, uri, None)
    }

    /// The key for a request of any method whose body has this digest: the method, the
    /// URI as in a GET key, then ` body=` and the digest; `None` for a URI without a
    /// scheme and authority.
    ///
    /// ```
    /// use cachet::{BodyDigest, CacheKey};
    ///
    /// let uri = "https://Search.example/q".parse().unwrap_or_default();
    /// let key = CacheKey::for_body(&http::Method::POST, &uri, &BodyDigest::of(b""));
    /// assert_eq!(
    ///     key.map(|k| k.to_string()).as_deref(),
    ///     Some("POST https://search.example/q body=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    /// );
    /// ```
    pub fn for_body(method: &Method, uri: &Uri, body: &BodyDigest) -> Option<Self> {
        Self::build(method.as_str(), uri, Some(body))
    }

    /// `class`, the normalised absolute URI, and the body's digest if there is one.
    fn build(class: &str, uri: &Uri, body: Option<&BodyDigest>) -> Option<Self> {
        use std::fmt::Write;

        let scheme = uri.scheme_str()?;
        let (host, port) = host_and_port(uri.authority()?.as_str())?;
        let default_port = if scheme.eq_ignore_ascii_case("http") {
            Some(80)
        } else if scheme.eq_ignore_ascii_case("https") {
            Some(443)
        } else {
            None
        };
        let port = port.filter(|p| Some(*p) != default_port);
        let path = uri.path_and_query().map_or("", |p| p.as_str());

        // This runs on every request, hits included.
        let key = Self::written(|text| {
            text.push_str(class);
            text.push(' ');
            let start = text.len();
            text.push_str(scheme);
            text.push_str("://");
            text.push_str(host);
            text[start..].make_ascii_lowercase();
            if let Some(port) = port {
                text.push(':');
                push_decimal(text, port);
            }
            // An empty path is `/` (RFC 9110 §4.2.3), with a query or without one:
            // `http://h?q` is `http://h/?q`.
            if !path.starts_with('/') {
                text.push('/');
            }
            text.push_str(path);
            if let Some(body) = body {
                // Writing to a String cannot fail.
                let _ = write!(text, " body={body}");
            }
        });
        Some(key)
    }

    /// The key of one variant of this URI's responses: the URI's key followed by the
    /// request's values of the headers the response varies on (RFC 9111 §4.1), each line
    /// of a header joined with `, `; an absent header is `-`, which no value can equal.
    pub(crate) fn variant(&self, names: &[HeaderName], request: &HeaderMap) -> Self {
        let mut key = String::from(self.as_str());
        key.push_str(" vary");
        for name in names {
            key.push(' ');
            key.push_str(name.as_str());
            if request.contains_key(name) {
                key.push('=');
                push_lines(&mut key, request, name);
            } else {
                key.push('-');
            }
        }
        Self(key.into())
    }

    /// A body's key made specific to how the body is read: the request's `Content-Type`
    /// and `Content-Encoding`, when it has them, follow the digest, so that the same bytes
    /// sent as JSON and as a form, or compressed, are not taken for one request.
    pub(crate) fn with_content_headers(self, request: &HeaderMap) -> Self {
        let names = [CONTENT_TYPE, CONTENT_ENCODING];
        if !names.iter().any(|name| request.contains_key(name)) {
            return self;
        }
        let mut key = String::from(self.as_str());
        for name in names.iter().filter(|name| request.contains_key(*name)) {
            key.push(' ');
            key.push_str(name.as_str());
            key.push('=');
            push_lines(&mut key, request, name);
        }
        Self(key.into())
    }

    /// A key whose text `write` puts together in this thread's buffer, reused from key
    /// to key, so that the `Arc<str>` is its one allocation.
    fn written(write: impl Fn(&mut String)) -> Self {
        let make = |text: &mut String| {
            text.clear();
            write(text);
            let key = Self(Arc::from(text.as_str()));
            if text.capacity() > KEY_TEXT_KEPT {
                // A rare long URL does not keep its room.
                *text = String::new();
            }
            key
        };
        KEY_TEXT
            .try_with(|text| make(&mut text.borrow_mut()))
            // The thread's buffer is gone while it exits (a key made by another
            // thread-local's destructor): a buffer of its own.
            .unwrap_or_else(|_| make(&mut String::new()))
    }

    /// The HEAD key of the URI a GET key names: [`for_request`](Self::for_request)'s for
    /// HEAD, without normalising the URI again.
    pub(crate) fn for_head(&self) -> Option<Self> {
        let uri = self.0.strip_prefix("GET ")?;
        Some(Self::written(|text| {
            text.push_str("HEAD ");
            text.push_str(uri);
        }))
    }

    /// The GET key of the URI a HEAD key names.
    pub(crate) fn for_get(&self) -> Option<Self> {
        let uri = self.0.strip_prefix("HEAD ")?;
        Some(Self(format!("GET {uri}").into()))
    }

    /// The key of the variant index a variant's key is under: its text before the
    /// variant's suffix (` vary `, which header values in a key never hold, as their
    /// spaces are escaped); `None` for a key that is no variant's.
    pub(crate) fn index_key(&self) -> Option<Self> {
        let (index, _) = self.0.split_once(" vary ")?;
        Some(Self(index.into()))
    }

    /// The URL the key names: its text after the method, up to any variant's suffix.
    pub fn url(&self) -> &str {
        let rest = self.0.split_once(' ').map_or(&*self.0, |(_, rest)| rest);
        rest.split(' ').next().unwrap_or(rest)
    }

    /// A key from its text, for stores and tools that handle keys directly.
    pub fn from_text(text: impl Into<Arc<str>>) -> Self {
        Self(text.into())
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Which of `shards` counters the key counts in: from its length and last byte, which
    /// tell most URLs apart for nothing; keys that share a shard only cost each other
    /// some extra work where such counts are kept.
    pub(crate) fn shard(&self, shards: usize) -> usize {
        let text = self.0.as_bytes();
        (text.len().wrapping_mul(31) + usize::from(text.last().copied().unwrap_or(0))) % shards
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// An authority's host (an IPv6 literal with its brackets) and port, read as
/// [`Authority::host`](http::uri::Authority::host) and
/// [`Authority::port_u16`](http::uri::Authority::port_u16) read them, in one pass; `None`
/// (no key: the request passes through) for user information, a port that is not a
/// number, or anything but a port after an IPv6 literal, which a key would otherwise
/// drop, so that `http://h:x/`, `http://u@h/` or `http://[h]x:81/` would share
/// `http://h/`'s (or `http://[h]/`'s) entries.
///
/// The scans are over bytes (every delimiter is ASCII, so each position found is a char
/// boundary): a `char` pattern search costs several times as much on every request.
fn host_and_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.bytes().any(|b| b == b'@') {
        return None;
    }
    let host_port = authority;
    let (host, port) = if host_port.starts_with('[') {
        match host_port.find(']') {
            Some(end) => {
                let (host, rest) = host_port.split_at(end + 1);
                // Anything but `:port` after the `]` (`[::1]x:8080`, which `http` takes,
                // reading the port after the last `:`) would otherwise drop the port.
                match rest {
                    "" => (host, None),
                    _ => (host, Some(rest.strip_prefix(':')?)),
                }
            }
            None => (host_port, None),
        }
    } else {
        match host_port.bytes().position(|b| b == b':') {
            Some(colon) => (&host_port[..colon], Some(&host_port[colon + 1..])),
            None => (host_port, None),
        }
    };
    match port.filter(|port| !port.is_empty()) {
        Some(port) => Some((host, Some(port.parse().ok()?))),
        None => Some((host, None)),
    }
}

/// Writes the request's lines of header `name`, joined with `, ` (written `,%20`, as the
/// space of one line holding both is: combining lines is no change, RFC 9111 §4.1),
/// escaping what is not text: header values may hold any visible byte, and a key's parts
/// are split at spaces.
fn push_lines(key: &mut String, request: &HeaderMap, name: &HeaderName) {
    use std::fmt::Write;

    for (i, line) in request.get_all(name).iter().enumerate() {
        if i > 0 {
            key.push_str(",%20");
        }
        for &byte in line.as_bytes() {
            match byte {
                b'%' | b' ' | 0..=0x1f | 0x7f..=0xff => {
                    // Writing to a String cannot fail.
                    let _ = write!(key, "%{byte:02X}");
                }
                _ => key.push(char::from(byte)),
            }
        }
    }
}

thread_local! {
    /// The buffer [`CacheKey::build`] puts a key's text together in, reused from key to
    /// key.
    static KEY_TEXT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The most room [`KEY_TEXT`] keeps between keys.
const KEY_TEXT_KEPT: usize = 4096;

/// Writes `n` in decimal: a port, which is on the key of every request to it, without
/// the formatting machinery.
fn push_decimal(text: &mut String, mut n: u16) {
    let mut digits = [0u8; 5];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    text.extend(digits[start..].iter().map(|&digit| char::from(digit)));
}

#[cfg(test)]
mod tests;
