//! Managing what the proxy stores: the `entries` subcommand (for a Redis store, which
//! outlives the proxy) and the admin HTTP listener (`--admin-listen`, for any store,
//! the memory store included). Both run the same [`EntriesCommand`] and print the same
//! lines.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cachet::OneLine;
use cachet::manage::{Entries, EntryInfo, EntryKind, Error as ManageError};
use cachet::store::{Cursor, Store};
use clap::Subcommand;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::server::connections::{Accepted, Listener};
use crate::{Config, Error, StoreChoice, store};

/// Runs an `entries` command against the store `config` names, as `cachet-proxy entries`
/// does; returns the lines to print.
///
/// # Errors
///
/// [`Error::is_entries`] when the store refuses the command, or when it is the memory
/// store, which lives inside a running proxy (use its admin listener); an error of the
/// store's own set-up otherwise.
pub async fn run_entries(config: &Config, command: &EntriesCommand) -> Result<String, Error> {
    if *config.store() == StoreChoice::Memory {
        return Err(Error::entries(
            "the memory store lives inside a running proxy: start it with --admin-listen \
             ADDR and use http://ADDR/entries",
        ));
    }
    let store = store::build(config, store::Purpose::Command).await?;
    let entries = config.cache_layer(store).entries();
    command.run(&entries).await.map_err(Error::entries)
}

/// The most entries `entries list` shows unless `--limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;

/// The most entries one page may ask for: a page is one store operation (for Redis, one
/// `SCAN` and scripts reading about a megabyte of what it found each), and its entries
/// are held together, so it stays small.
const MAX_LIMIT: usize = 1000;

/// A page size from outside: a whole number from 1 to [`MAX_LIMIT`]. The error says what
/// is expected; clap, and the admin listener, say what was given.
fn parse_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(limit @ 1..=MAX_LIMIT) => Ok(limit),
        _ => Err(format!("expected a whole number from 1 to {MAX_LIMIT}")),
    }
}

/// What `cachet-proxy entries` (or the admin listener) does.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum EntriesCommand {
    /// List stored entries, a page at a time: key, kind, status, size, fresh, stale or
    /// invalidated, stored at, fresh until; then the cursor of the next page, if any
    List {
        /// About how many entries to show (a store may return a few more or fewer), from
        /// 1 to 1000
        #[arg(long, default_value_t = DEFAULT_LIMIT, value_parser = parse_limit)]
        limit: usize,
        /// Where to start: the cursor a previous page ended with
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show what is stored for one URL (GET and HEAD, every variant)
    Show {
        /// The URL, as the proxy's clients see it upstream: http://HOST/PATH?QUERY
        url: String,
    },
    /// Delete what is stored for one URL (GET and HEAD, every variant)
    Purge {
        /// The URL, as in `show`
        url: String,
    },
    /// Delete every stale entry, and every variant an invalidation hid
    PurgeExpired,
    /// Delete every entry under the store's namespace
    Clear,
    /// Count the entries and their bytes
    Stats,
}

impl EntriesCommand {
    /// Runs the command over `entries`; returns the lines to print.
    ///
    /// # Errors
    ///
    /// The store's error, or an invalid URL or cursor, each with a one-line message.
    pub async fn run<St: Store>(&self, entries: &Entries<St>) -> Result<String, ManageError> {
        let mut out = String::new();
        match self {
            Self::List { limit, cursor } => {
                let cursor = cursor.as_deref().map_or_else(Cursor::start, Cursor::new);
                let page = entries.list(cursor, *limit).await?;
                for entry in &page.entries {
                    line(&mut out, entry);
                }
                if let Some(next) = page.next {
                    let _ = writeln!(out, "next: {}", next.as_str());
                }
            }
            Self::Show { url } => {
                let found = entries.show(url).await?;
                if found.is_empty() {
                    let _ = writeln!(out, "nothing stored for {url}");
                }
                for entry in &found {
                    line(&mut out, entry);
                }
            }
            Self::Purge { url } => {
                let deleted = entries.delete_url(url).await?;
                let _ = writeln!(out, "deleted {deleted} entries for {url}");
            }
            Self::PurgeExpired => {
                let deleted = entries.delete_expired().await?;
                let _ = writeln!(out, "deleted {deleted} stale or invalidated entries");
            }
            Self::Clear => {
                entries.clear().await?;
                let _ = writeln!(out, "cleared");
            }
            Self::Stats => {
                let stats = entries.stats().await?;
                let _ = writeln!(out, "{} entries, {} bytes", stats.entries, stats.bytes);
            }
        }
        Ok(out)
    }
}

