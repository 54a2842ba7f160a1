//! The `--upstream` URL: checked, and split into the parts a request is rewritten with.

use super::*;

/// A checked `--upstream` URL, split into the parts a request is rewritten with.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    /// The URL as given, normalised: no trailing `/` on the base path.
    pub(crate) uri: Uri,
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    /// The base path without a trailing `/`; empty for none.
    pub(crate) base_path: String,
    /// The `Host` header sent upstream: the authority.
    pub(crate) host: HeaderValue,
}

impl Upstream {
    pub(crate) fn parse(text: &str) -> Result<Self, InvalidUpstream> {
        // `http::Uri` drops a fragment silently; refuse it instead.
        if text.contains('#') {
            return Err(InvalidUpstream::Fragment);
        }
        let uri: Uri = text.parse().map_err(|_| InvalidUpstream::NotAUrl)?;
        let scheme = match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS => scheme.clone(),
            Some(_) => return Err(InvalidUpstream::Scheme),
            None => return Err(InvalidUpstream::NotAUrl),
        };
        let authority = uri.authority().ok_or(InvalidUpstream::NoHost)?.clone();
        if authority.host().is_empty() {
            return Err(InvalidUpstream::NoHost);
        }
        if authority.as_str().contains('@') {
            return Err(InvalidUpstream::UserInfo);
        }
        // `http::Uri` takes any digits for a port, and a client then connects to the
        // scheme's default port instead. The text after `:` goes upstream in `Host` as it
        // is, so it must be the digits of a port: no sign (which `u16`'s parser takes),
        // and not empty.
        let port = authority
            .as_str()
            .get(authority.host().len()..)
            .and_then(|rest| rest.strip_prefix(':'));
        if port.is_some_and(|port| {
            !port.bytes().all(|b| b.is_ascii_digit()) || !port.parse::<u16>().is_ok_and(|p| p > 0)
        }) {
            return Err(InvalidUpstream::Port);
        }
        if uri.query().is_some() {
            return Err(InvalidUpstream::Query);
        }
        let host =
            HeaderValue::from_str(authority.as_str()).map_err(|_| InvalidUpstream::NoHost)?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let uri = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query(if base_path.is_empty() {
                "/"
            } else {
                base_path.as_str()
            })
            .build()
            .map_err(|_| InvalidUpstream::NotAUrl)?;
        Ok(Self {
            uri,
            scheme,
            authority,
            base_path,
            host,
        })
    }
}

/// Why an `--upstream` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvalidUpstream {
    NotAUrl,
    Scheme,
    NoHost,
    UserInfo,
    Query,
    Fragment,
    Port,
}

impl fmt::Display for InvalidUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAUrl => "expected an http:// or https:// URL, such as http://127.0.0.1:3000",
            Self::Scheme => "the scheme must be http or https",
            Self::NoHost => "the URL must name a host",
            Self::UserInfo => "the URL must not contain user information",
            Self::Query => "the URL must not have a query; give a base path only",
            Self::Fragment => "the URL must not have a fragment",
            Self::Port => "the port must be a number from 1 to 65535",
        })
    }
}

impl StdError for InvalidUpstream {}
