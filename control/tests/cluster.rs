//! The internal link over real gRPC: a fake data plane attaches to
//! `ClusterService`, gets its snapshot and member deltas, reports speaking,
//! and makes `OpenVoice` answer with a ticket it can check.

mod support;

use std::time::SystemTime;

use openspeak_client::PresenceUpdate;
use openspeak_shared::{
    Reason, pb,
    pb::cluster::{
        ControlMessage, DataplaneMessage, Member, Speaking, control_message::Kind,
        dataplane_message::Kind as Report,
    },
    ticket::{TicketKey, TicketVerifier},
};
use pb::cluster::cluster_service_client::ClusterServiceClient;
use pb::event::Event as Ev;
use support::{
    ClientExt, TestServer, attach_dataplane, expect_err, expect_reason, random_secret, register,
    with_token, within,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

const CERT: &str = "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";

/// A data plane as the control plane sees it: what it sends, what it got.
struct FakeDataplane {
    reports: mpsc::Sender<DataplaneMessage>,
    messages: Streaming<ControlMessage>,
    keys: Vec<TicketKey>,
    members: Vec<Member>,
}

async fn attach(server: &TestServer, secret: &str) -> Result<FakeDataplane, Status> {
    let (reports, mut messages) =
        attach_dataplane(server, secret, register("dp-1", CERT, 100)).await?;
    let first = within("the snapshot", messages.message()).await?;
    let Some(Kind::Snapshot(snapshot)) = first.and_then(|m| m.kind) else {
        panic!("the first message is a snapshot");
    };
    let keys = snapshot
        .keys
        .iter()
        .map(|k| TicketKey {
            id: k.id,
            secret: k.secret.as_slice().try_into().expect("32-byte keys"),
        })
        .collect();
    Ok(FakeDataplane {
        reports,
        messages,
        keys,
        members: snapshot.members,
    })
}

impl FakeDataplane {
    /// The next member delta; skips nothing, so callers see every message.
    async fn next(&mut self) -> Kind {
        within("a control message", self.messages.message())
            .await
            .expect("the stream stays up")
            .and_then(|m| m.kind)
            .expect("a message with a kind")
    }

    /// Waits for a member update matching `pred`.
    async fn update_where(&mut self, pred: impl Fn(&Member) -> bool) -> Member {
        loop {
            if let Kind::MemberUpdate(u) = self.next().await {
                let member = u.member.unwrap();
                if pred(&member) {
                    return member;
                }
            }
        }
    }
}

async fn server_with_secret(secret: &str) -> TestServer {
    let secret = secret.to_owned();
    TestServer::start_with(move |c| c.cluster.secret = Some(secret)).await
}

#[tokio::test]
async fn a_data_plane_gets_a_snapshot_then_member_deltas() {
    let secret = random_secret("test");
    let (server, admin, member) = server_with_secret(&secret).await.with_member().await;
    let early = member.session("early").await;

    let mut dp = attach(&server, &secret)
        .await
        .expect("the right secret attaches");
    assert_eq!(dp.keys.len(), 1);
    assert_ne!(dp.keys[0].id, 0, "key ids are random and non-zero");
    assert_eq!(dp.members.len(), 1);
    assert_eq!(dp.members[0].session_id, early.id());
    assert_eq!(dp.members[0].channel_id, early.started().channels[0].id);

    // A new session, a move, a mute, an end.
    let late = member.session("late").await;
    let late_id = late.id();
    let m = dp.update_where(|m| m.session_id == late_id).await;
    assert_eq!(m.channel_id, early.started().channels[0].id);
    let games = admin.create_channel("Games").await.unwrap();
    late.join(&games.id, "").await.unwrap();
    dp.update_where(|m| m.session_id == late_id && m.channel_id == games.id)
        .await;
    late.update_presence(PresenceUpdate::new().self_mute(true))
        .await
        .unwrap();
    dp.update_where(|m| m.session_id == late_id && m.muted)
        .await;
    // Hang up.
    drop(late);
    loop {
        if let Kind::MemberRemoved(r) = dp.next().await {
            assert_eq!(r.session_id, late_id);
            break;
        }
    }
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_refused() {
    let secret = random_secret("test");
    let server = server_with_secret(&secret).await;
    expect_err(
        attach(&server, "not-the-secret").await.map(|_| ()),
        Reason::Unauthorized,
        Code::Unauthenticated,
    );

    // No secret configured: every data plane is refused.
    let open = TestServer::start().await;
    let status = expect_err(
        attach(&open, "").await.map(|_| ()),
        Reason::Unauthorized,
        Code::Unauthenticated,
    );
    assert!(status.message().contains("cluster.secret"), "{status:?}");
}

#[tokio::test]
async fn open_voice_issues_a_ticket_for_the_attached_data_plane() {
    let secret = random_secret("test");
    let (server, _, member) = server_with_secret(&secret).await.with_member().await;
    let talker = member.session("talker").await;
    let mut listener = member.session("listener").await;
    expect_reason(talker.open_voice().await, Reason::NoDataplane);

    let dp = attach(&server, &secret).await.unwrap();
    let voice = talker.open_voice().await.expect("a data plane is attached");
    assert_eq!(voice.session_id, talker.id());
    assert_eq!(voice.quic_endpoint, "127.0.0.1:50052");
    assert_eq!(voice.udp_endpoint, "127.0.0.1:50053");
    assert_eq!(voice.cert_sha256, CERT);
    let mut verifier = TicketVerifier::new();
    for key in dp.keys.clone() {
        verifier.insert(key);
    }
    let ticket = verifier
        .verify(&voice.ticket, SystemTime::now())
        .expect("the ticket opens with the snapshot's key");
    assert_eq!(ticket.session_id, talker.id());
    assert_eq!(ticket.channel, talker.started().channels[0].id);
    assert_eq!(ticket.session_key.as_slice(), voice.session_key.as_slice());
    let seconds = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(
        seconds(ticket.expires_at),
        seconds(voice.expires_at.unwrap())
    );

    // Speaking from the data plane reaches the other sessions.
    dp.reports
        .send(DataplaneMessage {
            kind: Some(Report::Speaking(Speaking {
                session_id: talker.id(),
                speaking: true,
            })),
        })
        .await
        .unwrap();
    let talker_id = talker.id();
    listener
        .wait_for(
            "speaking_changed",
            |e| matches!(e, Ev::SpeakingChanged(s) if s.session_id == talker_id && s.speaking),
        )
        .await;

    // The data plane goes away: no voice again.
    drop(dp);
    within("the data plane to be detached", async {
        loop {
            match talker.open_voice().await {
                Err(e) if e.grpc_status().and_then(Reason::of) == Some(Reason::NoDataplane) => {
                    break;
                }
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
}

/// A data plane that reads its link too slowly for the event feed gets a
/// fresh snapshot on the same stream, and deltas after it: it is not cut
/// off (which detached it, and refused every `OpenVoice` for its channels
/// until it noticed and attached again).
#[tokio::test]
async fn a_data_plane_that_falls_behind_gets_a_fresh_snapshot_in_the_same_stream() {
    /// How far one subscriber may fall behind (`presence.event_queue`).
    const QUEUE: usize = 32;
    let secret = random_secret("test");
    let server = {
        let secret = secret.clone();
        TestServer::start_with(move |c| {
            c.cluster.secret = Some(secret);
            c.presence.event_queue = QUEUE;
        })
        .await
    };
    let admin = server.admin().await;
    let talker = admin.session("talker").await;

    // A link that takes a kilobyte in flight, then nothing until read: the
    // control plane's queue for it (1,024 messages) fills, then the feed
    // falls more than QUEUE events behind.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.cluster_addr))
            .unwrap()
            .initial_stream_window_size(1024)
            .connect()
            .await
            .expect("the cluster port accepts connections");
    let (reports, rx) = mpsc::channel(16);
    reports
        .send(register("dp-slow", CERT, 0))
        .await
        .expect("room for the Register");
    let mut messages = within(
        "Attach",
        ClusterServiceClient::new(channel).attach(with_token(&secret, ReceiverStream::new(rx))),
    )
    .await
    .expect("the right secret attaches")
    .into_inner();

    const TOGGLES: usize = 4_000;
    for i in 0..TOGGLES {
        talker
            .update_presence(PresenceUpdate::new().self_mute(i % 2 == 0))
            .await
            .expect("an admin's presence updates are not limited");
    }
    // The last toggle (i = TOGGLES - 1, odd) unmuted it.

    // Read what was queued: deltas, then the fresh snapshot.
    let mut snapshots = Vec::new();
    let mut deltas = 0;
    for _ in 0..TOGGLES + 100 {
        let message = within("a control message", messages.message())
            .await
            .expect("the link stays up")
            .expect("the stream stays open");
        match message.kind {
            Some(Kind::Snapshot(s)) => {
                snapshots.push(s);
                if snapshots.len() == 2 {
                    break;
                }
            }
            Some(Kind::MemberUpdate(_) | Kind::MemberRemoved(_)) => deltas += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        snapshots.len(),
        2,
        "the first snapshot and a fresh one, after {deltas} deltas"
    );
    assert!(deltas < TOGGLES, "some deltas were skipped: {deltas}");
    let fresh = &snapshots[1];
    assert_eq!(
        fresh.instance, snapshots[0].instance,
        "the same control plane"
    );
    assert_eq!(fresh.keys, snapshots[0].keys);
    let member = fresh
        .members
        .iter()
        .find(|m| m.session_id == talker.id())
        .expect("the talker is in the fresh snapshot");
    assert!(!member.muted, "the fresh snapshot is up to date");

    // Deltas follow the fresh snapshot on the same stream; the ones queued
    // before the lag was noticed may come first, but no more than those.
    talker
        .update_presence(PresenceUpdate::new().self_mute(true))
        .await
        .unwrap();
    let mut after = 0;
    loop {
        let message = within("a delta after the snapshot", messages.message())
            .await
            .expect("the link stays up")
            .expect("the stream stays open");
        after += 1;
        assert!(after <= TOGGLES, "no end of deltas");
        if let Some(Kind::MemberUpdate(u)) = message.kind {
            let m = u.member.unwrap();
            if m.session_id == talker.id() && m.muted {
                break;
            }
        }
    }
    drop(reports);
}

/// A control plane that stops ends its data planes' streams, so that each
/// notices and attaches again to whatever serves next on its address, as
/// it would after the process died (a restart in the same process, as
/// `openspeak-server` and tests do, must not leave them fed by nothing).
#[tokio::test]
async fn stopping_ends_the_data_planes_streams() {
    let secret = random_secret("test");
    let mut server = server_with_secret(&secret).await;
    let mut dp = attach(&server, &secret)
        .await
        .expect("the right secret attaches");
    server.stop().await;
    let end = within("the stream to end", dp.messages.message()).await;
    assert!(
        matches!(end, Ok(None) | Err(_)),
        "the stream ended, not another message: {end:?}"
    );
    drop(dp.reports);
}

/// The certificate a data plane presents is kept in the store: after a
/// restart, the same id coming back with another certificate is still
/// known from its first attach, and the status shows what it presents now.
#[tokio::test]
async fn a_data_planes_certificate_and_first_attach_outlive_a_restart() {
    const OTHER: &str = "cd0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";
    let secret = support::random_secret("cluster");
    let (_dir, token, mut config) = openspeak_testkit::fresh_config();
    config.cluster.secret = Some(secret.clone());
    let status_of = |server: &TestServer| {
        let addr = server.addr;
        let token = token.clone();
        async move {
            let admin = support::client_at(addr, &token).await;
            let status = admin.server_status().await.unwrap();
            assert_eq!(status.dataplanes.len(), 1, "{status:?}");
            status.dataplanes[0].clone()
        }
    };

    let mut first = TestServer::serve(config.clone()).await;
    let (_reports, _messages) = attach_dataplane(&first, &secret, register("dp-a", CERT, 10))
        .await
        .unwrap();
    let before = status_of(&first).await;
    assert_eq!(before.cert_sha256, CERT);
    let first_seen = before.first_seen.expect("a first attach is recorded");
    drop((_reports, _messages));
    first.stop().await;

    let again = TestServer::serve(config).await;
    let (_reports, _messages) = attach_dataplane(&again, &secret, register("dp-a", OTHER, 10))
        .await
        .unwrap();
    let after = status_of(&again).await;
    assert_eq!(after.cert_sha256, OTHER, "the certificate it presents now");
    assert_eq!(
        after.first_seen,
        Some(first_seen),
        "known from before the restart"
    );
}
