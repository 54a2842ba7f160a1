use super::*;
use proptest::prelude::*;

fn sample() -> Entry {
    let mut headers = HeaderMap::new();
    headers.insert("cache-control", HeaderValue::from_static("max-age=60"));
    headers.append("set-thing", HeaderValue::from_static("a"));
    headers.append("set-thing", HeaderValue::from_static("b"));
    Entry {
        status: StatusCode::OK,
        version: Version::HTTP_11,
        headers,
        vary: vec![
            (
                HeaderName::from_static("accept-encoding"),
                Some(HeaderValue::from_static("gzip")),
            ),
            (HeaderName::from_static("accept-language"), None),
        ],
        request_time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        response_time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_456),
        configured: Some(Configured {
            lifetime: Duration::from_secs(3600),
            wins: true,
        }),
        body: Bytes::from_static(b"hello, world"),
    }
}

#[test]
fn a_variant_index_with_a_name_twice_or_too_many_names_is_refused() {
    let index = |names: Vec<String>| {
        let names = names
            .iter()
            .map(|name| HeaderName::from_bytes(name.as_bytes()).expect("a name"))
            .collect();
        let index = Variants {
            names,
            not_before: UNIX_EPOCH,
        };
        Record::decode(&index.encode().expect("encodes"))
    };
    let many = |n: usize| (0..n).map(|i| format!("x-{i}")).collect::<Vec<_>>();
    assert!(matches!(
        index(many(MAX_VARIANT_NAMES)),
        Ok(Record::Variants(_))
    ));
    assert!(matches!(
        index(many(MAX_VARIANT_NAMES + 1)),
        Err(DecodeError::Malformed(_))
    ));
    let twice = vec!["cookie".to_owned(); 100_000];
    assert!(matches!(index(twice), Err(DecodeError::Malformed(_))));
}

#[test]
fn an_entry_with_more_header_fields_than_allowed_is_refused_not_a_panic() {
    for fields in [MAX_HEADER_FIELDS + 1, 30_000] {
        let mut entry = sample();
        for _ in 0..fields {
            entry.headers.append("x-a", HeaderValue::from_static("1"));
        }
        let bytes = entry.encode().expect("encodes");
        assert!(
            matches!(Record::decode(&bytes), Err(DecodeError::Malformed(_))),
            "{fields}"
        );
    }
    let mut entry = sample();
    while entry.headers.len() < MAX_HEADER_FIELDS {
        entry.headers.append("x-a", HeaderValue::from_static("1"));
    }
    let bytes = entry.encode().expect("encodes");
    assert!(matches!(Record::decode(&bytes), Ok(Record::Response(_))));
    // A 304 can add no more than a map holds.
    let mut huge = HeaderMap::new();
    for _ in 0..30_000 {
        huge.append("x-b", HeaderValue::from_static("2"));
    }
    assert!(
        !entry.update_headers(&huge, UNIX_EPOCH),
        "more than an entry holds"
    );
    let mut entry = sample();
    assert!(entry.update_headers(&HeaderMap::new(), UNIX_EPOCH));
}

#[test]
fn a_status_the_cache_never_stores_is_refused() {
    for status in [100, 101, 103, 206, 304, 412, 416] {
        let mut entry = sample();
        entry.status = StatusCode::from_u16(status).expect("a valid status");
        let bytes = entry.encode().expect("encodes");
        assert!(
            matches!(Record::decode(&bytes), Err(DecodeError::Malformed(_))),
            "{status}"
        );
    }
    for status in [200, 204, 301, 404, 599] {
        let mut entry = sample();
        entry.status = StatusCode::from_u16(status).expect("a valid status");
        let bytes = entry.encode().expect("encodes");
        assert!(
            matches!(Record::decode(&bytes), Ok(Record::Response(_))),
            "{status}"
        );
    }
}

#[test]
fn a_content_length_that_is_not_the_bodys_is_refused_but_a_heads_is_kept() {
    let decode = |body: &'static [u8], lengths: &[&'static str]| {
        let mut entry = sample();
        entry.body = Bytes::from_static(body);
        for length in lengths {
            entry
                .headers
                .append("content-length", HeaderValue::from_static(length));
        }
        Record::decode(&entry.encode().expect("encodes"))
    };
    let refused =
        |result: Result<Record, DecodeError>| matches!(result, Err(DecodeError::Malformed(_)));
    assert!(refused(decode(b"hello", &["9"])));
    assert!(refused(decode(b"hello", &["5", "6"])));
    assert!(refused(decode(b"hello", &["+5"])));
    assert!(refused(decode(b"hello", &["5, 6"])));
    assert!(
        decode(b"hello", &["5, 5"]).is_ok(),
        "a list of one length, as hyper reads it"
    );
    assert!(decode(b"hello", &["5", " 5 "]).is_ok());
    assert!(decode(b"hello", &["5"]).is_ok());
    assert!(decode(b"hello", &[]).is_ok());
    assert!(
        decode(b"", &["1024"]).is_ok(),
        "a HEAD's entry keeps its GET's length"
    );
}

