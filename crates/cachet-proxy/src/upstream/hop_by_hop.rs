//! Hop-by-hop fields (RFC 9110 §7.6.1): those of one connection, not of the message,
//! which the proxy removes from what it passes on, in either direction, from heads and
//! trailers alike.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

/// The headers that describe one connection, not the message (RFC 9110 §7.6.1), besides
/// those `Connection` lists. `TE` goes too, even as `te: trailers`.
static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
];

/// Whether `name` is one of [`HOP_BY_HOP`]: a match on the text, which the lengths of
/// the common headers (`host`, `content-type`, ...) settle without comparing bytes.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
    )
}

/// Removes the hop-by-hop fields of a head: `Connection`, the fields it lists, and the
/// fixed set of RFC 9110 §7.6.1. Returns what `Connection` listed, for the trailers.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) -> ConnectionOptions {
    // Most messages carry none of them: one pass over the names spares the hashing of a
    // removal per name.
    if !headers.keys().any(is_hop_by_hop) {
        return ConnectionOptions::default();
    }
    let options = ConnectionOptions::listed_in(headers);
    for name in &options.0 {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    options
}

/// What a message's `Connection` lists: hop-by-hop fields in its trailers as well as in its
/// head (RFC 9110 §7.6.1 "header or trailer field(s)"), so kept from the head, whose
/// `Connection` is removed, until the trailers come.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConnectionOptions(Vec<HeaderName>);

impl ConnectionOptions {
    /// The names `headers`' `Connection` lists.
    fn listed_in(headers: &HeaderMap) -> Self {
        // Bytes, not text: a value with one byte that is not ASCII (obs-text) still lists
        // the names beside it, and only a token that is no header name is passed over.
        let names = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
            .collect();
        Self(names)
    }

    /// Whether `Connection` listed nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes the hop-by-hop fields of trailers: the fixed set, and those the head's
    /// `Connection` listed.
    fn strip_from_trailers(&self, trailers: &mut HeaderMap) {
        strip_hop_by_hop(trailers);
        for name in &self.0 {
            trailers.remove(name);
        }
    }
}

/// A body passed on without the hop-by-hop fields of its trailers. In HTTP/2 they would
/// make the message malformed (RFC 9113 §8.2.2): the stream would be reset.
#[pin_project]
#[derive(Debug)]
pub(crate) struct EndToEndTrailers<B> {
    #[pin]
    body: B,
    options: ConnectionOptions,
}

impl<B> EndToEndTrailers<B> {
    /// `body`, of a message whose head's `Connection` listed `options`.
    pub(crate) fn new(body: B, options: ConnectionOptions) -> Self {
        Self { body, options }
    }
}

impl<B: Body> Body for EndToEndTrailers<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let mut frame = ready!(this.body.poll_frame(cx));
        if let Some(Ok(frame)) = &mut frame
            && let Some(trailers) = frame.trailers_mut()
        {
            this.options.strip_from_trailers(trailers);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::future::ready;

    use bytes::Bytes;
    use http::HeaderValue;
    use http_body_util::{BodyExt, Full};

    use super::*;

    /// A header map of `pairs`, in order, repeated names appended.
    pub(in crate::upstream) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("a valid name"),
                HeaderValue::from_str(value).expect("a valid value"),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_are_removed_rfc_9110_7_6_1() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Session"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-session", "abc"),
            ("x-other", "1"),
            ("content-type", "text/html"),
            ("cache-control", "max-age=60"),
            ("authorization", "Bearer t"),
            ("trailer", "x-checksum"),
        ]);
        strip_hop_by_hop(&mut map);
        let mut left: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            ["authorization", "cache-control", "content-type", "trailer"]
        );
    }

    #[test]
    fn the_quick_check_knows_every_hop_by_hop_name() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            "host",
            "content-type",
            "cache-control",
            "via",
            "trailer",
            "x-te",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn a_connection_header_alone_still_strips_what_it_lists() {
        let mut map = headers(&[("x-session", "abc"), ("connection", "X-Session")]);
        strip_hop_by_hop(&mut map);
        assert!(map.is_empty(), "{map:?}");
    }

    #[test]
    fn connection_with_garbage_tokens_does_not_panic() {
        let mut map = headers(&[("connection", ", ,bad name,\t,close"), ("close", "x")]);
        map.append(
            CONNECTION,
            HeaderValue::from_bytes(b"\xff\xfe").expect("opaque bytes are a valid value"),
        );
        strip_hop_by_hop(&mut map);
        assert!(map.is_empty(), "{map:?}");
    }

    #[test]
    fn a_connection_value_with_a_byte_beyond_ascii_still_strips_the_names_beside_it() {
        let mut map = headers(&[("x-foo", "1"), ("x-bar", "2"), ("accept", "*/*")]);
        map.append(
            CONNECTION,
            HeaderValue::from_bytes(b"x-foo, \xc3\xa9,x-bar").expect("obs-text is a valid value"),
        );
        strip_hop_by_hop(&mut map);
        assert_eq!(map, headers(&[("accept", "*/*")]));
    }

    #[tokio::test]
    async fn trailers_lose_the_fixed_set_and_what_the_heads_connection_listed() {
        let mut head = headers(&[("connection", "x-secret"), ("trailer", "x-ok")]);
        let options = strip_hop_by_hop(&mut head);
        assert_eq!(head, headers(&[("trailer", "x-ok")]));
        let trailers = headers(&[
            ("connection", "close"),
            ("keep-alive", "5"),
            ("x-secret", "s"),
            ("x-ok", "1"),
        ]);
        let body = Full::new(Bytes::from_static(b"body")).with_trailers(ready(Some(Ok(trailers))));
        let collected = EndToEndTrailers::new(body, options)
            .collect()
            .await
            .expect("infallible");
        assert_eq!(collected.trailers(), Some(&headers(&[("x-ok", "1")])));
        assert_eq!(collected.to_bytes(), "body");
    }
}
