//! `openspeak-dataplane`: the data plane as a process of its own, attached
//! to a control plane over the internal link.

use std::process::ExitCode;

use clap::Parser;
use openspeak_dataplane::Dataplane;
use openspeak_shared::cli::{self, ConfigArgs, Runtime};

/// OpenSpeak data plane: routes voice between the members of each channel.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // One thread routes: the endpoint's router task owns all routing state,
    // and cross-thread wake-ups cost more than they buy at voice packet
    // sizes (`docs/PERFORMANCE.md`). Scaling out is one data plane per core.
    cli::serve_main(
        "openspeak-dataplane",
        &args.config,
        Runtime::CurrentThread,
        |config, shutdown| async move {
            Dataplane::bind(&config).await?.serve(shutdown).await;
            Ok(())
        },
    )
}
