//! The entry codec: how a stored response becomes bytes and back.
//!
//! An entry is the magic `CACHET`, one format-version byte, then a bincode 2 payload
//! (standard configuration, always with a limit). The payload holds the status, version,
//! response headers, the request header values named by `Vary`, the request and response
//! times that RFC 9111 §4.2.3 needs, and the body. Decoding borrows the body and header
//! values from the input [`Bytes`] instead of copying them, and never allocates more than
//! a small multiple of the input's length, whatever the input claims.
//!
//! bincode is pinned at `=2.0.1` and unmaintained (RUSTSEC-2025-0141); it is used only
//! here, so moving to a wire-compatible crate is a change to this one file.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bincode::de::{BorrowDecode, BorrowDecoder};
use bincode::enc::write::Writer;
use bincode::enc::{Encode, Encoder};
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

use crate::policy::Configured;

const MAGIC: &[u8; 6] = b"CACHET";
/// Version 2 added the configured freshness lifetime; version 1 entries are misses.
const FORMAT_VERSION: u8 = 2;
/// The byte after the version says which record follows.
const KIND_RESPONSE: u8 = 0;
const KIND_VARIANTS: u8 = 1;
const PREFIX_LEN: usize = MAGIC.len() + 2;

/// No entry is larger than 4 GiB; the limit bounds what a length field may claim.
const LIMIT: usize = 1 << 32;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// A response as the cache keeps it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    /// The values the request had for each header the response's `Vary` names, `None`
    /// for an absent header.
    pub(crate) vary: Vec<(HeaderName, Option<HeaderValue>)>,
    pub(crate) request_time: SystemTime,
    pub(crate) response_time: SystemTime,
    /// The freshness lifetime configuration gave the response when it was stored.
    pub(crate) configured: Option<Configured>,
    pub(crate) body: Bytes,
}

/// What the cache keeps under a key: a response, or (for a response that varies) the
/// index that says which request headers select its variants.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Record {
    Response(Entry),
    Variants(Variants),
}

/// The index kept under a URI's key when its responses vary (RFC 9111 §4.1): the
/// header names of `Vary`, and the time before which no variant counts (set when the URI
/// is invalidated). Every writer that saw the same index writes the same one back, so
/// concurrent writers of different variants never hide each other's entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Variants {
    pub(crate) names: Vec<HeaderName>,
    pub(crate) not_before: SystemTime,
}

#[derive(bincode::Encode, bincode::BorrowDecode)]
struct VariantsWire<'a> {
    names: List<&'a [u8], MAX_VARIANT_NAMES>,
    not_before_ms: u64,
}

/// The most header fields a stored response may have: more than any real response has,
/// and far below where a header map refuses to grow (some 24,000), so that no stored
/// value, and no origin, can make reading an entry fail that way.
pub(crate) const MAX_HEADER_FIELDS: usize = 1_000;

/// The most header names a response may vary on and still be stored: more than any real
/// `Vary` lists, and few enough that a variant's key stays the size of its request.
pub(crate) const MAX_VARIANT_NAMES: usize = 64;

/// Why bytes from a store are not an entry. Every case is a cache miss.
#[derive(Debug)]
pub(crate) enum DecodeError {
    NotAnEntry,
    UnknownVersion(u8),
    Malformed(&'static str),
    Bincode(bincode::error::DecodeError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnEntry => f.write_str("stored bytes are not a cachet entry"),
            Self::UnknownVersion(v) => write!(f, "entry has unknown format version {v}"),
            Self::Malformed(what) => write!(f, "entry is malformed: {what}"),
            Self::Bincode(e) => write!(f, "entry is malformed: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The payload as it is on the wire, borrowing from the input.
#[derive(bincode::Encode, bincode::BorrowDecode)]
struct Wire<'a> {
    status: u16,
    version: u8,
    request_time_ms: u64,
    response_time_ms: u64,
    /// The configured lifetime in milliseconds, and whether it wins over the headers.
    configured: Option<(u64, bool)>,
    headers: List<(&'a [u8], &'a [u8]), MAX_HEADER_FIELDS>,
    vary: List<(&'a [u8], Option<&'a [u8]>), MAX_VARIANT_NAMES>,
    body: WireBody<'a>,
}

/// A body on the wire, encoded as one byte string: from the chunks it arrived in (each
/// copied once, straight into the encoding), and decoded as one slice of the input.
enum WireBody<'a> {
    Chunks(&'a [Bytes]),
    Slice(&'a [u8]),
}

impl Encode for WireBody<'_> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), bincode::error::EncodeError> {
        match self {
            Self::Slice(bytes) => bytes.encode(encoder),
            // What bincode writes for a `&[u8]`: the length, then the bytes.
            Self::Chunks(chunks) => {
                let len: usize = chunks.iter().map(Bytes::len).sum();
                (len as u64).encode(encoder)?;
                chunks
                    .iter()
                    .try_for_each(|chunk| encoder.writer().write(chunk))
            }
        }
    }
}

impl<'de, C> BorrowDecode<'de, C> for WireBody<'de> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        <&'de [u8]>::borrow_decode(decoder).map(Self::Slice)
    }
}

