//! Configured expiry: a default for responses that say nothing of their freshness, rules by
//! URL, and a request's own [`Expiry`].

use std::fmt;
use std::time::Duration;

use http::Method;

use crate::CacheKey;
use crate::policy::Configured;

/// How long a response is fresh, when configuration rather than the response decides.
///
/// Give it to [`CacheLayer::default_expiry`](crate::CacheLayer::default_expiry), to a URL
/// rule with [`CacheLayer::expiry_rule`](crate::CacheLayer::expiry_rule), or to one
/// request by putting it in the request's extensions:
///
/// ```
/// use std::time::Duration;
/// use cachet::Expiry;
///
/// let mut request = http::Request::get("https://api.example/rates").body(String::new())?;
/// request.extensions_mut().insert(Expiry::After(Duration::from_secs(300)));
/// # Ok::<_, http::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Expiry {
    /// Fresh for this long after it is received.
    After(Duration),
    /// Fresh until the store evicts it (stored for [`Expiry::NEVER`]).
    NeverExpire,
    /// Neither looked up nor stored.
    DoNotCache,
}

impl Expiry {
    /// What [`NeverExpire`](Self::NeverExpire) stands for: ten years.
    pub const NEVER: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

    /// The lifetime this expiry gives, `None` for [`DoNotCache`](Self::DoNotCache).
    fn lifetime(self) -> Option<Duration> {
        match self {
            Self::After(lifetime) => Some(lifetime.min(Self::NEVER)),
            Self::NeverExpire => Some(Self::NEVER),
            Self::DoNotCache => None,
        }
    }
}

/// A URL pattern: an optional `http://` or `https://`, a host glob that must match the
/// whole host (and the port, if the pattern gives one), and an optional path glob that must match the start of the path
/// and query. `*` matches any run of characters.
#[derive(Clone)]
struct UrlPattern {
    text: String,
    scheme: Option<String>,
    host: String,
    path: Option<String>,
}

impl UrlPattern {
    fn new(pattern: &str) -> Self {
        let (scheme, rest) = match pattern.split_once("://") {
            Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
            None => (None, pattern),
        };
        let (host, path) = match rest.find('/') {
            Some(at) => (&rest[..at], Some(rest[at..].to_owned())),
            None => (rest, None),
        };
        Self {
            text: pattern.to_owned(),
            scheme,
            host: host.to_ascii_lowercase(),
            path,
        }
    }

    /// Whether the pattern matches a URL as a cache key writes it (scheme and host in lower
    /// case, no default port).
    fn matches(&self, url: &str) -> bool {
        let Some((scheme, rest)) = url.split_once("://") else {
            return false;
        };
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        // A key's path starts with `/`; a strategy of one's own may write `h?q`.
        let (host, path) = rest
            .find(['/', '?'])
            .map_or((rest, "/"), |at| rest.split_at(at));
        let (name, port) = split_port(host);
        let (pattern_name, pattern_port) = split_port(&self.host);
        // A pattern without a port matches every port of its host; one with a port
        // matches a key without one on the scheme's default port, which keys leave out.
        let port_matches = pattern_port.is_none_or(|pattern_port| {
            let default = match scheme {
                "http" => "80",
                "https" => "443",
                _ => "",
            };
            glob(
                pattern_port.as_bytes(),
                port.unwrap_or(default).as_bytes(),
                false,
            )
        });
        port_matches
            && glob(pattern_name.as_bytes(), name.as_bytes(), false)
            && self
                .path
                .as_ref()
                .is_none_or(|p| glob(p.as_bytes(), path.as_bytes(), true))
    }
}

/// A host and its port, if it has one (`[::1]:8080` is `[::1]` and `8080`; `[::1]` has
/// none).
fn split_port(host: &str) -> (&str, Option<&str>) {
    let after_literal = host.rfind(']').map_or(0, |end| end + 1);
    match host[after_literal..].rfind(':') {
        Some(colon) => {
            let colon = after_literal + colon;
            (&host[..colon], Some(&host[colon + 1..]))
        }
        None => (host, None),
    }
}