/// One entry as a tab-separated line: key, kind, status, size, state (`fresh`, `stale`,
/// or `invalidated` for a variant an invalidation hid), stored at, fresh until (`-`
/// where unknown, or where no HTTP date can say it).
fn line(out: &mut String, entry: &EntryInfo) {
    let kind = kind_name(entry.kind);
    let status = entry
        .status
        .map_or_else(|| "-".to_owned(), |s| s.as_u16().to_string());
    let state = match (entry.kind, entry.invalidated, entry.stale) {
        (EntryKind::Response, true, _) => "invalidated",
        (EntryKind::Response, false, true) => "stale",
        (EntryKind::Response, false, false) => "fresh",
        _ => "-",
    };
    let date =
        |time: Option<SystemTime>| time.and_then(http_date).unwrap_or_else(|| "-".to_owned());
    let _ = writeln!(
        out,
        "{}\t{kind}\t{status}\t{} bytes\t{state}\tstored {}\tfresh until {}",
        entry.key,
        entry.size,
        date(entry.stored_at),
        date(entry.fresh_until),
    );
}

/// An entry's kind as a line shows it (docs/proxy.md says what each is).
fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Response => "response",
        EntryKind::Variants => "variants",
        EntryKind::BadSignature => "bad-signature",
        _ => "unreadable",
    }
}

/// `time` as an HTTP date, `None` for one no HTTP date can say (before 1970, after 9999):
/// an entry's times come from its response's `Date` and `Age`, which may say anything.
fn http_date(time: SystemTime) -> Option<String> {
    const LAST: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    (since.as_secs() <= LAST).then(|| httpdate::fmt_http_date(time))
}

/// The admin listener: the `entries` commands over HTTP, for a proxy whose store lives in
/// its own memory.
///
/// | request | command |
/// |---|---|
/// | `GET /entries?limit=N&cursor=C` | `list` |
/// | `GET /entries/show?url=URL` | `show` |
/// | `GET /entries/stats` | `stats` |
/// | `POST /entries/purge?url=URL` | `purge` |
/// | `POST /entries/purge-expired` | `purge-expired` |
/// | `POST /entries/clear` | `clear` |
///
/// Answers are `text/plain`, the lines `cachet-proxy entries` prints; a bad request (a
/// parameter the endpoint does not take among them) gets `400` and a failing store `502`,
/// each with a one-line reason.
///
/// It stops with the task that runs it: its connections are tasks of a set that is
/// dropped, and so aborted, with it. Its connections are bounded as the proxy's are: a
/// silent client is closed, and at most as many are open at once.
pub(crate) async fn serve<St: Store + Sync>(mut listener: Listener, entries: Entries<St>) {
    let builder = listener.limits().builder();
    let mut connections = JoinSet::new();
    loop {
        let Accepted { stream, slot, .. } = listener.accept().await;
        // Forget the connections that have ended.
        while connections.try_join_next().is_some() {}
        let entries = entries.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let entries = entries.clone();
            async move { Ok::<_, std::convert::Infallible>(answer(&request, &entries).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(listener.deadline(stream)), service)
            .into_owned();
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "admin connection ended");
            }
            drop(slot);
        });
    }
}

/// Binds the admin listener's address; a non-loopback one is allowed (it was asked for)
/// but logged, since the listener has no authentication.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, std::io::Error> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the admin listener has no authentication and listens beyond loopback");
    }
    TcpListener::bind(addr).await
}

async fn answer<St: Store>(
    request: &Request<Incoming>,
    entries: &Entries<St>,
) -> Response<Full<Bytes>> {
    let command = match command(request) {
        Ok(command) => command,
        Err(refused) => return *refused,
    };
    match command.run(entries).await {
        Ok(out) => text(StatusCode::OK, out),
        Err(error) if error.is_invalid_url() => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
        Err(error) if error.is_invalid_cursor() => {
            text(StatusCode::BAD_REQUEST, format!("{}\n", OneLine(&error)))
        }
        Err(error) if error.is_unsupported() => {
            text(StatusCode::NOT_IMPLEMENTED, format!("{error}\n"))
        }
        Err(error) => text(StatusCode::BAD_GATEWAY, format!("{}\n", OneLine(&error))),
    }
}