/// A length-prefixed list of at most `MAX` elements that, unlike bincode's `Vec`, does not
/// reserve what its length claims: each element read consumes input, so allocation
/// follows the input's real size, and a longer list is refused before any element is
/// read (a list of a million one-letter names would cost many times its bytes).
struct List<T, const MAX: usize>(Vec<T>);

impl<T: Encode, const MAX: usize> Encode for List<T, MAX> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), bincode::error::EncodeError> {
        (self.0.len() as u64).encode(encoder)?;
        self.0.iter().try_for_each(|item| item.encode(encoder))
    }
}

impl<'de, T: BorrowDecode<'de, C>, C, const MAX: usize> BorrowDecode<'de, C> for List<T, MAX> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let len = u64::borrow_decode(decoder)?;
        if len > MAX as u64 {
            return Err(bincode::error::DecodeError::Other(
                "a list longer than an entry may hold",
            ));
        }
        let mut items = Vec::with_capacity(usize::try_from(len.min(32)).unwrap_or(32));
        for _ in 0..len {
            items.push(T::borrow_decode(decoder)?);
        }
        Ok(Self(items))
    }
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn version_byte(version: Version) -> u8 {
    match version {
        Version::HTTP_09 => 9,
        Version::HTTP_10 => 10,
        Version::HTTP_2 => 20,
        Version::HTTP_3 => 30,
        _ => 11,
    }
}

fn version_from_byte(byte: u8) -> Result<Version, DecodeError> {
    Ok(match byte {
        9 => Version::HTTP_09,
        10 => Version::HTTP_10,
        11 => Version::HTTP_11,
        20 => Version::HTTP_2,
        30 => Version::HTTP_3,
        _ => return Err(DecodeError::Malformed("unknown HTTP version")),
    })
}

fn encode<T: Encode>(kind: u8, wire: &T) -> Result<Bytes, bincode::error::EncodeError> {
    // Measured first (no bytes are copied to count them), so the buffer is the value's
    // exact size: no room is left unused, and a buffer that is full becomes `Bytes`
    // without another allocation.
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::encode_into_writer(wire, &mut size, config())?;
    // The limit binds only decoding: past it, an entry would be written but never read.
    if size.bytes_written > LIMIT {
        return Err(too_large());
    }
    let mut out = BytesMut::with_capacity(PREFIX_LEN + size.bytes_written);
    out.put_slice(MAGIC);
    out.put_u8(FORMAT_VERSION);
    out.put_u8(kind);
    let mut writer = out.writer();
    bincode::encode_into_std_write(wire, &mut writer, config())?;
    Ok(writer.into_inner().freeze())
}

fn too_large() -> bincode::error::EncodeError {
    bincode::error::EncodeError::Other("entry is larger than the codec's 4 GiB limit")
}

fn decode<'a, T: BorrowDecode<'a, ()>>(payload: &'a [u8]) -> Result<T, DecodeError> {
    let (wire, used) =
        bincode::borrow_decode_from_slice(payload, config()).map_err(|error| match error {
            // What `List` refuses.
            bincode::error::DecodeError::Other(what) => DecodeError::Malformed(what),
            error => DecodeError::Bincode(error),
        })?;
    if used != payload.len() {
        return Err(DecodeError::Malformed("trailing bytes"));
    }
    Ok(wire)
}

