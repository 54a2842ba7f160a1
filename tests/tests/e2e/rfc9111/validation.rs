//! §4.3 Validation.

use super::*;

pub(super) async fn rfc9111_4_3_a_stale_entry_is_revalidated_and_the_304_serves_the_stored_body(
    mode: Mode,
) {
    let case = Case::start(mode, |seen| {
        if seen
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"")
        {
            Reply::ok("")
                .status(304)
                .header("cache-control", "max-age=60")
        } else {
            Reply::ok("stored body")
                .header("cache-control", "max-age=1")
                .header("etag", "\"v1\"")
        }
    })
    .await;
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
