//! `openspeak-server`: OpenSpeak in one process, for a single box (see
//! [`openspeak_server::System`]).

use std::process::ExitCode;

use openspeak_server::System;
use openspeak_shared::Config;
use openspeak_shared::cli::{self, Shutdown};
use tracing::info;

fn main() -> ExitCode {
    cli::serve_api_main(
        "openspeak-server",
        "OpenSpeak server: everything a single box needs, in one process.",
        serve,
    )
}

async fn serve(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let system = System::start(config).await?;
    info!(
        grpc = %system.grpc_addr(),
        voice_quic = %system.quic_endpoint(),
        voice_udp = %system.udp_endpoint(),
        cert_sha256 = %system.cert_sha256(),
        "openspeak-server ready: clients connect to gRPC, voice goes to the QUIC or plain-UDP endpoint"
    );
    system.serve(shutdown).await
}
