//! Vary (RFC 9111 §4.1): which request headers select a stored response.

use http::header::VARY;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The header names a response varies on; `None` for `Vary: *`, which never matches.
pub(crate) fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for line in headers.get_all(VARY) {
        let line = line.to_str().ok()?;
        for name in line.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Some(names)
}

/// A request's value of a header as Vary compares it: every line joined with `, `, or
/// `None` when absent.
pub(crate) fn vary_value(request: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut lines = request.get_all(name).iter();
    let first = lines.next()?;
    let mut joined = first.as_bytes().to_vec();
    for line in lines {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(line.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// Whether a request carries the header values a stored variant was selected by.
pub(crate) fn vary_matches(
    stored: &[(HeaderName, Option<HeaderValue>)],
    request: &HeaderMap,
) -> bool {
    stored.iter().all(|(name, value)| {
        let mut lines = request.get_all(name).iter();
        match (value, lines.next()) {
            (None, None) => true,
            (Some(value), Some(first)) => match lines.next() {
                None => first == value,
                Some(_) => vary_value(request, name).as_ref() == Some(value),
            },
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::headers;

    #[test]
    fn vary_star_never_matches_and_absent_matches_only_absent() {
        assert_eq!(vary_names(&headers(&[("vary", "*")])), None);
        let stored = vec![(HeaderName::from_static("accept-language"), None)];
        assert!(vary_matches(&stored, &HeaderMap::new()));
        assert!(!vary_matches(
            &stored,
            &headers(&[("accept-language", "en")])
        ));
    }
}
