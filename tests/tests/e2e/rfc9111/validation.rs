//! §4.3 Validation.

use super::*;

/// An origin whose "stored body" (`ETag: "v1"`) is fresh for a second, and which answers
/// a request made conditional on it `304`, fresh for a minute, with `etag` if given.
fn revalidating(etag: Option<&'static str>) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |seen| {
        if seen
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"")
        {
            let not_modified = Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=60");
            match etag {
                Some(etag) => not_modified.header("etag", etag),
                None => not_modified,
            }
        } else {
            Reply::ok("stored body")
                .header("cache-control", "max-age=1")
                .header("etag", "\"v1\"")
        }
    }
}

pub(super) async fn rfc9111_4_3_a_stale_entry_is_revalidated_and_the_304_serves_the_stored_body(
    mode: Mode,
) {
    let case = Case::start(mode, revalidating(None)).await;
    case.get("/etag").await;
    case.advance(5);
    let revalidated = case.get("/etag").await;
    assert_eq!(
        (revalidated.status, revalidated.body.as_ref()),
        (200, b"stored body".as_slice())
    );
    assert_eq!(
        revalidated.cache_status(),
        "cachet; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(revalidated.headers["cache-control"], "max-age=60", "§3.2");
    case.advance(30);
    let hit = case.get("/etag").await;
    assert_eq!(
        (hit.cache_status(), hit.body.as_ref(), hit.age()),
        ("cachet; hit", b"stored body".as_slice(), Some(30)),
        "the 304 made the entry fresh again"
    );
    assert_eq!(case.origin.requests(), 2);
}

pub(super) async fn rfc9111_4_3_4_an_age_from_before_the_304_is_not_counted_again(mode: Mode) {
    // Stored already past its lifetime by the upstream's `Age`; the 304 carries none.
    let case = Case::start(mode, |seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("").status(304).header("etag", "\"1\"")
        } else {
            Reply::ok("v")
                .header("cache-control", "max-age=100")
                .header("etag", "\"1\"")
                .header("age", "150")
        }
    })
    .await;
    case.get("/aged").await;
    let revalidated = case.get("/aged").await;
    assert_eq!(
        revalidated.cache_status(),
        "cachet; fwd=stale; fwd-status=304; stored"
    );
    let hit = case.get("/aged").await;
    assert_eq!((hit.cache_status(), hit.age()), ("cachet; hit", Some(0)));
    assert_eq!(case.origin.requests(), 2);
}

pub(super) async fn rfc9111_4_3_4_a_304_naming_another_representation_updates_nothing(mode: Mode) {
    // Its 304 contradicts itself: "not modified", yet another entity tag.
    let case = Case::start(mode, revalidating(Some("\"v2\""))).await;
    case.get("/etag").await;
    case.advance(5);
    let answered = case.get("/etag").await;
    assert_eq!(
        (answered.status, answered.body.as_ref()),
        (200, b"stored body".as_slice())
    );
    assert_eq!(answered.cache_status(), "cachet; fwd=stale; fwd-status=304");
    assert_eq!(
        answered.headers["etag"], "\"v1\"",
        "the stored headers, not the 304's"
    );
    assert_eq!(answered.headers["cache-control"], "max-age=1");
    case.advance(1);
    let again = case.get("/etag").await;
    assert_eq!(
        again.cache_status(),
        "cachet; fwd=stale; fwd-status=304",
        "still stale: the 304 did not freshen it"
    );
    assert_eq!(case.origin.requests(), 3);
}

pub(super) async fn rfc9111_4_3_2_a_clients_matching_validator_gets_304_from_a_fresh_entry(
    mode: Mode,
) {
    let case = Case::start(mode, |_| {
        fresh_for_a_minute("body").header("etag", "W/\"7\"")
    })
    .await;
    case.get("/v").await;
    let matched = case.get_with("/v", &[("if-none-match", "\"7\"")]).await;
    assert_eq!(
        (matched.status, matched.body.len(), matched.cache_status()),
        (304, 0, "cachet; hit")
    );
    let other = case.get_with("/v", &[("if-none-match", "\"8\"")]).await;
    assert_eq!(
        (other.status, other.body.as_ref()),
        (200, b"body".as_slice())
    );
    assert_eq!(case.origin.requests(), 1);
}

