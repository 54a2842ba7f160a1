//! The `cachet-proxy` program: reads the command line, then runs [`cachet_proxy::Proxy`]
//! until Ctrl-C (or SIGTERM).

use std::io::IsTerminal;
use std::process::ExitCode;

use cachet::OneLine;
use cachet::verify::Keyring;
use cachet_proxy::{Invocation, Proxy, UsageError, run_entries};
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
                init_logs(std::io::stderr, std::io::stderr().is_terminal());
                return match run_entries(&config, &command).await {
                    Ok(out) => print(&out),
                    Err(error) => {
                        eprintln!("cachet-proxy: {}", OneLine(&error));
                        ExitCode::FAILURE
                    }
                };
            }
            Err(error) => return usage_error(error),
        };
    init_logs(std::io::stdout, std::io::stdout().is_terminal());

    // The first signal starts a graceful shutdown; a second one ends it at once. The
    // listeners are made once, before serving: one made after the first signal would miss
    // a second that came close behind it.
    let mut signals = Signals::new();
    let (first, signalled) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        signals.next().await;
        let _ = first.send(signals);
    };
    let serving = async { Proxy::bind(config).await?.serve(shutdown).await };
    let second = async {
        match signalled.await {
            Ok(mut signals) => signals.next().await,
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let result = tokio::select! {
        result = serving => result,
        () = second => {
            eprintln!("cachet-proxy: a second signal; stopping with connections still open");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cachet-proxy: {}", OneLine(&error));
            ExitCode::FAILURE
        }
    }
}

/// Logs through `tracing` to `writer`, at `info` unless `RUST_LOG` says otherwise, in
/// colour only on a terminal (`ansi`): a file or a pipe gets plain text.
fn init_logs<W>(writer: W, ansi: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .init();
}

/// Prints a new secret key for `--secret-key-env`.
fn keygen() -> ExitCode {
    match Keyring::generate_secret() {
        Ok(secret) => print(&format!("{secret}\n")),
        Err(error) => {
            eprintln!("cachet-proxy: cannot make a key: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout. A reader that stopped reading (`| head`) ends the program
/// quietly; any other failure (a full disk) is one line on stderr, not a panic.
fn print(text: &str) -> ExitCode {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cachet-proxy: cannot write to stdout: {error}");
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
    eprintln!("cachet-proxy: {}", OneLine(&error));
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}

/// Ctrl-C and, on Unix, SIGTERM, listened for from the moment they are made (elsewhere,
/// Ctrl-C from each wait on). A signal that cannot be listened for is logged and never
/// comes.
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(listening) => Some(listening),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for {name}");
                    None
                }
            };
            Self {
                interrupt: listen(SignalKind::interrupt(), "Ctrl-C"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Completes on the next signal.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = recv(self.interrupt.as_mut()) => {}
                () = recv(self.terminate.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown signal received");
    }
}
