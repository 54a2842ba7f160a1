//! `--store`: where the proxy keeps entries, each Redis URL checked as the client reads it.

use std::error::Error as StdError;
use std::fmt;

use cachet_redis::redact;

use super::FromText;

/// Where the proxy keeps entries (`--store`). `Debug` shows a URL's password as `***`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// In the proxy's memory, bounded by `--memory-bytes`.
    Memory,
    /// In one Redis server, at this URL.
    Redis(String),
    /// In a Redis Cluster, reached through these nodes' URLs.
    Cluster(Vec<String>),
}

impl fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Redis(url) => f.debug_tuple("Redis").field(&redact(url)).finish(),
            Self::Cluster(urls) => {
                let urls: Vec<String> = urls.iter().map(|url| redact(url)).collect();
                f.debug_tuple("Cluster").field(&urls).finish()
            }
        }
    }
}

impl StoreChoice {
    pub(crate) fn parse(text: &str) -> Result<Self, InvalidStore> {
        if text == "memory" {
            return Ok(Self::Memory);
        }
        // A URL the Redis client cannot use is refused here, named as this setting's
        // mistake, not found when the store is built. Building does not connect.
        if text.starts_with("redis://") {
            return match cachet_redis::RedisStore::builder(text).build() {
                Ok(_) => Ok(Self::Redis(text.to_owned())),
                Err(error) => Err(InvalidStore::Url(error.to_string())),
            };
        }
        if let Some(nodes) = text.strip_prefix("redis+cluster://") {
            let nodes: Vec<String> = nodes
                .split(',')
                .map(str::trim)
                .filter(|node| !node.is_empty())
                .map(|node| format!("redis://{node}"))
                .collect();
            if nodes.is_empty() {
                return Err(InvalidStore::NoNodes);
            }
            return match cachet_redis::RedisStore::cluster(nodes.iter().cloned()).build() {
                Ok(_) => Ok(Self::Cluster(nodes)),
                Err(error) => Err(InvalidStore::Url(error.to_string())),
            };
        }
        Err(InvalidStore::Unknown)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InvalidStore {
    Unknown,
    NoNodes,
    /// The Redis client's reason, the URL's password hidden.
    Url(String),
}

impl fmt::Display for InvalidStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unknown => {
                "expected memory, redis://HOST:PORT/DB or redis+cluster://HOST:PORT,HOST:PORT"
            }
            Self::NoNodes => "a cluster needs at least one HOST:PORT",
            Self::Url(reason) => reason,
        })
    }
}

impl StdError for InvalidStore {}

impl FromText for StoreChoice {
    type Err = InvalidStore;

    fn from_text(text: &str) -> Result<Self, InvalidStore> {
        Self::parse(text)
    }
}
