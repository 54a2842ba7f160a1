//! `Cache-Control` parsing: directives, values, quoting, targeted fields.

use http::HeaderValue;

use super::*;

fn cc(lines: &[&'static str]) -> CacheControl {
    let mut headers = HeaderMap::new();
    for line in lines {
        headers.append(CACHE_CONTROL, HeaderValue::from_static(line));
    }
    CacheControl::parse(&headers)
}

#[test]
fn directives_beside_bytes_outside_ascii_still_count() {
    let mut headers = HeaderMap::new();
    let line = HeaderValue::from_bytes("private, ext=\"é\", max-age=60".as_bytes())
        .expect("obs-text is a valid header value");
    headers.insert(CACHE_CONTROL, line);
    let parsed = CacheControl::parse(&headers);
    assert!(parsed.private && !parsed.unreadable);
    assert_eq!(parsed.max_age, Some(60));
}

#[test]
fn directives_beside_bytes_that_are_not_text_still_count() {
    let mut headers = HeaderMap::new();
    let line = HeaderValue::from_bytes(b"ext=\"\xff\xfe\", no-store, max-age=\xc3")
        .expect("obs-text is a valid header value");
    headers.insert(CACHE_CONTROL, line);
    let parsed = CacheControl::parse(&headers);
    assert!(parsed.no_store);
    assert_eq!(parsed.max_age, Some(0), "an invalid max-age is stale");
    // A quoted value may hold any byte; one outside quotes that is no token may hide
    // a directive (`max-age=60` and a no-break space before `private`).
    assert!(parsed.unreadable, "max-age's value is no token");
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_bytes(b"ext=\"\xff\xfe\", no-store").expect("obs-text is valid"),
    );
    assert!(!CacheControl::parse(&headers).unreadable);
}

#[test]
fn a_name_with_bytes_outside_ascii_is_unreadable() {
    let parse = |line: &str| {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_bytes(line.as_bytes()).expect("obs-text is valid");
        headers.insert(CACHE_CONTROL, value);
        CacheControl::parse(&headers)
    };
    for line in [
        "no-store\u{a0}",
        "\u{a0}private",
        "max-age=60, pub\u{3000}lic",
        "max-age=60\u{a0}",
    ] {
        assert!(parse(line).unreadable, "{line:?}");
    }
    assert!(
        !parse("max-age=60, x=\"\u{a0}\"").unreadable,
        "inside a quoted value"
    );
    assert_eq!(
        parse("max-age=60\u{a0}").max_age,
        Some(0),
        "an invalid value is stale"
    );
}

#[test]
fn pragma_no_cache_counts_beside_bytes_that_are_not_text() {
    let mut headers = HeaderMap::new();
    let line = HeaderValue::from_bytes(b"no-cache, x=\xff").expect("obs-text is valid");
    headers.insert(PRAGMA, line);
    assert!(CacheControl::parse_request(&headers).no_cache);
}

#[test]
fn a_directive_that_is_no_token_is_unreadable_so_a_hidden_private_is_not_missed() {
    for line in [
        "private; max-age=600",
        "no-cache; no-store",
        "private max-age=600",
        "max-age=600; private",
        "max-age=600 private",
        "public, max-age=600, (private)",
        "=600",
    ] {
        assert!(cc(&[line]).unreadable, "{line:?}");
    }
    for line in [
        "max-age=600, private=\"set-cookie, x-token\"",
        "public, s-maxage=60, stale-while-revalidate=30",
        "ext=\"a; b c\", max-age=1",
        " max-age = 60 ,, ",
        "x-ext*=utf-8'en'a",
    ] {
        assert!(!cc(&[line]).unreadable, "{line:?}");
    }
    // A `;` ending a directive hides nothing after it.
    let slip = cc(&["public, max-age=31536000;"]);
    assert!(!slip.unreadable && slip.public);
    assert_eq!(slip.max_age, Some(31_536_000));
    assert!(cc(&["no-store;"]).no_store && !cc(&["no-store ; ;"]).unreadable);
}

#[test]
fn a_targeted_field_drops_its_members_parameters() {
    let field = HeaderName::from_static("cdn-cache-control");
    let parse = |line: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert(&field, HeaderValue::from_static(line));
        CacheControl::parse_response(&headers, Some(&field))
    };
    let parsed = parse("max-age=600;foo=1, private;x=\"a, b\"");
    assert!(!parsed.unreadable && parsed.private);
    assert_eq!(parsed.max_age, Some(600));
    assert!(parse("max-age=600 private").unreadable);
}

#[test]
fn a_line_that_ends_inside_a_quote_is_unreadable() {
    assert!(cc(&["max-age=300, x=\"oops, private"]).unreadable);
    assert!(cc(&["public", "x=\"a\\\""]).unreadable);
    assert!(!cc(&["x=\"a, \\\"b\\\"\", private"]).unreadable);
}

