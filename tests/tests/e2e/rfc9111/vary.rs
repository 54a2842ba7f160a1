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