/// Wildcard matching with `*` for any run of bytes; with `prefix`, the pattern need only
/// match the start of the text.
fn glob(pattern: &[u8], text: &[u8], prefix: bool) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: its position in the pattern and the text.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p == pattern.len() && (prefix || t == text.len()) {
            return true;
        }
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(&byte) if text.get(t) == Some(&byte) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((star_p, star_t)) if star_t < text.len() => {
                star = Some((star_p, star_t + 1));
                p = star_p + 1;
                t = star_t + 1;
            }
            _ => return false,
        }
    }
}

/// A cache's expiry configuration: rules by URL (first match wins), a default, and
/// whether they win over the response's headers.
#[derive(Clone, Default)]
pub(crate) struct ExpiryRules {
    rules: Vec<(UrlPattern, Expiry)>,
    default: Option<Expiry>,
    pub(crate) rules_win: bool,
}

/// What configuration decides for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Neither look it up nor store it.
    DoNotCache,
    /// Cache it, with a configured lifetime if one applies.
    Cache(Option<Configured>),
}

impl ExpiryRules {
    pub(crate) fn push(&mut self, pattern: &str, expiry: Expiry) {
        self.rules.push((UrlPattern::new(pattern), expiry));
    }

    pub(crate) fn set_default(&mut self, expiry: Expiry) {
        self.default = Some(expiry);
    }

    /// The decision for a request with this method and key and its own expiry, if it has
    /// one: the request's expiry, else the first rule that matches, else the default. The
    /// default never wins over a response's headers; the others do when rules win.
    pub(crate) fn decide(&self, method: &Method, key: &CacheKey, own: Option<Expiry>) -> Decision {
        if own.is_none() && self.is_empty() {
            return Decision::Cache(None);
        }
        let url = key.url();
        let chosen = own
            .map(|expiry| (expiry, self.rules_win))
            .or_else(|| {
                self.rules
                    .iter()
                    .find(|(pattern, _)| pattern.matches(url))
                    .map(|(_, expiry)| (*expiry, self.rules_win))
            })
            .or_else(|| {
                // The default lifetime stands in for the heuristic one, which no other
                // method's response gets (RFC 9110 §9.3.3); its "do not cache" holds for all.
                self.default
                    .filter(|expiry| {
                        expiry.lifetime().is_none() || matches!(*method, Method::GET | Method::HEAD)
                    })
                    .map(|expiry| (expiry, false))
            });
        match chosen {
            None => Decision::Cache(None),
            Some((expiry, wins)) => match expiry.lifetime() {
                None => Decision::DoNotCache,
                Some(lifetime) => Decision::Cache(Some(Configured { lifetime, wins })),
            },
        }
    }

    /// Whether nothing is configured, so that a request without its own expiry skips the work.
    fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.default.is_none()
    }
}

