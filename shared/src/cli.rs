//! The command-line flags every OpenSpeak binary shares: which config file
//! to read and overrides of single keys. Flatten [`ConfigArgs`] into a
//! binary's `clap` parser, or [`ServeArgs`] where the binary serves the
//! public gRPC API (it adds `--host` and `--port`), and hand it to
//! [`serve_main`]; [`serve_api_main`] does both for a binary with no flags
//! but [`ServeArgs`].
//!
//! Environment variables are not clap's business: [`Config::load`] reads
//! `OPENSPEAK_<SECTION>__<KEY>` itself, so that every key has one.

use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;

use anyhow::Context;

use clap::{Args, FromArgMatches};

use crate::config::{Config, ConfigError, LoadOptions, Override};

/// Configuration flags. They are the strongest source: over environment
/// variables, the file and the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct ConfigArgs {
    /// YAML config file [default: config/config.yaml, which may be missing]
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,

    /// Set any config key, e.g. `--set server.port=50051` (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set, global = true)]
    pub set: Vec<Override>,

    /// Directory for state such as tokens (storage.data_dir)
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<String>,

    /// Log level or filter, e.g. `debug` or `info,h2=warn` (logging.level)
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Log format (logging.output_format)
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
}

/// [`ConfigArgs`] and the public gRPC listener's address, for the binaries
/// that serve it (not the data plane, whose listeners are its own keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,

    /// IP address of the public listener (server.host)
    #[arg(long, value_name = "IP")]
    pub host: Option<String>,

    /// Port of the public listener, 0 for any free port (server.port)
    #[arg(long)]
    pub port: Option<u16>,
}

/// Flags a binary loads its configuration from.
pub trait ConfigFlags {
    /// Load options for these flags, reading the process environment.
    fn load_options(&self) -> LoadOptions;

    /// Loads and validates the configuration: [`Config::load`] with
    /// [`load_options`](Self::load_options).
    fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.load_options())
    }
}

/// Which tokio runtime a server binary runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Worker threads on every core: the control plane's many streams.
    MultiThread,
    /// One thread: the data plane's router task, which gains nothing from
    /// cross-thread wake-ups (`docs/PERFORMANCE.md`).
    CurrentThread,
}

/// The shutdown signal a server body gets: resolves on SIGINT or SIGTERM.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The whole `main` of an OpenSpeak server binary: loads the configuration
/// `args` names, starts logging, builds the runtime, installs the signal
/// handlers (before `body` binds anything, see [`crate::shutdown::listen`])
/// and runs `body` on it. Any failure is one line and exit status 1
/// ([`exit_code`]).
pub fn serve_main<F, Fut>(
    program: &str,
    args: &impl ConfigFlags,
    runtime: Runtime,
    body: F,
) -> ExitCode
where
    F: FnOnce(Config, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let run = || -> anyhow::Result<()> {
        let config = args.load()?;
        let _telemetry = crate::telemetry::init(&config.logging)?;
        let mut builder = match runtime {
            Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread(),
            Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        };
        let runtime = builder
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(async {
            let shutdown =
                crate::shutdown::listen().context("cannot install the signal handlers")?;
            body(config, Box::pin(shutdown)).await
        })
    };
    exit_code(program, run())
}

/// The whole `main` of a binary whose flags are [`ServeArgs`] alone (the
/// control plane, the one-box server): parses the command line, with
/// `about` as what `--help` says, and hands it to [`serve_main`] on the
/// multi-threaded runtime that the public API's many streams want.
pub fn serve_api_main<Fut>(
    program: &'static str,
    about: &'static str,
    body: impl FnOnce(Config, Shutdown) -> Fut,
) -> ExitCode
where
    Fut: Future<Output = anyhow::Result<()>>,
{
    // `about` after the flags, which would otherwise bring their own doc
    // comment as the binary's description.
    let mut command = ServeArgs::augment_args(clap::Command::new(program))
        .about(about)
        .long_about(None)
        // Every crate of the workspace has the workspace's version, so this
        // crate's is the binary's.
        .version(env!("CARGO_PKG_VERSION"));
    let matches = command.get_matches_mut();
    let args =
        ServeArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit());
    serve_main(program, &args, Runtime::MultiThread, body)
}

