//! `cachet-proxy` in front of a scripted origin: the conformance cases of RFC 9111 and
//! RFC 5861 as a user of the proxy sees them, in shared and private mode.
//!
//! The proxy runs on the system clock; a response is made stale without sleeping by an
//! origin `Date` in the past (RFC 9111 §4.2.3 counts its apparent age).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cachet_proxy::{Config, Proxy};
use cachet_tests::{Origin, Reply, read};
use http::{HeaderMap, Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

/// A running proxy, stopped when dropped.
pub(crate) struct RunningProxy {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    _stop: oneshot::Sender<()>,
}

impl RunningProxy {
    pub(crate) async fn start(origin: &Origin, extra: &[&str]) -> Self {
        Self::start_with_env(origin, extra, &[]).await
    }

    /// Starts a proxy whose `--secret-key-env` variables are read from `env`.
    pub(crate) async fn start_with_env(
        origin: &Origin,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let upstream = origin.url("");
        let mut args = vec![
            "cachet-proxy",
            "--upstream",
            upstream.as_str(),
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let lookup = |name: &str| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).into())
        };
        let config = Config::from_args_and_env(args, lookup).expect("valid flags");
        let proxy = Proxy::bind(config).await.expect("the proxy binds");
        let addr = proxy.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(proxy.serve(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
            _stop: stop,
        }
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&'static str, &'static str)],
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let response = self
            .client
            .request(request)
            .await
            .expect("the proxy answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read(response.into_body())
            .await
            .expect("the body completes");
        Answer {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[]).await
    }
}

#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    /// The `Cache-Status` header without its `ttl`, which depends on the clock; see
    /// [`ttl`](Self::ttl).
    pub(crate) fn cache_status(&self) -> &str {
        let value = self
            .headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        value
            .split_once("; ttl=")
            .map_or(value, |(status, _)| status)
    }

    /// The `ttl` parameter of `Cache-Status` (RFC 9211 §2.5), if there is one.
    pub(crate) fn ttl(&self) -> Option<i64> {
        let value = self.headers.get("cache-status")?.to_str().ok()?;
        value
            .split_once("; ttl=")?
            .1
            .split(';')
            .next()?
            .parse()
            .ok()
    }
}

/// An HTTP date `seconds` ago.
fn ago(seconds: u64) -> String {
    httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(seconds))
}

#[tokio::test]
async fn the_second_get_of_a_max_age_60_resource_is_a_hit_with_age() {
    let origin = Origin::start(|_| Reply::ok("hello").header("cache-control", "max-age=60")).await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let first = proxy.get("/r").await;
    assert_eq!(first.cache_status(), "cachet; fwd=miss; stored");
    let second = proxy.get("/r").await;
    assert_eq!(
        (second.status, second.body.as_ref()),
        (200, b"hello".as_slice())
    );
    assert_eq!(second.cache_status(), "cachet; hit");
    assert!(second.headers.contains_key("age"));
    assert_eq!(origin.requests(), 1);
    assert_eq!(
        first.ttl(),
        None,
        "a forwarded response has no stored freshness"
    );
    let ttl = second.ttl().expect("a hit has a ttl");
    assert!((55..=60).contains(&ttl), "ttl={ttl}");
}

#[tokio::test]
async fn rfc9211_2_5_a_stale_response_has_a_negative_ttl() {
    let origin = Origin::start(|seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("origin is down").status(500)
        } else {
            Reply::ok("old")
                .header("cache-control", "max-age=10, stale-if-error=600")
                .header("etag", "\"e\"")
                .header("date", ago(100))
        }
    })
    .await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    proxy.get("/old").await;
    let stale = proxy.get("/old").await;
    assert_eq!(
        stale.cache_status(),
        "cachet; fwd=stale; fwd-status=500; detail=stale-if-error"
    );
    let ttl = stale.ttl().expect("a stored response has a ttl");
    assert!((-95..=-85).contains(&ttl), "ttl={ttl}");
}

