//! Request bodies in cache keys: [`BodyKeyLayer`] reads a request's body ahead so a cache
//! behind it can key a POST on what it sends.
//!
//! A [`Cache`](crate::Cache) keys a request by its head alone, before it touches the body,
//! so a POST (whose answer depends on its body) is never cached on its own. Put a
//! [`BodyKeyLayer`] in front of the cache: for a request of its methods (POST by
//! default) it reads the body, up to a byte limit, and marks a body read whole with its
//! [`BodyDigest`]. The [`DefaultKey`](crate::DefaultKey) gives such a request a key with
//! the digest in it, and a cache whose [`methods`](crate::CacheLayer::methods) include
//! POST looks it up and stores it. The body is then sent on unchanged, as a
//! [`KeyedBody`]; a body past the limit is sent whole but gets no digest, so it is not
//! cached. The [filtering guide](crate::guide::filtering#post) has more.
//!
//! ```
//! use bytes::Bytes;
//! use cachet::{BodyKeyLayer, CacheLayer, CacheStatus, KeyedBody, MemoryStore};
//! use http::{Method, Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cachet::BoxError> {
//! let origin = service_fn(|request: Request<KeyedBody<Full<Bytes>>>| async {
//!     let query = request.into_body().collect().await?.to_bytes();
//!     let mut response = Response::new(Full::new(query)); // echoes the query
//!     response.headers_mut().insert("cache-control", "max-age=60".parse()?);
//!     Ok::<_, cachet::BoxError>(response)
//! });
//! let client = ServiceBuilder::new()
//!     .layer(BodyKeyLayer::new())
//!     .layer(CacheLayer::new(MemoryStore::default()).methods([Method::GET, Method::HEAD, Method::POST]))
//!     .service(origin);
//! let search = |query: &'static str| {
//!     Request::post("https://search.example/").body(Full::new(Bytes::from_static(query.as_bytes())))
//! };
//!
//! let first = client.clone().oneshot(search("cats")?).await?;
//! first.into_body().collect().await?; // the entry is stored once the body is read
//! let second = client.oneshot(search("cats")?).await?;
//! assert_eq!(second.extensions().get::<CacheStatus>(), Some(&CacheStatus::Hit));
//! assert_eq!(second.into_body().collect().await?.to_bytes(), "cats");
//! # Ok(())
//! # }
//! ```

mod body;
mod future;
mod layer;
mod service;

use std::fmt;

pub use body::KeyedBody;
pub use future::ResponseFuture;
pub use layer::BodyKeyLayer;
pub use service::BodyKey;

/// The SHA-256 digest of a request body that [`BodyKey`] read whole, in the request's
/// extensions.
///
/// [`BodyKey`] inserts it only for a body that fit within its byte limit and ended
/// without an error or trailers. A caller that has the body in hand may insert one
/// itself with [`BodyDigest::of`]. It shows as `sha256:` and the digest in lower-case
/// hex, as in cache keys.
///
/// ```
/// use cachet::BodyDigest;
///
/// assert_eq!(
///     BodyDigest::of(b"").to_string(),
///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
/// );
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BodyDigest([u8; 32]);

impl BodyDigest {
    /// The digest of a whole body.
    pub fn of(body: &[u8]) -> Self {
        Self::from_ring(&ring::digest::digest(&ring::digest::SHA256, body))
    }

    pub(crate) fn from_ring(digest: &ring::digest::Digest) -> Self {
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    /// The digest's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for BodyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BodyDigest({self})")
    }
}
