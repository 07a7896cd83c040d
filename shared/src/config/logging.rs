//! The `logging` section: what the process logs and where, and what a
//! valid level and format are. [`crate::telemetry`] builds the logger from
//! it; this file owns the parsing so that validating the configuration does
//! not depend on the logger.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use super::{
    InvalidValue,
    check::{check, check_path},
};

/// What the process logs and where; see [`crate::telemetry::init`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive.
    pub level: String,
    /// `text` or `json`.
    pub output_format: String,
    /// Also write the log to this file (appended).
    pub output_file: Option<PathBuf>,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            output_format: "text".into(),
            output_file: None,
        }
    }
}

/// How log lines are written, the parsed form of `logging.output_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// `text` or `json`; anything else is `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

impl LoggingConfig {
    /// The parsed `output_format`; `None` only for a config that skipped
    /// [`Config::validate`](super::Config::validate).
    pub fn format(&self) -> Option<LogFormat> {
        LogFormat::from_name(&self.output_format)
    }

    /// The parsed `level`; `None` only for a config that skipped
    /// [`Config::validate`](super::Config::validate).
    pub(crate) fn filter(&self) -> Option<EnvFilter> {
        env_filter(&self.level)
    }

    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        check(self.filter().is_some(), "logging.level", || {
            format!(
                "`{}` is not a level (error, warn, info, debug, trace, off) or a filter such as `info,openspeak_control=debug`",
                self.level
            )
        })?;
        check(self.format().is_some(), "logging.output_format", || {
            format!("`{}` is neither `text` nor `json`", self.output_format)
        })?;
        check_path("logging.output_file", self.output_file.as_deref())
    }
}

/// `logging.level` as a filter, or `None` when it is not one.
///
/// Stricter than `EnvFilter` itself: each comma-separated directive must be
/// a level or contain `=`. A bare word would parse as "everything from the
/// target of that name", which is how a typo such as `inf` would silently
/// turn logging off.
fn env_filter(level: &str) -> Option<EnvFilter> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let directives: Vec<&str> = level
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let plausible = directives
        .iter()
        .all(|d| d.contains('=') || LEVELS.iter().any(|l| l.eq_ignore_ascii_case(d)));
    if directives.is_empty() || !plausible {
        return None;
    }
    EnvFilter::builder().parse(level).ok()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_accepted, assert_rejected};
    use super::*;

    #[test]
    fn filter_accepts_levels_and_directives() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "warn,openspeak_control=trace",
            "h2=warn",
        ] {
            assert!(env_filter(ok).is_some(), "{ok}");
        }
        for bad in ["", " , ", "verbose", "inf", "info,tonic", "h2=loud"] {
            assert!(env_filter(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn impossible_values_are_rejected_naming_the_key() {
        assert_rejected(&[
            ("logging.level", "verbose"),
            ("logging.level", ""),
            ("logging.level", "info,h2=loud"),
            ("logging.output_format", "xml"),
            ("logging.output_file", ""),
        ]);
    }

    #[test]
    fn boundary_values_are_accepted() {
        assert_accepted(&[
            ("logging.level", "TRACE"),
            (
                "logging.level",
                "warn,tonic=info,openspeak_control[session]=debug",
            ),
        ]);
    }
}
