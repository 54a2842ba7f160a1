//! Managing what a cache has stored: list entries, show a URL's, delete by URL or key,
//! delete the expired, clear, count.
//!
//! [`Entries`] is the handle, from [`CacheLayer::entries`](crate::CacheLayer::entries).
//! It works over any store that can list its entries ([`StoreRequest::Scan`]) and clear
//! itself ([`StoreRequest::Clear`]): [`MemoryStore`](crate::MemoryStore), `RedisStore`
//! (crate `cachet-redis`), and [`Tiered`](crate::store::Tiered) and
//! [`Verify`](crate::verify::Verify) over them. Over a store that cannot, it fails with
//! an [`Error`] whose [`is_unsupported`](Error::is_unsupported) says so, never with an
//! empty list. The [guide page](crate::guide::inspection) walks through it.
//!
//! ```
//! use cachet::store::Cursor;
//! use cachet::{CacheLayer, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cachet::manage::Error> {
//! let layer = CacheLayer::new(MemoryStore::default());
//! let entries = layer.entries();
//! // … the cache answers requests and stores responses …
//! let page = entries.list(Cursor::start(), 50).await?;
//! for entry in &page.entries {
//!     println!("{} {:?} {} bytes, stale: {}", entry.key, entry.status, entry.size, entry.stale);
//! }
//! entries.delete_url("https://example.com/prices").await?;
//! let expired = entries.delete_expired().await?;
//! let stats = entries.stats().await?;
//! println!("deleted {expired} expired; {} entries, {} bytes", stats.entries, stats.bytes);
//! # Ok(())
//! # }
//! ```
//!
//! [`StoreRequest::Scan`]: crate::store::StoreRequest::Scan
//! [`StoreRequest::Clear`]: crate::store::StoreRequest::Clear

mod entries;
mod error;

pub use entries::{Entries, EntryInfo, EntryKind, Listing, Stats};
pub use error::Error;
