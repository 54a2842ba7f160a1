//! Where a response to an unsafe method points (`Location`, `Content-Location`): its
//! reference resolved against the request's URI, for invalidation (RFC 9111 §4.4).

use http::Uri;

/// `reference` resolved against `base`, if it has the same scheme and authority: a
/// `Location` or `Content-Location` is a URI reference (RFC 9110 §10.2.2, §8.7), which
/// may be relative. Hosts compare case-insensitively and a default port counts as none,
/// as keys do.
pub(super) fn same_origin(base: &Uri, reference: &str) -> Option<Uri> {
    let target = resolve(base, reference)?;
    let scheme = base.scheme_str()?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let port = |uri: &Uri| uri.port_u16().or(default_port);
    let same = target.scheme_str()?.eq_ignore_ascii_case(scheme)
        && target.host()?.eq_ignore_ascii_case(base.host()?)
        && port(&target) == port(base);
    same.then_some(target)
}

/// `reference` resolved against the absolute URI `base` (RFC 3986 §5.2.2), without its
/// fragment, which no key holds.
fn resolve(base: &Uri, reference: &str) -> Option<Uri> {
    let reference = reference.split('#').next().unwrap_or_default();
    // A scheme is a letter, then letters, digits, `+`, `-` or `.`, up to the first `:`;
    // a relative path cannot hold a `:` before its first `/` (§4.2).
    let (scheme, rest) = match reference.split_once(':') {
        Some((scheme, rest))
            if scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
        {
            (Some(scheme), rest)
        }
        _ => (None, reference),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(rest) => {
            let end = rest.find('/').unwrap_or(rest.len());
            (Some(&rest[..end]), &rest[end..])
        }
        None => (None, rest),
    };
    let (scheme, authority, path, query) = match (scheme, authority) {
        // `http:path` has no authority, so no origin to compare.
        (Some(_), None) => return None,
        (scheme, Some(authority)) => (
            scheme.or(base.scheme_str())?,
            authority,
            remove_dot_segments(path),
            query,
        ),
        (None, None) => {
            let (path, query) = if path.is_empty() {
                (base.path().to_owned(), query.or(base.query()))
            } else if path.starts_with('/') {
                (remove_dot_segments(path), query)
            } else {
                // Merged with the base path up to its last `/` (§5.2.3).
                let base_path = base.path();
                let directory = base_path.rfind('/').map_or("/", |end| &base_path[..=end]);
                (remove_dot_segments(&format!("{directory}{path}")), query)
            };
            (base.scheme_str()?, base.authority()?.as_str(), path, query)
        }
    };
    // An empty path is `/` in http and https (RFC 9110 §4.2.3).
    let path = if path.is_empty() { "/" } else { &path };
    let query = query.map(|query| format!("?{query}")).unwrap_or_default();
    format!("{scheme}://{authority}{path}{query}").parse().ok()
}

/// An absolute (or empty) path without its `.` and `..` segments (RFC 3986 §5.2.4).
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    // The first piece is the empty one before the leading `/`.
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        if segment == ".." {
            kept.pop();
        }
        if segment != "." && segment != ".." {
            kept.push(segment);
        } else if segments.peek().is_none() {
            // `/a/b/..` names the directory `/a/`, not the file `/a`.
            kept.push("");
        }
    }
    kept.iter().map(|segment| format!("/{segment}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_locations_are_invalidated() {
        let base: Uri = "http://a.example/items/x?y=1".parse().expect("valid");
        let same = |reference| same_origin(&base, reference).map(|uri| uri.to_string());
        let cases = [
            ("/y", Some("http://a.example/y")),
            ("5", Some("http://a.example/items/5")),
            ("../x", Some("http://a.example/x")),
            ("?q=1", Some("http://a.example/items/x?q=1")),
            ("//a.example/z", Some("http://a.example/z")),
            ("//A.EXAMPLE:80/z", Some("http://A.EXAMPLE:80/z")),
            ("http://A.example/z", Some("http://A.example/z")),
            ("http://a.example:80/z#part", Some("http://a.example:80/z")),
            ("//a.example:8080/z", None),
            ("//b.example/z", None),
            ("http://b.example/y", None),
            ("https://a.example/y", None),
            ("http:y", None),
            ("mailto:someone@a.example", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(same(reference).as_deref(), expected, "{reference}");
        }
        let https: Uri = "https://a.example:443/x".parse().expect("valid");
        assert_eq!(
            same_origin(&https, "//a.example/y").map(|uri| uri.to_string()),
            Some("https://a.example/y".to_owned())
        );
    }

    /// The examples of RFC 3986 §5.4, but those with another scheme and no authority, which
    /// name no origin; fragments are left out.
    #[test]
    fn rfc3986_5_4_references_resolve_as_the_rfc_resolves_them() {
        let base: Uri = "http://a/b/c/d;p?q".parse().expect("valid");
        let cases = [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            ("g?y#s", "http://a/b/c/g?y"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g?y/../x", "http://a/b/c/g?y/../x"),
            ("g#s/./x", "http://a/b/c/g"),
            ("g#s/../x", "http://a/b/c/g"),
            ("http://a/b/../g", "http://a/g"),
        ];
        for (reference, expected) in cases {
            assert_eq!(
                resolve(&base, reference)
                    .map(|uri| uri.to_string())
                    .as_deref(),
                Some(expected),
                "{reference}"
            );
        }
        assert_eq!(resolve(&base, "g:h"), None);
        assert_eq!(resolve(&base, "http:g"), None);
    }
}