#[test]
fn names_are_case_insensitive_and_values_may_be_quoted() {
    let parsed = cc(&["Max-Age=\"60\", PUBLIC"]);
    assert_eq!(parsed.max_age, Some(60));
    assert!(parsed.public);
}

#[test]
fn unknown_directives_of_any_length_are_ignored() {
    let parsed = cc(&[
        "x-a-directive-name-longer-than-any-known-one=1, STALE-WHILE-REVALIDATE=30, \
         max-ag=5, max-agex=6, max-age=7",
    ]);
    assert_eq!(parsed.stale_while_revalidate, Some(30));
    assert_eq!(parsed.max_age, Some(7));
    assert_eq!(
        parsed,
        CacheControl {
            stale_while_revalidate: Some(30),
            max_age: Some(7),
            ..CacheControl::default()
        }
    );
}

#[test]
fn directives_across_lines_combine_and_the_first_value_wins() {
    let parsed = cc(&["max-age=10", "max-age=20, no-store"]);
    assert_eq!(parsed.max_age, Some(10));
    assert!(parsed.no_store);
}

#[test]
fn invalid_and_negative_numbers_mean_stale() {
    assert_eq!(cc(&["max-age=abc"]).max_age, Some(0));
    assert_eq!(cc(&["max-age=-5"]).max_age, Some(0));
    assert_eq!(cc(&["s-maxage=1.5"]).s_maxage, Some(0));
}

#[test]
fn huge_numbers_saturate() {
    assert_eq!(
        cc(&["max-age=99999999999999999999999"]).max_age,
        Some(MAX_DELTA_SECONDS)
    );
}

#[test]
fn unknown_directives_are_ignored() {
    assert_eq!(cc(&["nothing-to-see-here"]), CacheControl::default());
}

#[test]
fn commas_inside_quotes_do_not_split() {
    let parsed = cc(&["private=\"a, no-store\", max-age=5"]);
    assert_eq!(parsed.private_fields.len(), 2);
    assert!(!parsed.no_store);
    assert_eq!(parsed.max_age, Some(5));
}

#[test]
fn field_names_qualify_no_cache_and_private() {
    let parsed = cc(&["no-cache=\"Set-Cookie, X-Token\", private=\"x-user\""]);
    assert!(!parsed.no_cache && !parsed.private);
    assert_eq!(
        parsed.no_cache_fields,
        [
            HeaderName::from_static("set-cookie"),
            HeaderName::from_static("x-token")
        ]
    );
    assert_eq!(parsed.private_fields, [HeaderName::from_static("x-user")]);
    assert!(cc(&["no-cache, private"]).no_cache);
}

#[test]
fn rfc_5861_extensions_parse() {
    let parsed = cc(&["max-age=1, stale-while-revalidate=30, stale-if-error=600"]);
    assert_eq!(
        (parsed.stale_while_revalidate, parsed.stale_if_error),
        (Some(30), Some(600))
    );
}

#[test]
fn a_targeted_field_replaces_cache_control_when_present() {
    let cdn = HeaderName::from_static("cdn-cache-control");
    let mut headers = HeaderMap::new();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    assert!(CacheControl::parse_response(&headers, Some(&cdn)).no_store);
    headers.insert(&cdn, HeaderValue::from_static("max-age=600"));
    let parsed = CacheControl::parse_response(&headers, Some(&cdn));
    assert_eq!((parsed.no_store, parsed.max_age), (false, Some(600)));
    assert!(CacheControl::parse_response(&headers, None).no_store);
}

#[test]
fn rfc9213_2_1_an_empty_targeted_field_is_ignored() {
    let cdn = HeaderName::from_static("cdn-cache-control");
    for targeted in ["", " ", ",", " , "] {
        let mut headers = HeaderMap::new();
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=60"),
        );
        headers.insert(&cdn, HeaderValue::from_static(targeted));
        let parsed = CacheControl::parse_response(&headers, Some(&cdn));
        assert!(
            parsed.private && parsed.max_age == Some(60) && !parsed.unreadable,
            "{targeted:?}: {parsed:?}"
        );
    }
}

#[test]
fn pragma_no_cache_counts_only_without_cache_control() {
    let mut headers = HeaderMap::new();
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    assert!(CacheControl::parse_request(&headers).no_cache);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
    assert!(!CacheControl::parse_request(&headers).no_cache);
    let mut foo = HeaderMap::new();
    foo.insert(PRAGMA, HeaderValue::from_static("foo"));
    assert!(!CacheControl::parse_request(&foo).no_cache);
}

#[test]
fn max_stale_with_and_without_value() {
    assert_eq!(cc(&["max-stale"]).max_stale, Some(None));
    assert_eq!(cc(&["max-stale=30"]).max_stale, Some(Some(30)));
    assert_eq!(cc(&["max-stale=x"]).max_stale, None);
}
