//! The data plane as a service: binds the voice listener and the metrics
//! listener from the configuration, loads or makes its identity, and runs
//! the endpoint, the link to the control plane and `/metrics` until
//! shutdown.
//!
//! The binary `openspeak-dataplane` and the one-process `openspeak-server`
//! are thin wrappers around [`Dataplane::bind`] and [`Dataplane::serve`].

use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openspeak_shared::Config;
use openspeak_shared::config::ClusterConfig;
use openspeak_shared::persist::write_atomic;
use openspeak_shared::ticket::TicketVerifier;
use thiserror::Error;
use tokio::sync::{oneshot, watch};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tracing::{info, warn};

use crate::link::{Link, LinkConfig, LinkState, Registration};
use crate::metrics;
use crate::{BindError, CertError, DataplaneCert, Handle, RouterConfig, VoiceEndpoint};
use openspeak_shared::ops::OpsListener;

/// The file, in `storage.data_dir`, that keeps a generated data plane id.
pub const ID_FILE: &str = "dataplane_id";

/// Why the data plane could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// Running apart from the control plane needs the shared secret.
    #[error(
        "cluster.secret is not set: a data plane authenticates to the control plane with the \
         secret both are configured with (set cluster.secret, or OPENSPEAK_CLUSTER__SECRET, on \
         both; openspeak-server, which runs both planes in one process, needs none)"
    )]
    NoSecret,
    /// The certificate could not be loaded or generated.
    #[error("data plane certificate: {0}")]
    Cert(#[from] CertError),
    /// `dataplane.host` does not parse (validated configs never do this).
    #[error("dataplane.host `{0}` is not an IP address")]
    Host(String),
    /// The voice listener could not be bound.
    #[error("cannot listen for voice on {addr}: {source}")]
    Bind { addr: SocketAddr, source: BindError },
    /// `dataplane.metrics_listen` does not parse (validated configs never
    /// do this).
    #[error("dataplane.metrics_listen `{0}` is not an IP address and port")]
    MetricsListen(String),
    /// The metrics listener could not be bound.
    #[error("cannot serve metrics on {addr} (dataplane.metrics_listen): {source}")]
    Metrics { addr: SocketAddr, source: io::Error },
    /// A `cluster.tls_*` file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The generated id could not be read or kept.
    #[error("cannot keep the data plane id in {path}: {source}")]
    Id { path: PathBuf, source: io::Error },
}

/// A bound data plane, ready to [`serve`](Dataplane::serve).
pub struct Dataplane {
    endpoint: VoiceEndpoint,
    handle: Handle,
    link: Link,
    state: watch::Receiver<LinkState>,
    quic_addr: SocketAddr,
    udp_addr: SocketAddr,
    registration: Registration,
    /// `None` when `dataplane.metrics_listen` is empty.
    metrics: Option<OpsListener>,
    /// See `DataplaneConfig::advertised_only_locally`.
    advertised_only_locally: bool,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("quic_addr", &self.quic_addr)
            .field("udp_addr", &self.udp_addr)
            .field("registration", &self.registration)
            .field("metrics_addr", &self.metrics_addr())
            .finish_non_exhaustive()
    }
}

