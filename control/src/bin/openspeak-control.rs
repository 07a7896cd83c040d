//! `openspeak-control`: the control plane as a process, and its admin
//! commands (`token`, `channel`, `ban`, `status`), which work on a running
//! server through its API or on a stopped one's state.

use std::process::ExitCode;

use clap::Parser;
use openspeak_control::{ControlPlane, admin};
use openspeak_shared::cli::{self, ConfigFlags, Runtime, ServeArgs};

const PROGRAM: &str = "openspeak-control";

/// OpenSpeak control plane: access tokens, channels, sessions and presence
/// over gRPC. Without a command it serves; with one it administers.
#[derive(Debug, Parser)]
#[command(name = PROGRAM, version, long_about = None)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,

    #[command(subcommand)]
    command: Option<admin::Command>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        None => cli::serve_main(
            PROGRAM,
            &cli.serve,
            Runtime::MultiThread,
            |config, shutdown| async move {
                ControlPlane::bind(config).await?.serve(shutdown).await?;
                Ok(())
            },
        ),
        Some(command) => admin::main(PROGRAM, command, cli.serve.load()),
    }
}
