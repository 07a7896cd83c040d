//! `openspeak-dataplane`: the data plane as a process of its own, attached
//! to a control plane over the internal link.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use openspeak_dataplane::Dataplane;
use openspeak_shared::{
    cli::{self, ConfigArgs},
    shutdown, telemetry,
};

/// OpenSpeak data plane: routes voice between the members of each channel.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> ExitCode {
    cli::exit_code("openspeak-dataplane", run(Args::parse()))
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let _telemetry = telemetry::init(&config.logging)?;
    // One thread routes: the endpoint's router task owns all routing state,
    // and cross-thread wake-ups cost more than they buy at voice packet
    // sizes (PERF-FACTS.md). Scaling out is one data plane per core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown::listen().context("cannot install the signal handlers")?;
        let dataplane = Dataplane::bind(&config).await?;
        dataplane.serve(shutdown).await;
        Ok(())
    })
}
