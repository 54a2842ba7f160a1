//! Cache keys: the method class plus the absolute URI (and, for another method, the
//! request body's digest), and the settings that shape them.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::BodyDigest;

/// The key a response is stored under.
///
/// It is the method class (`GET` or `HEAD`, so a HEAD never fills a GET entry) followed
/// by the absolute URI: scheme, authority, path and query, with the scheme and host in
/// lower case and a default port left out, so two origins never share an entry.
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
        let (host, port) = host_and_port(uri.authority()?.as_str());
        let default_port = if scheme.eq_ignore_ascii_case("http") {
            Some(80)
        } else if scheme.eq_ignore_ascii_case("https") {
            Some(443)
        } else {
            None
        };
        let port = port.filter(|p| Some(*p) != default_port);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let path = if path.is_empty() { "/" } else { path };

        // This runs on every request, hits included: the text is put together on the
        // stack, so that the `Arc<str>` is its one allocation.
        let body = body.map(|digest| format!(" body={digest}"));
        let mut text = KeyText::new();
        text.push(class);
        text.push(" ");
        let start = text.len;
        text.push(scheme);
        text.push("://");
        text.push(host);
        if let Some(lower) = text.bytes.get_mut(start..text.len) {
            lower.make_ascii_lowercase();
        }
        if let Some(port) = port {
            text.push(":");
            text.push_u16(port);
        }
        text.push(path);
        if let Some(body) = &body {
            text.push(body);
        }
        if let Some(text) = text.as_str() {
            return Some(Self(Arc::from(text)));
        }
        // Longer than the stack buffer: the same text, built on the heap.
        let mut key = format!("{class} {scheme}://{host}");
        key[class.len() + 1..].make_ascii_lowercase();
        if let Some(port) = port {
            // Writing to a String cannot fail.
            let _ = write!(key, ":{port}");
        }
        key.push_str(path);
        if let Some(body) = &body {
            key.push_str(body);
        }
        Some(Self(key.into()))
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
            let mut lines = request.get_all(name).iter().peekable();
            if lines.peek().is_none() {
                key.push('-');
                continue;
            }
            key.push('=');
            for (i, line) in lines.enumerate() {
                if i > 0 {
                    key.push_str(", ");
                }
                // Header values may hold any visible byte; escape what is not text.
                for &byte in line.as_bytes() {
                    match byte {
                        b'%' | b' ' | 0..=0x1f | 0x7f..=0xff => {
                            key.push_str(&format!("%{byte:02X}"))
                        }
                        _ => key.push(char::from(byte)),
                    }
                }
            }
        }
        Self(key.into())
    }

    /// The GET key of the URI a HEAD key names.
    pub(crate) fn for_get(&self) -> Option<Self> {
        let uri = self.0.strip_prefix("HEAD ")?;
        Some(Self(format!("GET {uri}").into()))
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
/// [`Authority::port_u16`](http::uri::Authority::port_u16) read them, in one pass.
fn host_and_port(authority: &str) -> (&str, Option<u16>) {
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    let (host, port) = if host_port.starts_with('[') {
        match host_port.find(']') {
            Some(end) => {
                let (host, rest) = host_port.split_at(end + 1);
                (host, rest.strip_prefix(':'))
            }
            None => (host_port, None),
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    (host, port.and_then(|port| port.parse().ok()))
}

/// A key's text on the stack; [`as_str`](Self::as_str) is `None` once it has
/// overflowed.
struct KeyText {
    bytes: [u8; Self::CAPACITY],
    len: usize,
    overflowed: bool,
}

impl KeyText {
    /// Room for nearly every URL; a longer one is built on the heap instead.
    const CAPACITY: usize = 256;

    fn new() -> Self {
        Self {
            bytes: [0; Self::CAPACITY],
            len: 0,
            overflowed: false,
        }
    }

    fn push(&mut self, text: &str) {
        let end = self.len + text.len();
        match self.bytes.get_mut(self.len..end) {
            Some(room) if !self.overflowed => {
                room.copy_from_slice(text.as_bytes());
                self.len = end;
            }
            _ => self.overflowed = true,
        }
    }

    fn push_u16(&mut self, mut n: u16) {
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
        // ASCII digits are text.
        self.push(std::str::from_utf8(&digits[start..]).unwrap_or_default());
    }

    fn as_str(&self) -> Option<&str> {
        if self.overflowed {
            return None;
        }
        // Whole `str`s were copied in and only ASCII letters changed case.
        std::str::from_utf8(self.bytes.get(..self.len)?).ok()
    }
}

/// What a [`KeyStrategy`] or a [`Filter`](crate::Filter) sees of a request: all of it
/// but the body.
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The request's method.
    pub method: &'a Method,
    /// The request's URI: for a [`KeyStrategy`], with the [`Keys`] settings applied
    /// (ignored query parameters removed, credentials replaced by digests, the query
    /// sorted if asked); for a [`Filter`](crate::Filter), as sent.
    pub uri: &'a Uri,
    /// The request's headers, as sent.
    pub headers: &'a HeaderMap,
    /// The request's extensions.
    pub extensions: &'a Extensions,
}

/// How a request becomes the key its response is stored under; replace it with
/// [`Keys::strategy`]. The default is [`DefaultKey`].
///
/// A key must hold everything that tells two responses apart (at least the method class
/// and the whole URI): requests with the same key share a stored response. Keys are
/// written to stores, so they should be stable across processes and versions.
///
/// ```
/// use cachet::{CacheKey, DefaultKey, RequestHead, KeyStrategy};
///
/// /// Keys on the default, plus the tenant a request is for.
/// #[derive(Debug)]
/// struct PerTenant;
///
/// impl KeyStrategy for PerTenant {
///     fn key(&self, request: &RequestHead<'_>) -> Option<CacheKey> {
///         let key = DefaultKey.key(request)?;
///         let tenant = request.headers.get("x-tenant")?.to_str().ok()?;
///         Some(CacheKey::from_text(format!("{key} tenant={tenant}")))
///     }
/// }
/// ```
pub trait KeyStrategy: fmt::Debug + Send + Sync + 'static {
    /// The key for a request, or `None` to pass it through uncached. It is also asked,
    /// with empty headers and extensions, for the keys an unsafe method invalidates.
    fn key(&self, request: &RequestHead<'_>) -> Option<CacheKey>;
}

/// The default [`KeyStrategy`]: for GET and HEAD, [`CacheKey::for_request`], the method
/// class and the absolute URI; for another method, [`CacheKey::for_body`] when the
/// request carries a [`BodyDigest`] (put there by a [`BodyKeyLayer`](crate::BodyKeyLayer)),
/// and no key without one.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultKey;

impl KeyStrategy for DefaultKey {
    fn key(&self, request: &RequestHead<'_>) -> Option<CacheKey> {
        match *request.method {
            Method::GET | Method::HEAD => CacheKey::for_request(request.method, request.uri),
            _ => CacheKey::for_body(
                request.method,
                request.uri,
                request.extensions.get::<BodyDigest>()?,
            ),
        }
    }
}

/// How a cache keys requests: which query parameters and request headers are ignored,
/// which are credentials, which request headers select a response, whether the query is
/// sorted, and the [`KeyStrategy`]. Give it to
/// [`CacheLayer::keys`](crate::CacheLayer::keys).
///
/// - **Ignored** names ([`ignore`](Self::ignore)) are left out of the key entirely, as
///   query parameters and as request headers a response varies on: requests that differ
///   only in them share a stored response, and their values are never stored.
/// - **Credentials** ([`credentials`](Self::credentials), by default
///   [`DEFAULT_CREDENTIALS`](Self::DEFAULT_CREDENTIALS)) are never stored in the clear:
///   their values are replaced in keys and entries by a SHA-256 digest, so requests with
///   different credentials still never share a response, but a store's reader learns no
///   secret.
/// - **Headers** ([`headers`](Self::headers)) select a response as if every response
///   named them in `Vary`.
///
/// Names match query parameters and header names without regard to case.
///
/// ```
/// use cachet::{CacheLayer, Keys, MemoryStore};
///
/// let layer = CacheLayer::new(MemoryStore::default()).keys(
///     Keys::new()
///         .ignore(["utm_source", "utm_campaign"])
///         .credentials(Keys::DEFAULT_CREDENTIALS.iter().copied().chain(["x-session"]))
///         .headers([http::header::ACCEPT_LANGUAGE])
///         .sort_query(true),
/// );
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct Keys {
    ignored: Vec<String>,
    credentials: Vec<String>,
    headers: Vec<HeaderName>,
    sort_query: bool,
    strategy: Arc<dyn KeyStrategy>,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new()
    }
}

impl Keys {
    /// The names treated as credentials unless [`credentials`](Self::credentials) says
    /// otherwise.
    pub const DEFAULT_CREDENTIALS: &'static [&'static str] = &[
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-auth-token",
        "access_token",
        "api_key",
    ];

    /// The default settings: nothing ignored, [`DEFAULT_CREDENTIALS`](Self::DEFAULT_CREDENTIALS)
    /// as credentials, the query as sent, and [`DefaultKey`].
    pub fn new() -> Self {
        Self {
            ignored: Vec::new(),
            credentials: lower(Self::DEFAULT_CREDENTIALS.iter().copied()),
            headers: Vec::new(),
            sort_query: false,
            strategy: Arc::new(DefaultKey),
        }
    }

    /// Query parameters and request headers to leave out of the key and never store.
    ///
    /// In a shared cache, ignoring a parameter that identifies the user (an API key in
    /// the query) makes one user's response answer another's request; keep such names
    /// as [credentials](Self::credentials) instead.
    pub fn ignore<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.ignored.extend(lower(names));
        self
    }

    /// Replaces the credential names. To extend the defaults, chain them:
    /// `Keys::DEFAULT_CREDENTIALS.iter().copied().chain(["x-session"])`.
    pub fn credentials<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.credentials = lower(names);
        self
    }

    /// Request headers that select a stored response, as if every response named them in
    /// `Vary` (a response's own `Vary` still applies).
    pub fn headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.headers.extend(names);
        self
    }

    /// Whether query parameters are sorted by name (keeping the order of repeated names),
    /// so that `?a=1&b=2` and `?b=2&a=1` share a key. Off by default: to the origin they
    /// are different URIs.
    pub fn sort_query(mut self, sort: bool) -> Self {
        self.sort_query = sort;
        self
    }

    /// Replaces [`DefaultKey`] with another strategy. It sees the URI with these settings
    /// applied.
    pub fn strategy(mut self, strategy: impl KeyStrategy) -> Self {
        self.strategy = Arc::new(strategy);
        self
    }

    /// The key for a request.
    pub fn key(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Option<CacheKey> {
        let uri = self.uri(uri);
        self.strategy.key(&RequestHead {
            method,
            uri: &uri,
            headers,
            extensions,
        })
    }

    /// The key a URI's responses to `method` are stored under, judged without headers or
    /// extensions: for invalidation and management by URL.
    pub fn key_for_url(&self, method: &Method, uri: &Uri) -> Option<CacheKey> {
        self.key(method, uri, &HeaderMap::new(), &Extensions::new())
    }

    /// The headers every response varies on, besides those its `Vary` names.
    pub(crate) fn vary_headers(&self) -> &[HeaderName] {
        &self.headers
    }

    /// The request headers as variant keys and entries see them: ignored ones left out,
    /// credentials replaced by their digest. Borrowed when none of `names` needs either.
    pub(crate) fn vary_view<'h, 'n>(
        &self,
        request: &'h HeaderMap,
        names: impl IntoIterator<Item = &'n HeaderName> + Clone,
    ) -> Cow<'h, HeaderMap> {
        let touched = |name: &HeaderName| {
            request.contains_key(name)
                && (contains(&self.ignored, name.as_str())
                    || contains(&self.credentials, name.as_str()))
        };
        if !names.clone().into_iter().any(touched) {
            return Cow::Borrowed(request);
        }
        let mut view = request.clone();
        for name in names.into_iter().filter(|name| touched(name)) {
            if contains(&self.ignored, name.as_str()) {
                view.remove(name);
                continue;
            }
            let digests: Vec<HeaderValue> = view
                .get_all(name)
                .iter()
                .filter_map(|value| HeaderValue::from_str(&digest(value.as_bytes())).ok())
                .collect();
            view.remove(name);
            for value in digests {
                view.append(name, value);
            }
        }
        Cow::Owned(view)
    }

    /// The URI with ignored parameters removed, credentials digested and the query
    /// sorted if asked; borrowed when nothing changes.
    fn uri<'u>(&self, uri: &'u Uri) -> Cow<'u, Uri> {
        let Some(query) = uri.query() else {
            return Cow::Borrowed(uri);
        };
        let untouched = !self.sort_query
            && query.split('&').all(|pair| {
                let name = name_of(pair);
                !contains(&self.ignored, name) && !contains(&self.credentials, name)
            });
        if untouched {
            return Cow::Borrowed(uri);
        }
        let mut pairs: Vec<Cow<'_, str>> = query
            .split('&')
            .filter(|pair| !pair.is_empty() && !contains(&self.ignored, name_of(pair)))
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if contains(&self.credentials, name) => {
                    Cow::Owned(format!("{name}={}", digest(value.as_bytes())))
                }
                _ => Cow::Borrowed(pair),
            })
            .collect();
        if self.sort_query {
            // A stable sort keeps repeated names in the order they were sent.
            pairs.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        }
        let mut path_and_query = uri.path().to_owned();
        if !pairs.is_empty() {
            path_and_query.push('?');
            path_and_query.push_str(&pairs.join("&"));
        }
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
        // Rebuilding a valid URI's query cannot fail; if it did, a URI without an
        // authority has no key, so the request passes through rather than leak a
        // credential into one.
        Cow::Owned(
            Uri::from_parts(parts)
                .ok()
                .filter(|u| u.path_and_query().is_some())
                .unwrap_or_default(),
        )
    }
}