/// Preconditions apply only where the answer would be 2xx (RFC 9110 §13.2.1): a stored
/// 404 is served whole whatever validators the client sends.
pub(super) async fn rfc9111_4_3_2_a_stored_error_is_served_whole_to_a_matching_validator(
    mode: Mode,
) {
    let case = Case::start(mode, |_| {
        Reply::ok("not here")
            .status(404)
            .header("cache-control", "max-age=600")
            .header("etag", "\"nf\"")
            .header("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")
    })
    .await;
    case.get("/missing").await;
    for validator in [
        ("if-none-match", "\"nf\""),
        ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ] {
        let answer = case.get_with("/missing", &[validator]).await;
        assert_eq!(
            (answer.status, answer.body.as_ref(), answer.cache_status()),
            (404, b"not here".as_slice(), "cachet; hit"),
            "{validator:?}"
        );
    }
    assert_eq!(case.origin.requests(), 1);
}

pub(super) async fn rfc9111_4_3_5_a_head_response_freshens_the_stored_get(mode: Mode) {
    let case = Case::start(mode, |seen| {
        let cc = if seen.method == Method::HEAD {
            "max-age=600"
        } else {
            "max-age=10"
        };
        Reply::ok("body")
            .header("cache-control", cc)
            .header("etag", "\"same\"")
    })
    .await;
    case.get("/h").await;
    case.advance(20);
    let head = case.send(Method::HEAD, "/h").await;
    assert_eq!(head.status, 200);
    // The freshening reads the store on a task of its own; `only-if-cached` looks
    // without asking the origin until it has run.
    let mut freshened = None;
    for _ in 0..100 {
        let answer = case
            .get_with("/h", &[("cache-control", "only-if-cached")])
            .await;
        if answer.status == 200 {
            freshened = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let freshened = freshened.expect("the HEAD freshens the stored GET");
    assert_eq!(
        (freshened.cache_status(), freshened.body.as_ref()),
        ("cachet; hit", b"body".as_slice())
    );
    assert_eq!(case.origin.requests(), 2);
}

pub(super) async fn rfc9111_4_3_5_a_head_response_that_differs_makes_the_stored_get_stale(
    mode: Mode,
) {
    // The HEAD tells of another representation: by its `ETag` at `/tag`, by its length
    // (its `ETag` the same) at `/length`.
    let case = Case::start(mode, |seen| {
        let head = seen.method == Method::HEAD;
        let etag = if head && seen.path == "/tag" {
            "\"2\""
        } else {
            "\"1\""
        };
        let body = if head && seen.path == "/length" {
            "a longer body"
        } else {
            "old body"
        };
        Reply::ok(body)
            .header("cache-control", "max-age=600")
            .header("etag", etag)
    })
    .await;
    for path in ["/tag", "/length"] {
        case.get(path).await;
        assert_eq!(case.get(path).await.cache_status(), "cachet; hit", "{path}");
        let head = case.send(Method::HEAD, path).await;
        assert_eq!(head.status, 200);
        // The HEAD is compared on a task of its own; wait for it to have its say.
        let mut gone = false;
        for _ in 0..100 {
            let answer = case
                .get_with(path, &[("cache-control", "only-if-cached")])
                .await;
            if answer.status == 504 {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone, "{path}: the stored GET is no longer served");
    }
    assert_eq!(case.origin.requests(), 4);
}

/// §4.3.2 and RFC 9110 §13.1.2: `If-None-Match: *` matches any stored 2xx, one without
/// an entity tag too; a tag may hold a comma (`etagc`, RFC 9110 §8.8.3); without
/// `Last-Modified`, `If-Modified-Since` is judged against `Date`.
pub(super) async fn rfc9111_4_3_2_star_a_tag_with_a_comma_and_if_modified_since_by_date(
    mode: Mode,
) {
    let case = Case::start(mode, |seen| match seen.path.as_str() {
        "/comma" => fresh_for_a_minute("body").header("etag", "\"a,b\""),
        _ => fresh_for_a_minute("body"),
    })
    .await;
    case.get("/comma").await;
    case.get("/untagged").await;
    let comma = case
        .get_with("/comma", &[("if-none-match", "\"x\", \"a,b\"")])
        .await;
    assert_eq!((comma.status, comma.cache_status()), (304, "cachet; hit"));
    let star = case.get_with("/untagged", &[("if-none-match", "*")]).await;
    assert_eq!((star.status, star.cache_status()), (304, "cachet; hit"));
    // The origin's `Date` is the clock's, a whole second: a time after it is met, one
    // before it is not.
    let later = case.date_in(5);
    case.advance(10);
    let since_later = case
        .get_with("/untagged", &[("if-modified-since", later.as_str())])
        .await;
    assert_eq!(since_later.status, 304);
    let earlier = httpdate::fmt_http_date(case.clock.now() - Duration::from_secs(3600));
    let since_earlier = case
        .get_with("/untagged", &[("if-modified-since", earlier.as_str())])
        .await;
    assert_eq!(since_earlier.status, 200);
    assert_eq!(case.origin.requests(), 2);
}
