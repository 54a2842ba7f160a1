//! Stored values as the cache uses them: decoded, with their freshness worked out, once
//! per value, so that a hit from memory decodes and parses nothing.

use std::sync::Arc;

use http::header::AGE;
use http::{HeaderName, HeaderValue};

use super::layer::Config;
use crate::entry::{DecodeError, Entry, Record, Variants};
use crate::policy::{Freshness, ResponseFacts};
use crate::store::{Derived, Value};

/// A decoded record, as kept with its [`Value`].
#[expect(
    clippy::large_enum_variant,
    reason = "kept once per stored value behind an Arc; indexes are rare"
)]
pub(crate) enum Stored {
    Response { entry: Entry, freshness: Freshness },
    Variants(Variants),
}

pub(crate) struct Decoded {
    pub(crate) stored: Stored,
    /// The targeted cache-control field the freshness was worked out with.
    targeted: Option<HeaderName>,
}

/// The decoded record of a value, from the value's slot when it was decoded before for
/// the same configuration.
pub(crate) fn decode<'v>(
    value: &'v Value,
    config: &Config,
) -> Result<Derived<'v, Decoded>, DecodeError> {
    let decoded = value.derive_ref(|bytes| decode_bytes(bytes, config))?;
    if decoded.targeted != config.targeted {
        return decode_bytes(value.bytes(), config).map(|d| Derived::Alone(Arc::new(d)));
    }
    Ok(decoded)
}

fn decode_bytes(bytes: &bytes::Bytes, config: &Config) -> Result<Decoded, DecodeError> {
    let stored = match Record::decode(bytes)? {
        Record::Response(mut entry) => {
            let facts = ResponseFacts::of_entry(&entry, config.targeted.as_ref());
            let freshness = facts.freshness(entry.request_time);
            // Serving sets `Age`; with a slot for it already in the map, setting it on a
            // clone replaces a value instead of growing the map.
            if !entry.headers.contains_key(AGE) {
                entry.headers.insert(AGE, HeaderValue::from_static("0"));
            }
            Stored::Response { entry, freshness }
        }
        Record::Variants(variants) => Stored::Variants(variants),
    };
    Ok(Decoded {
        stored,
        targeted: config.targeted.clone(),
    })
}
