//! The `cachet-proxy` program: reads the command line, then runs [`cachet_proxy::Proxy`]
//! until Ctrl-C (or SIGTERM).

use std::process::ExitCode;

use cachet::verify::Keyring;
use cachet_proxy::{Invocation, Proxy, UsageError, one_line, run_entries};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// The program's allocator: a proxy allocates and frees a few small buffers per request
/// on every worker thread, which mimalloc's thread-local free lists serve faster than the
/// system allocator. The library crates set none; an embedder chooses its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config =
        match Invocation::from_args_and_env(std::env::args_os(), |name| std::env::var_os(name)) {
            Ok(Invocation::Serve(config)) => *config,
            Ok(Invocation::Keygen) => return keygen(),
            Ok(Invocation::Entries { config, command }) => {
                // Its logs (a Redis that does not answer) go to stderr, so that stdout
                // holds the answer alone.
                init_logs(std::io::stderr);
                return match run_entries(&config, &command).await {
                    Ok(out) => {
                        print!("{out}");
                        ExitCode::SUCCESS
                    }
                    Err(error) => {
                        eprintln!("cachet-proxy: {}", one_line(&error));
                        ExitCode::FAILURE
                    }
                };
            }
            Err(error) => return usage_error(error),
        };
    init_logs(std::io::stdout);

    let result = async { Proxy::bind(config).await?.serve(shutdown_signal()).await }.await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cachet-proxy: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// Logs through `tracing` to `writer`, at `info` unless `RUST_LOG` says otherwise.
fn init_logs<W>(writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .init();
}

/// Prints a new secret key for `--secret-key-env`.
fn keygen() -> ExitCode {
    match Keyring::generate_secret() {
        Ok(secret) => {
            println!("{secret}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cachet-proxy: cannot make a key: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a usage error on one line, or the help or version that was asked for.
fn usage_error(error: UsageError) -> ExitCode {
    if let Some(error) = error.command_line()
        && !error.use_stderr()
    {
        error.exit();
    }
    eprintln!("cachet-proxy: {}", one_line(&error));
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}

/// Completes on Ctrl-C or, on Unix, SIGTERM. A signal that cannot be listened for is
/// logged and never fires.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
