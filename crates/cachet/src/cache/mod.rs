//! The HTTP cache middleware: [`CacheLayer`] and the [`Cache`] service it makes.
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use cachet::{CacheLayer, CacheStatus, MemoryStore};
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cachet::BoxError> {
//! let origin = service_fn(|_request: Request<String>| async {
//!     let response = Response::builder()
//!         .header("cache-control", "max-age=60")
//!         .body(Full::new(Bytes::from_static(b"hello")))?;
//!     Ok::<_, http::Error>(response)
//! });
//! let client = ServiceBuilder::new()
//!     .layer(CacheLayer::new(MemoryStore::default()))
//!     .service(origin);
//!
//! let first = client.clone().oneshot(Request::get("http://example.com/").body(String::new())?).await?;
//! assert_eq!(first.extensions().get::<CacheStatus>(), Some(&CacheStatus::Forwarded {
//!     reason: cachet::ForwardReason::UriMiss,
//!     stored: true,
//! }));
//! first.into_body().collect().await?; // the entry is stored once the body is read
//!
//! let second = client.oneshot(Request::get("http://example.com/").body(String::new())?).await?;
//! assert_eq!(second.extensions().get::<CacheStatus>(), Some(&CacheStatus::Hit));
//! assert_eq!(second.into_body().collect().await?.to_bytes(), "hello");
//! # Ok(())
//! # }
//! ```

mod answer;
mod body;
mod coalesce;
mod expiry;
mod filter;
mod future;
mod handle;
mod kept;
mod layer;
mod mode;
mod refresh;
mod service;
mod stored;
mod write;

use std::fmt;

use std::time::SystemTime;

use http::HeaderValue;

use crate::CacheKey;

pub use body::CacheBody;
pub use expiry::Expiry;
pub use filter::Filter;
pub use future::ResponseFuture;
pub use layer::{CacheLayer, OnBadSignature, UNCACHEABLE_METHODS};
pub use mode::{CacheMode, bypass};
pub use service::Cache;

/// What the cache did with a request; every response carries one in its extensions.
///
/// With [`CacheLayer::cache_status_header`] on, it is also sent as an RFC 9211
/// `Cache-Status` header, such as `cachet; hit` or `cachet; fwd=uri-miss; stored`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheStatus {
    /// Answered from the cache; the inner service was not called.
    Hit,
    /// A stale stored response, confirmed by the origin with `304 Not Modified` and served
    /// with its headers updated (RFC 9111 §4.3).
    Revalidated {
        /// Why the origin was asked: [`ForwardReason::Stale`], or
        /// [`ForwardReason::Request`] for an entry the request would not take as it was
        /// (its `no-cache` or `max-age`, [`CacheMode::NoCache`], `always_revalidate`).
        reason: ForwardReason,
        /// Whether the updated entry is being stored.
        stored: bool,
    },
    /// The origin failed (an error, or a 500, 502, 503 or 504) and a stale stored
    /// response stood in for it, as `stale-if-error` allowed (RFC 5861 §4).
    StaleIfError {
        /// The origin's status, or `None` when it could not be reached.
        origin_status: Option<u16>,
    },
    /// Another request for the same key was already being fetched; this one waited and
    /// got its stored response instead of asking the origin again.
    Collapsed,
    /// A stale stored response served at once while one background request per key
    /// refreshes it, as `stale-while-revalidate` allowed (RFC 5861 §3).
    StaleWhileRevalidate,
    /// The request said `only-if-cached` and nothing usable was stored: answered with
    /// `504 Gateway Timeout` without asking the origin (RFC 9111 §5.2.1.7).
    OnlyIfCachedMiss,
    /// Sent on to the inner service.
    Forwarded {
        /// Why the cache could not answer.
        reason: ForwardReason,
        /// Whether the response is being stored (it is once its body completes).
        stored: bool,
    },
}

/// What the cache knows of a response, in its extensions when
/// [`CacheLayer::metadata`] is on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheMetadata {
    /// The cache key (`None` when the request was not cacheable).
    pub key: Option<CacheKey>,
    /// Whether the response was served from the cache.
    pub from_cache: bool,
    /// When the served or stored response arrived from the origin (`None` when it is
    /// not stored).
    pub stored_at: Option<SystemTime>,
    /// Until when it is fresh (`None` when it is not stored).
    pub fresh_until: Option<SystemTime>,
    /// Whether it was served stale.
    pub stale: bool,
    /// Whether it was revalidated with the origin.
    pub revalidated: bool,
}