/// The command a request asks for, or the answer it is refused with.
fn command(request: &Request<Incoming>) -> Result<EntriesCommand, Refusal> {
    // A web page must not drive these endpoints (cross-site request forgery): what a
    // browser sends from a page carries `Origin` or `Sec-Fetch-Site`; curl and scripts
    // send neither.
    let headers = request.headers();
    let from_a_page = headers.contains_key(http::header::ORIGIN)
        || headers
            .get("sec-fetch-site")
            .is_some_and(|site| site != "none");
    if from_a_page {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "requests from web pages are refused\n",
        ));
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    // A parameter given twice, or not text once decoded, is refused rather than read as
    // one of its guesses.
    let param = |name: &str| {
        let mut values = query.iter().filter(|(key, _)| key == name);
        let bad = |why: &str| {
            Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("the {name} parameter {why}\n"),
            ))
        };
        match (values.next(), values.next()) {
            (Some(_), Some(_)) => bad("is given more than once"),
            (Some((_, value)), None) if value.contains('\u{FFFD}') => {
                bad("is not UTF-8 text once percent-decoded")
            }
            (Some((_, value)), None) if name == "url" && value.contains(' ') => {
                bad("holds a space: percent-encode it (in a query, + is a space)")
            }
            (value, _) => Ok(value.map(|(_, value)| value.clone())),
        }
    };
    // The parameters an endpoint reads; any other is refused, not ignored: an unencoded
    // `&` in a url (or in a cursor, which may hold one) cuts it short there, and the request
    // would act on another URL than the one meant.
    let only = |path: &str, names: &[&str]| {
        let Some((unknown, _)) = query.iter().find(|(key, _)| !names.contains(&key.as_str()))
        else {
            return Ok(());
        };
        let takes = if names.is_empty() {
            "no parameters".to_owned()
        } else {
            format!("only {}", names.join(" and "))
        };
        // Decoded from the query, it may hold a line break: escaped, the reason stays one line.
        let unknown = unknown.escape_debug();
        let mut message = format!("unknown parameter '{unknown}': {path} takes {takes}");
        if let Some((holder, _)) = query
            .iter()
            .find(|(key, _)| key == "url" || key == "cursor")
        {
            let _ = write!(message, "; percent-encode each & in the {holder} as %26");
        }
        Err(refuse(StatusCode::BAD_REQUEST, message + "\n"))
    };
    let url = || {
        param("url")?.ok_or_else(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                "the url query parameter is required\n",
            )
        })
    };
    let (get, post) = (Method::GET, Method::POST);
    let command = match (request.uri().path(), request.method()) {
        (path @ "/entries", m) if *m == get => {
            only(path, &["limit", "cursor"])?;
            EntriesCommand::List {
                limit: match param("limit")? {
                    None => DEFAULT_LIMIT,
                    Some(limit) => parse_limit(&limit).map_err(|reason| {
                        let message = format!("invalid limit '{limit}': {reason}\n");
                        refuse(StatusCode::BAD_REQUEST, message)
                    })?,
                },
                cursor: param("cursor")?,
            }
        }
        (path @ "/entries/show", m) if *m == get => {
            only(path, &["url"])?;
            EntriesCommand::Show { url: url()? }
        }
        (path @ "/entries/stats", m) if *m == get => {
            only(path, &[])?;
            EntriesCommand::Stats
        }
        (path @ "/entries/purge", m) if *m == post => {
            only(path, &["url"])?;
            EntriesCommand::Purge { url: url()? }
        }
        (path @ "/entries/purge-expired", m) if *m == post => {
            only(path, &[])?;
            EntriesCommand::PurgeExpired
        }
        (path @ "/entries/clear", m) if *m == post => {
            only(path, &[])?;
            EntriesCommand::Clear
        }
        ("/entries" | "/entries/show" | "/entries/stats", method) => {
            return Err(not_allowed(method, "GET"));
        }
        ("/entries/purge" | "/entries/purge-expired" | "/entries/clear", method) => {
            return Err(not_allowed(method, "POST"));
        }
        (path, _) => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {path}\n"),
            ));
        }
    };
    Ok(command)
}

/// A `405` that names the method the endpoint takes (RFC 9110 §15.5.6).
fn not_allowed(method: &Method, allowed: &'static str) -> Refusal {
    let mut refused = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed here\n"),
    );
    refused
        .headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allowed));
    refused
}

/// The answer to a request the admin listener refuses, boxed: it is the large side of a
/// `Result`.
type Refusal = Box<Response<Full<Bytes>>>;

fn refuse(status: StatusCode, reason: impl Into<Bytes>) -> Refusal {
    Box::new(text(status, reason))
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guide_says_what_each_kind_of_entry_is() {
        let guide = include_str!("../../../docs/proxy.md");
        for kind in [
            EntryKind::Response,
            EntryKind::Variants,
            EntryKind::BadSignature,
            EntryKind::Unreadable,
        ] {
            let item = format!("- `{}`: ", kind_name(kind));
            assert!(guide.contains(&item), "docs/proxy.md does not list {item}");
        }
        // Why a signed store lists as unreadable to an `entries` without the secrets.
        assert!(guide.contains("`unreadable` when `entries` is run without the signing secrets"));
    }
}
