//! The control-plane half of the client library against a real control
//! plane (and, for voice, a real data plane attached to it over the
//! internal link), both in this process on `127.0.0.1:0`: tokens, channels,
//! sessions and their events, the session-scoped calls, the contract's
//! error reasons as `ClientError` exposes them, and a voice grant that
//! connects.
//!
//! Each test starts its own servers on their own temporary data
//! directories, so tests run side by side. Every wait is bounded.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use openspeak_client::pb::{self, event::Event as Ev};
use openspeak_client::{
    Call, CallEnded, Client, ClientError, Code, NewChannel, PresenceUpdate, Session, TokenLifetime,
    Transport, VoiceClient,
};
use openspeak_control::ControlPlane;
use openspeak_shared::config::{Config, Seconds};
use openspeak_testkit::{
    WAIT, random_secret, serve_attached_dataplane, spawn_serving, test_config, within,
};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// How long a test waits to be sure that nothing arrives.
const QUIET: Duration = Duration::from_millis(300);

/// A control plane serving in the test's runtime, with a chosen admin
/// token and a cluster secret for data planes.
struct Server {
    url: String,
    cluster_url: String,
    admin_token: String,
    secret: String,
    _data: TempDir,
    _stop: oneshot::Sender<()>,
}

fn config(data_dir: &Path) -> Config {
    let mut config = test_config(data_dir, None);
    config.server.shutdown_grace = Seconds(2);
    config
}

async fn start() -> Server {
    let data = tempfile::tempdir().expect("a temporary directory");
    let admin_token = random_secret("admin");
    let secret = random_secret("cluster");
    let mut config = config(data.path());
    config.auth.bootstrap_token = Some(admin_token.clone());
    config.cluster.secret = Some(secret.clone());
    let control = ControlPlane::bind(config)
        .await
        .expect("the control plane binds");
    let url = format!("http://{}", control.local_addr());
    let cluster_url = format!("http://{}", control.cluster_addr());
    let (stop, _) = spawn_serving(|shutdown| control.serve(shutdown));
    Server {
        url,
        cluster_url,
        admin_token,
        secret,
        _data: data,
        _stop: stop,
    }
}

impl Server {
    async fn admin(&self) -> Client {
        within("connect", Client::connect(&self.url, &self.admin_token))
            .await
            .expect("the admin connects")
    }

    /// Starts a data plane on loopback attached to this control plane, and
    /// waits until it is attached (before that, `OpenVoice` has nowhere
    /// to send voice).
    async fn attach_dataplane(&self) -> (TempDir, oneshot::Sender<()>) {
        let data = tempfile::tempdir().expect("a temporary directory");
        let mut config = config(data.path());
        config.cluster.secret = Some(self.secret.clone());
        config.cluster.control_addr = self.cluster_url.clone();
        let dataplane = serve_attached_dataplane(config).await;
        (data, dataplane.stop)
    }
}

/// The reason, code and call of a failed call; panics if it succeeded.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (String, Code) {
    match result {
        Ok(value) => panic!("expected a refusal, got {value:?}"),
        Err(e) => {
            let reason = e
                .reason()
                .unwrap_or_else(|| panic!("a refusal carries a reason: {e:?}"))
                .to_owned();
            let code = e.code().expect("a refusal has a code");
            assert!(
                e.message().is_some_and(|m| !m.trim().is_empty()),
                "a refusal has a message for people: {e:?}"
            );
            (reason, code)
        }
    }
}

fn is_member_joined(session: u32, channel: &str) -> impl Fn(&Ev) -> bool + '_ {
    move |e| matches!(e, Ev::MemberJoined(m) if m.session_id == session && m.channel_id == channel)
}

/// Sessions `a` and `b`, both in a new channel named `name`, once `a`
/// has seen `b` join it (so that `b` is placed where `a` is).
async fn two_in_a_new_channel(admin: &Client, name: &str) -> (Session, Session) {
    let room = admin.create_channel(name).await.unwrap();
    let mut a = admin.start_session("a").await.unwrap();
    let b = admin.start_session("b").await.unwrap();
    a.join(&room.id, "").await.unwrap();
    b.join(&room.id, "").await.unwrap();
    a.wait_for(is_member_joined(b.id(), &room.id), WAIT)
        .await
        .unwrap();
    (a, b)
}

