//! The `sessions` scenario against a real control plane on `127.0.0.1:0`,
//! in process: the run is clean, its checks see what they should, and it
//! leaves nothing behind.
//!
//! Every wait is bounded: the scenario by its own `--timeout`, the whole
//! test by `support::WAIT`.

mod support;

use std::net::SocketAddr;

use openspeak_control::ControlPlane;
use openspeak_loadtest::{
    ConnectError, JsonReport, Outcome, RunError, RunFlags, SessionsArgs, SetupError, run_sessions,
};
use support::{free_addr, no_interrupt, within};
use tempfile::TempDir;
use tokio::sync::{oneshot, watch};

/// A control plane serving in this test's runtime.
struct Server {
    addr: SocketAddr,
    admin_token: String,
    /// Stops the server when dropped.
    _shutdown: oneshot::Sender<()>,
    /// The state directory lives as long as the server.
    _dir: TempDir,
}

async fn start_server() -> Server {
    start_server_with(|_| {}).await
}

async fn start_server_with(adjust: impl FnOnce(&mut openspeak_shared::config::Config)) -> Server {
    let (dir, admin_token, mut config) = openspeak_testkit::fresh_config();
    adjust(&mut config);
    let cp = ControlPlane::bind(config)
        .await
        .expect("the control plane binds");
    let addr = cp.local_addr();
    let (tx, _) = openspeak_testkit::spawn_serving(|shutdown| cp.serve(shutdown));
    Server {
        addr,
        admin_token,
        _shutdown: tx,
        _dir: dir,
    }
}

fn args(server: &Server, clients: u32, channels: u32) -> SessionsArgs {
    let mut run = RunFlags::new(&server.addr.to_string(), &server.admin_token);
    run.connections = 4;
    run.ramp_concurrency = 8;
    run.quiet = true;
    SessionsArgs {
        run,
        clients,
        channels,
        timeout: 30,
        as_admin: false,
    }
}

/// What the server still holds: channel names and token labels.
async fn leftovers(server: &Server) -> (Vec<String>, Vec<String>) {
    support::leftovers(server.addr, &server.admin_token).await
}

