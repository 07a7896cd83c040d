//! What OpenSpeak's tests share, so that every crate's tests wait, make
//! secrets and start servers the same way:
//!
//! - [`within`] and [`within_for`]: every wait is bounded, and a wait that
//!   runs out fails naming what it waited for.
//! - [`spawn_serving`]: a plane served as a task until the test drops
//!   its stop sender.
//! - [`command_in`]: a workspace binary as a child process, untouched by
//!   the test's own environment.
//! - [`random_secret`]: tokens and cluster secrets made per run; none is
//!   kept in the repository.
//! - [`test_config`] and [`on_loopback`]: configurations that bind only
//!   loopback addresses, on any free port.
//! - [`TestSystem`]: the whole server in the test's process (the library
//!   `openspeak-server` runs), started with a known admin token and
//!   returned once voice can be opened.
//! - [`voice`]: a data plane's voice endpoint alone, with tickets made by
//!   hand.

use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use openspeak_client::pb::event::Event as Ev;
use openspeak_client::{Client, Code, ResumingSession};
use openspeak_dataplane::{Dataplane, Handle, LinkState};
use openspeak_server::System;
use openspeak_shared::Config;
use openspeak_shared::config::Seconds;
use tempfile::TempDir;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub mod http;
pub mod voice;

/// The longest any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future` for at most [`WAIT`]; panics naming `what` when it
/// takes longer.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    within_for(WAIT, what, future).await
}

/// Awaits `future` for at most `limit`; panics naming `what` when it
/// takes longer.
pub async fn within_for<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// The shutdown signal [`spawn_serving`] gives a plane's `serve`.
pub type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Spawns a plane's `serve` (`serve` calls it with the shutdown signal it
/// is to stop at) and returns the task with the sender that stops it: the
/// signal comes when the sender is sent on or dropped, so a test's server
/// lives as long as the test keeps the sender.
pub fn spawn_serving<F>(
    serve: impl FnOnce(Shutdown) -> F,
) -> (oneshot::Sender<()>, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(Box::pin(async {
        let _ = stopped.await;
    })));
    (stop, task)
}

/// A data plane serving as a task, attached to its control plane.
pub struct AttachedDataplane {
    pub handle: Handle,
    /// Its link to the control plane.
    pub state: watch::Receiver<LinkState>,
    /// Stops it when sent on or dropped (see [`spawn_serving`]).
    pub stop: oneshot::Sender<()>,
}

/// Binds a data plane on `config`, put [`on_loopback`], serves it, and
/// waits until it has attached to the control plane `config` names.
pub async fn serve_attached_dataplane(mut config: Config) -> AttachedDataplane {
    on_loopback(&mut config);
    let dataplane = Dataplane::bind(&config)
        .await
        .expect("the data plane binds");
    let handle = dataplane.handle();
    let mut state = dataplane.link_state();
    let (stop, _) = spawn_serving(|shutdown| dataplane.serve(shutdown));
    within(
        "the data plane to attach",
        state.wait_for(|s| matches!(s, LinkState::Attached { .. })),
    )
    .await
    .expect("the data plane runs");
    AttachedDataplane {
        handle,
        state,
        stop,
    }
}

/// Waits (for at most [`WAIT`]) until `session` hears its own
/// `member_joined` in `channel`.
pub async fn wait_joined(session: &mut ResumingSession, channel: &str) {
    let me = session.id();
    session
        .wait_for(
            |e| matches!(e.server(), Some(Ev::MemberJoined(m)) if m.session_id == me && m.channel_id == channel),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("session {me}: no member_joined in {channel}: {e:?}"));
}

/// A command for `program`, run in `cwd`, for a test that reads what it
/// writes: no stdin, stdout and stderr piped, killed when dropped, and none
/// of the test's own `OPENSPEAK_*` variables (only those the test sets).
pub fn command_in(program: impl AsRef<std::ffi::OsStr>, cwd: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OPENSPEAK_") {
            command.env_remove(name);
        }
    }
    command
}

