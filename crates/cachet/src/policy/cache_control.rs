//! `Cache-Control` parsing (RFC 9111 §5.2), liberal in what it accepts.

use http::header::{CACHE_CONTROL, PRAGMA};
use http::{HeaderMap, HeaderName};

/// The greatest delta-seconds value cachet represents; larger values saturate to it
/// (RFC 9111 §1.2.2).
pub(crate) const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// The directives cachet understands, from every `Cache-Control` line of a message.
/// Unknown directives are ignored. Where a directive appears twice, the first wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheControl {
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
    /// `max-stale`, with `Some(None)` for the form without a value.
    pub(crate) max_stale: Option<Option<u64>>,
    pub(crate) min_fresh: Option<u64>,
    /// `no-cache` without field names: never reuse without validation.
    pub(crate) no_cache: bool,
    /// `no-cache="…"`: these fields may not be reused without validation.
    pub(crate) no_cache_fields: Vec<HeaderName>,
    pub(crate) no_store: bool,
    /// `private` without field names.
    pub(crate) private: bool,
    /// `private="…"`: a shared cache must not keep these fields.
    pub(crate) private_fields: Vec<HeaderName>,
    pub(crate) public: bool,
    pub(crate) must_revalidate: bool,
    pub(crate) proxy_revalidate: bool,
    pub(crate) only_if_cached: bool,
    pub(crate) must_understand: bool,
    pub(crate) immutable: bool,
    pub(crate) stale_if_error: Option<u64>,
    pub(crate) stale_while_revalidate: Option<u64>,
    /// A line ended inside a quoted string, or a directive's name (or its value outside
    /// quotes) is not a token, so a directive such as `private` or `no-store` may be
    /// there unseen: a response with it is not stored.
    pub(crate) unreadable: bool,
    /// The directives are a targeted field's (RFC 9213), which replaces `Expires` as well
    /// as `Cache-Control`.
    pub(crate) targeted: bool,
}