/// A query pair's name: what comes before its `=`.
fn name_of(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(name, _)| name)
}

fn lower<I, N>(names: I) -> Vec<String>
where
    I: IntoIterator<Item = N>,
    N: AsRef<str>,
{
    names
        .into_iter()
        .map(|name| name.as_ref().to_ascii_lowercase())
        .collect()
}

fn contains(list: &[String], name: &str) -> bool {
    list.iter().any(|entry| entry.eq_ignore_ascii_case(name))
}

/// A credential as keys and entries keep it: `sha256:` and the first 16 bytes of its
/// SHA-256 in hex, enough to keep users apart without revealing the value.
fn digest(value: &[u8]) -> String {
    use std::fmt::Write;
    let hash = ring::digest::digest(&ring::digest::SHA256, value);
    let mut text = String::from("sha256:");
    for byte in &hash.as_ref()[..16] {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(method: Method, uri: &str) -> Option<String> {
        let uri: Uri = uri.parse().expect("test URIs are valid");
        CacheKey::for_request(&method, &uri).map(|k| k.to_string())
    }

    #[test]
    fn head_and_get_have_different_keys() {
        assert_ne!(
            key(Method::GET, "http://a/x"),
            key(Method::HEAD, "http://a/x")
        );
    }

    #[test]
    fn authorities_and_schemes_never_share_a_key() {
        assert_ne!(
            key(Method::GET, "http://a/x"),
            key(Method::GET, "http://b/x")
        );
        assert_ne!(
            key(Method::GET, "http://a/x"),
            key(Method::GET, "https://a/x")
        );
        assert_ne!(
            key(Method::GET, "http://a:8080/x"),
            key(Method::GET, "http://a/x")
        );
    }

    #[test]
    fn scheme_host_case_and_default_port_are_normalised() {
        assert_eq!(
            key(Method::GET, "HTTP://A:80"),
            Some("GET http://a/".to_owned())
        );
        assert_eq!(
            key(Method::GET, "https://a:443/p?q"),
            Some("GET https://a/p?q".to_owned())
        );
    }

    /// The key as it was built before it was put together on the stack: from `http`'s
    /// own reading of the authority, in a `String`.
    fn reference_key(method: &Method, uri: &Uri) -> Option<String> {
        let class = match *method {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            _ => return None,
        };
        let scheme = uri.scheme_str()?;
        let authority = uri.authority()?;
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let path = if path.is_empty() { "/" } else { path };
        let mut key = format!("{class} {scheme}://{}", authority.host());
        key[class.len() + 1..].make_ascii_lowercase();
        if let Some(port) = authority.port_u16().filter(|p| Some(*p) != default_port) {
            key.push_str(&format!(":{port}"));
        }
        key.push_str(path);
        Some(key)
    }

    #[test]
    fn keys_read_the_authority_as_http_does() {
        let long = format!("http://a/{}", "x".repeat(400));
        let uris = [
            "http://a/",
            "http://A.Example:8080/p?q=1",
            "https://user:pass@Host:443/x",
            "https://user:8080@host/x",
            "http://user@host:81",
            "http://[::1]/x",
            "http://[::1]:8080/x",
            "http://[FE80::1]:80/x",
            "HTTP://h:0/",
            "http://h:65535/",
            "ftp://h:21/f",
            "http://h:080/",
            &long,
        ];
        for uri in uris {
            let parsed: Uri = uri.parse().expect("test URIs are valid");
            for method in [Method::GET, Method::HEAD] {
                assert_eq!(
                    CacheKey::for_request(&method, &parsed).map(|k| k.to_string()),
                    reference_key(&method, &parsed),
                    "{uri}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn keys_match_the_reference_for_any_authority(
            user in proptest::option::of("[a-z:]{0,6}"),
            host in "[a-zA-Z0-9.-]{1,12}|\\[[0-9a-fA-F:]{2,12}\\]",
            port in proptest::option::of("[0-9]{0,6}"),
            path in "(/[a-zA-Z0-9%._~-]{0,40}){0,8}(\\?[a-z=&]{0,20})?",
        ) {
            let user = user.map(|u| format!("{u}@")).unwrap_or_default();
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            if let Ok(uri) = format!("http://{user}{host}{port}{path}").parse::<Uri>() {
                proptest::prop_assert_eq!(
                    CacheKey::for_request(&Method::GET, &uri).map(|k| k.to_string()),
                    reference_key(&Method::GET, &uri)
                );
            }
        }
    }

    #[test]
    fn query_and_path_case_are_kept() {
        assert_ne!(
            key(Method::GET, "http://a/x?1"),
            key(Method::GET, "http://a/x?2")
        );
        assert_ne!(
            key(Method::GET, "http://a/X"),
            key(Method::GET, "http://a/x")
        );
    }

    #[test]
    fn variant_keys_tell_values_and_absence_apart() {
        let base = CacheKey::from_text("GET http://a/");
        let names = [HeaderName::from_static("accept")];
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("accept", http::HeaderValue::from_static(v));
            base.variant(&names, &h)
        };
        assert_eq!(
            with("text/html").as_str(),
            "GET http://a/ vary accept=text/html"
        );
        assert_ne!(with("text/html"), with("application/json"));
        assert_eq!(
            base.variant(&names, &HeaderMap::new()).as_str(),
            "GET http://a/ vary accept-"
        );
        assert_ne!(with("a b").as_str(), "GET http://a/ vary accept=a b");
        assert_eq!(with("a b").url(), "http://a/");
    }

    fn keyed(keys: &Keys, uri: &str) -> String {
        let uri: Uri = uri.parse().expect("test URIs are valid");
        keys.key_for_url(&Method::GET, &uri)
            .map(|k| k.to_string())
            .unwrap_or_default()
    }

    /// Keys are written to shared stores: a change here strands every stored entry, so
    /// these values are recorded, not computed.
    #[test]
    fn keys_are_stable_across_processes_and_versions() {
        let keys = Keys::new().ignore(["utm_source"]).sort_query(true);
        assert_eq!(
            keys_of(&keys),
            [
                "GET https://api.example/v1/items?a=1&b=2&b=1",
                "GET https://api.example/v1/items?api_key=sha256:5e884898da28047151d0e56f8dc62927&page=2",
                "HEAD http://api.example:8080/",
            ]
        );
        let mut view = HeaderMap::new();
        view.insert("authorization", HeaderValue::from_static("Bearer secret"));
        let names = [http::header::AUTHORIZATION];
        let base = CacheKey::from_text("GET https://api.example/");
        assert_eq!(
            base.variant(&names, &keys.vary_view(&view, &names))
                .as_str(),
            "GET https://api.example/ vary authorization=sha256:bffde20413347b7a00e1363de3f97ca6"
        );
    }

    /// Recorded, as the GET keys above: a POST keyed by its body.
    #[test]
    fn body_keys_are_stable_across_processes_and_versions() {
        let uri: Uri = "HTTPS://API.example:443/v1/search?page=2&api_key=password"
            .parse()
            .expect("valid");
        let mut extensions = Extensions::new();
        extensions.insert(BodyDigest::of(br#"{"q":"cats"}"#));
        let key = Keys::new().key(&Method::POST, &uri, &HeaderMap::new(), &extensions);
        assert_eq!(
            key.map(|k| k.to_string()).as_deref(),
            Some(
                "POST https://api.example/v1/search?page=2&api_key=sha256:5e884898da28047151d0e56f8dc62927 \
                 body=sha256:7d8124aa09a99852d88b0066cd3545056a3250a78af161506d3b979dfd68c5ce"
            )
        );
    }

    #[test]
    fn another_method_has_a_key_only_with_a_body_digest() {
        let uri: Uri = "http://a/x".parse().expect("valid");
        let head = |method: &Method, extensions: &Extensions| {
            DefaultKey.key(&RequestHead {
                method,
                uri: &uri,
                headers: &HeaderMap::new(),
                extensions,
            })
        };
        assert_eq!(head(&Method::POST, &Extensions::new()), None);
        let mut one = Extensions::new();
        one.insert(BodyDigest::of(b"one"));
        let mut two = Extensions::new();
        two.insert(BodyDigest::of(b"two"));
        assert_ne!(head(&Method::POST, &one), head(&Method::POST, &two));
        assert_ne!(head(&Method::POST, &one), head(&Method::PUT, &one));
        assert_eq!(
            head(&Method::POST, &one)
                .map(|k| k.url().to_owned())
                .as_deref(),
            Some("http://a/x")
        );
        // GET and HEAD keys do not change with a digest.
        assert_eq!(
            head(&Method::GET, &one).map(|k| k.to_string()).as_deref(),
            Some("GET http://a/x")
        );
    }

    fn keys_of(keys: &Keys) -> Vec<String> {
        vec![
            keyed(
                keys,
                "https://API.example/v1/items?b=2&utm_source=x&a=1&b=1",
            ),
            keyed(keys, "https://api.example/v1/items?page=2&api_key=password"),
            {
                let uri: Uri = "http://api.example:8080".parse().expect("valid");
                keys.key_for_url(&Method::HEAD, &uri)
                    .map(|k| k.to_string())
                    .unwrap_or_default()
            },
        ]
    }

    #[test]
    fn ignored_names_do_not_split_the_key_and_credentials_do() {
        let keys = Keys::new().ignore(["session"]);
        assert_eq!(
            keyed(&keys, "http://a/x?session=1&q=z"),
            keyed(&keys, "http://a/x?Session=2&q=z")
        );
        assert_ne!(
            keyed(&keys, "http://a/x?api_key=one"),
            keyed(&keys, "http://a/x?api_key=two")
        );
        assert!(!keyed(&keys, "http://a/x?api_key=one").contains("one"));
        assert_eq!(keyed(&keys, "http://a/x?session=1"), "GET http://a/x");
        let replaced = Keys::new().credentials(["token"]);
        assert!(keyed(&replaced, "http://a/x?api_key=one").contains("api_key=one"));
        assert!(!keyed(&replaced, "http://a/x?token=one").contains("one"));
    }

    #[test]
    fn the_query_is_kept_as_sent_unless_sorting_is_asked_for() {
        assert_eq!(
            keyed(&Keys::new(), "http://a/x?b=1&a=2"),
            "GET http://a/x?b=1&a=2"
        );
        assert_eq!(
            keyed(&Keys::new().sort_query(true), "http://a/x?b=1&a=2"),
            "GET http://a/x?a=2&b=1"
        );
    }

    #[test]
    fn ignored_and_credential_headers_are_left_out_or_digested_in_the_vary_view() {
        let keys = Keys::new().ignore(["x-request-id"]);
        let mut request = HeaderMap::new();
        request.insert("x-request-id", HeaderValue::from_static("42"));
        request.insert("x-api-key", HeaderValue::from_static("secret"));
        request.insert("accept", HeaderValue::from_static("text/html"));
        let accept = [http::header::ACCEPT];
        assert!(matches!(
            keys.vary_view(&request, &accept),
            Cow::Borrowed(_)
        ));
        let names = [
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-api-key"),
        ];
        let view = keys.vary_view(&request, &names);
        assert!(!view.contains_key("x-request-id"));
        let digested = view.get("x-api-key").map(|v| v.as_bytes().to_vec());
        assert_eq!(digested, Some(digest(b"secret").into_bytes()));
    }

    #[test]
    fn unsafe_methods_and_relative_uris_have_no_key() {
        assert_eq!(key(Method::POST, "http://a/x"), None);
        assert_eq!(key(Method::GET, "/x"), None);
    }
}
