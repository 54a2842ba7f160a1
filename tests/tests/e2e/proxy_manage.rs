//! `cachet-proxy` driven by a configuration file: expiry rules, ignored query parameters,
//! and managing what it stores, with `entries` against Redis and through the admin
//! listener for the memory store.

use std::io::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use cachet_proxy::{Config, EntriesCommand, Proxy, run_entries};
use cachet_tests::redis::RedisServer;
use cachet_tests::{Origin, Reply, read};
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

/// A proxy started from a configuration file, stopped when dropped.
struct Running {
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    config: Config,
    client: Client<HttpConnector, Full<Bytes>>,
    _file: tempfile::NamedTempFile,
    _stop: oneshot::Sender<()>,
}

impl Running {
    async fn start(file_text: &str) -> Self {
        Self::start_with_env(file_text, &[]).await
    }

    /// Starts a proxy whose file names environment variables, read from `env`.
    async fn start_with_env(file_text: &str, env: &[(&str, &str)]) -> Self {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        file.write_all(file_text.as_bytes()).expect("written");
        let path = file.path().to_str().expect("a UTF-8 path").to_owned();
        let lookup = |name: &str| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).into())
        };
        let config = Config::from_args_and_env(["cachet-proxy", "--config", &path], lookup)
            .expect("valid file");
        let proxy = Proxy::bind(config.clone()).await.expect("the proxy binds");
        let (addr, admin) = (proxy.local_addr(), proxy.admin_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(proxy.serve(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin,
            config,
            client: Client::builder(TokioExecutor::new()).build_http(),
            _file: file,
            _stop: stop,
        }
    }

    /// Sends a request; returns the status, the `Cache-Status` (without `ttl`) and body.
    async fn send(&self, method: Method, url: String) -> (u16, String, String) {
        self.send_body(method, url, "").await
    }

    async fn send_body(
        &self,
        method: Method,
        url: String,
        body: &'static str,
    ) -> (u16, String, String) {
        self.send_with(method, url, body, &[]).await
    }

    async fn send_with(
        &self,
        method: Method,
        url: String,
        body: &'static str,
        headers: &[(&'static str, &'static str)],
    ) -> (u16, String, String) {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("valid request");
        let response = self.client.request(request).await.expect("it answers");
        let status = response.status().as_u16();
        let cache_status = response
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split("; ttl=").next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let body = read(response.into_body())
            .await
            .expect("the body completes");
        (
            status,
            cache_status,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    async fn get(&self, path: &str) -> String {
        self.send(Method::GET, format!("http://{}{path}", self.addr))
            .await
            .1
    }

    async fn admin(&self, method: Method, path_and_query: &str) -> (u16, String) {
        let admin = self.admin.expect("the admin listener is on");
        let (status, _, body) = self
            .send(method, format!("http://{admin}{path_and_query}"))
            .await;
        (status, body)
    }
}

/// An origin that gives no freshness at all: only a rule can make its responses cached.
async fn origin() -> Origin {
    Origin::start(|_| Reply::ok("no freshness headers")).await
}

fn file(origin: &Origin, store: &str) -> String {
    format!(
        r#"upstream = "{}"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[store]
backend = "{store}"
redis_namespace = "proxy-manage:"

[[expiry.rules]]
pattern = "127.0.0.1/cached/"
expire = "10m"

[keys]
ignore = ["session"]
"#,
        origin.url("")
    )
}

#[tokio::test]
async fn a_config_file_caches_by_rule_ignores_a_parameter_and_entries_purge_it_on_redis() {
    let origin = origin().await;
    let redis = RedisServer::start();
    let proxy = Running::start(&file(&origin, &redis.url())).await;

    // A rule caches a resource that has no freshness headers; an ignored parameter does
    // not split the cache.
    assert_eq!(
        proxy.get("/cached/a?q=1&session=s3cr3t-1").await,
        "cachet; fwd=uri-miss; stored"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while redis.scan("proxy-manage:*").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the entry was not written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        proxy.get("/cached/a?q=1&session=s3cr3t-2").await,
        "cachet; hit"
    );
    assert_eq!(origin.requests(), 1);
    // Without a rule, the same origin's responses are not stored.
    assert_eq!(proxy.get("/other").await, "cachet; fwd=uri-miss");

    // The ignored parameter is not stored, in keys or values.
    for key in redis.scan("*") {
        let value: Vec<u8> = redis.query(redis::cmd("GET").arg(&key));
        assert!(!key.contains("s3cr3t") && !String::from_utf8_lossy(&value).contains("s3cr3t"));
    }

    // `cachet-proxy entries list` shows the stored URL; `entries purge URL` removes it.
    let stored_url = format!("{}/cached/a?q=1", origin.url(""));
    let listed = run_entries(
        &proxy.config,
        &EntriesCommand::List {
            limit: 100,
            cursor: None,
        },
    )
    .await
    .expect("Redis lists");
    assert!(
        listed.contains(&format!("GET {stored_url}\tresponse\t200")),
        "{listed}"
    );
    let purged = run_entries(
        &proxy.config,
        &EntriesCommand::Purge {
            url: stored_url.clone(),
        },
    )
    .await
    .expect("Redis purges");
    assert_eq!(purged, format!("deleted 1 entries for {stored_url}\n"));
    assert_eq!(
        proxy.get("/cached/a?q=1").await,
        "cachet; fwd=uri-miss; stored"
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn the_example_files_rules_match_under_its_upstreams_base_path() {
    let origin = origin().await;
    // The file as shipped, in front of this origin's `/api`, its listeners on free ports.
    let mut example = include_str!("../../../docs/cachet-proxy.example.toml").to_owned();
    for (shipped, here) in [
        ("http://127.0.0.1:8000/api", origin.url("/api")),
        ("127.0.0.1:8080", "127.0.0.1:0".to_owned()),
        ("127.0.0.1:9090", "127.0.0.1:0".to_owned()),
    ] {
        assert!(example.contains(shipped), "the example has {shipped}");
        example = example.replace(shipped, &here);
    }
    let keys = [
        ("CACHET_KEY", "3f1c0ffee0d1e5c0ffee3f1c0ffee0d1"),
        ("CACHET_OLD_KEY", "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"),
    ];
    let proxy = Running::start_with_env(&example, &keys).await;
    // The origin gives no freshness: the rules decide, then the file's default.
    for (path, first, second) in [
        (
            "/static/app.js",
            "cachet; fwd=uri-miss; stored",
            "cachet; hit",
        ),
        ("/live/feed", "cachet; fwd=bypass", "cachet; fwd=bypass"),
        ("/other", "cachet; fwd=uri-miss; stored", "cachet; hit"),
    ] {
        assert_eq!(proxy.get(path).await, first, "{path}");
        assert_eq!(proxy.get(path).await, second, "{path}");
    }
    let ttl = |path: &'static str| {
        let proxy = &proxy;
        async move {
            let url = format!("http://{}{path}", proxy.addr);
            let request = Request::get(url)
                .body(Full::new(Bytes::new()))
                .expect("valid");
            let response = proxy.client.request(request).await.expect("it answers");
            let status = response.headers().get("cache-status").cloned();
            status.and_then(|v| v.to_str().ok()?.split("; ttl=").nth(1)?.parse::<u64>().ok())
        }
    };
    assert!(
        ttl("/static/app.js").await > Some(3_600),
        "a day by its rule"
    );
    assert!(ttl("/other").await <= Some(300), "five minutes by default");
}

#[tokio::test]
async fn entries_against_the_memory_store_points_to_the_admin_listener() {
    let origin = origin().await;
    let proxy = Running::start(&file(&origin, "memory")).await;
    let error = run_entries(&proxy.config, &EntriesCommand::Stats)
        .await
        .expect_err("the memory store is inside the proxy");
    assert!(error.is_entries());
    let message = cachet::OneLine(&error).to_string();
    assert!(message.contains("--admin-listen"), "{message}");
}

#[tokio::test]
async fn the_admin_listener_lists_shows_and_purges_a_memory_store() {
    let origin = origin().await;
    let proxy = Running::start(&file(&origin, "memory")).await;
    proxy.get("/cached/b").await;
    assert_eq!(proxy.get("/cached/b").await, "cachet; hit");
    let url = format!("{}/cached/b", origin.url(""));

    let (status, listed) = proxy.admin(Method::GET, "/entries").await;
    assert_eq!(status, 200);
    assert!(
        listed.contains(&format!("GET {url}\tresponse\t200")),
        "{listed}"
    );
    let (_, shown) = proxy
        .admin(Method::GET, &format!("/entries/show?url={url}"))
        .await;
    assert!(shown.contains("fresh"), "{shown}");
    assert_eq!(
        proxy.admin(Method::GET, "/entries/stats").await,
        (200, format!("1 entries, {} bytes\n", stats_bytes(&listed)))
    );

    let (status, purged) = proxy
        .admin(Method::POST, &format!("/entries/purge?url={url}"))
        .await;
    assert_eq!(
        (status, purged),
        (200, format!("deleted 1 entries for {url}\n"))
    );
    assert_eq!(proxy.get("/cached/b").await, "cachet; fwd=uri-miss; stored");
    assert_eq!(origin.requests(), 2);

    // Clear empties it; bad requests get a clear answer, not a guess.
    assert_eq!(proxy.admin(Method::POST, "/entries/clear").await.0, 200);
    assert_eq!(
        proxy.admin(Method::GET, "/entries/stats").await,
        (200, "0 entries, 0 bytes\n".to_owned())
    );
    assert_eq!(
        proxy.admin(Method::GET, "/entries/purge?url=x").await,
        (405, "GET is not allowed here\n".to_owned())
    );
    // A 405 names the method the endpoint takes.
    let admin = proxy.admin.expect("the admin listener is on");
    for (method, path, allowed) in [
        (Method::GET, "/entries/purge?url=x", "POST"),
        (Method::PUT, "/entries/clear", "POST"),
        (Method::POST, "/entries/stats", "GET"),
        (Method::DELETE, "/entries", "GET"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{admin}{path}"))
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let response = proxy.client.request(request).await.expect("it answers");
        let allow = response.headers().get("allow").map(|v| v.as_bytes());
        assert_eq!(
            (response.status().as_u16(), allow),
            (405, Some(allowed.as_bytes())),
            "{path}"
        );
    }
    assert_eq!(
        proxy.admin(Method::POST, "/entries/purge").await,
        (400, "the url query parameter is required\n".to_owned())
    );
    for (query, why) in [
        ("url=not%20a%20url", "the url parameter holds a space"),
        ("url=http://a/?q=a+b", "the url parameter holds a space"),
        ("url=http://a/%FF", "the url parameter is not UTF-8 text"),
        (
            "url=http://a/x&url=http://b/y",
            "the url parameter is given more than once",
        ),
    ] {
        let (status, reason) = proxy
            .admin(Method::GET, &format!("/entries/show?{query}"))
            .await;
        assert_eq!(status, 400, "{query}");
        assert!(reason.starts_with(why), "{query}: {reason}");
    }
    let (status, reason) = proxy
        .admin(Method::GET, "/entries?limit=10&limit=abc")
        .await;
    assert_eq!(
        (status, reason.as_str()),
        (400, "the limit parameter is given more than once\n")
    );
    assert_eq!(proxy.admin(Method::GET, "/nothing").await.0, 404);
    for limit in ["0", "1001", "many"] {
        let (status, reason) = proxy
            .admin(Method::GET, &format!("/entries?limit={limit}"))
            .await;
        assert_eq!(
            (status, reason),
            (
                400,
                format!("invalid limit '{limit}': expected a whole number from 1 to 1000\n")
            )
        );
    }

    // A web page cannot drive the endpoints (cross-site request forgery).
    let admin = proxy.admin.expect("the admin listener is on");
    let (status, _, reason) = proxy
        .send_with(
            Method::POST,
            format!("http://{admin}/entries/clear"),
            "",
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(
        (status, reason.as_str()),
        (403, "requests from web pages are refused\n")
    );
}

#[tokio::test]
async fn the_admin_listener_refuses_unknown_parameters_so_an_unencoded_ampersand_purges_nothing() {
    let origin = origin().await;
    let proxy = Running::start(&file(&origin, "memory")).await;
    // Two URLs, one a prefix of the other up to its `&`.
    proxy.get("/cached/a?b=1").await;
    proxy.get("/cached/a?b=1&c=2").await;
    let url = format!("{}/cached/a?b=1&c=2", origin.url(""));

    // Unencoded, the `&` ends the url at `?b=1`: refused, and nothing is deleted.
    let (status, reason) = proxy
        .admin(Method::POST, &format!("/entries/purge?url={url}"))
        .await;
    assert_eq!(
        (status, reason.as_str()),
        (
            400,
            "unknown parameter 'c': /entries/purge takes only url; percent-encode each & \
             in the url as %26\n"
        )
    );
    assert_eq!(proxy.get("/cached/a?b=1").await, "cachet; hit");
    assert_eq!(proxy.get("/cached/a?b=1&c=2").await, "cachet; hit");
    let encoded = url.replace('&', "%26");
    assert_eq!(
        proxy
            .admin(Method::POST, &format!("/entries/purge?url={encoded}"))
            .await,
        (200, format!("deleted 1 entries for {url}\n"))
    );
    assert_eq!(proxy.get("/cached/a?b=1").await, "cachet; hit");

    // Every endpoint names what it does not take, a misspelling included.
    for (method, path_and_query, reason) in [
        (
            Method::GET,
            "/entries?limt=1",
            "unknown parameter 'limt': /entries takes only limit and cursor\n",
        ),
        (
            Method::GET,
            "/entries?cursor=GET%20http://a/x?y=1&z=2",
            "unknown parameter 'z': /entries takes only limit and cursor; percent-encode each \
             & in the cursor as %26\n",
        ),
        (
            Method::GET,
            "/entries/show?url=http://a/x?y=1&z=2",
            "unknown parameter 'z': /entries/show takes only url; percent-encode each & in \
             the url as %26\n",
        ),
        (
            Method::GET,
            "/entries/stats?url=zzz&foo",
            "unknown parameter 'url': /entries/stats takes no parameters; percent-encode each \
             & in the url as %26\n",
        ),
        (
            Method::POST,
            "/entries/purge-expired?all",
            "unknown parameter 'all': /entries/purge-expired takes no parameters\n",
        ),
        (
            Method::POST,
            "/entries/clear?yes=1",
            "unknown parameter 'yes': /entries/clear takes no parameters\n",
        ),
        // A line break in a name is shown escaped: the reason is one line.
        (
            Method::GET,
            "/entries/stats?x%0Ay=1",
            "unknown parameter 'x\\ny': /entries/stats takes no parameters\n",
        ),
    ] {
        assert_eq!(
            proxy.admin(method, path_and_query).await,
            (400, reason.to_owned()),
            "{path_and_query}"
        );
    }
    assert_eq!(
        proxy.admin(Method::GET, "/entries/stats").await.0,
        200,
        "nothing was cleared"
    );
    assert_eq!(proxy.get("/cached/a?b=1").await, "cachet; hit");
}

/// The bytes of the only entry a listing shows.
fn stats_bytes(listed: &str) -> u64 {
    listed
        .split('\t')
        .find_map(|field| field.strip_suffix(" bytes")?.parse().ok())
        .expect("a listing shows sizes")
}

#[tokio::test]
async fn posts_listed_in_the_file_are_cached_by_their_body() {
    let origin = Origin::start(|seen| {
        let length = seen
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("0")
            .to_owned();
        Reply::ok(format!("{} of {length} bytes", seen.method))
            .header("cache-control", "max-age=60")
    })
    .await;
    let config = format!(
        "upstream = \"{}\"\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[filters]\nmethods = [\"GET\", \"HEAD\", \"POST\"]\n",
        origin.url("")
    );
    let proxy = Running::start(&config).await;
    let url = format!("http://{}/search", proxy.addr);
    let first = proxy
        .send_body(Method::POST, url.clone(), "{\"q\":\"rust\"}")
        .await;
    assert_eq!(
        (first.1.as_str(), first.2.as_str()),
        ("cachet; fwd=uri-miss; stored", "POST of 12 bytes")
    );
    let again = proxy
        .send_body(Method::POST, url.clone(), "{\"q\":\"rust\"}")
        .await;
    assert_eq!(
        (again.1.as_str(), again.2.as_str()),
        ("cachet; hit", "POST of 12 bytes")
    );
    let other = proxy
        .send_body(Method::POST, url.clone(), "{\"q\":\"go\"}")
        .await;
    assert_eq!(other.1, "cachet; fwd=uri-miss; stored");
    assert_eq!(origin.requests(), 2);

    // Purging the URL removes what its POSTs stored too.
    let stored_url = format!("{}/search", origin.url(""));
    let (status, purged) = proxy
        .admin(Method::POST, &format!("/entries/purge?url={stored_url}"))
        .await;
    assert_eq!(
        (status, purged),
        (200, format!("deleted 2 entries for {stored_url}\n"))
    );
    let again = proxy.send_body(Method::POST, url, "{\"q\":\"rust\"}").await;
    assert_eq!(again.1, "cachet; fwd=uri-miss; stored");
}

#[tokio::test]
async fn an_entry_whose_times_no_http_date_can_say_is_listed_with_a_dash() {
    // `Age` at RFC 9111's cap puts the end of freshness some 68 years before the
    // response arrived: before 1970, which no HTTP date can say.
    let origin = Origin::start(|_| {
        Reply::ok("aged")
            .header("cache-control", "max-age=60")
            .header("age", "2147483648")
            .header("etag", "\"v1\"")
    })
    .await;
    let proxy = Running::start(&format!(
        "upstream = \"{}\"\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n",
        origin.url("")
    ))
    .await;
    proxy.get("/aged").await;
    let (status, listed) = proxy.admin(Method::GET, "/entries").await;
    assert_eq!(status, 200, "{listed}");
    assert!(
        listed.contains("\tstale\tstored ") && listed.ends_with("\tfresh until -\n"),
        "{listed}"
    );
    let url = origin.url("/aged");
    let (status, shown) = proxy
        .admin(Method::GET, &format!("/entries/show?url={url}"))
        .await;
    assert_eq!(status, 200, "{shown}");
}
