//! The proxy's error type.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;

use cachet::BoxError;

use crate::ConfigFileError;

/// Why the proxy could not start or run.
///
/// The message names what failed (such as the address that could not be bound);
/// [`source`](StdError::source) holds the underlying cause.
pub struct Error {
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Debug)]
enum Kind {
    /// An address to listen on, and the settings that name it.
    Bind(SocketAddr, &'static str),
    Tls,
    Entries,
    Store,
}

impl Error {
    /// `addr`, named by `flag` (or its default), could not be listened on.
    pub(crate) fn bind(addr: SocketAddr, flag: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            kind: Kind::Bind(addr, flag),
            source: Some(source.into()),
        }
    }

    pub(crate) fn tls(source: impl Into<BoxError>) -> Self {
        Self {
            kind: Kind::Tls,
            source: Some(source.into()),
        }
    }

    pub(crate) fn entries(source: impl Into<BoxError>) -> Self {
        Self {
            kind: Kind::Entries,
            source: Some(source.into()),
        }
    }

    pub(crate) fn store(source: impl Into<BoxError>) -> Self {
        Self {
            kind: Kind::Store,
            source: Some(source.into()),
        }
    }

    /// The cache store could not be set up (its keys, or its connection).
    pub fn is_store(&self) -> bool {
        matches!(self.kind, Kind::Store)
    }

    /// The listening address could not be bound (for example, it is in use).
    pub fn is_bind(&self) -> bool {
        matches!(self.kind, Kind::Bind(..))
    }

    /// The TLS client for the upstream could not be set up.
    pub fn is_tls(&self) -> bool {
        matches!(self.kind, Kind::Tls)
    }

    /// Whether an `entries` command failed: the store refused it, or it cannot be run
    /// against this store from outside the proxy.
    pub fn is_entries(&self) -> bool {
        matches!(self.kind, Kind::Entries)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("cachet_proxy::Error");
        d.field("kind", &self.kind);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Bind(addr, flag) => write!(f, "cannot listen on {addr} ({flag})"),
            Kind::Tls => f.write_str("cannot set up TLS for the upstream"),
            Kind::Entries => f.write_str("cannot manage the stored entries"),
            Kind::Store => f.write_str("cannot set up the cache store"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Why the command line, or the configuration file it names, was refused.
///
/// Its message is one line: clap's first paragraph, naming the flag, and its tips (the
/// flag or command meant), for the command line; the path, line, column and setting for
/// the file (see [`ConfigFileError`]). The program prints it and exits with [`exit_code`](Self::exit_code), 2 for every usage
/// error. `--help` and `--version` also come back as a `UsageError`, whose
/// [`command_line`](Self::command_line) error prints them.
pub struct UsageError {
    kind: UsageKind,
}

enum UsageKind {
    CommandLine(clap::Error),
    ConfigFile(ConfigFileError),
}

impl UsageError {
    /// The command line's error, if the command line was refused (or asked for help).
    pub fn command_line(&self) -> Option<&clap::Error> {
        match &self.kind {
            UsageKind::CommandLine(error) => Some(error),
            UsageKind::ConfigFile(_) => None,
        }
    }

    /// The configuration file's error, if the file could not be read or was refused.
    pub fn config_file(&self) -> Option<&ConfigFileError> {
        match &self.kind {
            UsageKind::ConfigFile(error) => Some(error),
            UsageKind::CommandLine(_) => None,
        }
    }

    /// The program's exit status: 0 for `--help` and `--version`, 2 for an error.
    pub fn exit_code(&self) -> i32 {
        match &self.kind {
            UsageKind::CommandLine(error) => error.exit_code(),
            UsageKind::ConfigFile(_) => 2,
        }
    }
}

impl From<clap::Error> for UsageError {
    fn from(error: clap::Error) -> Self {
        Self {
            kind: UsageKind::CommandLine(error),
        }
    }
}

impl From<ConfigFileError> for UsageError {
    fn from(error: ConfigFileError) -> Self {
        Self {
            kind: UsageKind::ConfigFile(error),
        }
    }
}

impl fmt::Debug for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            UsageKind::CommandLine(error) => f.debug_tuple("UsageError").field(error).finish(),
            UsageKind::ConfigFile(error) => f.debug_tuple("UsageError").field(error).finish(),
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            UsageKind::CommandLine(error) if !error.use_stderr() => error.render().fmt(f),
            // clap renders this one as the command's help, whose first paragraph is its
            // description, not what was missing.
            UsageKind::CommandLine(error)
                if error.kind()
                    == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
            {
                // `entries` is the one command made of commands.
                let commands: Vec<String> =
                    <crate::admin::EntriesCommand as clap::Subcommand>::augment_subcommands(
                        clap::Command::new("entries"),
                    )
                    .get_subcommands()
                    .map(|command| command.get_name().to_owned())
                    .collect();
                write!(
                    f,
                    "entries needs one of its commands: {} (see --help)",
                    commands.join(", ")
                )
            }
            UsageKind::CommandLine(error) => {
                // clap's first paragraph, on one line, without its `error: ` prefix.
                let rendered = error.render().to_string();
                let message: Vec<&str> = rendered
                    .lines()
                    .map(str::trim)
                    .take_while(|line| !line.is_empty())
                    .collect();
                let message = message.join(" ");
                let message = message.strip_prefix("error: ").unwrap_or(&message);
                f.write_str(message)?;
                // clap's tips are paragraphs of their own: said here on the same line.
                write_tips(f, error)?;
                f.write_str(" (see --help)")
            }
            UsageKind::ConfigFile(error) => error.fmt(f),
        }
    }
}

/// clap's tips for `error`, each after a `; `: the flag, command or value meant
/// (`did you mean '--upstream'?`), and any other advice it gives.
fn write_tips(f: &mut fmt::Formatter<'_>, error: &clap::Error) -> fmt::Result {
    use clap::error::{ContextKind, ContextValue};

    for kind in [
        ContextKind::SuggestedArg,
        ContextKind::SuggestedSubcommand,
        ContextKind::SuggestedValue,
    ] {
        let names: &[String] = match error.get(kind) {
            Some(ContextValue::String(name)) => std::slice::from_ref(name),
            Some(ContextValue::Strings(names)) => names,
            _ => &[],
        };
        for (index, name) in names.iter().enumerate() {
            let before = match index {
                0 => "; did you mean ",
                _ if index + 1 == names.len() => " or ",
                _ => ", ",
            };
            write!(f, "{before}'{name}'")?;
        }
        if !names.is_empty() {
            f.write_str("?")?;
        }
    }
    if let Some(ContextValue::StyledStrs(tips)) = error.get(ContextKind::Suggested) {
        for tip in tips {
            write!(f, "; {tip}")?;
        }
    }
    Ok(())
}

impl StdError for UsageError {
    /// The cause below the message: clap's message already holds a flag's cause, and
    /// this error shows its file error's message as its own.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            UsageKind::CommandLine(_) => None,
            UsageKind::ConfigFile(error) => error.source(),
        }
    }
}