impl Dataplane {
    /// Loads (or generates) the certificate and the id, binds the QUIC
    /// voice listener on `dataplane.host:dataplane.quic_port` and the HTTP
    /// listener for metrics on `dataplane.metrics_listen` (unless empty).
    /// Must be called within a tokio runtime.
    pub async fn bind(config: &Config) -> Result<Dataplane, StartError> {
        let secret = config
            .cluster
            .secret
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or(StartError::NoSecret)?;
        let dp = &config.dataplane;
        let data_dir = &config.storage.data_dir;
        let cert = match (&dp.tls_cert, &dp.tls_key) {
            (Some(cert), Some(key)) => DataplaneCert::from_pem_files(cert, key)?,
            _ => DataplaneCert::load_or_generate(data_dir)?,
        };
        let id = match &dp.id {
            Some(id) => id.clone(),
            None => load_or_create_id(data_dir)?,
        };
        let ip: IpAddr = dp
            .host
            .parse()
            .map_err(|_| StartError::Host(dp.host.clone()))?;
        let metrics_addr = dp
            .metrics_addr()
            .map_err(|_| StartError::MetricsListen(dp.metrics_listen.clone()))?;
        let addr = SocketAddr::new(ip, dp.quic_port);
        let verifier = Arc::new(RwLock::new(TicketVerifier::new()));
        let (endpoint, handle) =
            VoiceEndpoint::bind(addr, &cert, router_config(config), verifier.clone())
                .map_err(|source| StartError::Bind { addr, source })?;
        let quic_addr = endpoint.local_addr().map_err(|e| StartError::Bind {
            addr,
            source: e.into(),
        })?;
        let plain = SocketAddr::new(ip, dp.udp_port);
        let endpoint = endpoint
            .with_plain_udp_workers(plain, dp.udp_worker_count())
            .map_err(|e| StartError::Bind {
                addr: plain,
                source: e.into(),
            })?;
        if dp.socket_buffer_bytes > 0 {
            note_socket_buffers(&endpoint, dp.socket_buffer_bytes);
        }
        let endpoint = endpoint
            .with_send_workers(dp.udp_send_workers)
            .map_err(|e| StartError::Bind {
                addr: plain,
                source: e.into(),
            })?;
        let udp_addr = endpoint.plain_addr().ok_or(StartError::Bind {
            addr: plain,
            source: io::Error::other("the plain UDP socket has no address").into(),
        })?;
        let registration = Registration {
            dataplane_id: id,
            quic_endpoint: host_port(&dp.advertised_host(), quic_addr.port()),
            udp_endpoint: host_port(&dp.advertised_host(), udp_addr.port()),
            cert_sha256: cert.fingerprint(),
            capacity: dp.capacity,
        };
        let (link, state) = Link::new(
            LinkConfig {
                control_addr: config.cluster.control_addr.clone(),
                secret,
                tls: link_tls(&config.cluster)?,
                register: registration.clone(),
            },
            handle.clone(),
            verifier,
        )
        .expect("a new endpoint still holds its event receiver");
        let metrics = match metrics_addr {
            Some(addr) => Some(
                OpsListener::bind(addr, "metrics")
                    .await
                    .map_err(|source| StartError::Metrics { addr, source })?,
            ),
            None => None,
        };
        Ok(Dataplane {
            endpoint,
            handle,
            link,
            state,
            quic_addr,
            udp_addr,
            registration,
            metrics,
            advertised_only_locally: dp.advertised_only_locally(),
        })
    }

    /// The QUIC listener's bound address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The plain-UDP listener's bound address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The metrics listener's bound address (`/metrics`, `/healthz`);
    /// `None` when `dataplane.metrics_listen` is empty.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(OpsListener::local_addr)
    }

    /// SHA-256 of the certificate, as clients pin it.
    pub fn cert_sha256(&self) -> &str {
        &self.registration.cert_sha256
    }

    /// The id it registers under.
    pub fn id(&self) -> &str {
        &self.registration.dataplane_id
    }

    /// The `host:port` clients are told to dial.
    pub fn quic_endpoint(&self) -> &str {
        &self.registration.quic_endpoint
    }

    /// The `host:port` plain-UDP clients are told to send to.
    pub fn udp_endpoint(&self) -> &str {
        &self.registration.udp_endpoint
    }

    /// Follows the link's state (attached, away).
    pub fn link_state(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Controls the running endpoint (counters, membership).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Routes voice, follows the control plane and answers metrics
    /// scrapes until `shutdown` resolves; then closes every voice
    /// connection, detaches and stops serving metrics.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let metrics_addr = self.metrics_addr();
        let Dataplane {
            endpoint,
            handle,
            link,
            state,
            registration,
            metrics,
            advertised_only_locally,
            ..
        } = self;
        info!(
            id = %registration.dataplane_id,
            quic = %registration.quic_endpoint,
            udp = %registration.udp_endpoint,
            cert_sha256 = %registration.cert_sha256,
            metrics = %metrics_addr.map_or_else(|| "off".to_owned(), |a| a.to_string()),
            udp_send_workers = endpoint.send_workers(),
            udp_workers = endpoint.udp_workers(),
            "data plane routing voice over QUIC and plain UDP"
        );
        if advertised_only_locally {
            warn!(
                quic = %registration.quic_endpoint,
                "voice listens on every interface but clients are told to dial a loopback address, so only this machine can join calls: set dataplane.public_host (OPENSPEAK_DATAPLANE__PUBLIC_HOST) to an address or name your clients can reach"
            );
        }
        let (stop_link, link_stopped) = oneshot::channel::<()>();
        let link = tokio::spawn(link.run(async {
            let _ = link_stopped.await;
        }));
        let (stop_metrics, metrics_stopped) = oneshot::channel::<()>();
        let metrics = metrics.map(|metrics| {
            tokio::spawn(
                metrics.serve(metrics::routes(handle.clone(), state), async {
                    let _ = metrics_stopped.await;
                }),
            )
        });
        let mut endpoint = tokio::spawn(endpoint.run());
        tokio::select! {
            () = shutdown => {}
            // The endpoint ends on its own only if it failed; stop the rest.
            _ = &mut endpoint => {}
        }
        let _ = stop_link.send(());
        let _ = stop_metrics.send(());
        handle.shutdown();
        let _ = endpoint.await;
        let _ = link.await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        info!("data plane stopped");
    }
}