impl Record {
    /// Decodes a record, borrowing a response's body and header values from `input`.
    pub(crate) fn decode(input: &Bytes) -> Result<Self, DecodeError> {
        let rest = input
            .strip_prefix(MAGIC.as_slice())
            .ok_or(DecodeError::NotAnEntry)?;
        let (&version, rest) = rest.split_first().ok_or(DecodeError::NotAnEntry)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let (&kind, payload) = rest.split_first().ok_or(DecodeError::NotAnEntry)?;
        match kind {
            KIND_RESPONSE => Entry::from_wire(input, decode(payload)?).map(Self::Response),
            KIND_VARIANTS => {
                let wire: VariantsWire<'_> = decode(payload)?;
                // A variant's key holds the request's value of each name: a name twice, or
                // thousands of them, would make it as large as whoever wrote the index
                // chose. The cache writes each name once, and no more than it stores.
                let mut names = Vec::with_capacity(wire.names.0.len());
                for name in wire.names.0 {
                    let name = header_name(name)?;
                    if names.contains(&name) {
                        return Err(DecodeError::Malformed("a name twice in a variant index"));
                    }
                    names.push(name);
                }
                Ok(Self::Variants(Variants {
                    names,
                    not_before: UNIX_EPOCH + Duration::from_millis(wire.not_before_ms),
                }))
            }
            _ => Err(DecodeError::Malformed("unknown record kind")),
        }
    }
}

impl Variants {
    /// Encodes the index with its prefix.
    pub(crate) fn encode(&self) -> Result<Bytes, bincode::error::EncodeError> {
        let wire = VariantsWire {
            names: List(self.names.iter().map(|n| n.as_str().as_bytes()).collect()),
            not_before_ms: millis(self.not_before),
        };
        encode(KIND_VARIANTS, &wire)
    }
}

impl Entry {
    /// Encodes the entry with its prefix; fails only past the codec's 4 GiB limit, which
    /// it checks (bincode checks it only when decoding).
    pub(crate) fn encode(&self) -> Result<Bytes, bincode::error::EncodeError> {
        self.encode_with_body(std::slice::from_ref(&self.body))
    }

    /// Encodes the entry's head with `body`, the chunks a body arrived in, as its body
    /// (the entry's own `body` is not read): the chunks are copied into the encoding and
    /// nowhere else.
    pub(crate) fn encode_with_body(
        &self,
        body: &[Bytes],
    ) -> Result<Bytes, bincode::error::EncodeError> {
        let wire = Wire {
            status: self.status.as_u16(),
            version: version_byte(self.version),
            request_time_ms: millis(self.request_time),
            response_time_ms: millis(self.response_time),
            configured: self.configured.map(|c| {
                let ms = u64::try_from(c.lifetime.as_millis()).unwrap_or(u64::MAX);
                (ms, c.wins)
            }),
            headers: List(
                self.headers
                    .iter()
                    .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
                    .collect(),
            ),
            vary: List(
                self.vary
                    .iter()
                    .map(|(name, value)| {
                        (
                            name.as_str().as_bytes(),
                            value.as_ref().map(HeaderValue::as_bytes),
                        )
                    })
                    .collect(),
            ),
            body: WireBody::Chunks(body),
        };
        encode(KIND_RESPONSE, &wire)
    }

    /// Decodes an entry, borrowing its body and header values from `input`.
    #[cfg(test)]
    pub(crate) fn decode(input: &Bytes) -> Result<Self, DecodeError> {
        match Record::decode(input)? {
            Record::Response(entry) => Ok(entry),
            Record::Variants(_) => Err(DecodeError::Malformed("not a response")),
        }
    }

    /// Updates the stored headers from a newer response's (RFC 9111 §3.2): each header it
    /// carries replaces the stored one, but for `Content-Length`. The stored `Age` goes
    /// whether or not the newer response has one: the entry's times become the newer
    /// response's, and an age from before them would be counted twice (§4.2.3).
    ///
    /// A newer response without `Date` was received at `received` (RFC 9110 §6.6.1: a
    /// cache records that time as its `Date`); the stored `Date`, from before, would make
    /// the entry as old as it was.
    ///
    /// Returns whether the entry took all of it within `MAX_HEADER_FIELDS`. One that did
    /// not may be served, but not stored: it could not be read back, and what a map at
    /// its limit left out may have been the newer response's `Cache-Control`.
    #[must_use]
    pub(crate) fn update_headers(&mut self, newer: &HeaderMap, received: SystemTime) -> bool {
        self.headers.remove(http::header::AGE);
        if !newer.contains_key(http::header::DATE)
            && let Some(date) = crate::policy::date_value(received)
        {
            self.headers.insert(http::header::DATE, date);
        }
        let updated = |name: &HeaderName| *name != http::header::CONTENT_LENGTH;
        for name in newer.keys().filter(|name| updated(name)) {
            self.headers.remove(name);
        }
        for (name, value) in newer.iter().filter(|(name, _)| updated(name)) {
            if self.headers.try_append(name, value.clone()).is_err() {
                return false;
            }
        }
        self.headers.len() <= MAX_HEADER_FIELDS
    }

