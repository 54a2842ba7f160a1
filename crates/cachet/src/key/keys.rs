//! The settings that shape keys ([`Keys`]) and the strategy that makes them
//! ([`KeyStrategy`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, Uri};

use super::CacheKey;
use crate::BodyDigest;

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
    /// with empty headers and extensions, for the keys an unsafe method invalidates and
    /// for those [`Entries`](crate::manage::Entries) finds by URL: entries under a key
    /// that depends on request headers (such as the tenant below) are not reached that
    /// way. To keep invalidation whole, select responses by header with
    /// [`Keys::headers`] instead, which keeps them under the URL's key.
    fn key(&self, request: &RequestHead<'_>) -> Option<CacheKey>;
}

/// The default [`KeyStrategy`]: for GET and HEAD, [`CacheKey::for_request`], the method
/// class and the absolute URI; for another method, [`CacheKey::for_body`] when the
/// request carries a [`BodyDigest`] (put there by a [`BodyKeyLayer`](crate::BodyKeyLayer)),
/// followed by the request's `Content-Type` and `Content-Encoding` when it has them (the
/// same bytes as JSON and as a form are two requests), and no key without one.
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
            )
            .map(|key| key.with_content_headers(request.headers)),
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
///   their values are replaced in keys and entries by a SHA-256 digest, which a store's
///   reader cannot read back (though a guessable value can be found by hashing guesses;
///   see the security guide) (so are a `Cookie`'s, when a response varies on it, though
///   it is no credential: a response to a request with one is stored as usual). A query credential splits the key. A shared cache stores
///   a response to a request with a credential header only if the response varies on
///   it (its `Vary`, or [`headers`](Self::headers)) or says it may be shared (`public`,
///   `s-maxage`, `must-revalidate`), as RFC 9111 §3.5 has it for `Authorization`.
/// - **Headers** ([`headers`](Self::headers)) select a response as if every response
///   named them in `Vary`.
///
/// Names match query parameters and header names without regard to case, and a query
/// parameter's name with its percent-escapes decoded (`api%5Fkey` is `api_key`).
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
    /// `None` for [`DefaultKey`], whose keys an invalidation builds faster than a
    /// strategy's (one `GET` key, its `HEAD` twin copied from it).
    strategy: Option<Arc<dyn KeyStrategy>>,
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
            strategy: None,
        }
    }

    /// Whether `name`, a request header's or a query parameter's (percent-escapes decoded,
    /// `api%5Fkey` is `api_key`), is one of the [credentials](Self::credentials): for a
    /// program that must keep them out of what it shows, as a proxy answering `TRACE`.
    pub fn is_credential(&self, name: &str) -> bool {
        contains_bytes(&self.credentials, &param_name(name.as_bytes()))
    }

    /// Query parameters and request headers to leave out of the key and never store.
    ///
    /// In a shared cache, ignoring a parameter that identifies the user (an API key in
    /// the query) makes one user's response answer another's request; keep such names
    /// as [credentials](Self::credentials) instead. A name that is also a credential is
    /// treated as one, not ignored.
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
    /// `Vary` (a response's own `Vary` still applies). A response is stored only when it
    /// varies on 64 headers at most, these included: past that, nothing is (with a
    /// warning here).
    pub fn headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        for name in names {
            if !self.headers.contains(&name) {
                self.headers.push(name);
            }
        }
        if self.headers.len() > crate::entry::MAX_VARIANT_NAMES {
            tracing::warn!(
                headers = self.headers.len(),
                "more headers select responses than a response may vary on: nothing will be stored"
            );
        }
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
        self.strategy = Some(Arc::new(strategy));
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
        self.strategy_key(&RequestHead {
            method,
            uri: &uri,
            headers,
            extensions,
        })
    }

    fn strategy_key(&self, request: &RequestHead<'_>) -> Option<CacheKey> {
        match &self.strategy {
            Some(strategy) => strategy.key(request),
            None => DefaultKey.key(request),
        }
    }

    /// The key a URI's responses to `method` are stored under, judged without headers or
    /// extensions: for invalidation and management by URL.
    pub fn key_for_url(&self, method: &Method, uri: &Uri) -> Option<CacheKey> {
        self.key(method, uri, &HeaderMap::new(), &Extensions::new())
    }

    /// The keys a URI's GET and HEAD responses are stored under, judged as
    /// [`key_for_url`](Self::key_for_url) judges them, the URI normalised once for both:
    /// what an unsafe method invalidates.
    pub(crate) fn read_keys_for_url(&self, uri: &Uri) -> [Option<CacheKey>; 2] {
        let uri = self.uri(uri);
        if self.strategy.is_none() {
            let get = CacheKey::for_request(&Method::GET, &uri);
            let head = get.as_ref().and_then(CacheKey::for_head);
            return [get, head];
        }
        let (headers, extensions) = (HeaderMap::new(), Extensions::new());
        [Method::GET, Method::HEAD].map(|method| {
            self.strategy_key(&RequestHead {
                method: &method,
                uri: &uri,
                headers: &headers,
                extensions: &extensions,
            })
        })
    }

    /// The headers every response varies on, besides those its `Vary` names.
    pub(crate) fn vary_headers(&self) -> &[HeaderName] {
        &self.headers
    }

    /// A credential header the request carries that `selected` (the names a response's
    /// variants are told apart by) leaves out: a response stored for it would be shared
    /// between credentials.
    pub(crate) fn unselected_credential<'r>(
        &self,
        request: impl IntoIterator<Item = &'r [u8]>,
        selected: &[HeaderName],
    ) -> Option<&'r str> {
        request
            .into_iter()
            // Header names are ASCII; anything else is no name listed here.
            .filter_map(|name| std::str::from_utf8(name).ok())
            .find(|name| {
                contains(&self.credentials, name)
                    && !selected.iter().any(|selected| selected.as_str() == *name)
            })
    }

    /// The request headers as variant keys and entries see them: ignored ones left out,
    /// credentials replaced by their digest. Borrowed when none of `names` needs either.
    pub(crate) fn vary_view<'h, 'n>(
        &self,
        request: &'h HeaderMap,
        names: impl IntoIterator<Item = &'n HeaderName> + Clone,
    ) -> Cow<'h, HeaderMap> {
        let touched = |name: &HeaderName| {
            request.contains_key(name) && (self.ignores(name.as_str()) || self.digests(name))
        };
        if !names.clone().into_iter().any(touched) {
            return Cow::Borrowed(request);
        }
        let mut view = request.clone();
        for name in names.into_iter().filter(|name| touched(name)) {
            if self.ignores(name.as_str()) {
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

    /// Whether a key or an entry holds the values of the request header `name` only as
    /// their digest: a credential's, and a `Cookie`'s. A cookie holds a session as often
    /// as not, yet most requests carry one, so it is no credential: a response to a
    /// request with one is stored as any other (`Vary: Cookie` keeps the users apart).
    fn digests(&self, name: &HeaderName) -> bool {
        *name == http::header::COOKIE || contains(&self.credentials, name.as_str())
    }

    /// Whether the header `name` is left out: ignored, and not a credential (whose value
    /// must keep users apart, so it is digested instead).
    fn ignores(&self, name: &str) -> bool {
        contains(&self.ignored, name) && !contains(&self.credentials, name)
    }

    /// Whether the query parameter `name` (as sent, escapes and all) is left out.
    fn ignores_param(&self, name: &str) -> bool {
        let name = param_name(name.as_bytes());
        contains_bytes(&self.ignored, &name) && !contains_bytes(&self.credentials, &name)
    }

    /// Whether a query pair holds, after a `;`, a parameter named as a credential: some
    /// origins split a query at `;` as at `&` (`?page=2;api_key=…`), and a credential's
    /// value must not reach a key in the clear.
    #[inline]
    fn credential_after_semicolon(&self, pair: &[u8]) -> bool {
        pair.contains(&b';')
            && pair
                .split(|&b| b == b';')
                .skip(1)
                .any(|part| contains_bytes(&self.credentials, &param_name(name_of_bytes(part))))
    }

    /// `pair` with the value of each credential after a `;` replaced by its digest. The
    /// parts stay where they are, and nothing is left out or sorted: to an origin that
    /// does not split at `;`, the pair is one parameter, and two pairs that differ must
    /// keep different keys.
    fn digest_credentials_after_semicolons(&self, pair: &str) -> String {
        let mut parts = pair.split(';');
        let mut out = String::from(parts.next().unwrap_or_default());
        for part in parts {
            out.push(';');
            match part.split_once('=') {
                Some((name, value))
                    if contains_bytes(&self.credentials, &param_name(name.as_bytes())) =>
                {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(&digest(value.as_bytes()));
                }
                _ => out.push_str(part),
            }
        }
        out
    }

    /// The URI with ignored parameters removed, credentials digested and the query
    /// sorted if asked; borrowed when nothing changes.
    fn uri<'u>(&self, uri: &'u Uri) -> Cow<'u, Uri> {
        let Some(query) = uri.query() else {
            return Cow::Borrowed(uri);
        };
        // Bytes, not `str::split`: this runs on every request with a query, and a byte
        // scan is a fraction of the cost of a `char` pattern search.
        let untouched = !self.sort_query
            && query.as_bytes().split(|&b| b == b'&').all(|pair| {
                let name = name_of_bytes(pair);
                // A credential name is never ignored, so one check covers both lists.
                let name = param_name(name);
                let touched = contains_bytes(&self.ignored, &name)
                    || contains_bytes(&self.credentials, &name)
                    || self.credential_after_semicolon(pair);
                !touched
            });
        if untouched {
            return Cow::Borrowed(uri);
        }
        let mut pairs: Vec<Cow<'_, str>> = query
            .split('&')
            // A pair whose first name is ignored goes, unless a credential follows a `;`
            // in it: to an origin that splits there, it says whose response this is.
            .filter(|pair| {
                !pair.is_empty()
                    && (!self.ignores_param(name_of(pair))
                        || self.credential_after_semicolon(pair.as_bytes()))
            })
            .map(|pair| match pair.split_once('=') {
                Some((name, value))
                    if contains_bytes(&self.credentials, &param_name(name.as_bytes())) =>
                {
                    Cow::Owned(format!("{name}={}", digest(value.as_bytes())))
                }
                _ if self.credential_after_semicolon(pair.as_bytes()) => {
                    Cow::Owned(self.digest_credentials_after_semicolons(pair))
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

/// [`name_of`] over bytes.
fn name_of_bytes(pair: &[u8]) -> &[u8] {
    pair.iter()
        .position(|&b| b == b'=')
        .map_or(pair, |end| &pair[..end])
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

/// Whether `list` holds `name`, case aside.
fn contains_bytes(list: &[String], name: &[u8]) -> bool {
    list.iter()
        .any(|entry| entry.as_bytes().eq_ignore_ascii_case(name))
}

/// A query parameter's name as the origin reads it, its percent-escapes decoded
/// (`api%5Fkey` is `api_key`); borrowed when it has none.
fn param_name(name: &[u8]) -> Cow<'_, [u8]> {
    if name.contains(&b'%') {
        Cow::Owned(percent_decoded(name))
    } else {
        Cow::Borrowed(name)
    }
}

/// `text` with each `%` and two hex digits as the byte they stand for; any other `%` kept.
fn percent_decoded(text: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&b, tail)) = rest.split_first() {
        if let (b'%', [high, low, after @ ..]) = (b, tail)
            && let (Some(high), Some(low)) = (hex(*high), hex(*low))
        {
            // Two hex digits are at most 255.
            out.push(u8::try_from(high * 16 + low).unwrap_or_default());
            rest = after;
            continue;
        }
        out.push(b);
        rest = tail;
    }
    out
}

/// A credential as keys and entries keep it: `sha256:` and the first 16 bytes of its
/// SHA-256 in hex, enough to keep users apart without revealing the value.
pub(super) fn digest(value: &[u8]) -> String {
    use std::fmt::Write;
    let hash = ring::digest::digest(&ring::digest::SHA256, value);
    let mut text = String::from("sha256:");
    for byte in &hash.as_ref()[..16] {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}
