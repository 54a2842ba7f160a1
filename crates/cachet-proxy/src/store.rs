//! The store the proxy's cache keeps entries in, chosen on the command line.

use cachet::MemoryStore;
use cachet::verify::Verify;
use tower::util::Either;

use crate::{Config, Error};

/// Entries in memory, signed when `--secret-key-env` is given.
pub(crate) type ProxyStore = Either<MemoryStore, Verify<MemoryStore>>;

pub(crate) fn build(config: &Config) -> Result<ProxyStore, Error> {
    let memory = MemoryStore::new(config.memory_bytes());
    Ok(match config.keyring().map_err(Error::store)? {
        Some(keyring) => Either::Right(Verify::new(memory, keyring)),
        None => Either::Left(memory),
    })
}
