//! What goes wrong loading the configuration, and where the value at fault
//! came from.

use std::{fmt, io, path::PathBuf};

/// Where a configuration value came from; errors name it so the operator
/// knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The defaults in code.
    Default,
    /// The YAML file at this path (as given).
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the defaults"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(flag) => write!(f, "command-line flag {flag}"),
        }
    }
}

/// Why the configuration could not be loaded. Start-up stops on any of them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config PATH` names a file that does not exist.
    #[error("config file {} not found", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The path as given.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file is not YAML, or not a map of sections.
    #[error("cannot parse {}: {message}", path.display())]
    Syntax {
        /// The path as given.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An `OPENSPEAK_*` variable whose value is not UTF-8.
    #[error("environment variable {name} is not valid UTF-8")]
    NotUnicode {
        /// The variable's name.
        name: String,
    },
    /// A command-line override that is not `KEY=VALUE`.
    #[error("command-line flag {flag} expects KEY=VALUE such as server.port=50051, got `{arg}`")]
    BadOverride {
        /// The flag, e.g. `--set`.
        flag: String,
        /// What followed it.
        arg: String,
    },
    /// A key that no section has (a typo, usually).
    #[error("unknown key `{key}` in {origin}")]
    UnknownKey {
        /// Dotted key, e.g. `server.prot`.
        key: String,
        /// Who set it.
        origin: Origin,
    },
    /// A value of the wrong kind, e.g. text for a number.
    #[error("wrong type for `{key}` in {origin}: expected {expected}, found {found}")]
    WrongType {
        /// Dotted key.
        key: String,
        /// Who set it.
        origin: Origin,
        /// What the key takes.
        expected: String,
        /// What it got.
        found: String,
    },
    /// A value of the right kind that cannot work, e.g. a port above 65535
    /// or an unknown log format.
    #[error("invalid value for `{key}` in {origin}: {reason}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// Who set it.
        origin: Origin,
        /// What is wrong, for the operator.
        reason: String,
    },
    /// `OPENSPEAK_SERVER_PORT` for `OPENSPEAK_SERVER__PORT`.
    #[error(
        "environment variable {name} looks like a `{section}` key, but section and key \
         are separated by two underscores: OPENSPEAK_<SECTION>__<KEY>"
    )]
    MissingSeparator { name: String, section: String },
    /// Anything else `figment` reports; its message names key and source.
    #[error("{0}")]
    Other(String),
}

impl ConfigError {
    /// The dotted key at fault, when one is.
    pub fn key(&self) -> Option<&str> {
        self.fault().map(|(key, _)| key)
    }

    /// The source of the value at fault, when there is one.
    pub fn origin(&self) -> Option<&Origin> {
        self.fault().map(|(_, origin)| origin)
    }

    /// The key at fault and the source of its value: errors about one
    /// value have both, the others neither.
    fn fault(&self) -> Option<(&str, &Origin)> {
        match self {
            ConfigError::UnknownKey { key, origin, .. }
            | ConfigError::WrongType { key, origin, .. }
            | ConfigError::Invalid { key, origin, .. } => Some((key, origin)),
            _ => None,
        }
    }
}

/// A value that parses but cannot work, found by
/// [`Config::validate`](super::Config::validate).
/// [`Config::load`](super::Config::load) turns it into
/// [`ConfigError::Invalid`] with the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for `{key}`: {reason}")]
pub struct InvalidValue {
    /// Dotted key.
    pub key: &'static str,
    /// What is wrong, for the operator.
    pub reason: String,
}