    fn from_wire(input: &Bytes, wire: Wire<'_>) -> Result<Self, DecodeError> {
        let body = match wire.body {
            WireBody::Slice(body) => input.slice_ref(body),
            // Not made by decoding, which reads one slice of the input.
            WireBody::Chunks(_) => return Err(DecodeError::Malformed("body")),
        };
        // Room for the `Age` and `Cache-Status` a hit adds, so serving never grows the map.
        let mut headers = HeaderMap::with_capacity(wire.headers.0.len() + 2);
        for (name, value) in wire.headers.0 {
            headers.append(header_name(name)?, header_value(input, value)?);
        }
        let vary = wire
            .vary
            .0
            .into_iter()
            .map(|(name, value)| {
                Ok((
                    header_name(name)?,
                    value.map(|v| header_value(input, v)).transpose()?,
                ))
            })
            .collect::<Result<_, DecodeError>>()?;

        let status = StatusCode::from_u16(wire.status)
            .map_err(|_| DecodeError::Malformed("invalid status"))?;
        // Statuses the cache never stores, which a hit must not replay: an interim
        // response (a `101` would switch the client's connection to another protocol), a
        // partial one, a `304`, and the answers to a request's own precondition or range.
        if status.is_informational() || matches!(status.as_u16(), 206 | 304 | 412 | 416) {
            return Err(DecodeError::Malformed("a status no entry has"));
        }
        // A length that is not the body's would break the framing of every response
        // served from it. An empty body may be a HEAD's entry, which keeps its GET's.
        if !body.is_empty()
            && content_length(&headers).is_some_and(|length| length != Some(body.len() as u64))
        {
            return Err(DecodeError::Malformed(
                "a content-length that is not the body's",
            ));
        }
        Ok(Self {
            status,
            version: version_from_byte(wire.version)?,
            headers,
            vary,
            request_time: UNIX_EPOCH + Duration::from_millis(wire.request_time_ms),
            response_time: UNIX_EPOCH + Duration::from_millis(wire.response_time_ms),
            configured: wire.configured.map(|(ms, wins)| Configured {
                lifetime: Duration::from_millis(ms),
                wins,
            }),
            body,
        })
    }
}

/// What a message's `Content-Length` says (RFC 9110 §8.6): `None` without one; else the
/// length when every value on every line is the same digits (`6, 6` is 6, as hyper reads
/// it), and `Some(None)` for anything else (`+6`, `6, 7`, `six`).
pub(crate) fn content_length(headers: &HeaderMap) -> Option<Option<u64>> {
    let mut lines = headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .peekable();
    lines.peek()?;
    let mut length = None;
    for value in lines.flat_map(|line| line.as_bytes().split(|&b| b == b',')) {
        let value = value.trim_ascii();
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Some(None);
        }
        let Ok(value) = std::str::from_utf8(value)
            .unwrap_or_default()
            .parse::<u64>()
        else {
            return Some(None);
        };
        if length.is_some_and(|length| length != value) {
            return Some(None);
        }
        length = Some(value);
    }
    Some(length)
}

fn header_name(bytes: &[u8]) -> Result<HeaderName, DecodeError> {
    HeaderName::from_bytes(bytes).map_err(|_| DecodeError::Malformed("invalid header name"))
}

fn header_value(input: &Bytes, bytes: &[u8]) -> Result<HeaderValue, DecodeError> {
    HeaderValue::from_maybe_shared(input.slice_ref(bytes))
        .map_err(|_| DecodeError::Malformed("invalid header value"))
}

#[cfg(test)]
mod tests;
