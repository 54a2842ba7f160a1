//! The benches' origin on a fixed address, for `scripts/load.sh`.
//!
//! ```sh
//! cargo run --release -p cachet-bench --example origin -- 127.0.0.1:18080
//! ```
//!
//! Serves `/bytes/{n}` with `Cache-Control: public, max-age=3600` (see
//! [`cachet_bench::Origin`]) until interrupted (`SIGINT` or `SIGTERM`), then prints the
//! number of requests it answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    let requests = Arc::new(AtomicU64::new(0));
    let mut terminate = signal(SignalKind::terminate())?;
    println!("origin listening on http://{}", listener.local_addr()?);
    tokio::select! {
        served = cachet_bench::serve(listener, requests.clone()) => served?,
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    println!(
        "origin answered {} requests",
        requests.load(Ordering::SeqCst)
    );
    Ok(())
}