/// Asserts that a run left nothing behind: of the channels only Lobby, and
/// no member token.
async fn assert_cleaned_up(server: &Server) {
    let (channels, tokens) = leftovers(server).await;
    assert_eq!(channels, ["Lobby"], "the run's channels are deleted");
    assert!(
        !tokens.iter().any(|l| l == "loadtest"),
        "the member token is revoked: {tokens:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_is_clean_and_leaves_nothing_behind() {
    within(async {
        let server = start_server().await;
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("report.json");
        let mut a = args(&server, 40, 4);
        a.run.json = Some(json.clone());
        // The server runs in this very process.
        a.run.server_pid = Some(std::process::id());
        let report = run_sessions(&a, no_interrupt())
            .await
            .expect("the run starts");

        assert_eq!(report.outcome, Outcome::Completed, "{}", report.table());
        assert!(report.clean(), "{}", report.table());
        assert_eq!(report.sessions_started, 40);
        assert_eq!(report.joins_ok, 40);
        assert_eq!(report.presence_ok, 40);
        assert!(report.expected_events > 0);
        assert_eq!(report.missing_events, 0);
        assert!(report.event_delay_us.count >= report.expected_events);
        assert!(report.joins_per_sec > 0.0);
        assert_eq!(report.sessions_left_online, Some(0));
        assert_eq!(report.events_by_kind["session_started"], 40);
        // Each sees at least its own two changes (later sessions miss earlier ones).
        assert!(report.events_by_kind["presence_changed"] >= 40 * 2);

        report.write_json(&json).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["clients"], 40);
        assert_eq!(v["missing_events"], 0);
        assert!(v["loadtest_cpu_s"].is_number());
        assert_eq!(v["server"]["pid"], std::process::id());
        if cfg!(target_os = "linux") {
            for key in [
                "cpu_s",
                "peak_rss_kb",
                "cpu_us_per_event",
                "rss_kb_per_session",
            ] {
                assert!(v["server"][key].is_number(), "server.{key}: {v}");
            }
            assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        }

        assert_cleaned_up(&server).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_runs_and_keep_leaves_the_channels() {
    within(async {
        let server = start_server().await;
        let mut a = args(&server, 10, 2);
        a.as_admin = true;
        a.run.keep = true;
        a.run.run_id = Some("kept".into());
        // No such process: the numbers are null, the run goes on.
        a.run.server_pid = Some(u32::MAX);
        let report = run_sessions(&a, no_interrupt()).await.unwrap();
        assert!(report.clean(), "{}", report.table());
        let stats = report.server.as_ref().expect("asked for");
        assert_eq!((stats.cpu_s, stats.peak_rss_kb), (None, None));
        assert!(
            report.warnings.iter().any(|w| w.contains("server CPU")),
            "{:?}",
            report.warnings
        );
        let (channels, tokens) = leftovers(&server).await;
        assert_eq!(channels.len(), 3, "Lobby and the two kept: {channels:?}");
        assert!(channels.iter().any(|c| c == "load-kept-1"));
        assert!(
            !tokens.iter().any(|l| l == "loadtest"),
            "no member token made"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_cuts_the_run_short_but_it_still_reports() {
    within(async {
        let server = start_server().await;
        let (tx, rx) = watch::channel(false);
        tx.send(true).unwrap();
        let report = run_sessions(&args(&server, 20, 2), rx).await.unwrap();
        assert_eq!(report.outcome, Outcome::Interrupted);
        assert!(!report.clean());
        // Cleaned up all the same.
        assert_cleaned_up(&server).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_or_address_is_a_clear_error() {
    within(async {
        let server = start_server().await;
        let mut a = args(&server, 1, 1);
        a.run.server.token = "not-a-token".into();
        let err = run_sessions(&a, no_interrupt()).await.unwrap_err();
        assert!(
            matches!(err, RunError::Setup(SetupError::WhoAmI { .. })),
            "{err:?}"
        );
        assert!(err.to_string().contains(&server.addr.to_string()), "{err}");

        // A port nobody listens on.
        let addr = free_addr().to_string();
        let mut a = args(&server, 1, 1);
        a.run.server.addr = addr.clone();
        let err = run_sessions(&a, no_interrupt()).await.unwrap_err();
        assert!(
            matches!(err, RunError::Connect(ConnectError::Unreachable { .. })),
            "{err:?}"
        );
        assert_eq!(err.to_string(), format!("cannot connect to {addr}"));
    })
    .await;
}

/// Against a control plane serving TLS with its self-signed certificate:
/// with that certificate as `--ca` the run is as clean as over plaintext;
/// trusting only the public authorities, it stops at the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reaches_a_tls_server_with_its_ca_file_and_not_without() {
    within(async {
        let server = start_server_with(|c| c.server.tls_self_signed = true).await;
        let cert = server
            ._dir
            .path()
            .join(openspeak_control::SELF_SIGNED_CERT_FILE);
        let mut a = args(&server, 10, 2);
        // The certificate names localhost, not the address dialled.
        a.run.server.addr = format!("localhost:{}", server.addr.port());
        a.run.server.ca = Some(cert);
        let report = run_sessions(&a, no_interrupt())
            .await
            .expect("the run starts over TLS");
        assert_eq!(report.outcome, Outcome::Completed, "{}", report.table());
        assert!(report.clean(), "{}", report.table());
        assert_eq!(report.sessions_started, 10);

        a.run.server.addr = format!("https://localhost:{}", server.addr.port());
        a.run.server.ca = None;
        match run_sessions(&a, no_interrupt()).await {
            Err(RunError::Connect(ConnectError::Unreachable { addr, .. })) => {
                assert!(addr.contains("localhost"), "{addr}");
            }
            other => panic!("an untrusted certificate must stop the run: {other:?}"),
        }
    })
    .await;
}
