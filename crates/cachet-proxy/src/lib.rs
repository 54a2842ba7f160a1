//! `cachet-proxy`: a caching HTTP reverse proxy built on [cachet].
//!
//! The proxy forwards every request to one upstream (an `http://` or `https://` URL,
//! optionally with a base path) and answers from its cache (in memory, or Redis with
//! `--store`) whenever RFC 9111 allows. Each request goes through:
//!
//! 1. a rewrite for the upstream: the absolute upstream URL, `Host` set to the upstream,
//!    hop-by-hop headers removed (RFC 9110 §7.6.1), `Via` added;
//! 2. [`cachet::CacheLayer`] over the configured store (signed with `--secret-key-env`),
//!    shared or private, with the RFC 9211 `Cache-Status` header on;
//! 3. a hyper-util client over rustls, bounded by the upstream timeout: an upstream that
//!    cannot be reached is a `502 Bad Gateway`, one that is too slow a
//!    `504 Gateway Timeout`, each with a one-line reason.
//!
//! Both HTTP/1.1 and HTTP/2 are served. The `cachet-proxy` program is a thin shell over
//! this library: [`Invocation::from_args_and_env`], [`Proxy::bind`], [`Proxy::serve`]
//! and [`run_entries`]. Its settings
//! come from flags, from a TOML file named by `--config` (flags override it), or from
//! their defaults; a refused one is a [`UsageError`].
//!
//! ```
//! use cachet_proxy::{Config, Proxy};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_args([
//!     "cachet-proxy",
//!     "--upstream", "https://example.com/api",
//!     "--listen", "127.0.0.1:0",
//!     "--mode", "shared",
//! ])?;
//! let proxy = Proxy::bind(config).await?;
//! let addr = proxy.local_addr();
//! # let shutdown = async {};
//! // `shutdown` is any future; the program uses Ctrl-C and SIGTERM.
//! proxy.serve(shutdown).await?;
//! # let _ = addr;
//! # Ok(())
//! # }
//! ```
//!
//! [cachet]: https://docs.rs/cachet

mod admin;
mod config;
mod error;
mod file;
mod flags;
mod server;
mod store;
mod upstream;

pub use admin::{EntriesCommand, run_entries};
pub use config::{BadSignatureAction, Config, Invocation, Mode, StoreChoice};
pub use error::{Error, UsageError};
pub use file::ConfigFileError;
pub use server::Proxy;
