//! `openspeak-control`: the control plane as a process.

use std::process::ExitCode;

use openspeak_control::ControlPlane;
use openspeak_shared::cli;

fn main() -> ExitCode {
    cli::serve_api_main(
        "openspeak-control",
        "OpenSpeak control plane: access tokens, channels, sessions and presence over gRPC.",
        |config, shutdown| async move {
            ControlPlane::bind(config).await?.serve(shutdown).await?;
            Ok(())
        },
    )
}
