//! The control plane's `/metrics`, `/healthz` and `/readyz` over a real
//! socket: the samples follow what clients do (sessions, channels, a bad
//! token, a refused session), and readiness ends when shutdown begins.

mod support;

use std::net::SocketAddr;

use openspeak_shared::Reason;
use support::{ClientExt, TestServer, expect_reason, within};

/// `GET path`: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let reply = openspeak_testkit::http::get(addr, path).await;
    (reply.status, reply.body)
}

/// The value of the sample `name` (with its labels) in `text`.
fn value(text: &str, name: &str) -> f64 {
    let name = format!("openspeak_control_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn samples_follow_sessions_channels_and_refusals() {
    let server = TestServer::start_with(|config| config.auth.max_sessions_per_token = 1).await;
    let addr = server
        .metrics_addr
        .expect("tests serve metrics on a free port");
    let (server, admin, member) = server.with_member().await;

    let (status, before) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(value(&before, "sessions"), 0.0);
    assert_eq!(value(&before, "channels"), 1.0, "the default channel");
    assert_eq!(value(&before, "dataplanes_attached"), 0.0);
    assert!(
        before.contains("process_resident_memory_bytes "),
        "{before}"
    );
    assert!(
        before.contains("openspeak_build_info{component=\"control\""),
        "{before}"
    );

    let _session = member.session("one").await;
    admin.create_channel("Counted").await.unwrap();
    expect_reason(
        within("a second session", member.start_session("two")).await,
        Reason::RateLimited,
    );
    let bad = admin.with_token("not-a-token").unwrap();
    assert!(bad.whoami().await.is_err());

    let (_, after) = get(addr, "/metrics").await;
    assert_eq!(value(&after, "sessions"), 1.0);
    assert_eq!(value(&after, "channels"), 2.0);
    assert_eq!(value(&after, "refused_total{reason=\"session_cap\"}"), 1.0);
    assert_eq!(value(&after, "refused_total{reason=\"rate_limited\"}"), 0.0);
    assert_eq!(value(&after, "auth_failures_total"), 1.0);
    drop(server);
}

#[tokio::test]
async fn health_and_readiness_and_other_paths_are_404() {
    let mut server = TestServer::start().await;
    let addr = server.metrics_addr.unwrap();
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".into()));
    for path in ["/", "/metrics/", "/health"] {
        assert_eq!(get(addr, path).await.0, 404, "{path}");
    }

    // A session that stays open holds the drain up (up to the grace
    // period): meanwhile the control plane says it is not ready.
    let admin = server.admin().await;
    let mut session = admin.session("holds the drain").await;
    server.trigger_shutdown();
    session
        .wait_for("server_shutdown", |e| {
            matches!(e, openspeak_shared::pb::event::Event::ServerShutdown(_))
        })
        .await;
    assert_eq!(
        get(addr, "/readyz").await,
        (503, "not ready: shutting down\n".into())
    );
    assert_eq!(get(addr, "/healthz").await.0, 200, "alive while it drains");
}
