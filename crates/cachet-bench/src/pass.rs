//! What the pass-through bench and the `profile_pass` example share: the two requests
//! cachet passes through, the stand-in origin that answers them, and the check that cachet
//! did pass them through.

use std::convert::Infallible;
use std::future::ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use cachet::{CacheStatus, ForwardReason};
use http::{Method, Request, Response};
use http_body_util::Full;
use tower::Service;

use crate::hit::Req;

/// The size of every answer's body.
pub const SIZE: usize = 1024;

/// A request cachet passes through to the origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `POST` with a 64-byte JSON body, answered with a storable 1 KiB body: not
    /// looked up, not stored, and it invalidates the URI (RFC 9111 §4.4).
    Post,
    /// A `GET` answered `Cache-Control: no-store` (1 KiB): looked up (a miss), not stored.
    NoStore,
}

impl Kind {
    /// Both kinds, in the order the bench runs them.
    pub const ALL: [Self; 2] = [Self::Post, Self::NoStore];

    /// The kind's name in bench ids and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Post => "post",
            Self::NoStore => "no_store",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The URI this kind asks for.
    pub fn uri(self) -> &'static str {
        match self {
            Self::Post => "http://origin.example/api/orders?size=1024",
            Self::NoStore => "http://origin.example/account/balance?size=1024",
        }
    }

    /// A request of this kind, with a client's usual headers.
    pub fn request(self) -> Req {
        let builder = match self {
            Self::Post => Request::post(self.uri()).header("content-type", "application/json"),
            Self::NoStore => Request::get(self.uri()),
        };
        let body = match self {
            Self::Post => Full::new(Bytes::from_static(&[b' '; 64])),
            Self::NoStore => Full::default(),
        };
        builder
            .header("user-agent", "bench/1.0")
            .header("accept", "*/*")
            .body(body)
            .expect("the bench request is valid")
    }

    /// The origin's answer: a JSON body with a `Date`, storable by its headers for a
    /// `POST` (it is the method that keeps it out), `no-store` for the `GET`.
    pub fn response(self, body: &Bytes) -> Response<Full<Bytes>> {
        let cache_control = match self {
            Self::Post => "public, max-age=3600",
            Self::NoStore => "no-store",
        };
        Response::builder()
            .header("content-type", "application/json")
            .header("cache-control", cache_control)
            .header(
                "date",
                httpdate::fmt_http_date(std::time::SystemTime::now()),
            )
            // What hyper-util's `HttpConnector` puts on every response it reads.
            .extension(Connection {
                remote: ([127, 0, 0, 1], 80).into(),
                local: ([127, 0, 0, 1], 40000).into(),
            })
            .body(Full::new(body.clone()))
            .expect("the bench response is valid")
    }

    /// Whether `status` is what cachet says of a pass-through of this kind: forwarded
    /// for this kind's reason, and not stored.
    pub fn passed_through(self, status: Option<&CacheStatus>) -> bool {
        let expected = match self {
            Self::Post => ForwardReason::Method,
            Self::NoStore => ForwardReason::UriMiss,
        };
        matches!(
            status,
            Some(CacheStatus::Forwarded { reason, stored: false }) if *reason == expected
        )
    }
}

/// The stand-in for hyper-util's `HttpInfo`, the connection's addresses that its
/// `HttpConnector` puts in the extensions of every response: so the stand-in's responses
/// come with an extensions map, as a hyper-util client's do.
#[derive(Clone, Copy, Debug)]
#[expect(dead_code, reason = "never read: it is there for the room it takes")]
struct Connection {
    remote: std::net::SocketAddr,
    local: std::net::SocketAddr,
}

/// The stand-in for a hyper-util client: answers every request with `kind`'s response
/// (the request's body is dropped unread) and counts the calls.
pub fn origin(
    kind: Kind,
    calls: Arc<AtomicU64>,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    let body = Bytes::from(vec![b'x'; SIZE]);
    tower::service_fn(move |request: Req| {
        debug_assert_eq!(
            *request.method() == Method::POST,
            kind == Kind::Post,
            "each origin answers its own kind"
        );
        calls.fetch_add(1, Ordering::SeqCst);
        ready(Ok::<_, Infallible>(kind.response(&body)))
    })
}
