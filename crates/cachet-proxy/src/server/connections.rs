//! What bounds a listener's connections, the proxy's and the admin one's alike: how long
//! a client may stay silent, how many connections may be open at once, and how often a
//! failing accept is logged.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// How long a client may stay silent unless [`Config::client_timeout`] says otherwise:
/// the bound hyper itself puts on an HTTP/1 request head.
///
/// [`Config::client_timeout`]: crate::Config::client_timeout
pub(crate) const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many connections may be open at once unless `--max-connections` says otherwise.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// How long to wait after an accept error that is not about one connection (such as
/// running out of file descriptors) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one accept error (or one "every slot is taken") is logged this often; the
/// rest are counted into the next one. Out of file descriptors, accept fails ten times a
/// second.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The HTTP/2 connection preface (RFC 9113 §3.4), which hyper-util reads to tell HTTP/2
/// from HTTP/1: it has chosen once the bytes stop matching it, or all of it has come.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A listener's bounds on its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// How long a client may be silent: before its first bytes, while sending an
    /// HTTP/1 request head, and before answering an HTTP/2 ping.
    pub(crate) client_timeout: Duration,
    /// How many connections may be open at once.
    pub(crate) max_connections: usize,
}

impl Limits {
    /// A connection builder whose timers close a silent client: HTTP/1 when its request
    /// head is not in within the bound, HTTP/2 when a ping sent after that long without
    /// a frame gets no answer within as long again.
    pub(crate) fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.client_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.client_timeout)
            .keep_alive_timeout(self.client_timeout);
        builder
    }
}

/// A listener that keeps at most [`Limits::max_connections`] open: each accepted
/// connection holds a slot until it is dropped, and with none free it accepts nothing
/// (clients wait in the system's backlog) until one is.
pub(crate) struct Listener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    limits: Limits,
    /// Which listener this is, in what it logs.
    name: &'static str,
    errors: Occasional,
    full: Occasional,
}

/// An accepted connection, with the slot it holds.
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) slot: OwnedSemaphorePermit,
}

impl Listener {
    pub(crate) fn new(listener: TcpListener, limits: Limits, name: &'static str) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            name,
            errors: Occasional::new(LOG_EVERY),
            full: Occasional::new(LOG_EVERY),
        }
    }

    /// The bounds it keeps.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The next connection, once a slot is free. Errors are logged (at most one each
    /// [`LOG_EVERY`]) and waited out. Cancel-safe: what it waits for is a slot, an
    /// accept or a back-off, none of which loses a connection when dropped.
    pub(crate) async fn accept(&mut self) -> Accepted {
        loop {
            if self.slots.available_permits() == 0
                && let Some(suppressed) = self.full.admit(Instant::now())
            {
                tracing::warn!(
                    suppressed,
                    "{}: {} connections open, the most allowed; accepting again when one closes",
                    self.name,
                    self.limits.max_connections
                );
            }
            let slot = Arc::clone(&self.slots)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            match self.listener.accept().await {
                Ok((stream, peer)) => return Accepted { stream, peer, slot },
                Err(error) if is_connection_error(&error) => {
                    tracing::debug!(%error, "{}: connection failed while being accepted", self.name);
                }
                Err(error) => {
                    if let Some(suppressed) = self.errors.admit(Instant::now()) {
                        tracing::error!(
                            %error,
                            suppressed,
                            "{}: cannot accept connections; retrying every {ACCEPT_BACKOFF:?}",
                            self.name
                        );
                    }
                    drop(slot);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    /// `stream`, closed with an error if it has not sent the bytes that tell its protocol
    /// within the client timeout.
    pub(crate) fn deadline(&self, stream: TcpStream) -> Deadline {
        Deadline {
            stream,
            read: 0,
            deadline: Some(Box::pin(tokio::time::sleep(self.limits.client_timeout))),
        }
    }
}

/// Errors that concern one connection, not the listener: accept the next one at once.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A connection whose protocol must be told before a deadline.
///
/// hyper-util reads the first bytes to choose HTTP/1 or HTTP/2 with no timer of its own,
/// and the HTTP/1 head timer and the HTTP/2 pings start only after it has chosen: a
/// client that sent nothing, or part of the HTTP/2 preface, would otherwise hold its
/// connection for ever. A read past the deadline fails with [`io::ErrorKind::TimedOut`].
/// The deadline is dropped as soon as hyper-util has chosen, not after a fixed count of
/// bytes: an HTTP/1.0 request may be shorter than the preface, and its answer, which
/// ends when the connection closes, would be cut off at the deadline.
pub(crate) struct Deadline {
    stream: TcpStream,
    /// The bytes read so far while all of them were the start of [`H2_PREFACE`].
    read: usize,
    /// `None` once the protocol is chosen (or the client has closed): hyper's timers take
    /// over.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for Deadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) => {
                let received = &buf.filled()[before..];
                // As hyper-util decides: HTTP/1 at the end of the stream or at the first
                // byte that is not the preface's, HTTP/2 once the whole preface is in.
                let preface_so_far = H2_PREFACE[this.read..].starts_with(received);
                this.read += received.len();
                if received.is_empty() || !preface_so_far || this.read == H2_PREFACE.len() {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent too little to start a request within the client timeout",
                )))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Deadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Lets one event through each period and counts the others, for a log that would
/// otherwise repeat as fast as a failure does.
#[derive(Debug)]
struct Occasional {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Occasional {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(how many were held back since the last one let through)` when this one
    /// may be logged; `None`, counted, when it comes too soon.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_error_is_logged_once_a_period_with_the_count_held_back() {
        let start = Instant::now();
        let mut log = Occasional::new(Duration::from_secs(10));
        assert_eq!(log.admit(start), Some(0));
        for tenth in 1..100 {
            assert_eq!(log.admit(start + Duration::from_millis(tenth * 100)), None);
        }
        assert_eq!(log.admit(start + Duration::from_secs(10)), Some(99));
        assert_eq!(log.admit(start + Duration::from_secs(11)), None);
        assert_eq!(log.admit(start + Duration::from_secs(60)), Some(1));
    }
}
