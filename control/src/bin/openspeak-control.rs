//! `openspeak-control`: the control plane as a process.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use openspeak_control::ControlPlane;
use openspeak_shared::{
    cli::{self, ConfigArgs},
    shutdown, telemetry,
};

/// OpenSpeak control plane: access tokens, channels, sessions and presence over gRPC.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> ExitCode {
    cli::exit_code("openspeak-control", run(Args::parse()))
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let _telemetry = telemetry::init(&config.logging)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown::listen().context("cannot install the signal handlers")?;
        let control = ControlPlane::bind(config).await?;
        control.serve(shutdown).await?;
        Ok(())
    })
}
