//! The listener, the service stack each connection is served with, and graceful shutdown.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use cachet::{CacheBody, CacheLayer, CacheStatus, OneLine};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder};

pub(crate) mod connections;
mod read_ahead;

use connections::{Accepted, Listener};
use read_ahead::ReadAheadBound;

use crate::admin;
use crate::store::{self, ProxyStore};
use crate::upstream::{self, Forward, HttpClient, UpstreamBody, Via, reply};
use crate::{Config, Error};

/// The body of every response the proxy sends: the cache's, or a short one of its own.
type ProxyBody = Either<CacheBody<UpstreamBody>, Full<Bytes>>;

/// A caching reverse proxy, bound to its address and ready to serve.
///
/// ```
/// use cachet_proxy::{Config, Proxy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_args([
///     "cachet-proxy",
///     "--upstream", "http://127.0.0.1:3000",
///     "--listen", "127.0.0.1:0",
/// ])?;
/// let proxy = Proxy::bind(config).await?;
/// println!("listening on {}", proxy.local_addr());
/// // Serves until the shutdown future completes: here, at once.
/// proxy.serve(async {}).await?;
/// # Ok(())
/// # }
/// ```
pub struct Proxy {
    listener: TcpListener,
    local_addr: SocketAddr,
    admin: Option<TcpListener>,
    config: Config,
    client: HttpClient,
    store: ProxyStore,
    /// What this proxy adds to `Via`: its own pseudonym, by which it knows a request that
    /// has come back to it.
    via: Via,
}

impl Proxy {
    /// Binds the listening address and sets up the upstream client.
    ///
    /// # Errors
    ///
    /// An error whose message names the address when it cannot be bound (for example,
    /// it is in use; [`Error::is_bind`]), or when the TLS client cannot be set up
    /// ([`Error::is_tls`]).
    pub async fn bind(config: Config) -> Result<Proxy, Error> {
        let store = store::build(&config, store::Purpose::Serving).await?;
        Self::bind_with(config, store).await
    }

    /// Binds with a store made by the caller (tests reach into it).
    pub(crate) async fn bind_with(config: Config, store: ProxyStore) -> Result<Proxy, Error> {
        let addr = config.listen();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::bind(addr, "--listen, or listen in the config file", e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::bind(addr, "--listen, or listen in the config file", e))?;
        let admin = match config.admin_listen() {
            Some(addr) => Some(admin::bind(addr).await.map_err(|e| {
                Error::bind(
                    addr,
                    "--admin-listen, or admin_listen in the config file",
                    e,
                )
            })?),
            None => None,
        };
        let client = upstream::client()?;
        Ok(Self {
            listener,
            local_addr,
            admin,
            config,
            client,
            store,
            via: Via::random(),
        })
    }

    /// The address the proxy listens on; with port 0 in the configuration, the port the
    /// system chose.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's address (`--admin-listen`), if it is on; with port 0 in the
    /// configuration, the port the system chose.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .and_then(|admin| admin.local_addr().ok())
    }

    /// The configuration the proxy was bound with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Serves HTTP/1.1 and HTTP/2 (cleartext, by prior knowledge) until `shutdown`
    /// completes, then shuts down gracefully: it stops accepting, lets requests in flight
    /// finish, closes idle connections, and returns once every connection is closed, or
    /// once the upstream timeout has passed (a request in flight waits no longer for its
    /// answer's head; a client that never acknowledges the close, or a stream that never
    /// ends, holds the proxy no longer), closing those still open.
    ///
    /// An error accepting one connection is logged and does not stop the proxy; nor does
    /// one that fails them all (such as running out of file descriptors), logged once
    /// every few seconds with the count of those held back, while accepting is retried.
    /// A client silent for [`Config::client_timeout`] is closed, and at most
    /// [`Config::max_connections`] are open at once: past that, the next client waits to
    /// be accepted until one closes.
    ///
    /// # Errors
    ///
    /// None yet once bound; the `Result` leaves room for failures of later features.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let Self {
            listener,
            local_addr,
            admin,
            config,
            client,
            store,
            via,
        } = self;
        let cache = config.cache_layer(store);
        // The admin endpoints share the cache's store, keys and clock; they stop with the
        // proxy.
        let admin = admin.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("admin endpoints on http://{addr}/entries");
            }
            tokio::spawn(admin::serve(
                Listener::new(listener, config.limits(), "admin listener"),
                cache.entries(),
            ))
        });
        let forward = Forward::new(
            client,
            config.upstream_timeout(),
            config.trust_forwarded(),
            config.keys(),
        );
        let builder = config.limits().builder();
        let mut listener = Listener::new(listener, config.limits(), "proxy");
        let graceful = GracefulShutdown::new();
        // The connections' tasks, so that those still open when the drain's bound has
        // passed are closed, not left running.
        let mut connections = tokio::task::JoinSet::new();
        let mut shutdown = pin!(shutdown);

        tracing::info!("listening on {local_addr}, upstream {}", config.upstream());
        loop {
            let Accepted { stream, peer, slot } = tokio::select! {
                biased;
                () = shutdown.as_mut() => break,
                accepted = listener.accept() => accepted,
            };
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
            }
            // A stack per connection: what goes upstream says which client it came from.
            let service = stack(&config, &via, forward.for_client(peer.ip()), cache.clone());
            let service = TowerToHyperService::new(service);
            let stream = TokioIo::new(listener.deadline(stream));
            let connection = builder.serve_connection(stream, service);
            let connection = graceful.watch(connection.into_owned());
            connections.spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                drop(slot);
            });
            // Those that ended are let go, so that the set holds only what is open.
            while connections.try_join_next().is_some() {}
        }

        drop(listener);
        if let Some(admin) = admin {
            admin.abort();
        }
        tracing::info!(
            connections = graceful.count(),
            "shutting down; letting requests in flight finish"
        );
        let drain = config.upstream_timeout();
        match tokio::time::timeout(drain, graceful.shutdown()).await {
            Ok(()) => tracing::info!("stopped"),
            Err(_) => tracing::warn!("stopped after {drain:?}, closing the connections still open"),
        }
        connections.abort_all();
        Ok(())
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("local_addr", &self.local_addr)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The service every request goes through: rewrite for the upstream, cache, forward.
///
/// Its error type is the cache's, but only readiness can fail that way, and readiness of
/// [`Forward`] never fails: every error a call meets becomes a response.
fn stack(
    config: &Config,
    via: &Via,
    forward: Forward,
    cache: CacheLayer<ProxyStore>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = cachet::Error,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    let target = Arc::new((config.target().clone(), via.clone()));
    let methods: Arc<[Method]> = config.methods_cached_by_body().collect();
    let timeout = config.upstream_timeout();
    ServiceBuilder::new()
        .layer_fn(move |inner| ReadAheadBound::new(inner, methods.clone(), timeout))
        .map_result(finish)
        .map_request(move |request: Request<Incoming>| {
            let (upstream, via) = &*target;
            upstream.rewrite(request, via)
        })
        .layer(config.body_key_layer())
        .layer(cache)
        .service(forward)
}