impl fmt::Debug for ExpiryRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpiryRules")
            .field(
                "rules",
                &self
                    .rules
                    .iter()
                    .map(|(pattern, expiry)| (pattern.text.as_str(), expiry))
                    .collect::<Vec<_>>(),
            )
            .field("default", &self.default)
            .field("rules_win", &self.rules_win)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, url: &str) -> bool {
        UrlPattern::new(pattern).matches(url)
    }

    #[test]
    fn a_host_pattern_matches_the_whole_host_and_any_path() {
        assert!(matches("example.com", "https://example.com/a/b?c"));
        assert!(matches("Example.COM", "http://example.com/"));
        assert!(!matches("example.com", "https://example.com.evil.test/"));
        assert!(!matches("example.com", "https://www.example.com/"));
        assert!(matches("*.example.com", "https://www.example.com/"));
        assert!(matches("example.com:8080", "http://example.com:8080/"));
        assert!(matches("example.com", "http://example.com:8080/"));
        assert!(!matches("example.com:8080", "http://example.com:9090/"));
        // Keys leave a default port out; a pattern that names it still matches.
        assert!(matches("example.com:443", "https://example.com/x"));
        assert!(matches(
            "https://example.com:443/static/",
            "https://example.com/static/a"
        ));
        assert!(matches("example.com:80", "http://example.com/"));
        assert!(!matches("example.com:80", "https://example.com/"));
        assert!(matches("example.com:80", "https://example.com:80/"));
        // An IP literal's colons are not a port.
        assert!(matches("[::1]", "http://[::1]:8080/"));
        assert!(matches("[::1]", "http://[::1]/"));
        assert!(matches("[::1]:8080", "http://[::1]:8080/"));
        assert!(!matches("[::1]:8080", "http://[::1]:9090/"));
        // A query right after the host (a key of a strategy of one's own) is not in it.
        assert!(matches("live.test", "http://live.test?feed"));
        assert!(!matches("live.test", "http://other.test?live.test"));
    }

    #[test]
    fn a_path_pattern_matches_the_start_of_the_path() {
        assert!(matches(
            "example.com/api/",
            "https://example.com/api/users?page=2"
        ));
        assert!(!matches("example.com/api/", "https://example.com/apiary"));
        assert!(matches(
            "example.com/*/avatar",
            "https://example.com/u/7/avatar.png"
        ));
        assert!(!matches(
            "example.com/*/avatar",
            "https://example.com/u/7/profile"
        ));
        assert!(matches("*", "https://anything.test/at/all"));
    }

    #[test]
    fn a_scheme_in_the_pattern_must_match() {
        assert!(matches("https://example.com", "https://example.com/"));
        assert!(!matches("https://example.com", "http://example.com/"));
    }

    #[test]
    fn glob_backtracks_over_stars() {
        assert!(glob(b"a*b*c", b"axxbyybzc", false));
        assert!(!glob(b"a*b*c", b"axxbyybz", false));
        assert!(glob(b"**", b"", false));
        assert!(glob(b"/a", b"/a/b", true));
        assert!(!glob(b"/a", b"/a/b", false));
    }

    fn key(url: &str) -> CacheKey {
        CacheKey::from_text(format!("GET {url}"))
    }

    #[test]
    fn the_request_then_the_first_rule_then_the_default_decide() {
        let minute = Duration::from_secs(60);
        let mut rules = ExpiryRules::default();
        rules.push("api.test/live", Expiry::DoNotCache);
        rules.push("api.test", Expiry::After(minute));
        rules.set_default(Expiry::NeverExpire);
        rules.rules_win = true;
        let cache = |lifetime, wins| Decision::Cache(Some(Configured { lifetime, wins }));
        assert_eq!(
            rules.decide(&Method::GET, &key("https://api.test/live/feed"), None),
            Decision::DoNotCache
        );
        assert_eq!(
            rules.decide(&Method::GET, &key("https://api.test/users"), None),
            cache(minute, true)
        );
        assert_eq!(
            rules.decide(&Method::GET, &key("https://other.test/"), None),
            cache(Expiry::NEVER, false)
        );
        // Another method's response gets no default lifetime, but the default's "do not
        // cache" still holds for it.
        assert_eq!(
            rules.decide(&Method::POST, &key("https://other.test/"), None),
            Decision::Cache(None)
        );
        rules.set_default(Expiry::DoNotCache);
        assert_eq!(
            rules.decide(&Method::POST, &key("https://other.test/"), None),
            Decision::DoNotCache
        );
        let own = Some(Expiry::After(Duration::from_secs(5)));
        assert_eq!(
            rules.decide(&Method::GET, &key("https://api.test/live/feed"), own),
            cache(Duration::from_secs(5), true)
        );
    }

    #[test]
    fn a_catch_all_do_not_cache_rule_makes_the_rules_an_allowlist() {
        let mut rules = ExpiryRules::default();
        rules.push("api.test/static/", Expiry::After(Duration::from_secs(60)));
        rules.push("*", Expiry::DoNotCache);
        assert!(matches!(
            rules.decide(&Method::GET, &key("https://api.test/static/app.js"), None),
            Decision::Cache(Some(_))
        ));
        assert_eq!(
            rules.decide(&Method::GET, &key("https://api.test/users"), None),
            Decision::DoNotCache
        );
    }
}