/// A random secret of this test run, `<prefix>_` and 32 hex digits.
pub fn random_secret(prefix: &str) -> String {
    format!("{prefix}_{:032x}", rand::random::<u128>())
}

/// A control plane's configuration for tests: loopback, any free port,
/// state in `data_dir`, `bootstrap_token` as the first admin token, a short
/// shutdown grace, and a failure limit so high that tests presenting bad
/// tokens on purpose never get the address banned.
pub fn test_config(data_dir: &Path, bootstrap_token: Option<&str>) -> Config {
    let mut config = Config::default();
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    config.server.shutdown_grace = Seconds(5);
    config.cluster.listen = "127.0.0.1:0".into();
    // Tests run side by side: each control plane's metrics on a port of its own.
    config.metrics.listen = "127.0.0.1:0".into();
    config.storage.data_dir = data_dir.to_owned();
    config.auth.bootstrap_token = bootstrap_token.map(str::to_owned);
    config.auth.max_failures = 1_000_000;
    config
}

/// A fresh state directory, a random admin token, and [`test_config`] on
/// them: where a test's own server starts. The directory must live as
/// long as the server.
pub fn fresh_config() -> (TempDir, String, Config) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let admin_token = random_secret("test");
    let config = test_config(dir.path(), Some(&admin_token));
    (dir, admin_token, config)
}

/// Puts a data plane's listeners on loopback, on any free ports, metrics
/// included.
pub fn on_loopback(config: &mut Config) {
    config.dataplane.host = "127.0.0.1".into();
    config.dataplane.quic_port = 0;
    config.dataplane.udp_port = 0;
    config.dataplane.metrics_listen = "127.0.0.1:0".into();
}

/// The whole server in this process, as `openspeak-server` runs it, on
/// loopback, with state in a temporary directory. Dropping it leaves the
/// planes to stop with the test's runtime; [`TestSystem::stop`] stops them
/// in order.
pub struct TestSystem {
    /// The running planes.
    pub system: System,
    /// The bootstrap admin token.
    pub admin_token: String,
    /// The state directory lives as long as the planes.
    _dir: TempDir,
}

impl TestSystem {
    /// Starts both planes with the test configuration.
    pub async fn start() -> TestSystem {
        Self::start_with(|_| {}).await
    }

    /// [`start`](Self::start) with the configuration changed by
    /// `configure` after the kit's own settings (e.g.
    /// `voice.max_packet_age_ms`). Returns once the data plane is attached
    /// and `OpenVoice` places voice on it.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> TestSystem {
        let (dir, admin_token, mut config) = fresh_config();
        on_loopback(&mut config);
        configure(&mut config);
        let system = within_for(
            WAIT + openspeak_server::ATTACH_WAIT,
            "both planes to start",
            System::start(config),
        )
        .await
        .expect("both planes start");
        assert!(system.attached(), "the data plane attaches in time");
        let test = TestSystem {
            system,
            admin_token,
            _dir: dir,
        };
        test.wait_for_voice().await;
        test
    }

    /// The control plane's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.system.grpc_addr())
    }

    /// A client with the admin token.
    pub async fn admin(&self) -> Client {
        within(
            "the admin to connect",
            Client::connect(&self.url(), &self.admin_token),
        )
        .await
        .expect("the admin connects")
    }

    /// Retries `OpenVoice` from a session in the default channel until the
    /// control plane stops answering UNAVAILABLE (`NO_DATAPLANE`): the data
    /// plane's registration and the placement of voice have then happened.
    /// No event announces that, so this polls, briefly.
    async fn wait_for_voice(&self) {
        let admin = self.admin().await;
        let probe = admin.start_session("probe").await.expect("a probe session");
        within("OpenVoice to place voice", async {
            loop {
                match probe.open_voice().await {
                    Ok(_) => return,
                    Err(e) if e.code() == Some(Code::Unavailable) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("OpenVoice failed: {e:?}"),
                }
            }
        })
        .await;
        // Dropping the session ends the probe.
    }

    /// Stops both planes and waits for them.
    pub async fn stop(self) {
        within("both planes to stop", self.system.stop())
            .await
            .expect("both planes stop cleanly");
    }
}
