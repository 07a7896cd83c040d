//! A [`ResumingSession`] against a real control plane in this process:
//! stopped, then started again on the same data directory and the same
//! port, as an operator restarts one. The session comes back by itself,
//! under a new id, in the same channel, with the same presence; a session
//! ended on purpose (its token revoked) does not.
//!
//! A call following its session to the new id needs a data plane that
//! reattaches to the restarted control plane; that is tested with the
//! real processes, in the root package's `tests/system.rs`.
//!
//! Every wait is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openspeak_client::pb::{self, event::Event as Ev};
use openspeak_client::{
    Client, ClientError, Code, NewChannel, PresenceUpdate, Rejoin, SessionEvent, TokenLifetime,
};
use openspeak_control::{ControlPlane, ServeError};
use openspeak_shared::config::Seconds;
use openspeak_testkit::{WAIT, random_secret, spawn_serving, test_config, wait_joined, within};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A control plane serving in the test's runtime.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<Result<(), ServeError>>,
}

/// A control plane's state directory and admin token, which outlive each
/// [`Running`] control plane on them.
struct State {
    data: TempDir,
    admin_token: String,
}

impl State {
    /// A fresh state, and a control plane running on it on any port.
    async fn start() -> (Self, Running) {
        let state = State {
            data: TempDir::new().unwrap(),
            admin_token: random_secret("admin"),
        };
        let running = state.run(0).await;
        (state, running)
    }

    /// Binds a control plane on this state and `port` (0: any) and serves.
    async fn run(&self, port: u16) -> Running {
        let mut config = test_config(self.data.path(), Some(&self.admin_token));
        config.server.port = port;
        config.server.shutdown_grace = Seconds(2);
        let control = ControlPlane::bind(config)
            .await
            .expect("the control plane binds");
        let addr = control.local_addr();
        let (stop, serving) = spawn_serving(|shutdown| control.serve(shutdown));
        Running {
            addr,
            stop,
            serving,
        }
    }

    /// A client of the control plane at `addr` with the admin token.
    async fn admin(&self, addr: SocketAddr) -> Client {
        connect(addr, &self.admin_token).await
    }
}

impl Running {
    /// Stops it as SIGTERM would (`server_shutdown` to every session, then
    /// the streams close) and waits until it no longer holds its port.
    async fn stop(self) {
        let _ = self.stop.send(());
        // Only the end is waited for, not what `serve` answered.
        let _ = within("the control plane to stop", self.serving)
            .await
            .expect("the serve task does not panic");
    }
}

async fn connect(addr: SocketAddr, token: &str) -> Client {
    within("connect", Client::connect(&format!("http://{addr}"), token))
        .await
        .expect("connects")
}

