//! §4.4 Invalidation.

use super::*;

pub(super) async fn rfc9111_4_4_a_post_invalidates_the_stored_get_and_its_variants(mode: Mode) {
    let case = Case::start(mode, |seen| {
        Reply::ok(format!("{} answer", seen.method))
            .header("cache-control", "max-age=600")
            .header("vary", "accept")
    })
    .await;
    case.get_with("/item", &[("accept", "a")]).await;
    case.get_with("/item", &[("accept", "b")]).await;
    assert_eq!(
        case.get_with("/item", &[("accept", "a")])
            .await
            .cache_status(),
        "cachet; hit"
    );
    case.advance(1);
    let post = case.send(Method::POST, "/item").await;
    assert_eq!(
        (post.body.as_ref(), post.cache_status()),
        (b"POST answer".as_slice(), "cachet; fwd=method")
    );
    for variant in ["a", "b"] {
        let after = case.get_with("/item", &[("accept", variant)]).await;
        assert_eq!(
            (after.body.as_ref(), after.cache_status()),
            (b"GET answer".as_slice(), "cachet; fwd=uri-miss; stored"),
            "variant {variant} was invalidated"
        );
    }
    assert_eq!(
        case.get_with("/item", &[("accept", "a")])
            .await
            .cache_status(),
        "cachet; hit",
        "caching resumes"
    );
    assert_eq!(case.origin.requests(), 5);
}

/// The POST comes in the same clock tick as the variants were stored: they must still
/// be hidden, even after one of them is stored again.
pub(super) async fn rfc9111_4_4_an_invalidation_in_the_same_instant_hides_every_variant(
    mode: Mode,
) {
    let case = Case::start(mode, |seen| {
        Reply::ok(format!("{} answer", seen.method))
            .header("cache-control", "max-age=600")
            .header("vary", "accept")
    })
    .await;
    case.get_with("/item", &[("accept", "a")]).await;
    case.get_with("/item", &[("accept", "b")]).await;
    case.send(Method::POST, "/item").await;
    for variant in ["a", "b"] {
        let after = case.get_with("/item", &[("accept", variant)]).await;
        assert_eq!(
            after.cache_status(),
            "cachet; fwd=uri-miss; stored",
            "variant {variant} was invalidated"
        );
    }
}

pub(super) async fn rfc9111_4_4_location_and_content_location_of_the_same_origin_are_invalidated(
    mode: Mode,
) {
    let case = Case::start(mode, |seen| match (&seen.method, seen.path.as_str()) {
        (&Method::PUT, _) => Reply::ok("")
            .status(201)
            .header("location", "/other")
            .header("content-location", "/described"),
        (&Method::DELETE, _) => Reply::ok("").status(204),
        _ => fresh_for_a_minute("cached"),
    })
    .await;
    for path in ["/other", "/described", "/target", "/gone"] {
        case.get(path).await;
        assert_eq!(case.get(path).await.cache_status(), "cachet; hit", "{path}");
    }
    case.send(Method::PUT, "/target").await;
    case.send(Method::DELETE, "/gone").await;
    for path in ["/other", "/described", "/target", "/gone"] {
        assert_eq!(
            case.get(path).await.cache_status(),
            "cachet; fwd=uri-miss; stored",
            "{path} was invalidated"
        );
    }
}

/// `Location` and `Content-Location` are URI references (RFC 9110 §10.2.2, §8.7): a
/// relative one names the URI it resolves to against the request's (RFC 3986 §5.2).
pub(super) async fn rfc9111_4_4_a_relative_location_is_resolved_against_the_request_uri(
    mode: Mode,
) {
    let case = Case::start(mode, |seen| match seen.method {
        Method::POST => Reply::ok("created")
            .status(201)
            .header("location", "5")
            .header("content-location", "../about?v=1"),
        _ => fresh_for_a_minute("cached"),
    })
    .await;
    for path in ["/items/5", "/about?v=1"] {
        case.get(path).await;
        assert_eq!(case.get(path).await.cache_status(), "cachet; hit", "{path}");
    }
    case.send(Method::POST, "/items/").await;
    for path in ["/items/5", "/about?v=1"] {
        assert_eq!(
            case.get(path).await.cache_status(),
            "cachet; fwd=uri-miss; stored",
            "{path} was invalidated"
        );
    }
}
