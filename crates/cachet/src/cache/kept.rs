//! A forwarded request's headers, as the cache keeps them for its response.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The headers of a request the cache forwards, kept for what storing its response
/// needs: the values `Vary` names, and whether it carried credentials.
///
/// Copied into one buffer, because most responses are never stored (a `no-store`
/// answer, a `POST`'s): a `HeaderMap` clone costs an allocation for the map, one for its
/// index, and one for each header value built from a borrowed string (its first clone
/// moves it into a shared buffer), and frees them all again. A map is made from the copy
/// only for a response that is stored.
#[derive(Debug, Default)]
pub(crate) struct KeptHeaders {
    /// Each header as its name's length, its value's length (each a `usize`), the name,
    /// the value.
    bytes: Vec<u8>,
    count: usize,
}

const LEN: usize = size_of::<usize>();

impl KeptHeaders {
    pub(crate) fn new(headers: &HeaderMap) -> Self {
        // Room for a typical header's name and value; more grows the buffer.
        let mut bytes = Vec::with_capacity(headers.len() * (2 * LEN + 40));
        for (name, value) in headers {
            let (name, value) = (name.as_str().as_bytes(), value.as_bytes());
            bytes.extend_from_slice(&name.len().to_ne_bytes());
            bytes.extend_from_slice(&value.len().to_ne_bytes());
            bytes.extend_from_slice(name);
            bytes.extend_from_slice(value);
        }
        Self {
            bytes,
            count: headers.len(),
        }
    }

    /// The headers as a map again, in the order they came.
    pub(crate) fn to_map(&self) -> HeaderMap {
        // `count` is of values, which a map does not limit (only its names): room for
        // more than a map may hold is not asked for, it grows as it is filled.
        let mut map = HeaderMap::try_with_capacity(self.count).unwrap_or_default();
        for (name, value) in self.iter() {
            // They were a map's names and values, so they read back as such, and fit.
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                let _ = map.try_append(name, value);
            }
        }
        map
    }

    /// The headers' names, a name once for each value.
    pub(crate) fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.iter().map(|(name, _)| name)
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut rest = self.bytes.as_slice();
        std::iter::from_fn(move || {
            let (name_len, tail) = rest.split_first_chunk::<LEN>()?;
            let (value_len, tail) = tail.split_first_chunk::<LEN>()?;
            let (name, tail) = tail.split_at_checked(usize::from_ne_bytes(*name_len))?;
            let (value, tail) = tail.split_at_checked(usize::from_ne_bytes(*value_len))?;
            rest = tail;
            Some((name, value))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_comes_back_whole_with_repeated_and_empty_values_in_order() {
        let mut headers = HeaderMap::new();
        headers.append("accept", HeaderValue::from_static("text/html"));
        headers.append("x-custom-name", HeaderValue::from_static(""));
        headers.append("accept", HeaderValue::from_static("*/*"));
        headers.append(
            "cookie",
            HeaderValue::from_bytes(b"a=\xff; b=2").expect("obs-text is a valid value"),
        );
        let kept = KeptHeaders::new(&headers);
        assert_eq!(kept.to_map(), headers);
        let accept: Vec<_> = kept.to_map().get_all("accept").iter().cloned().collect();
        assert_eq!(accept, ["text/html", "*/*"]);
        let names: Vec<_> = kept.names().collect();
        assert_eq!(
            names,
            [&b"accept"[..], b"accept", b"x-custom-name", b"cookie"]
        );
        assert!(KeptHeaders::default().to_map().is_empty());
    }

    #[test]
    fn more_lines_of_one_header_than_a_map_has_room_for_names_come_back() {
        // A map limits its names to 24,576, not their values.
        let mut headers = HeaderMap::new();
        for _ in 0..30_000 {
            headers.append("x-a", HeaderValue::from_static("1"));
        }
        let kept = KeptHeaders::new(&headers);
        assert_eq!(kept.to_map().get_all("x-a").iter().count(), 30_000);
    }
}