impl CacheControl {
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        Self::parse_field(headers, &CACHE_CONTROL)
    }

    /// A response's directives for a cache that honours a targeted field such as
    /// `CDN-Cache-Control` (RFC 9213): the targeted field when present, which then
    /// replaces `Cache-Control` (and `Expires`, RFC 9213 §2.2) entirely, else
    /// `Cache-Control`. An empty targeted field is
    /// ignored (RFC 9213 §2.1), so that a framework that always sends one does not hide
    /// `Cache-Control: private` behind it. One that cannot be read is not (the RFC says it
    /// should be): it may hide a `private` of its own, so the response is not stored.
    pub(crate) fn parse_response(headers: &HeaderMap, targeted: Option<&HeaderName>) -> Self {
        let Some(field) = targeted.filter(|field| headers.contains_key(*field)) else {
            return Self::parse(headers);
        };
        let empty = headers.get_all(field).iter().all(|line| {
            line.as_bytes()
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b','))
        });
        if empty {
            return Self::parse(headers);
        }
        Self {
            targeted: true,
            ..Self::parse_field(headers, field)
        }
    }

    fn parse_field(headers: &HeaderMap, field: &HeaderName) -> Self {
        let mut cc = Self::default();
        for line in headers.get_all(field) {
            // Read as bytes: every name and delimiter cachet looks for is ASCII, and bytes
            // outside it (in a quoted value or an unknown directive) never equal one, so
            // the directives around them still count.
            let line = line.as_bytes();
            // A line that is one token is one directive without a value (`no-store`,
            // `private`): the usual line of a response that may not be stored, read
            // without splitting it.
            if is_token(line) {
                cc.apply(line, None);
                continue;
            }
            cc.unreadable |= line.contains(&b'"') && !quotes_closed(line);
            // A targeted field is a Structured Fields dictionary (RFC 9213 §2.1), whose
            // members' parameters (`max-age=60;x=1`) are ignored.
            let parameters = *field != CACHE_CONTROL;
            for (name, value, quoted) in directives(line, parameters) {
                // A name, or a value outside quotes, with a byte no token holds (RFC 9110
                // §5.6.2) is one cachet cannot be sure of: `private; max-age=600` or
                // `max-age=600 private` (a `;` or a space for a comma), or `no-store` and
                // a no-break space, may mean a directive cachet would act on, so the line
                // cannot be trusted to be read.
                cc.unreadable |=
                    !is_token(name) || value.is_some_and(|value| !quoted && !is_token(value));
                cc.apply(name, value);
            }
        }
        cc
    }

    /// Request directives: `Cache-Control`, or `Pragma: no-cache` when the request has no
    /// `Cache-Control` at all (RFC 9111 §5.4).
    pub(crate) fn parse_request(headers: &HeaderMap) -> Self {
        if headers.contains_key(CACHE_CONTROL) {
            return Self::parse(headers);
        }
        let no_cache = headers
            .get_all(PRAGMA)
            .iter()
            .flat_map(|line| directives(line.as_bytes(), false))
            .any(|(name, _, _)| name.eq_ignore_ascii_case(b"no-cache"));
        Self {
            no_cache,
            ..Self::default()
        }
    }

    fn apply(&mut self, name: &[u8], value: Option<&[u8]>) {
        // Lower-cased on the stack: this runs for every directive of every response the
        // cache sees. A name longer than the buffer is none cachet knows.
        let mut lower = [0_u8; 24];
        let Some(lower) = lower.get_mut(..name.len()) else {
            return;
        };
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        let seconds = || value.map_or(Some(0), delta_seconds);
        match &*lower {
            // An invalid value makes the response stale (RFC 9111 §4.2.1), hence 0.
            b"max-age" => first(&mut self.max_age, || seconds().unwrap_or(0)),
            b"s-maxage" => first(&mut self.s_maxage, || seconds().unwrap_or(0)),
            b"min-fresh" => first(&mut self.min_fresh, || seconds().unwrap_or(0)),
            // An invalid max-stale is ignored rather than widened to "any staleness".
            b"max-stale" if self.max_stale.is_none() => {
                self.max_stale = match value {
                    None => Some(None),
                    Some(v) => delta_seconds(v).map(Some),
                }
            }
            b"no-cache" => match value.map(field_names) {
                Some(names) if !names.is_empty() => self.no_cache_fields.extend(names),
                _ => self.no_cache = true,
            },
            b"no-store" => self.no_store = true,
            b"private" => match value.map(field_names) {
                Some(names) if !names.is_empty() => self.private_fields.extend(names),
                _ => self.private = true,
            },
            b"must-understand" => self.must_understand = true,
            b"immutable" => self.immutable = true,
            b"stale-if-error" => {
                if let Some(s) = value.and_then(delta_seconds) {
                    self.stale_if_error.get_or_insert(s);
                }
            }
            b"stale-while-revalidate" => {
                if let Some(s) = value.and_then(delta_seconds) {
                    self.stale_while_revalidate.get_or_insert(s);
                }
            }
            b"public" => self.public = true,
            b"must-revalidate" => self.must_revalidate = true,
            b"proxy-revalidate" => self.proxy_revalidate = true,
            b"only-if-cached" => self.only_if_cached = true,
            _ => {}
        }
    }
}

/// The directives a request may carry that the cache acts on (RFC 9111 §5.2.1), in
/// a compact form: every request's response future holds one and is moved with it, so
/// this is a fifth the size of a [`CacheControl`]. Delta-seconds saturate at
/// [`MAX_DELTA_SECONDS`], which a `u32` holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestDirectives {
    pub(crate) max_age: Option<u32>,
    /// `max-stale`, with `Some(None)` for the form without a value.
    pub(crate) max_stale: Option<Option<u32>>,
    pub(crate) min_fresh: Option<u32>,
    pub(crate) stale_if_error: Option<u32>,
    pub(crate) no_cache: bool,
    pub(crate) no_store: bool,
    pub(crate) only_if_cached: bool,
    /// `no-cache` that the application set (a mode or `always_revalidate`), not a user's
    /// reload: it validates `immutable` responses too (RFC 8246 §2 excuses a reload only).
    pub(crate) validate_all: bool,
}

impl RequestDirectives {
    /// `Cache-Control`, or `Pragma: no-cache` when the request has no `Cache-Control`
    /// at all (RFC 9111 §5.4).
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        Self::from(&CacheControl::parse_request(headers))
    }
}