/// A member token's client.
async fn member(admin: &Client, name: &str) -> (Client, pb::TokenInfo) {
    let (token, info) = admin
        .create_token(name, pb::Role::Member, TokenLifetime::Never)
        .await
        .unwrap();
    (admin.with_token(&token).unwrap(), info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_by_itself_after_its_control_plane_restarts() {
    let (state, first) = State::start().await;
    let addr = first.addr;
    let admin = state.admin(addr).await;
    let room = admin
        .create_channel_with(NewChannel::new("Locked").password("hunter2"))
        .await
        .unwrap();
    let (alice_client, _) = member(&admin, "alice").await;
    let mut alice = alice_client.start_resuming_session("alice").await.unwrap();
    let old_id = alice.id();
    alice.join(&room.id, "hunter2").await.unwrap();
    wait_joined(&mut alice, &room.id).await;
    let presence = alice
        .update_presence(
            PresenceUpdate::new()
                .status(pb::Status::Away)
                .status_text("brb")
                .self_mute(true)
                .self_deaf(true),
        )
        .await
        .unwrap();
    assert!(presence.self_deaf && presence.self_mute);

    // Stopped: the session hears `server_shutdown`, then tells that it is
    // coming back.
    first.stop().await;
    let stopped = Instant::now();
    alice
        .wait_for(|e| matches!(e.server(), Some(Ev::ServerShutdown(_))), WAIT)
        .await
        .expect("server_shutdown reaches the session");
    match alice.next_event_within(WAIT).await.unwrap() {
        SessionEvent::Reconnecting { session_id, .. } => assert_eq!(session_id, old_id),
        other => panic!("expected Reconnecting, got {other:?}"),
    }

    // Down for a moment (a few failed attempts), then up again on the same
    // state and port.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = state.run(addr.port()).await;
    let restarted = Instant::now();
    let resumed = alice
        .wait_resumed(WAIT)
        .await
        .expect("the session comes back by itself");
    let back = restarted.elapsed();
    eprintln!(
        "resumed {back:?} after the restart ({:?} after the stop), after {} attempts; \
         outage {:?}",
        stopped.elapsed(),
        resumed.attempts,
        resumed.outage
    );
    assert!(resumed.attempts >= 2, "the first attempts found nobody");
    assert_eq!(resumed.previous_id, old_id);
    let new_id = resumed.session_id();
    assert_ne!(new_id, old_id, "ids are not reused");
    assert_eq!(alice.id(), new_id);
    assert_eq!(alice.started().session_id, new_id);
    assert_eq!(alice.resumes(), 1);
    match &resumed.channel {
        Rejoin::Rejoined(channel) => assert_eq!(channel.id, room.id),
        other => panic!("expected to be back in {}: {other:?}", room.id),
    }
    let restored = match &resumed.presence {
        Some(Ok(presence)) => presence.clone(),
        other => panic!("the presence is restored: {other:?}"),
    };
    assert_eq!(
        (
            restored.status(),
            restored.status_text.as_str(),
            restored.self_mute,
            restored.self_deaf
        ),
        (pb::Status::Away, "brb", true, true)
    );
    assert!(
        back < Duration::from_secs(6),
        "back within one capped pause of the restart: {back:?}"
    );

    // As the server sees it: the new id, in the room, with that presence.
    let members = admin.list_channel_members(&room.id).await.unwrap();
    let me = members
        .iter()
        .find(|u| u.session_id == new_id)
        .unwrap_or_else(|| panic!("session {new_id} is in the room: {members:?}"));
    assert_eq!(me.display_name, "alice");
    assert_eq!(me.status_text, "brb");
    assert!(me.self_mute && me.self_deaf);
    assert!(!members.iter().any(|u| u.session_id == old_id));
    assert_eq!(alice.channel_id().as_deref(), Some(room.id.as_str()));

    // And the new stream goes on: its own rejoin is among its events.
    wait_joined(&mut alice, &room.id).await;
    // A session-scoped call now carries the new id.
    alice
        .update_presence(PresenceUpdate::new().self_deaf(false))
        .await
        .unwrap();
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_token_is_revoked_does_not_come_back() {
    let (state, server) = State::start().await;
    let admin = state.admin(server.addr).await;
    let (bob_client, info) = member(&admin, "bob").await;
    let mut bob = bob_client.start_resuming_session("bob").await.unwrap();
    let id = bob.id();
    let opener = bob.voice_opener();

    admin.revoke_token(&info.id).await.unwrap();
    bob.wait_for(|e| matches!(e.server(), Some(Ev::Kicked(_))), WAIT)
        .await
        .expect("kicked");
    let end = bob
        .next_event_within(WAIT)
        .await
        .expect_err("the session ends");
    assert_eq!(end.code(), Some(Code::Unauthenticated), "{end:?}");
    // For good: no Reconnecting, no Resumed, just the end again.
    assert!(matches!(
        bob.next_event_within(WAIT).await,
        Err(ClientError::SessionEnded { session_id }) if session_id == id
    ));
    assert_eq!((bob.resumes(), bob.id()), (0, id));
    assert_eq!(opener.session_id(), id);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_left_its_channel_stays_out_after_it_resumes() {
    let (state, first) = State::start().await;
    let addr = first.addr;
    let admin = state.admin(addr).await;
    let mut carol = admin.start_resuming_session("carol").await.unwrap();
    carol.leave().await.unwrap();
    assert_eq!(carol.channel_id(), None);
    first.stop().await;
    let second = state.run(addr.port()).await;
    let resumed = carol.wait_resumed(WAIT).await.expect("carol comes back");
    assert!(
        matches!(resumed.channel, Rejoin::NoChannel),
        "{:?}",
        resumed.channel
    );
    let online = admin.list_online().await.unwrap();
    let me = online
        .iter()
        .find(|u| u.session_id == carol.id())
        .expect("carol is online under her new id");
    assert_eq!(me.channel_id, "", "in no channel, as before");
    second.stop().await;
}
