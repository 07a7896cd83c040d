//! `openspeak-control`: the control plane as a process.

use std::process::ExitCode;

use clap::Parser;
use openspeak_control::ControlPlane;
use openspeak_shared::cli::{self, Runtime, ServeArgs};

/// OpenSpeak control plane: access tokens, channels, sessions and presence over gRPC.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: ServeArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::serve_main(
        "openspeak-control",
        &args.config,
        Runtime::MultiThread,
        |config, shutdown| async move {
            ControlPlane::bind(config).await?.serve(shutdown).await?;
            Ok(())
        },
    )
}
