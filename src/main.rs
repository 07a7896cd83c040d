//! `openspeak-server`: OpenSpeak in one process, for a single box.
//!
//! The control plane and one data plane, joined by the same internal link
//! as when they run apart, over loopback. With no `cluster.secret`
//! configured the pair uses a random one for this run, so the link is
//! authenticated and no other data plane can attach; set one to add data
//! planes on other machines.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use openspeak_control::ControlPlane;
use openspeak_dataplane::{Dataplane, LinkState};
use openspeak_shared::Config;
use openspeak_shared::cli::{self, ConfigArgs, Runtime, Shutdown};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

/// OpenSpeak server: everything a single box needs, in one process.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::serve_main(
        "openspeak-server",
        &args.config,
        Runtime::MultiThread,
        serve,
    )
}

async fn serve(mut config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    if config.cluster.secret.is_none() {
        config.cluster.secret = Some(format!("{:032x}", rand::random::<u128>()));
    }
    let control = ControlPlane::bind(config.clone()).await?;
    let public = control.local_addr();
    config.cluster.control_addr = format!("http://{}", dialable(control.cluster_addr()));

    // The control plane serves first: the data plane's link attaches to
    // it, and "ready" waits for that, so a client that acts on the ready
    // line gets voice rather than NO_DATAPLANE.
    let (stop, stopped) = watch::channel(false);
    let mut control_stopped = stopped.clone();
    let mut control = tokio::spawn(control.serve(async move {
        let _ = control_stopped.wait_for(|s| *s).await;
    }));
    let (voice, ready) = start_dataplane(config, stopped)?;
    let started = tokio::select! {
        started = ready => started.context("the data plane thread ended before it started"),
        ended = &mut control => Err(control_failed(ended)),
    };
    let result = match started {
        Ok(Ok((quic, udp, cert_sha256))) => {
            info!(
                grpc = %public,
                voice_quic = %quic,
                voice_udp = %udp,
                %cert_sha256,
                "openspeak-server ready: clients connect to gRPC, voice goes to the QUIC or plain-UDP endpoint"
            );
            tokio::select! {
                () = shutdown => {
                    let _ = stop.send(true);
                    (&mut control).await.map_err(anyhow::Error::new).and_then(|r| Ok(r?))
                }
                ended = &mut control => Err(control_failed(ended)),
            }
        }
        Ok(Err(e)) | Err(e) => Err(e),
    };
    // Whatever happened: neither plane may outlive the other here.
    let _ = stop.send(true);
    if !control.is_finished() {
        let _ = control.await;
    }
    let _ = tokio::task::spawn_blocking(move || voice.join()).await;
    result
}

/// Why the control plane task ended before it was asked to.
fn control_failed(
    ended: Result<Result<(), openspeak_control::ServeError>, tokio::task::JoinError>,
) -> anyhow::Error {
    match ended {
        Ok(Ok(())) => anyhow::anyhow!("the control plane stopped unexpectedly"),
        Ok(Err(e)) => e.into(),
        Err(e) => anyhow::Error::new(e).context("the control plane task failed"),
    }
}

/// How long start-up waits for the in-process data plane to attach before
/// it says "ready" anyway.
const ATTACH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the data plane thread reports once bound: its QUIC endpoint and
/// certificate fingerprint, or why it could not start.
/// The data plane's QUIC endpoint, plain-UDP endpoint and certificate pin,
/// once it is attached (or has waited long enough).
type Ready = oneshot::Receiver<anyhow::Result<(String, String, String)>>;

/// Runs the data plane on a thread of its own with a `current_thread`
/// runtime, as `openspeak-dataplane` does: its router task then never
/// shares a core's run queue with gRPC work, and no cross-thread wake-up
/// sits on the voice path (`docs/PERFORMANCE.md`: 13-32% more CPU per
/// forwarded datagram on a multi-threaded runtime). It stops when `stopped`
/// turns true.
fn start_dataplane(
    config: Config,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<(std::thread::JoinHandle<()>, Ready)> {
    let (ready, answer) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("openspeak-voice".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready.send(Err(anyhow::Error::new(e)
                        .context("cannot start the data plane's async runtime")));
                    return;
                }
            };
            runtime.block_on(async move {
                let dataplane = match Dataplane::bind(&config).await {
                    Ok(dataplane) => dataplane,
                    Err(e) => {
                        let _ = ready.send(Err(e.into()));
                        return;
                    }
                };
                let endpoint = dataplane.quic_endpoint().to_owned();
                let udp = dataplane.udp_endpoint().to_owned();
                let fingerprint = dataplane.cert_sha256().to_owned();
                let mut link = dataplane.link_state();
                tokio::spawn(async move {
                    let attached = link.wait_for(|s| matches!(s, LinkState::Attached { .. }));
                    if tokio::time::timeout(ATTACH_WAIT, attached).await.is_err() {
                        warn!(
                            "the data plane has not attached to the control plane within {} s; \
                             starting anyway (voice answers NO_DATAPLANE until it does)",
                            ATTACH_WAIT.as_secs()
                        );
                    }
                    let _ = ready.send(Ok((endpoint, udp, fingerprint)));
                });
                dataplane
                    .serve(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
            });
        })
        .context("cannot start the data plane thread")?;
    Ok((thread, answer))
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
