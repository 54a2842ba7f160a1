//! Benchmarks of cachet beside its peers, in one binary and one run.
//!
//! This crate is not published. It holds criterion benches that run cachet, a floor and
//! the Rust peers ([http-cache-tower] with its moka manager, [tower-http-cache] with its
//! in-memory backend) side by side, so that their figures come from the same run:
//!
//! - `benches/hit.rs`: a fresh in-memory hit at 1 KiB and 100 KiB, one task and two
//!   concurrent tasks, beside the floor and both peers;
//! - `benches/forward.rs`: what cachet adds to requests that reach a real origin over a
//!   real hyper-util client: a miss (first and last byte), a pass-through (a `POST`, a
//!   `no-store` response) and a burst of concurrent misses for one key (how many reach
//!   the origin).
//! - `benches/pass.rs`: cachet's own cost on a pass-through (a `POST`, a `no-store`
//!   response), in process, beside the bare stand-in origin.
//!
//! ```sh
//! cargo bench -p cachet-bench -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The library itself is only what the benches and `scripts/load.sh` share: [`Origin`],
//! a small hyper origin server on loopback, [`read_body`], in [`hit`] the hit bench's
//! request, origin response and floor (shared with the `profile_hit` example), and in
//! [`pass`] the pass-through bench's requests and stand-in origin (shared with the
//! `profile_pass` example). The `origin` example runs the same origin on a fixed address
//! for the load script.
//!
//! [http-cache-tower]: https://docs.rs/http-cache-tower
//! [tower-http-cache]: https://docs.rs/tower-http-cache

pub mod hit;
pub mod pass;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// The largest body the origin serves.
pub const MAX_BODY: usize = 1 << 20;

/// The `Cache-Control` of the origin's storable responses.
pub const CACHEABLE: &str = "public, max-age=3600";

/// A small HTTP/1.1 origin on loopback, counting the requests it answers.
///
/// It serves, for any method:
///
/// - `/bytes/{n}`: `n` bytes (at most [`MAX_BODY`]) with `Cache-Control: public,
///   max-age=3600`, storable by any shared cache;
/// - `/no-store/{n}`: the same body with `Cache-Control: no-store`;
/// - `/requests`: the number of requests answered before this one, as text, with
///   `Cache-Control: no-store` (for `scripts/load.sh` to check that the load was hits);
///
/// after reading the request body whole. A query string is ignored, except
/// `delay_ms={ms}`, which holds the answer back that long. Anything else is a 404.
///
/// [`Origin::start`] runs it on the runtime the benched client runs on, so that a
/// request's round trip costs the work of both ends and not the time the kernel takes to
/// wake another thread (which on loopback varies threefold with the machine's other
/// load). Dropping the handle stops accepting connections.
#[derive(Debug)]
pub struct Origin {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    task: JoinHandle<io::Result<()>>,
}

impl Origin {
    /// Starts an origin on a free port of 127.0.0.1, as a task on `runtime`.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound: a bench cannot run without its origin.
    pub fn start(runtime: &Handle) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .expect("a loopback port is free");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let listener = {
            let _runtime = runtime.enter();
            TcpListener::from_std(listener).expect("the runtime takes the listener")
        };
        let requests = Arc::new(AtomicU64::new(0));
        let task = runtime.spawn(serve(listener, requests.clone()));
        Self {
            addr,
            requests,
            task,
        }
    }

    /// The origin's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An absolute `http://` URL of `path_and_query` on this origin.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// The number of requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the [`Origin`]'s routes on `listener` until the future is dropped, counting
/// every request answered in `requests`.
///
/// # Errors
///
/// Only if accepting a connection fails; an error on one connection ends that connection.
pub async fn serve(listener: TcpListener, requests: Arc<AtomicU64>) -> io::Result<()> {
    let bodies = Bytes::from(vec![b'x'; MAX_BODY]);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let bodies = bodies.clone();
        let requests = requests.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let bodies = bodies.clone();
                let requests = requests.clone();
                async move {
                    let response = answer(request, &bodies, &requests).await;
                    requests.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    bodies: &Bytes,
    requests: &AtomicU64,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    if body.collect().await.is_err() {
        return status(StatusCode::BAD_REQUEST);
    }
    let query = parts.uri.query().unwrap_or("");
    if let Some(ms) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("delay_ms="))
        .and_then(|ms| ms.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let path = parts.uri.path();
    if path == "/requests" {
        let count = requests.load(Ordering::SeqCst).to_string();
        let mut response = Response::new(Full::new(Bytes::from(count)));
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return response;
    }
    let (cache_control, len) = if let Some(len) = path.strip_prefix("/bytes/") {
        (CACHEABLE, len)
    } else if let Some(len) = path.strip_prefix("/no-store/") {
        ("no-store", len)
    } else {
        return status(StatusCode::NOT_FOUND);
    };
    let Some(len) = len.parse::<usize>().ok().filter(|len| *len <= MAX_BODY) else {
        return status(StatusCode::NOT_FOUND);
    };
    let mut response = Response::new(Full::new(bodies.slice(..len)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    response
}

fn status(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = status;
    response
}

/// Reads a body to its end, dropping each frame as it comes, and returns its length.
///
/// # Errors
///
/// The body's own error, if a frame fails.
pub async fn read_body<B: Body>(body: B) -> Result<usize, B::Error> {
    let mut body = std::pin::pin!(body);
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            len += data.remaining();
        }
    }
    Ok(len)
}

/// Sends `n` requests made by `request` through `service`, one after another, reading
/// each body to its end and checking that it is `size` bytes long: the loop every bench
/// and profiling example measures.
///
/// # Panics
///
/// If the service or a body fails, or a body is not `size` bytes long: a bench must not
/// measure anything else.
pub async fn send<S, B>(service: &mut S, n: u64, size: usize, mut request: impl FnMut() -> hit::Req)
where
    S: tower::Service<hit::Req, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    use tower::ServiceExt;

    for _ in 0..n {
        let response = service
            .ready()
            .await
            .expect("the service is ready")
            .call(request())
            .await
            .expect("the request succeeds");
        let len = read_body(response.into_body())
            .await
            .expect("the body reads to its end");
        assert_eq!(len, size, "the whole body came back");
    }
}