#[test]
fn a_body_in_chunks_encodes_as_the_whole_body_does() {
    let entry = sample();
    // Long enough that its length takes a multi-byte varint.
    let body = Bytes::from(vec![b'x'; 70_000]);
    let chunks = [
        body.slice(..1),
        body.slice(1..1),
        body.slice(1..65_536),
        body.slice(65_536..),
    ];
    let whole = Entry {
        body: body.clone(),
        ..entry.clone()
    };
    let head = Entry {
        body: Bytes::from_static(b"not read"),
        ..entry
    };
    let encoded = head.encode_with_body(&chunks).expect("encodes");
    assert_eq!(encoded, whole.encode().expect("encodes"));
    assert_eq!(Entry::decode(&encoded).expect("decodes"), whole);
    let empty = head.encode_with_body(&[]).expect("encodes");
    assert_eq!(Entry::decode(&empty).expect("decodes").body, Bytes::new());
}

#[test]
fn a_body_past_the_codecs_limit_is_refused_not_written() {
    // 4 GiB and one MiB, as chunks sharing one buffer: nothing that large is made.
    let mib = Bytes::from(vec![0; 1 << 20]);
    let chunks = vec![mib; (1 << 12) + 1];
    let error = sample()
        .encode_with_body(&chunks)
        .expect_err("no entry decodes past 4 GiB");
    assert!(error.to_string().contains("4 GiB"), "{error}");
}

#[test]
fn round_trip() {
    let entry = sample();
    let decoded = Entry::decode(&entry.encode().expect("small entries encode"))
        .expect("a fresh encoding decodes");
    assert_eq!(decoded, entry);
}

#[test]
fn variants_round_trip() {
    let variants = Variants {
        names: vec![
            HeaderName::from_static("accept"),
            HeaderName::from_static("accept-language"),
        ],
        not_before: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
    };
    let bytes = variants.encode().expect("small records encode");
    assert_eq!(
        Record::decode(&bytes).expect("a fresh encoding decodes"),
        Record::Variants(variants)
    );
}

#[test]
fn body_is_borrowed_from_the_input() {
    let bytes = sample().encode().expect("small entries encode");
    let decoded = Entry::decode(&bytes).expect("a fresh encoding decodes");
    let range = bytes.as_ptr_range();
    assert!(range.contains(&decoded.body.as_ptr()));
}

#[test]
fn unknown_version_is_refused() {
    let mut bytes = sample().encode().expect("small entries encode").to_vec();
    bytes[MAGIC.len()] = 1;
    assert!(matches!(
        Entry::decode(&bytes.into()),
        Err(DecodeError::UnknownVersion(1))
    ));
}

#[test]
fn foreign_bytes_are_not_an_entry() {
    let bytes = Bytes::from_static(b"exploit!");
    assert!(matches!(
        Entry::decode(&bytes),
        Err(DecodeError::NotAnEntry)
    ));
}

#[test]
fn a_huge_claimed_header_count_is_a_clean_error() {
    // 8 bytes of prefix, then status, version, two times, no configured lifetime, and a
    // header count of 2^40 in bincode's varint (0xfd, then eight little-endian bytes):
    // 14 bytes of payload would have asked bincode's own `Vec` for 2^40 elements up front.
    let mut bytes = Vec::from(*MAGIC);
    bytes.push(FORMAT_VERSION);
    bytes.push(KIND_RESPONSE);
    bytes.extend_from_slice(&[200, 11, 0, 0, 0, 0xfd]);
    bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert_eq!(bytes.len() - PREFIX_LEN, 14);
    // Refused for its count, before an element is read.
    assert!(matches!(
        Entry::decode(&bytes.into()),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn truncated_entries_are_errors() {
    let bytes = sample().encode().expect("small entries encode");
    for len in 0..bytes.len() {
        assert!(
            Entry::decode(&bytes.slice(..len)).is_err(),
            "prefix of {len} bytes decoded"
        );
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        for kind in [KIND_RESPONSE, KIND_VARIANTS] {
            let mut bytes = Vec::from(*MAGIC);
            bytes.push(FORMAT_VERSION);
            bytes.push(kind);
            bytes.extend_from_slice(&tail);
            let _ = Record::decode(&bytes.into());
        }
        let _ = Entry::decode(&Bytes::from(tail));
    }

    #[test]
    fn mutated_entries_never_panic(index in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = sample().encode().expect("small entries encode").to_vec();
        let index = index % bytes.len();
        bytes[index] = byte;
        let _ = Entry::decode(&bytes.into());
    }
}

#[test]
fn a_vary_list_longer_than_an_entry_may_hold_is_refused_before_it_is_read() {
    // A million one-letter names, three bytes each on the wire, would be kept as a
    // million name and value pairs: many times the bytes they came in.
    let names: Vec<[u8; 1]> = (0..1_000_000_usize)
        .map(|i| [b'a' + (i % 26) as u8])
        .collect();
    let wire = Wire {
        status: 200,
        version: 11,
        request_time_ms: 0,
        response_time_ms: 0,
        configured: None,
        headers: List(Vec::new()),
        vary: List(names.iter().map(|name| (&name[..], None)).collect()),
        body: WireBody::Slice(b""),
    };
    let bytes = encode(KIND_RESPONSE, &wire).expect("encodes");
    assert!(matches!(
        Record::decode(&bytes),
        Err(DecodeError::Malformed(_))
    ));
}
