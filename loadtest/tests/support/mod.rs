//! What the in-process system tests share: both planes started in the
//! test's runtime on `127.0.0.1` with any free ports, joined by the
//! internal link, with a fresh admin token and state directory each, and
//! the bounded waits the tests use.
//!
//! Every wait here is bounded: the data plane's attaching and the placing
//! of voice by [`ATTACH`].

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use openspeak_control::ControlPlane;
use openspeak_dataplane::{Dataplane, LinkState};
use openspeak_shared::config::Config;
use openspeak_shared::metadata::{AUTHORIZATION, SESSION};
use openspeak_shared::pb;
use tempfile::TempDir;
use tokio::sync::{oneshot, watch};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

/// Bound on any one test's waiting.
pub const WAIT: Duration = Duration::from_secs(60);
/// Bound on the data plane attaching and the control plane placing voice.
pub const ATTACH: Duration = Duration::from_secs(10);

/// Both planes serving in this test's runtime.
pub struct System {
    /// The control plane's public gRPC address.
    pub addr: SocketAddr,
    /// The bootstrap admin token.
    pub admin_token: String,
    /// The data plane's metrics listener (`GET /metrics`).
    pub metrics_addr: SocketAddr,
    /// Stop the planes when dropped.
    _stop_control: oneshot::Sender<()>,
    _stop_data: oneshot::Sender<()>,
    /// The state directories live as long as the planes.
    _dir: TempDir,
}

/// A secret made by the test; none is kept in the repository.
pub fn random_secret(prefix: &str) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!(
        "{prefix}_{:016x}{:016x}",
        h.finish(),
        h.finish().rotate_left(17)
    )
}

/// Starts a control plane and a data plane, and returns once the data
/// plane has attached and `OpenVoice` places voice on it.
pub async fn start_system() -> System {
    start_system_with(|_| {}).await
}

/// [`start_system`] with the data plane's configuration changed by
/// `configure` (e.g. `voice.max_packet_age_ms`), after the harness's own
/// settings; the control plane has started by then, with those alone.
pub async fn start_system_with(configure: impl FnOnce(&mut Config)) -> System {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let admin_token = random_secret("test");
    let mut config = Config::default();
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    config.storage.data_dir = dir.path().join("control");
    config.auth.bootstrap_token = Some(admin_token.clone());
    config.auth.max_failures = 1_000_000;
    config.cluster.listen = "127.0.0.1:0".into();
    config.cluster.secret = Some(random_secret("cluster"));
    let control = ControlPlane::bind(config.clone())
        .await
        .expect("the control plane binds");
    let addr = control.local_addr();
    config.cluster.control_addr = format!("http://{}", control.cluster_addr());
    config.dataplane.host = "127.0.0.1".into();
    config.dataplane.quic_port = 0;
    config.dataplane.udp_port = 0;
    config.dataplane.metrics_listen = "127.0.0.1:0".into();
    config.storage.data_dir = dir.path().join("dataplane");
    configure(&mut config);
    let data = Dataplane::bind(&config)
        .await
        .expect("the data plane binds");
    let metrics_addr = data
        .metrics_addr()
        .expect("the data plane serves metrics on metrics_listen");
    let mut link = data.link_state();
    let (stop_control, control_stopped) = oneshot::channel::<()>();
    let (stop_data, data_stopped) = oneshot::channel::<()>();
    tokio::spawn(control.serve(async {
        let _ = control_stopped.await;
    }));
    tokio::spawn(data.serve(async {
        let _ = data_stopped.await;
    }));
    tokio::time::timeout(
        ATTACH,
        link.wait_for(|s| matches!(s, LinkState::Attached { .. })),
    )
    .await
    .expect("the data plane attaches in time")
    .expect("the link reports its state");
    let system = System {
        addr,
        admin_token,
        metrics_addr,
        _stop_control: stop_control,
        _stop_data: stop_data,
        _dir: dir,
    };
    wait_for_voice(&system).await;
    system
}

pub fn bearer(token: &str) -> AsciiMetadataValue {
    format!("Bearer {token}").parse().expect("a valid header")
}

pub async fn connection(system: &System) -> Channel {
    Endpoint::from_shared(format!("http://{}", system.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Retries `OpenVoice` from a session in the default channel until the
/// control plane stops answering UNAVAILABLE (`NO_DATAPLANE`): the data
/// plane's registration and the placement of voice have then happened.
pub async fn wait_for_voice(system: &System) {
    let channel = connection(system).await;
    let mut connect = tonic::Request::new(pb::ConnectRequest {
        display_name: "probe".into(),
    });
    connect
        .metadata_mut()
        .insert(AUTHORIZATION, bearer(&system.admin_token));
    let mut stream = pb::presence_service_client::PresenceServiceClient::new(channel.clone())
        .connect(connect)
        .await
        .unwrap()
        .into_inner();
    let Some(pb::event::Event::SessionStarted(started)) =
        stream.message().await.unwrap().unwrap().event
    else {
        panic!("the first event is session_started");
    };
    let mut voice = pb::voice_service_client::VoiceServiceClient::new(channel);
    let deadline = tokio::time::Instant::now() + ATTACH;
    loop {
        let mut open = tonic::Request::new(pb::OpenVoiceRequest {});
        open.metadata_mut()
            .insert(AUTHORIZATION, bearer(&system.admin_token));
        open.metadata_mut()
            .insert(SESSION, AsciiMetadataValue::from(started.session_id));
        match voice.open_voice(open).await {
            Ok(_) => break,
            Err(status) if status.code() == tonic::Code::Unavailable => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "OpenVoice still UNAVAILABLE after {ATTACH:?}: {status:?}"
                );
                // No event announces the placement; poll, briefly.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("OpenVoice failed: {status:?}"),
        }
    }
    // Dropping the stream ends the probe session.
}

/// An interrupt that never fires.
pub fn no_interrupt() -> watch::Receiver<bool> {
    watch::channel(false).1
}

/// Awaits `future` for at most [`WAIT`].
pub async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("the test finished in time")
}