/// Why a request went to the inner service (RFC 9211 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardReason {
    /// The cache does not handle this request (for example a URI without an authority).
    Bypass,
    /// The method is not one the cache answers (POST, PUT, DELETE, …).
    Method,
    /// Nothing is stored for the URI (RFC 9211 `fwd=uri-miss`).
    UriMiss,
    /// Nothing usable was found, and the cache cannot tell more: the store could not be
    /// read, or what it held could not be decoded (`fwd=miss`).
    Miss,
    /// A response is stored for the URI, but for other values of the headers its `Vary`
    /// names.
    VaryMiss,
    /// The stored response was stale.
    Stale,
    /// The request's own directives (`no-cache`, `Pragma: no-cache`) asked for the origin.
    Request,
}

impl ForwardReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::Method => "method",
            Self::UriMiss => "uri-miss",
            Self::Miss => "miss",
            Self::VaryMiss => "vary-miss",
            Self::Stale => "stale",
            Self::Request => "request",
        }
    }
}

impl CacheStatus {
    /// Whether the response came from the cache without its own request to the origin: a
    /// fresh hit, a stale response served while a background refresh runs, or a response
    /// collapsed into another request's.
    pub fn is_hit(&self) -> bool {
        matches!(
            self,
            Self::Hit | Self::StaleWhileRevalidate | Self::Collapsed
        )
    }

    /// The RFC 9211 `Cache-Status` header value.
    pub fn header_value(&self) -> HeaderValue {
        use ForwardReason::*;
        HeaderValue::from_static(match *self {
            Self::StaleIfError {
                origin_status: Some(status),
            } => {
                let value =
                    format!("cachet; fwd=stale; fwd-status={status}; detail=stale-if-error");
                return HeaderValue::from_str(&value)
                    .unwrap_or(HeaderValue::from_static("cachet; fwd=stale"));
            }
            Self::StaleIfError {
                origin_status: None,
            } => "cachet; fwd=stale; detail=stale-if-error",
            Self::OnlyIfCachedMiss => "cachet; detail=only-if-cached",
            Self::Collapsed => "cachet; fwd=miss; collapsed",
            Self::StaleWhileRevalidate => "cachet; hit; detail=stale-while-revalidate",
            Self::Hit => "cachet; hit",
            Self::Revalidated {
                reason: Request,
                stored: true,
            } => "cachet; fwd=request; fwd-status=304; stored",
            Self::Revalidated {
                reason: Request,
                stored: false,
            } => "cachet; fwd=request; fwd-status=304",
            Self::Revalidated { stored: true, .. } => "cachet; fwd=stale; fwd-status=304; stored",
            Self::Revalidated { stored: false, .. } => "cachet; fwd=stale; fwd-status=304",
            Self::Forwarded {
                reason,
                stored: true,
            } => match reason {
                Bypass => "cachet; fwd=bypass; stored",
                Method => "cachet; fwd=method; stored",
                UriMiss => "cachet; fwd=uri-miss; stored",
                Miss => "cachet; fwd=miss; stored",
                VaryMiss => "cachet; fwd=vary-miss; stored",
                Stale => "cachet; fwd=stale; stored",
                Request => "cachet; fwd=request; stored",
            },
            Self::Forwarded {
                reason,
                stored: false,
            } => match reason {
                Bypass => "cachet; fwd=bypass",
                Method => "cachet; fwd=method",
                UriMiss => "cachet; fwd=uri-miss",
                Miss => "cachet; fwd=miss",
                VaryMiss => "cachet; fwd=vary-miss",
                Stale => "cachet; fwd=stale",
                Request => "cachet; fwd=request",
            },
        })
    }
}

impl fmt::Display for ForwardReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_follow_rfc_9211() {
        assert_eq!(CacheStatus::Hit.header_value(), "cachet; hit");
        let miss = CacheStatus::Forwarded {
            reason: ForwardReason::Miss,
            stored: true,
        };
        assert_eq!(miss.header_value(), "cachet; fwd=miss; stored");
        for reason in [
            ForwardReason::Bypass,
            ForwardReason::Method,
            ForwardReason::Miss,
            ForwardReason::VaryMiss,
            ForwardReason::Stale,
            ForwardReason::Request,
        ] {
            let status = CacheStatus::Forwarded {
                reason,
                stored: false,
            };
            assert_eq!(
                status.header_value(),
                format!("cachet; fwd={reason}").as_str()
            );
        }
    }
}
