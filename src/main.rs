//! `openspeak-server`: OpenSpeak in one process, for a single box.
//!
//! The control plane and one data plane, joined by the same internal link
//! as when they run apart, over loopback. With no `cluster.secret`
//! configured the pair uses a random one for this run, so the link is
//! authenticated and no other data plane can attach; set one to add data
//! planes on other machines.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context;
use clap::Parser;
use openspeak_control::ControlPlane;
use openspeak_dataplane::Dataplane;
use openspeak_shared::{cli::ConfigArgs, shutdown, telemetry};
use tokio::sync::watch;
use tracing::info;

/// OpenSpeak server: everything a single box needs, in one process.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = args.config.load()?;
    let _telemetry = telemetry::init(&config.logging)?;
    if config.cluster.secret.is_none() {
        config.cluster.secret = Some(format!("{:032x}", rand::random::<u128>()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown::listen().context("cannot install the signal handlers")?;
        let control = ControlPlane::bind(config.clone()).await?;
        let public = control.local_addr();
        config.cluster.control_addr = format!("http://{}", dialable(control.cluster_addr()));
        let dataplane = Dataplane::bind(&config).await?;
        info!(
            grpc = %public,
            voice_quic = %dataplane.quic_endpoint(),
            cert_sha256 = %dataplane.cert_sha256(),
            "openspeak-server ready: clients connect to gRPC, voice goes to the QUIC endpoint"
        );

        let (stop, mut stopped) = watch::channel(false);
        let dataplane = tokio::spawn(dataplane.serve(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        let stop = &stop;
        let result = control
            .serve(async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await;
        // Also when the control plane failed: the data plane must not
        // outlive it in this process.
        let _ = stop.send(true);
        let _ = dataplane.await;
        result?;
        Ok(())
    })
}

/// Where to dial a listener bound to `addr`: itself, or loopback for an
/// unspecified address.
fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}