#[tokio::test]
async fn tokens_are_created_checked_and_revoked() {
    let server = start().await;
    let admin = server.admin().await;
    let me = admin.whoami().await.unwrap();
    assert_eq!(me.role(), pb::Role::Admin);

    let (token, info) = admin
        .create_token("alice", pb::Role::Member, TokenLifetime::Never)
        .await
        .unwrap();
    assert_eq!(info.label, "alice");
    assert_eq!(info.role(), pb::Role::Member);
    assert!(info.expires_at.is_none(), "no ttl: never expires");
    let alice = admin.with_token(&token).unwrap();
    assert_eq!(alice.whoami().await.unwrap().id, info.id);

    let (_, short) = admin
        .create_token(
            "brief",
            pb::Role::Member,
            TokenLifetime::For(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let (created, expires) = (short.created_at.unwrap(), short.expires_at.unwrap());
    assert_eq!(expires.seconds - created.seconds, 3600);

    let listed = admin.list_tokens().await.unwrap();
    assert!(listed.iter().any(|t| t.id == info.id));

    // A member has no right to manage tokens or create channels.
    assert_eq!(
        refused(
            alice
                .create_token("x", pb::Role::Admin, TokenLifetime::Never)
                .await
        ),
        ("UNAUTHORIZED".into(), Code::PermissionDenied)
    );
    assert_eq!(
        refused(alice.create_channel("Nope").await),
        ("UNAUTHORIZED".into(), Code::PermissionDenied)
    );

    admin.revoke_token(&info.id).await.unwrap();
    assert_eq!(
        refused(alice.whoami().await),
        ("UNAUTHORIZED".into(), Code::Unauthenticated)
    );
    assert_eq!(
        refused(admin.revoke_token(&info.id).await),
        ("TOKEN_NOT_FOUND".into(), Code::NotFound)
    );
    assert_eq!(
        refused(
            admin
                .create_token("x", pb::Role::Unspecified, TokenLifetime::Never)
                .await
        ),
        ("INVALID_REQUEST".into(), Code::InvalidArgument)
    );
}

#[tokio::test]
async fn connecting_fails_with_errors_that_name_the_address() {
    match Client::connect("not a uri", "t").await {
        Err(e @ ClientError::InvalidAddress { .. }) => {
            assert!(e.to_string().contains("not a uri"), "{e}")
        }
        other => panic!("expected InvalidAddress, got {other:?}"),
    }
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("http://127.0.0.1:{port}");
    match within("a refused connection", Client::connect(&addr, "t")).await {
        Err(e @ ClientError::Connect { .. }) => {
            assert!(e.to_string().contains(&addr), "{e}")
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(matches!(
        Client::connect("http://127.0.0.1:1", "bad\ntoken").await,
        Err(ClientError::InvalidToken)
    ));
}

#[tokio::test]
async fn channels_are_created_listed_joined_and_enforced() {
    let server = start().await;
    let admin = server.admin().await;
    let parent = admin.create_channel("Games").await.unwrap();
    let child = admin
        .create_channel_with(
            NewChannel::new("Squad")
                .parent(&parent.id)
                .description("four at most")
                .password("hunter2")
                .max_members(1)
                .temporary(false),
        )
        .await
        .unwrap();
    assert_eq!(child.parent_id, parent.id);
    assert!(child.has_password);
    assert_eq!(child.max_members, 1);
    assert_eq!(admin.get_channel(&child.id).await.unwrap().name, "Squad");
    let listed = admin.list_channels().await.unwrap();
    let position = |id: &str| listed.iter().position(|c| c.id == id).unwrap();
    assert!(position(&parent.id) < position(&child.id), "parents first");
    assert_eq!(
        refused(admin.create_channel("games").await),
        ("INVALID_REQUEST".into(), Code::InvalidArgument),
        "names are unique among siblings, case-insensitively"
    );

    let (token, _) = admin
        .create_token("bob", pb::Role::Member, TokenLifetime::Never)
        .await
        .unwrap();
    let bob = admin.with_token(&token).unwrap();
    let (token, _) = admin
        .create_token("carol", pb::Role::Member, TokenLifetime::Never)
        .await
        .unwrap();
    let carol = admin.with_token(&token).unwrap();
    let bob = bob.start_session("bob").await.unwrap();
    let carol = carol.start_session("carol").await.unwrap();

    assert_eq!(
        refused(bob.join(&child.id, "wrong").await),
        ("WRONG_PASSWORD".into(), Code::PermissionDenied)
    );
    let joined = bob.join(&child.id, "hunter2").await.unwrap();
    assert_eq!(joined.member_count, 1);
    assert_eq!(
        refused(carol.join(&child.id, "hunter2").await),
        ("CHANNEL_FULL".into(), Code::ResourceExhausted)
    );
    assert_eq!(
        refused(carol.join("no-such-channel", "").await),
        ("CHANNEL_NOT_FOUND".into(), Code::NotFound)
    );
    let members = admin.list_channel_members(&child.id).await.unwrap();
    assert_eq!(
        members.iter().map(|u| u.session_id).collect::<Vec<_>>(),
        [bob.id()]
    );

    // Admins move anyone anywhere, capacity or not.
    admin.move_member(carol.id(), &child.id).await.unwrap();
    assert_eq!(admin.get_channel(&child.id).await.unwrap().member_count, 2);
    assert_eq!(
        refused(admin.move_member(999_999, &child.id).await),
        ("USER_NOT_FOUND".into(), Code::NotFound)
    );

    admin.delete_channel(&parent.id).await.unwrap();
    assert_eq!(
        refused(admin.get_channel(&child.id).await),
        ("CHANNEL_NOT_FOUND".into(), Code::NotFound)
    );
}

#[tokio::test]
async fn a_session_follows_the_server_s_events() {
    let server = start().await;
    let admin = server.admin().await;
    let mut a = admin.start_session("a").await.unwrap();
    assert_ne!(a.id(), 0);
    let lobby = a
        .started()
        .users
        .iter()
        .find(|u| u.session_id == a.id())
        .expect("session_started lists the session itself")
        .channel_id
        .clone();
    assert!(
        !lobby.is_empty(),
        "a new session starts in the default channel"
    );

    // Nothing happens: the bounded read says so instead of hanging.
    match a.next_event_within(QUIET).await {
        Err(ClientError::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }

    let b = admin.start_session("b").await.unwrap();
    let b_id = b.id();
    let is_b = |u: &Option<pb::UserPresence>| u.as_ref().is_some_and(|u| u.session_id == b_id);
    let online = a
        .wait_for(|e| matches!(e, Ev::UserOnline(u) if is_b(&u.user)), WAIT)
        .await
        .unwrap();
    assert!(online.sequence > a.started_sequence());

    let room = admin.create_channel("Room").await.unwrap();
    b.join(&room.id, "").await.unwrap();
    // A move is member_left (old channel), then member_joined (new).
    let left = a
        .wait_for(
            |e| matches!(e, Ev::MemberLeft(m) if m.session_id == b.id()),
            WAIT,
        )
        .await
        .unwrap();
    assert!(matches!(left.event, Some(Ev::MemberLeft(m)) if m.channel_id == lobby));
    let next = a.next_event_within(WAIT).await.unwrap();
    assert!(
        matches!(&next.event, Some(Ev::MemberJoined(m)) if m.session_id == b.id() && m.channel_id == room.id),
        "{next:?}"
    );

    let presence = b
        .update_presence(PresenceUpdate::new().self_deaf(true).status_text("brb"))
        .await
        .unwrap();
    assert!(presence.self_deaf && !presence.self_mute);
    assert_eq!(presence.status_text, "brb");
    let changed = a
        .wait_for(
            |e| matches!(e, Ev::PresenceChanged(p) if is_b(&p.user)),
            WAIT,
        )
        .await
        .unwrap();
    assert!(
        matches!(&changed.event, Some(Ev::PresenceChanged(p)) if p.user.as_ref().is_some_and(|u| u.self_deaf)),
        "{changed:?}"
    );

    b.leave().await.unwrap();
    assert_eq!(
        refused(b.open_voice().await),
        ("NOT_IN_CHANNEL".into(), Code::FailedPrecondition)
    );
    drop(b);
    a.wait_for(
        |e| matches!(e, Ev::UserOffline(u) if u.session_id == b_id),
        WAIT,
    )
    .await
    .unwrap();

    // A member's session, to end by revoking its token.
    let (token, _) = admin
        .create_token("other", pb::Role::Member, TokenLifetime::Never)
        .await
        .unwrap();
    let other = admin.with_token(&token).unwrap();
    let mut theirs = other.start_session("theirs").await.unwrap();

    // Revoking the token ends its session: kicked, then UNAUTHENTICATED,
    // then "ended" for every later read.
    let their_id = other.whoami().await.unwrap().id;
    admin.revoke_token(&their_id).await.unwrap();
    theirs
        .wait_for(|e| matches!(e, Ev::Kicked(_)), WAIT)
        .await
        .unwrap();
    let end = theirs.next_event_within(WAIT).await;
    assert_eq!(refused(end), ("UNAUTHORIZED".into(), Code::Unauthenticated));
    assert!(matches!(
        theirs.next_event_within(WAIT).await,
        Err(ClientError::SessionEnded { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_is_granted_only_with_a_data_plane_and_then_flows() {
    let server = start().await;
    let admin = server.admin().await;
    let (a, b) = two_in_a_new_channel(&admin, "Voice").await;

    assert_eq!(
        refused(a.open_voice().await),
        ("NO_DATAPLANE".into(), Code::Unavailable)
    );

    let _dataplane = server.attach_dataplane().await;
    let grant_a = a.open_voice().await.unwrap();
    let grant_b = b.open_voice().await.unwrap();
    assert_eq!(grant_a.session_id, a.id());
    assert_eq!(
        grant_a.quic_endpoint, grant_b.quic_endpoint,
        "one channel, one router"
    );
    assert_eq!(grant_a.cert_sha256.len(), 64);
    assert!(grant_a.expires_at.is_some());
    let voice_a = within("voice for a", grant_a.connect()).await.unwrap();
    let voice_b = within("voice for b", grant_b.connect()).await.unwrap();
    assert_eq!(voice_a.session_id(), a.id());

    let payload = Bytes::from_static(b"\xfc opus frame");
    voice_a.send(0, 0, payload.clone()).unwrap();
    let heard = within("b to hear a", voice_b.recv()).await.unwrap();
    assert_eq!((heard.speaker, heard.sequence), (a.id(), 0));
    assert_eq!(heard.payload, payload);
    voice_a.close().await;
    voice_b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_carries_voice_and_ends_when_its_session_ends() {
    let server = start().await;
    let admin = server.admin().await;
    let (a, b) = two_in_a_new_channel(&admin, "Call").await;

    // Without a data plane the first attempt fails as OpenVoice does.
    assert_eq!(
        refused(Call::start(a.voice_opener(), Transport::Udp).await),
        ("NO_DATAPLANE".into(), Code::Unavailable)
    );
    let _dataplane = server.attach_dataplane().await;
    let a_call = within("a's call", Call::start(a.voice_opener(), Transport::Quic))
        .await
        .unwrap();
    let b_call = within("b's call", Call::start(b.voice_opener(), Transport::Udp))
        .await
        .unwrap();
    assert_eq!((a_call.session_id(), b_call.session_id()), (a.id(), b.id()));
    assert!(a_call.connected() && b_call.connected());
    let payload = Bytes::from_static(b"\xfc opus frame");
    assert!(a_call.send(0, 0, payload.clone()).unwrap());
    let heard = within("b to hear a", b_call.recv()).await.unwrap();
    assert_eq!((heard.speaker, heard.sequence), (a.id(), 0));
    assert_eq!(heard.payload, payload);
    // An empty payload is no voice packet: an error, not a silent drop.
    assert!(a_call.send(1, 20, Bytes::new()).is_err());

    // B hangs up its session: the data plane closes its voice with 9, and
    // the call ends rather than reconnect.
    drop(b);
    assert_eq!(
        within("b's call to end", b_call.recv()).await.unwrap_err(),
        CallEnded::Closed { code: 9 }
    );
    within("b's call to be down", b_call.wait_connected(false)).await;
    assert!(!b_call.send(2, 40, payload).unwrap(), "nothing to send on");
    assert_eq!(b_call.reconnects(), 0);
    assert!(a_call.connected(), "a's call is not affected");
}

/// Reads with `recv` until the voice connection ends: anything still in
/// flight is read first, and the end is an error, which is returned.
async fn until_cut<T, E>(mut recv: impl AsyncFnMut() -> Result<T, E>, what: &str) -> E {
    for _ in 0..1000 {
        if let Err(e) = recv().await {
            return e;
        }
    }
    panic!("{what} was never closed");
}

/// `session`'s voice over QUIC, granted and connected within the test's
/// bound (`what` names it if it is not).
async fn quic_voice(what: &str, session: &Session) -> VoiceClient {
    within(what, async {
        session.open_voice().await.unwrap().connect().await
    })
    .await
    .unwrap()
}

/// Revoking a token cuts its live sessions out of voice within a second,
/// on both transports: the data plane ends the QUIC connection and sends
/// the UDP client a CLOSED, and nothing either sends afterwards is heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_cuts_its_voice_within_a_second() {
    const CUT_WITHIN: Duration = Duration::from_secs(1);
    let server = start().await;
    let admin = server.admin().await;
    let _dataplane = server.attach_dataplane().await;
    let room = admin.create_channel("Revoked").await.unwrap();
    let listener = admin.start_session("listener").await.unwrap();
    listener.join(&room.id, "").await.unwrap();
    let (token, info) = admin
        .create_token("doomed", pb::Role::Member, TokenLifetime::Never)
        .await
        .unwrap();
    let doomed = admin.with_token(&token).unwrap();
    let (over_quic, over_udp) = (
        doomed.start_session("quic").await.unwrap(),
        doomed.start_session("udp").await.unwrap(),
    );
    over_quic.join(&room.id, "").await.unwrap();
    over_udp.join(&room.id, "").await.unwrap();
    let hears = quic_voice("the listener's voice", &listener).await;
    let quic = quic_voice("QUIC voice", &over_quic).await;
    let udp = within("UDP voice", async {
        over_udp.open_voice().await.unwrap().connect_udp().await
    })
    .await
    .unwrap();

    // Both are heard before.
    let payload = Bytes::from_static(b"\xfc frame");
    quic.send(0, 0, payload.clone()).unwrap();
    let heard = within("the QUIC speaker", hears.recv()).await.unwrap();
    assert_eq!(heard.speaker, over_quic.id());
    udp.send(0, 0, payload.clone()).unwrap();
    let heard = within("the UDP speaker", hears.recv()).await.unwrap();
    assert_eq!(heard.speaker, over_udp.id());

    let revoked = tokio::time::Instant::now();
    admin.revoke_token(&info.id).await.unwrap();
    let quic_cut = async {
        until_cut(async || quic.recv().await, "the QUIC voice connection").await;
        revoked.elapsed()
    };
    let udp_cut = async {
        let e = until_cut(async || udp.recv().await, "the UDP voice session").await;
        assert!(
            matches!(e, openspeak_client::UdpVoiceError::Closed { .. }),
            "{e:?}"
        );
        revoked.elapsed()
    };
    let (quic_after, udp_after) = tokio::join!(
        openspeak_testkit::within_for(CUT_WITHIN, "QUIC voice to be cut", quic_cut),
        openspeak_testkit::within_for(CUT_WITHIN, "UDP voice to be cut", udp_cut),
    );
    eprintln!("voice cut {quic_after:?} (QUIC) and {udp_after:?} (UDP) after the revoke began");

    // What they send now reaches no one.
    assert!(
        quic.send(1, 20, payload.clone()).is_err(),
        "the connection is gone"
    );
    udp.send(1, 20, payload).unwrap();
    assert!(
        tokio::time::timeout(QUIET, hears.recv()).await.is_err(),
        "nothing of the revoked token's sessions is heard"
    );
}
