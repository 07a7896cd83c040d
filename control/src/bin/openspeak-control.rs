//! `openspeak-control`: the control plane as a process, its admin
//! commands (`token`, `channel`, `ban`, `status`), which work on a running
//! server through its API or on a stopped one's state, and `cluster`,
//! which makes the internal link's certificates.

use std::process::ExitCode;

use clap::Parser;
use clap::Subcommand;
use openspeak_control::cluster_ca::ClusterCommand;
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
    command: Option<Sub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    #[command(flatten)]
    Admin(admin::Command),
    /// Certificates for mutual TLS on the internal link
    #[command(subcommand)]
    Cluster(ClusterCommand),
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
        Some(Sub::Admin(command)) => admin::main(PROGRAM, command, cli.serve.load()),
        Some(Sub::Cluster(command)) => {
            cli::exit_code(PROGRAM, command.run().map(|said| print!("{said}")))
        }
    }
}
