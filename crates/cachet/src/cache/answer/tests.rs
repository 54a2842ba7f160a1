use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(name, value)| {
            (
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            )
        })
        .collect()
}

#[test]
fn rfc9111_4_3_4_a_304_identifies_the_entry_by_its_validators() {
    let cases = [
        (&[("etag", "\"a\"")][..], &[("etag", "\"a\"")][..], true),
        (&[("etag", "\"a\"")], &[("etag", "\"b\"")], false),
        (&[("etag", "W/\"a\"")], &[("etag", "W/\"a\"")], true),
        (&[("etag", "\"a\"")], &[("etag", "W/\"a\"")], true),
        (&[("etag", "W/\"a\"")], &[("etag", "\"a\"")], false),
        (&[], &[("etag", "\"a\"")], false),
        (&[("etag", "\"a\"")], &[], true),
        (
            &[("last-modified", "Sun, 01 Nov 2026 00:00:00 GMT")],
            &[("last-modified", "Mon, 02 Nov 2026 00:00:00 GMT")],
            false,
        ),
        (
            &[("last-modified", "Sun, 01 Nov 2026 00:00:00 GMT")],
            &[("last-modified", "Sun, 01 Nov 2026 00:00:00 GMT")],
            true,
        ),
        // The entity tag decides where there is one: origins behind a balancer
        // often disagree on the date.
        (
            &[
                ("etag", "\"a\""),
                ("last-modified", "Sun, 01 Nov 2026 00:00:00 GMT"),
            ],
            &[
                ("etag", "\"a\""),
                ("last-modified", "Mon, 02 Nov 2026 00:00:00 GMT"),
            ],
            true,
        ),
    ];
    for (entry, not_modified, expected) in cases {
        assert_eq!(
            identifies(&headers(entry), &headers(not_modified)),
            expected,
            "{entry:?} by {not_modified:?}"
        );
    }
}
