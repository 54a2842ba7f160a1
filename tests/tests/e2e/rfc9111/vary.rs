//! §4.1 Vary.

use super::*;

pub(super) async fn rfc9111_4_1_two_vary_accept_variants_are_both_kept(mode: Mode) {
    let case = Case::start(mode, |seen| {
        let accept = seen
            .headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        Reply::ok(format!("as {accept}"))
            .header("cache-control", "max-age=60")
            .header("vary", "Accept")
    })
    .await;
    for round in 0..2 {
        let html = case.get_with("/v", &[("accept", "text/html")]).await;
        let json = case.get_with("/v", &[("accept", "application/json")]).await;
        let none = case.get("/v").await;
        assert_eq!(
            (html.body.as_ref(), json.body.as_ref(), none.body.as_ref()),
            (
                b"as text/html".as_slice(),
                b"as application/json".as_slice(),
                b"as none".as_slice()
            )
        );
        if round == 1 {
            for answer in [&html, &json, &none] {
                assert_eq!(answer.cache_status(), "cachet; hit");
            }
        }
    }
    assert_eq!(case.origin.requests(), 3);
}

/// Two requests match when one's lines of a header, combined (RFC 9110 §5.2), are the
/// other's (RFC 9111 §4.1).
pub(super) async fn rfc9111_4_1_a_header_in_two_lines_selects_the_variant_of_one_combined_line(
    mode: Mode,
) {
    let case = Case::start(mode, |seen| {
        let lines: Vec<&str> = seen
            .headers
            .get_all("x-pick")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Reply::ok(format!("for {}", lines.join(", ")))
            .header("cache-control", "max-age=60")
            .header("vary", "X-Pick")
    })
    .await;
    case.get_with("/two-then-one", &[("x-pick", "1"), ("x-pick", "2")])
        .await;
    let one = case.get_with("/two-then-one", &[("x-pick", "1, 2")]).await;
    assert_eq!(
        one.cache_status(),
        "cachet; hit",
        "two lines stored, one asked"
    );
    case.get_with("/one-then-two", &[("x-pick", "1, 2")]).await;
    let two = case
        .get_with("/one-then-two", &[("x-pick", "1"), ("x-pick", "2")])
        .await;
    assert_eq!(
        two.cache_status(),
        "cachet; hit",
        "one line stored, two asked"
    );
    assert_eq!(two.body.as_ref(), b"for 1, 2".as_slice());
    assert_eq!(case.origin.requests(), 2);
}

pub(super) async fn rfc9111_4_1_vary_star_is_never_stored(mode: Mode) {
    let case = Case::start(mode, |_| fresh_for_a_minute("x").header("vary", "*")).await;
    assert_eq!(
        case.get("/star").await.cache_status(),
        "cachet; fwd=uri-miss"
    );
    assert_eq!(
        case.get("/star").await.cache_status(),
        "cachet; fwd=uri-miss"
    );
    assert_eq!(case.origin.requests(), 2);
}