/// Turns what the cache answered into the response sent downstream: the proxy's own HTTP
/// version, and an error as a `502`. It has no hop-by-hop headers: [`Forward`] removed the
/// upstream's before the cache saw them.
fn finish(
    result: Result<Response<CacheBody<UpstreamBody>>, cachet::Error>,
) -> Result<Response<ProxyBody>, cachet::Error> {
    let mut response = match result {
        Ok(response) => response.map(Either::Left),
        Err(error) => {
            let message = OneLine(&error).to_string();
            tracing::warn!("{message}");
            let mut refused = reply(StatusCode::BAD_GATEWAY, message);
            // As every answer does, it says what the cache did: here, what stopped it.
            let detail = if error.is_bad_signature() {
                "cachet; detail=bad-signature"
            } else {
                "cachet; detail=error"
            };
            refused.headers_mut().insert(
                HeaderName::from_static("cache-status"),
                HeaderValue::from_static(detail),
            );
            refused.map(Either::Right)
        }
    };
    // The proxy speaks its own version (RFC 9110 §6.2), whatever the upstream or a stored
    // entry says; hyper's HTTP/1 server cannot write some versions at all.
    *response.version_mut() = Version::HTTP_11;
    tracing::debug!(
        status = response.status().as_u16(),
        cache = ?response.extensions().get::<CacheStatus>(),
        "response"
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::header::{CACHE_CONTROL, HeaderValue};
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use hyper_util::server::conn::auto;
    use std::time::Duration;

    use cachet::MemoryStore;
    use cachet::verify::{Keyring, Verify};

    use super::*;

    /// An origin that counts its requests and answers with a cacheable "hello".
    async fn origin() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let host = request.headers().get("host").cloned();
                    async move {
                        let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
                        response
                            .headers_mut()
                            .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
                        response
                            .headers_mut()
                            .insert("connection", HeaderValue::from_static("x-hop"));
                        response
                            .headers_mut()
                            .insert("x-hop", HeaderValue::from_static("1"));
                        if let Some(host) = host {
                            response.headers_mut().insert("x-seen-host", host);
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                tokio::spawn(async move {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                });
            }
        });
        (addr, count)
    }

    async fn get(client: &Client<HttpConnector, Full<Bytes>>, url: &str) -> (Response<()>, Bytes) {
        let request = Request::get(url)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = client.request(request).await.expect("the proxy answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (Response::from_parts(parts, ()), body)
    }

    fn status_of<B>(response: &Response<B>) -> &str {
        response.headers()["cache-status"]
            .to_str()
            .expect("cache-status is text")
    }

    #[tokio::test]
    async fn second_get_is_a_hit_over_http1_and_http2() {
        let (origin, count) = origin().await;
        let config = Config::from_args([
            "cachet-proxy",
            "--upstream",
            &format!("http://{origin}/base"),
            "--listen",
            "127.0.0.1:0",
        ])
        .expect("config");
        let proxy = Proxy::bind(config).await.expect("bind");
        let addr = proxy.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(proxy.serve(async {
            let _ = stopped.await;
        }));

        let http1 = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let (first, body) = get(&http1, &format!("http://{addr}/page")).await;
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(body, "hello");
        assert_eq!(
            first.headers()["cache-status"],
            "cachet; fwd=uri-miss; stored"
        );
        assert_eq!(first.headers()["x-seen-host"], origin.to_string().as_str());
        assert!(
            first.headers().get("x-hop").is_none(),
            "hop-by-hop headers are removed"
        );

        let (second, body) = get(&http1, &format!("http://{addr}/page")).await;
        assert!(status_of(&second).starts_with("cachet; hit; ttl="));
        assert_eq!(body, "hello");

        let http2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http::<Full<Bytes>>();
        let (third, body) = get(&http2, &format!("http://{addr}/page")).await;
        assert_eq!(third.version(), Version::HTTP_2);
        assert!(status_of(&third).starts_with("cachet; hit; ttl="));
        assert_eq!(body, "hello");
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "only the first request reaches the origin"
        );

        drop((http1, http2));
        stop.send(()).expect("the server is running");
        server
            .await
            .expect("serve does not panic")
            .expect("serve ends cleanly");
    }

    /// A proxy over a signed memory store whose unsigned inner store the test can write.
    async fn signed_proxy(
        origin: SocketAddr,
        extra: &[&str],
    ) -> (SocketAddr, MemoryStore, tokio::sync::oneshot::Sender<()>) {
        let upstream = format!("http://{origin}");
        let mut args = vec![
            "cachet-proxy",
            "--upstream",
            &upstream,
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let config = Config::from_args(args).expect("config");
        let inner = MemoryStore::default();
        let keyring = Keyring::new("proxy test key").expect("not empty");
        let store = tower::util::Either::Left(tower::util::Either::Right(Verify::new(
            tower::util::Either::Left(inner.clone()),
            keyring,
        )));
        let proxy = Proxy::bind_with(config, store).await.expect("bind");
        let addr = proxy.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(proxy.serve(async {
            let _ = stopped.await;
        }));
        (addr, inner, stop)
    }

    async fn tamper(inner: &MemoryStore, origin: SocketAddr, path: &str) {
        let uri: http::Uri = format!("http://{origin}{path}").parse().expect("valid URI");
        let key = cachet::CacheKey::for_request(&http::Method::GET, &uri).expect("absolute");
        let put = cachet::store::StoreRequest::Put {
            key,
            value: Bytes::from_static(b"exploit!").into(),
            ttl: Duration::from_secs(60),
        };
        tower::ServiceExt::oneshot(inner.clone(), put)
            .await
            .expect("memory never fails");
    }

    #[tokio::test]
    async fn a_bad_signature_answers_502_saying_so() {
        let (origin, count) = origin().await;
        let (addr, inner, _stop) = signed_proxy(origin, &[]).await;
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        get(&client, &format!("http://{addr}/signed")).await;
        let (hit, _) = get(&client, &format!("http://{addr}/signed")).await;
        assert!(status_of(&hit).starts_with("cachet; hit; ttl="));

        tamper(&inner, origin, "/signed").await;
        let (refused, body) = get(&client, &format!("http://{addr}/signed")).await;
        assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(status_of(&refused), "cachet; detail=bad-signature");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("failed signature verification"), "{body}");
        assert!(!body.contains("proxy test key"));
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refetch_repairs_a_bad_signature() {
        let (origin, count) = origin().await;
        let (addr, inner, _stop) = signed_proxy(origin, &["--on-bad-signature", "refetch"]).await;
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        get(&client, &format!("http://{addr}/signed")).await;
        tamper(&inner, origin, "/signed").await;
        let (repaired, body) = get(&client, &format!("http://{addr}/signed")).await;
        assert_eq!(
            (repaired.status(), body.as_ref()),
            (StatusCode::OK, b"hello".as_slice())
        );
        let (hit, _) = get(&client, &format!("http://{addr}/signed")).await;
        assert!(status_of(&hit).starts_with("cachet; hit; ttl="));
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn busy_address_is_a_bind_error_naming_it() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("addr");
        let config = Config::from_args([
            "cachet-proxy",
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            &addr.to_string(),
        ])
        .expect("config");
        let error = Proxy::bind(config)
            .await
            .expect_err("the address is in use");
        assert!(error.is_bind());
        assert_eq!(
            error.to_string(),
            format!("cannot listen on {addr} (--listen, or listen in the config file)")
        );

        // The admin listener's address, named by its own flag.
        let config = Config::from_args([
            "cachet-proxy",
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            &addr.to_string(),
        ])
        .expect("config");
        let error = Proxy::bind(config)
            .await
            .expect_err("the admin address is in use");
        assert!(error.is_bind());
        assert_eq!(
            error.to_string(),
            format!("cannot listen on {addr} (--admin-listen, or admin_listen in the config file)")
        );
    }
}