impl From<&CacheControl> for RequestDirectives {
    fn from(cc: &CacheControl) -> Self {
        let compact = |seconds: u64| u32::try_from(seconds).unwrap_or(u32::MAX);
        Self {
            max_age: cc.max_age.map(compact),
            max_stale: cc.max_stale.map(|max| max.map(compact)),
            min_fresh: cc.min_fresh.map(compact),
            stale_if_error: cc.stale_if_error.map(compact),
            no_cache: cc.no_cache,
            no_store: cc.no_store,
            only_if_cached: cc.only_if_cached,
            validate_all: false,
        }
    }
}

/// The field names of a quoted list such as `no-cache="Set-Cookie, X-Token"`.
fn field_names(list: &[u8]) -> Vec<HeaderName> {
    list.split(|&b| b == b',')
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .collect()
}

fn first(slot: &mut Option<u64>, value: impl FnOnce() -> u64) {
    if slot.is_none() {
        *slot = Some(value());
    }
}

/// Parses delta-seconds: digits only, saturating at [`MAX_DELTA_SECONDS`].
pub(crate) fn delta_seconds(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let seconds = text.iter().fold(0_u64, |n, digit| {
        n.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
    });
    Some(seconds.min(MAX_DELTA_SECONDS))
}

/// Splits a header line into `(name, value, quoted)` directives, honouring quoted
/// strings: `quoted` says the value was one (and is given without its quotes). With
/// `parameters`, each directive ends at its first `;` outside quotes; without, a `;` or
/// two ending one are dropped (`max-age=600;`, a common slip, says nothing more).
fn directives(line: &[u8], parameters: bool) -> impl Iterator<Item = (&[u8], Option<&[u8]>, bool)> {
    split_outside_quotes(line).filter_map(move |part| {
        let part = if parameters {
            before_parameters(part)
        } else {
            without_trailing_semicolons(part)
        };
        let part = part.trim_ascii();
        if part.is_empty() {
            return None;
        }
        Some(match part.iter().position(|&b| b == b'=') {
            Some(at) => {
                let (name, value) = (&part[..at], part[at + 1..].trim_ascii());
                let unquoted = value
                    .strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""));
                (
                    name.trim_ascii(),
                    Some(unquoted.unwrap_or(value)),
                    unquoted.is_some(),
                )
            }
            None => (part, None, false),
        })
    })
}

/// Whether `text` is a token (RFC 9110 §5.6.2): one or more of the visible ASCII
/// characters that are not delimiters.
fn is_token(text: &[u8]) -> bool {
    // A table: this runs over every directive of every response the cache sees.
    const TCHAR: [bool; 256] = {
        let mut table = [false; 256];
        let mut byte = 0;
        while byte < 256 {
            table[byte] = matches!(
                byte as u8,
                b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z'
                    | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
                    | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
            byte += 1;
        }
        table
    };
    !text.is_empty() && text.iter().all(|&b| TCHAR[usize::from(b)])
}

/// `part` without the `;`s (and white space) it ends with.
fn without_trailing_semicolons(part: &[u8]) -> &[u8] {
    let mut part = part.trim_ascii_end();
    while let Some(rest) = part.strip_suffix(b";") {
        part = rest.trim_ascii_end();
    }
    part
}

/// A Structured Fields member without its parameters: what comes before its first `;`
/// outside quotes.
fn before_parameters(part: &[u8]) -> &[u8] {
    let (mut quoted, mut escaped) = (false, false);
    for (at, &b) in part.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b';' if !quoted => return &part[..at],
            _ => {}
        }
    }
    part
}

/// Whether every quoted string in a line is closed.
fn quotes_closed(line: &[u8]) -> bool {
    let (mut quoted, mut escaped) = (false, false);
    for &b in line {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ => {}
        }
    }
    !quoted
}

fn split_outside_quotes(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    // Without a quote every comma separates, found by a plain scan: most lines.
    let plain = !line.contains(&b'"');
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let text = rest?;
        let comma = if plain {
            text.iter().position(|&b| b == b',')
        } else {
            comma_outside_quotes(text)
        };
        match comma {
            Some(i) => {
                rest = Some(&text[i + 1..]);
                Some(&text[..i])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// Where the first comma outside a quoted string is.
fn comma_outside_quotes(text: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in text.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests;