#[tokio::test]
async fn rfc9111_4_2_an_expired_entry_is_refetched() {
    let origin = Origin::start(|_| {
        Reply::ok("x")
            .header("cache-control", "max-age=1")
            .header("date", ago(2))
    })
    .await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    proxy.get("/expired").await;
    let again = proxy.get("/expired").await;
    assert_eq!(again.cache_status(), "cachet; fwd=stale; stored");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn rfc9111_4_3_a_stale_entry_is_revalidated_and_the_304_serves_the_stored_body() {
    let origin = Origin::start(|seen| {
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
                .header("date", ago(5))
        }
    })
    .await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    proxy.get("/etag").await;
    let revalidated = proxy.get("/etag").await;
    assert_eq!(
        (revalidated.status, revalidated.body.as_ref()),
        (200, b"stored body".as_slice())
    );
    assert_eq!(
        revalidated.cache_status(),
        "cachet; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(proxy.get("/etag").await.cache_status(), "cachet; hit");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn rfc9111_4_1_two_vary_accept_variants_are_both_kept() {
    let origin = Origin::start(|seen| {
        let accept = seen
            .headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        Reply::ok(accept)
            .header("cache-control", "max-age=60")
            .header("vary", "Accept")
    })
    .await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    for _ in 0..2 {
        let html = proxy
            .send(Method::GET, "/v", &[("accept", "text/html")])
            .await;
        let json = proxy
            .send(Method::GET, "/v", &[("accept", "application/json")])
            .await;
        assert_eq!(
            (html.body.as_ref(), json.body.as_ref()),
            (b"text/html".as_slice(), b"application/json".as_slice())
        );
    }
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn rfc9111_4_4_a_post_invalidates_the_stored_get() {
    let origin = Origin::start(|seen| {
        Reply::ok(format!("{} answer", seen.method)).header("cache-control", "max-age=600")
    })
    .await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    proxy.get("/item").await;
    assert_eq!(proxy.get("/item").await.cache_status(), "cachet; hit");
    let post = proxy.send(Method::POST, "/item", &[]).await;
    assert_eq!(post.cache_status(), "cachet; fwd=method");
    let after = proxy.get("/item").await;
    assert_eq!(after.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn rfc5861_4_stale_if_error_serves_the_stored_response_when_the_origin_answers_500() {
    let origin = Origin::start(|seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::ok("origin is down").status(500)
        } else {
            Reply::ok("good")
                .header("cache-control", "max-age=1, stale-if-error=600")
                .header("etag", "\"e\"")
                .header("date", ago(5))
        }
    })
    .await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    proxy.get("/sie").await;
    let served = proxy.get("/sie").await;
    assert_eq!(
        (served.status, served.body.as_ref()),
        (200, b"good".as_slice())
    );
    assert_eq!(
        served.cache_status(),
        "cachet; fwd=stale; fwd-status=500; detail=stale-if-error"
    );
}

#[tokio::test]
async fn rfc9111_5_2_2_10_s_maxage_is_honoured_by_the_shared_proxy_only() {
    let origin =
        Origin::start(|_| Reply::ok("x").header("cache-control", "max-age=0, s-maxage=60")).await;
    let shared = RunningProxy::start(&origin, &[]).await;
    shared.get("/s").await;
    assert_eq!(shared.get("/s").await.cache_status(), "cachet; hit");

    let private = RunningProxy::start(&origin, &["--mode", "private"]).await;
    private.get("/s").await;
    assert_ne!(private.get("/s").await.cache_status(), "cachet; hit");
}

#[tokio::test]
async fn rfc9111_5_2_2_7_private_responses_are_kept_by_the_private_proxy_only() {
    let origin =
        Origin::start(|_| Reply::ok("mine").header("cache-control", "private, max-age=60")).await;
    let shared = RunningProxy::start(&origin, &[]).await;
    shared.get("/p").await;
    assert_eq!(shared.get("/p").await.cache_status(), "cachet; fwd=miss");
    let private = RunningProxy::start(&origin, &["--mode", "private"]).await;
    private.get("/p").await;
    assert_eq!(private.get("/p").await.cache_status(), "cachet; hit");
}

#[tokio::test]
async fn rfc9111_5_2_1_4_a_request_with_no_cache_goes_to_the_origin() {
    let origin = Origin::start(|_| Reply::ok("x").header("cache-control", "max-age=60")).await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    proxy.get("/nc").await;
    let reload = proxy
        .send(Method::GET, "/nc", &[("cache-control", "no-cache")])
        .await;
    assert_eq!(reload.cache_status(), "cachet; fwd=request; stored");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn rfc9111_5_2_1_7_only_if_cached_on_a_miss_answers_504() {
    let origin = Origin::start(|_| Reply::ok("x").header("cache-control", "max-age=60")).await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let miss = proxy
        .send(Method::GET, "/oic", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(
        (miss.status, miss.cache_status()),
        (504, "cachet; detail=only-if-cached")
    );
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn rfc9110_7_6_1_hop_by_hop_headers_do_not_cross_the_proxy() {
    let origin = Origin::start(|_| {
        Reply::ok("x")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
    })
    .await;
    let proxy = RunningProxy::start(&origin, &[]).await;
    let answer = proxy
        .send(
            Method::GET,
            "/hop",
            &[("connection", "x-client-hop"), ("x-client-hop", "1")],
        )
        .await;
    assert!(!answer.headers.contains_key("x-hop") && !answer.headers.contains_key("keep-alive"));
    let seen = &origin.seen()[0];
    assert!(!seen.headers.contains_key("x-client-hop"));
    assert!(seen.headers.contains_key("via"), "RFC 9110 §7.6.3");
}

#[tokio::test]
async fn rfc9213_cdn_cache_control_replaces_cache_control_when_the_proxy_is_a_cdn() {
    let origin = Origin::start(|_| {
        Reply::ok("x")
            .header("cache-control", "no-store")
            .header("cdn-cache-control", "max-age=60")
    })
    .await;
    let cdn = RunningProxy::start(&origin, &["--cdn"]).await;
    cdn.get("/cdn").await;
    let hit = cdn.get("/cdn").await;
    assert_eq!(hit.cache_status(), "cachet; hit");
    assert_eq!(
        hit.headers["cache-control"], "no-store",
        "both fields pass on unchanged"
    );

    let plain = RunningProxy::start(&origin, &[]).await;
    plain.get("/cdn").await;
    assert_eq!(plain.get("/cdn").await.cache_status(), "cachet; fwd=miss");
}
