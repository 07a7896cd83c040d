//! OpenSpeak in one process, for a single box: the control plane and one
//! data plane, joined by the same internal link as when they run apart,
//! over loopback. [`System`] is what `openspeak-server` runs, and what
//! tests start when they want the whole server without its processes.
//!
//! With no `cluster.secret` configured the pair uses a random one for the
//! run, so the link is authenticated and no other data plane can attach;
//! set one to add data planes on other machines.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use openspeak_control::{ControlPlane, ServeError};
use openspeak_dataplane::{Dataplane, LinkState};
use openspeak_shared::Config;
use tokio::sync::{oneshot, watch};
use tracing::warn;

/// How long start-up waits for the in-process data plane to attach before
/// it reports itself started anyway (voice then answers `NO_DATAPLANE`
/// until the link is up).
pub const ATTACH_WAIT: Duration = Duration::from_secs(10);

/// Both planes, bound and serving: the control plane as a task of the
/// runtime that started it, the data plane on a thread of its own.
pub struct System {
    grpc: SocketAddr,
    voice: VoiceEndpoints,
    /// Turns true to stop both planes.
    stop: watch::Sender<bool>,
    control: tokio::task::JoinHandle<Result<(), ServeError>>,
    dataplane: JoinHandle<()>,
}

/// Where clients reach the data plane, as its registration says.
#[derive(Debug, Clone)]
struct VoiceEndpoints {
    quic: String,
    udp: String,
    cert_sha256: String,
    metrics: Option<SocketAddr>,
    attached: bool,
}

impl std::fmt::Debug for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("System")
            .field("grpc", &self.grpc)
            .field("voice", &self.voice)
            .finish_non_exhaustive()
    }
}

impl System {
    /// Binds and starts both planes from `config`; returns once the data
    /// plane has attached to the control plane, or [`ATTACH_WAIT`] has
    /// passed (see [`attached`](Self::attached)). The control plane serves
    /// first, so that a client acting on the return gets voice rather than
    /// `NO_DATAPLANE`.
    pub async fn start(mut config: Config) -> anyhow::Result<System> {
        if config.cluster.secret.is_none() {
            config.cluster.secret = Some(format!("{:032x}", rand::random::<u128>()));
        }
        // The link never leaves this process (loopback), so it needs no
        // TLS; the cluster certificates are for planes that run apart.
        if config.cluster.tls_cert.is_some() || config.cluster.tls_ca.is_some() {
            tracing::info!(
                "cluster.tls_* is for planes that run apart; the one-process link stays on loopback"
            );
            config.cluster.tls_cert = None;
            config.cluster.tls_key = None;
            config.cluster.tls_ca = None;
        }
        let control = ControlPlane::bind(config.clone()).await?;
        let grpc = control.local_addr();
        config.cluster.control_addr = format!("http://{}", dialable(control.cluster_addr()));

        let (stop, stopped) = watch::channel(false);
        let mut control_stopped = stopped.clone();
        let mut control = tokio::spawn(control.serve(async move {
            let _ = control_stopped.wait_for(|s| *s).await;
        }));
        let (dataplane, ready) = start_dataplane(config, stopped)?;
        let started = tokio::select! {
            started = ready => started.context("the data plane thread ended before it started"),
            ended = &mut control => Err(control_failed(ended)),
        };
        match started.and_then(|r| r) {
            Ok(voice) => Ok(System {
                grpc,
                voice,
                stop,
                control,
                dataplane,
            }),
            Err(e) => {
                // Neither plane may outlive the other.
                let _ = stop.send(true);
                if !control.is_finished() {
                    let _ = control.await;
                }
                let _ = tokio::task::spawn_blocking(move || dataplane.join()).await;
                Err(e)
            }
        }
    }

    /// The control plane's public gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// The `host:port` of the data plane's QUIC listener, as clients get it.
    pub fn quic_endpoint(&self) -> &str {
        &self.voice.quic
    }

    /// The `host:port` of the data plane's plain-UDP listener.
    pub fn udp_endpoint(&self) -> &str {
        &self.voice.udp
    }

    /// The data plane certificate's SHA-256, as QUIC clients pin it.
    pub fn cert_sha256(&self) -> &str {
        &self.voice.cert_sha256
    }

    /// The data plane's metrics listener, when `dataplane.metrics_listen`
    /// names one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.voice.metrics
    }

    /// Whether the data plane had attached when [`start`](Self::start)
    /// returned.
    pub fn attached(&self) -> bool {
        self.voice.attached
    }

    /// Serves until `shutdown` resolves or the control plane fails, then
    /// stops both planes (the control plane drains its sessions first).
    pub async fn serve(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let result = tokio::select! {
            () = shutdown => Ok(()),
            ended = &mut self.control => Err(control_failed(ended)),
        };
        let stopped = self.stop().await;
        result.and(stopped)
    }

    /// Stops both planes and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let control = if self.control.is_finished() {
            Ok(())
        } else {
            self.control
                .await
                .map_err(anyhow::Error::new)
                .and_then(|r| Ok(r?))
        };
        let dataplane = self.dataplane;
        let _ = tokio::task::spawn_blocking(move || dataplane.join()).await;
        control
    }
}

/// Why the control plane task ended before it was asked to.
fn control_failed(ended: Result<Result<(), ServeError>, tokio::task::JoinError>) -> anyhow::Error {
    match ended {
        Ok(Ok(())) => anyhow::anyhow!("the control plane stopped unexpectedly"),
        Ok(Err(e)) => e.into(),
        Err(e) => anyhow::Error::new(e).context("the control plane task failed"),
    }
}

/// Runs the data plane on a thread of its own with a `current_thread`
/// runtime, as `openspeak-dataplane` does: its router task then never
/// shares a core's run queue with gRPC work, and no cross-thread wake-up
/// sits on the voice path (`docs/PERFORMANCE.md`: 13-32% more CPU per
/// forwarded datagram on a multi-threaded runtime). It reports its
/// endpoints once attached (or after [`ATTACH_WAIT`]), and stops when
/// `stopped` turns true.
fn start_dataplane(
    config: Config,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<(
    JoinHandle<()>,
    oneshot::Receiver<anyhow::Result<VoiceEndpoints>>,
)> {
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
                let mut voice = VoiceEndpoints {
                    quic: dataplane.quic_endpoint().to_owned(),
                    udp: dataplane.udp_endpoint().to_owned(),
                    cert_sha256: dataplane.cert_sha256().to_owned(),
                    metrics: dataplane.metrics_addr(),
                    attached: false,
                };
                let mut link = dataplane.link_state();
                tokio::spawn(async move {
                    let attached = link.wait_for(|s| matches!(s, LinkState::Attached { .. }));
                    voice.attached =
                        matches!(tokio::time::timeout(ATTACH_WAIT, attached).await, Ok(Ok(_)));
                    if !voice.attached {
                        warn!(
                            "the data plane has not attached to the control plane within {} s; \
                             starting anyway (voice answers NO_DATAPLANE until it does)",
                            ATTACH_WAIT.as_secs()
                        );
                    }
                    let _ = ready.send(Ok(voice));
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
