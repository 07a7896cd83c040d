//! What the load generator's system tests share: both planes in this
//! process on `127.0.0.1` with any free ports (the test kit's
//! `TestSystem`, as `openspeak-server` runs them), a fresh admin token and
//! state directory each, the admin's view of what a run left behind, and
//! the bounded waits the tests use.
//!
//! Every wait here is bounded, by [`WAIT`] or by the test kit's own.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use openspeak_shared::config::Config;
use openspeak_shared::metadata::AUTHORIZATION;
use openspeak_shared::pb;
use openspeak_testkit::{TestSystem, within_for};
use tokio::sync::watch;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

/// Bound on any one test's waiting.
pub const WAIT: Duration = Duration::from_secs(60);

/// Both planes serving in this process (`openspeak_testkit::TestSystem`),
/// with what the load generator is pointed at.
pub struct System {
    /// The control plane's public gRPC address.
    pub addr: SocketAddr,
    /// The bootstrap admin token.
    pub admin_token: String,
    /// The data plane's metrics listener (`GET /metrics`).
    pub metrics_addr: SocketAddr,
    /// The planes; they stop with the test's runtime.
    _system: TestSystem,
}

/// Starts a control plane and a data plane, and returns once the data
/// plane has attached and `OpenVoice` places voice on it.
pub async fn start_system() -> System {
    start_system_with(|_| {}).await
}

/// [`start_system`] with the configuration changed by `configure` (e.g.
/// `voice.max_packet_age_ms`) after the test kit's own settings.
pub async fn start_system_with(configure: impl FnOnce(&mut Config)) -> System {
    let system = TestSystem::start_with(configure).await;
    System {
        addr: system.system.grpc_addr(),
        admin_token: system.admin_token.clone(),
        metrics_addr: system
            .system
            .metrics_addr()
            .expect("the data plane serves metrics on metrics_listen"),
        _system: system,
    }
}

/// [`start_system`] with the control plane's metrics listener
/// (`metrics.listen`) on a port picked here, and that address. The test
/// kit's `TestSystem` does not expose the address the control plane bound
/// (`ControlPlane::metrics_addr`): its `System` keeps the control plane
/// inside a task. So the port is one that was free a moment ago; another
/// process taking it in between would fail the start, not pass a test.
pub async fn start_system_with_control_metrics() -> (System, SocketAddr) {
    let addr = free_addr();
    let system = start_system_with(|c| c.metrics.listen = addr.to_string()).await;
    (system, addr)
}

/// An address on 127.0.0.1 whose port was free a moment ago: nobody
/// listens there (unless another process took it in between), and a
/// listener may bind it.
pub fn free_addr() -> SocketAddr {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    free.local_addr().expect("its address")
}

pub fn bearer(token: &str) -> AsciiMetadataValue {
    format!("Bearer {token}").parse().expect("a valid header")
}

/// A plaintext connection to the control plane at `addr`.
pub async fn connection(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `message` as a request carrying `token`.
fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(AUTHORIZATION, bearer(token));
    request
}

/// What the control plane at `addr` still holds, asked with the admin
/// token: the channels' names and the tokens' labels. After a run, its
/// channels should be gone and its member token revoked.
pub async fn leftovers(addr: SocketAddr, admin_token: &str) -> (Vec<String>, Vec<String>) {
    let channel = connection(addr).await;
    let channels = pb::channel_service_client::ChannelServiceClient::new(channel.clone())
        .list_channels(authorized(pb::ListChannelsRequest {}, admin_token))
        .await
        .unwrap()
        .into_inner()
        .channels;
    let tokens = pb::auth_service_client::AuthServiceClient::new(channel)
        .list_tokens(authorized(pb::ListTokensRequest {}, admin_token))
        .await
        .unwrap()
        .into_inner()
        .tokens;
    (
        channels.into_iter().map(|c| c.name).collect(),
        tokens.into_iter().map(|t| t.label).collect(),
    )
}

/// An interrupt that never fires.
pub fn no_interrupt() -> watch::Receiver<bool> {
    watch::channel(false).1
}

/// Awaits `future` for at most [`WAIT`].
pub async fn within<T>(future: impl Future<Output = T>) -> T {
    within_for(WAIT, "the test", future).await
}
