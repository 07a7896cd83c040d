//! Logging for every OpenSpeak process: one `tracing` subscriber set up from
//! the `logging` section, writing to stdout and, when `logging.output_file`
//! is set, to that file as well, in the same format.
//!
//! File writes are synchronous: a log line is small, and a lost line at a
//! crash is worse than the microseconds a background writer would save.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, IsTerminal},
    path::{Path, PathBuf},
    sync::Arc,
};

use tracing::Subscriber;
use tracing_subscriber::{
    Layer,
    fmt::{self, MakeWriter},
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::config::{LogFormat, LoggingConfig};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `logging.level` is neither a level nor a filter directive.
    #[error("invalid logging.level `{0}`")]
    Level(String),
    /// `logging.output_format` is neither `text` nor `json`.
    #[error("invalid logging.output_format `{0}`: expected `text` or `json`")]
    Format(String),
    /// The log file (or its directory) could not be opened.
    #[error("cannot open log file {}", path.display())]
    File {
        /// `logging.output_file`.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// [`init`] ran before in this process; a process has one global logger.
    #[error("logging is already set up in this process")]
    AlreadyInitialized,
}

/// Keeps the log file open until the process ends, and syncs it to disk
/// when dropped so the last lines survive. Hold it in `main`.
#[must_use = "dropping the guard syncs the log file; hold it until exit"]
#[derive(Debug)]
pub struct TelemetryGuard {
    file: Option<Arc<File>>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            // Nowhere left to report a failure: logging is what failed.
            let _ = file.sync_data();
        }
    }
}

/// Installs the process-wide subscriber (and the `log` crate bridge).
/// Call once, early in `main`; a second call returns
/// [`TelemetryError::AlreadyInitialized`].
pub fn init(config: &LoggingConfig) -> Result<TelemetryGuard, TelemetryError> {
    let (subscriber, guard) = build(config)?;
    subscriber
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialized)?;
    Ok(guard)
}

/// The subscriber [`init`] installs, without installing it, so that tests
/// can use it with `tracing::subscriber::with_default`.
fn build(
    config: &LoggingConfig,
) -> Result<(impl Subscriber + Send + Sync + 'static, TelemetryGuard), TelemetryError> {
    let filter = config
        .filter()
        .ok_or_else(|| TelemetryError::Level(config.level.clone()))?;
    let format = config
        .format()
        .ok_or_else(|| TelemetryError::Format(config.output_format.clone()))?;
    let file = config
        .output_file
        .as_deref()
        .map(open_append)
        .transpose()?
        .map(Arc::new);

    let stdout = fmt_layer(format, io::stdout, io::stdout().is_terminal());
    let to_file = file.clone().map(|file| fmt_layer(format, file, false));
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(stdout)
        .with(to_file);
    Ok((subscriber, TelemetryGuard { file }))
}

/// One formatting layer; stdout and the file get the same one.
fn fmt_layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = fmt::layer().with_writer(writer).with_ansi(ansi);
    match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    }
}

/// Opens `path` for appending, creating it and its directories. A new
/// file is readable by its owner only (0600 on Unix): logs name tokens,
/// sessions and addresses, which are nobody else's business.
fn open_append(path: &Path) -> Result<File, TelemetryError> {
    let err = |source| TelemetryError::File {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logging(level: &str, format: &str, file: Option<PathBuf>) -> LoggingConfig {
        LoggingConfig {
            level: level.into(),
            output_format: format.into(),
            output_file: file,
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_new_log_file_is_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/openspeak.log");
        drop(open_append(&path).unwrap());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn json_goes_to_the_file_in_new_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/nested/openspeak.log");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "earlier line\n").unwrap();
        let config = logging("info", "json", Some(path.clone()));
        let (subscriber, guard) = build(&config).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(port = 50051, "listening");
            tracing::debug!("filtered out");
        });
        drop(guard);
        let text = fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("earlier line"), "appends");
        let line = lines.next().unwrap();
        assert!(
            line.starts_with('{') && line.contains("\"listening\""),
            "{line}"
        );
        assert!(line.contains("50051"), "{line}");
        assert_eq!(lines.next(), None, "debug is filtered: {text}");
    }

    #[test]
    fn creates_missing_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/openspeak.log");
        let (subscriber, _guard) = build(&logging("info", "text", Some(path.clone()))).unwrap();
        tracing::subscriber::with_default(subscriber, || tracing::warn!("disk nearly full"));
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("WARN") && text.contains("disk nearly full"),
            "{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "no colour codes in the file: {text:?}"
        );
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(matches!(
            build(&logging("loud", "text", None)),
            Err(TelemetryError::Level(_))
        ));
        assert!(matches!(
            build(&logging("info", "xml", None)),
            Err(TelemetryError::Format(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, "").unwrap();
        let result = build(&logging("info", "text", Some(blocker.join("x.log"))));
        assert!(matches!(result, Err(TelemetryError::File { .. })));
    }

    #[test]
    fn second_init_is_an_error() {
        // The only test that installs the global subscriber.
        let config = LoggingConfig::default();
        let first = init(&config);
        let second = init(&config);
        assert!(first.is_ok());
        assert!(matches!(second, Err(TelemetryError::AlreadyInitialized)));
    }
}