/// The end of a binary's `main`: `Ok` exits 0; an error prints one line,
/// `<program>: error: <cause>: <cause>...`, and exits 1.
///
/// Used instead of returning the `Result` from `main`, whose `Debug` output
/// adds a stack backtrace whenever `RUST_BACKTRACE` is set: a typo in the
/// configuration is the operator's to fix, not a crash to debug.
pub fn exit_code<E: std::fmt::Display>(
    program: &str,
    result: Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

impl ConfigArgs {
    /// The overrides these flags make: every `--set` in order, then the
    /// convenience flags, which win over a `--set` of the same key.
    pub fn overrides(&self) -> Vec<Override> {
        self.overrides_with(Vec::new())
    }

    /// [`overrides`](Self::overrides), with a binary's own convenience
    /// flags (`flag`, `key`, value) before the shared ones.
    fn overrides_with(&self, own: Vec<Override>) -> Vec<Override> {
        let named = [
            ("--data-dir", "storage.data_dir", self.data_dir.as_ref()),
            ("--log-level", "logging.level", self.log_level.as_ref()),
            (
                "--log-format",
                "logging.output_format",
                self.log_format.as_ref(),
            ),
        ];
        let named = named
            .into_iter()
            .filter_map(|(flag, key, value)| value.map(|v| Override::new(flag, key, v.clone())));
        self.set.iter().cloned().chain(own).chain(named).collect()
    }

    fn options(&self, overrides: Vec<Override>) -> LoadOptions {
        LoadOptions {
            config_path: self.config.clone(),
            overrides,
            ..LoadOptions::default()
        }
    }
}

impl ConfigFlags for ConfigArgs {
    fn load_options(&self) -> LoadOptions {
        self.options(self.overrides())
    }
}

impl ServeArgs {
    /// As [`ConfigArgs::overrides`], with `--host` and `--port`.
    pub fn overrides(&self) -> Vec<Override> {
        let port = self.port.map(|p| p.to_string());
        let own = [
            ("--host", "server.host", self.host.as_ref()),
            ("--port", "server.port", port.as_ref()),
        ]
        .into_iter()
        .filter_map(|(flag, key, value)| value.map(|v| Override::new(flag, key, v.clone())))
        .collect();
        self.config.overrides_with(own)
    }
}

impl ConfigFlags for ServeArgs {
    fn load_options(&self) -> LoadOptions {
        self.config.options(self.overrides())
    }
}

/// clap's parser for `--set`, so a malformed one is a usage error.
fn parse_set(arg: &str) -> Result<Override, String> {
    Override::parse("--set", arg)
        .map_err(|_| "expected KEY=VALUE such as server.port=50051".to_owned())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[derive(Parser)]
    struct DataplaneCli {
        #[command(flatten)]
        config: ConfigArgs,
    }

    fn parse(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("openspeak").chain(args.iter().copied()))
            .map(|cli| cli.serve)
    }

    #[test]
    fn no_flags_no_overrides() {
        let args = parse(&[]).unwrap();
        assert_eq!(args, ServeArgs::default());
        assert!(args.overrides().is_empty());
        assert_eq!(args.load_options().config_path, None);
    }

    #[test]
    fn flags_become_overrides_convenience_last() {
        let args = parse(&[
            "--port",
            "0",
            "--set",
            "server.port=1",
            "--set",
            "auth.bootstrap_token=a=b",
            "--config",
            "/etc/openspeak.yaml",
            "--host",
            "::",
            "--data-dir",
            "/var/lib/openspeak",
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(
            args.overrides(),
            vec![
                Override::new("--set", "server.port", "1"),
                Override::new("--set", "auth.bootstrap_token", "a=b"),
                Override::new("--host", "server.host", "::"),
                Override::new("--port", "server.port", "0"),
                Override::new("--data-dir", "storage.data_dir", "/var/lib/openspeak"),
                Override::new("--log-level", "logging.level", "debug"),
                Override::new("--log-format", "logging.output_format", "json"),
            ]
        );
        let opts = args.load_options();
        assert_eq!(opts.config_path, Some(PathBuf::from("/etc/openspeak.yaml")));
        let config = Config::load(&opts.env_vars([("OPENSPEAK_SERVER__PORT", "2")]));
        // The file does not exist: an explicit path must.
        assert!(matches!(config, Err(ConfigError::NotFound { .. })));
    }

    #[test]
    fn flags_win_over_env() {
        let args = parse(&["--port", "0", "--log-format", "json"]).unwrap();
        let opts = args.load_options().env_vars([
            ("OPENSPEAK_SERVER__PORT", "7"),
            ("OPENSPEAK_SERVER__HOST", "127.0.0.1"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("config.yaml");
        let config = Config::load_with_default_path(&opts, &missing).unwrap();
        assert_eq!(config.server.port, 0);
        assert_eq!(config.server.host, "127.0.0.1");
        assert_eq!(config.logging.output_format, "json");
    }

    #[test]
    fn malformed_flags_are_usage_errors() {
        for args in [
            &["--set", "server.port"][..],
            &["--set", "=1"],
            &["--set", "server..port=1"],
            &["--port", "65536"],
            &["--port", "http"],
            &["--log-format", "xml"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn the_data_plane_has_no_public_listener_flags() {
        let parse = |args: &[&str]| {
            DataplaneCli::try_parse_from(std::iter::once("openspeak").chain(args.iter().copied()))
        };
        let cli = parse(&["--data-dir", "/d", "--set", "dataplane.quic_port=0"]).unwrap();
        assert_eq!(
            cli.config.overrides(),
            vec![
                Override::new("--set", "dataplane.quic_port", "0"),
                Override::new("--data-dir", "storage.data_dir", "/d"),
            ]
        );
        for flag in ["--host", "--port"] {
            let error = parse(&[flag, "1"]).map(|_| ()).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{flag}"
            );
        }
    }
}