/// `host:port`, with brackets around an IPv6 host.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The id kept in `<dir>/dataplane_id`, made on first start.
fn load_or_create_id(dir: &Path) -> Result<String, StartError> {
    let path = dir.join(ID_FILE);
    let failed = |source| StartError::Id {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let id = format!("dp-{:016x}", rand::random::<u64>());
    fs::create_dir_all(dir).map_err(failed)?;
    write_atomic(&path, format!("{id}\n").as_bytes(), 0o644).map_err(failed)?;
    Ok(id)
}

/// The router's settings from the configuration's keys.
fn router_config(config: &Config) -> RouterConfig {
    let voice = &config.voice;
    RouterConfig {
        max_packets_per_second: voice.max_packets_per_second,
        max_bytes_per_second: voice.max_bytes_per_second,
        max_payload_bytes: voice.max_payload_bytes,
        ..RouterConfig::new(
            config.audio.jitter_buffer_ms,
            voice.max_packet_age_ms,
            voice.max_broadcast_lag_ms,
        )
    }
}

/// Asks for `dataplane.socket_buffer_bytes` on the voice sockets and says
/// what the kernel gave; less than asked is a warning naming the sysctls
/// that cap it, since a small buffer drops voice in bursts.
fn note_socket_buffers(endpoint: &VoiceEndpoint, bytes: usize) {
    match endpoint.set_socket_buffers(bytes) {
        Ok(sizes) if sizes.iter().all(|&(rx, tx)| rx >= bytes && tx >= bytes) => {
            tracing::info!(bytes, "voice socket buffers sized");
        }
        Ok(sizes) => warn!(
            asked = bytes,
            got = ?sizes,
            "the kernel gave the voice sockets smaller buffers than dataplane.socket_buffer_bytes \
             asks (receive, send per socket); raise net.core.rmem_max and net.core.wmem_max \
             (sysctl) to allow more"
        ),
        Err(e) => warn!(error = %e, "cannot size the voice socket buffers"),
    }
}

/// TLS for the internal link when `cluster.control_addr` is `https://`:
/// trusting `cluster.tls_ca` (else the public authorities) and presenting
/// `cluster.tls_cert` when the control plane asks for a certificate.
fn link_tls(cluster: &ClusterConfig) -> Result<Option<ClientTlsConfig>, StartError> {
    if !cluster.control_addr.starts_with("https://") {
        if cluster.tls_ca.is_some() || cluster.tls_cert.is_some() {
            warn!(
                control_addr = %cluster.control_addr,
                "cluster.tls_* is set but cluster.control_addr is http://: the internal link is plaintext"
            );
        }
        return Ok(None);
    }
    let read = |what, path: &PathBuf| {
        std::fs::read(path).map_err(|source| StartError::TlsFile {
            what,
            path: path.clone(),
            source,
        })
    };
    let mut tls = match &cluster.tls_ca {
        Some(ca) => ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("cluster.tls_ca", ca)?)),
        None => ClientTlsConfig::new().with_webpki_roots(),
    };
    if let (Some(cert), Some(key)) = (&cluster.tls_cert, &cluster.tls_key) {
        tls = tls.identity(Identity::from_pem(
            read("cluster.tls_cert", cert)?,
            read("cluster.tls_key", key)?,
        ));
    }
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(host_port("127.0.0.1", 5), "127.0.0.1:5");
        assert_eq!(host_port("::1", 5), "[::1]:5");
        assert_eq!(host_port("[::1]", 5), "[::1]:5");
        assert_eq!(host_port("voice.example.org", 5), "voice.example.org:5");
    }

    #[test]
    fn a_generated_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_id(dir.path()).unwrap();
        assert!(first.starts_with("dp-") && first.len() == 19, "{first}");
        assert_eq!(load_or_create_id(dir.path()).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create_id(other.path()).unwrap(), first);
    }

    #[test]
    fn router_config_comes_from_the_configuration() {
        let mut c = Config::default();
        c.audio.jitter_buffer_ms = 80;
        c.voice.max_packet_age_ms = 400;
        c.voice.max_broadcast_lag_ms = 150;
        c.voice.max_packets_per_second = 120;
        c.voice.max_bytes_per_second = 30_000;
        c.voice.max_payload_bytes = 500;
        let r = router_config(&c);
        assert_eq!(
            (
                r.jitter_buffer_ms,
                r.max_packet_age_ms,
                r.max_broadcast_lag_ms
            ),
            (80, 400, 150)
        );
        assert_eq!(
            (
                r.max_packets_per_second,
                r.max_bytes_per_second,
                r.max_payload_bytes
            ),
            (120, 30_000, 500)
        );
        assert_eq!(router_config(&Config::default()), RouterConfig::default());
    }
}
