//! Cache keys: the method class plus the absolute URI.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method, Uri};

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
        let scheme = uri.scheme_str()?;
        let authority = uri.authority()?;
        let default_port = if scheme.eq_ignore_ascii_case("http") {
            Some(80)
        } else if scheme.eq_ignore_ascii_case("https") {
            Some(443)
        } else {
            None
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let path = if path.is_empty() { "/" } else { path };

        // Built in one buffer: this runs on every request, hits included.
        let mut key = String::with_capacity(
            class.len() + scheme.len() + authority.as_str().len() + path.len() + 4,
        );
        key.push_str(class);
        key.push(' ');
        let start = key.len();
        key.push_str(scheme);
        key.push_str("://");
        key.push_str(authority.host());
        key[start..].make_ascii_lowercase();
        if let Some(port) = authority.port_u16().filter(|p| Some(*p) != default_port) {
            use std::fmt::Write;
            // Writing to a String cannot fail.
            let _ = write!(key, ":{port}");
        }
        key.push_str(path);
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

    #[test]
    fn unsafe_methods_and_relative_uris_have_no_key() {
        assert_eq!(key(Method::POST, "http://a/x"), None);
        assert_eq!(key(Method::GET, "/x"), None);
    }
}
