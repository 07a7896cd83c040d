//! PresenceService and VoiceService over real gRPC: sessions, the session
//! header, presence updates, listings, and the voice ticket's refusals.

mod support;

use openspeak_client::{PresenceUpdate, pb};
use openspeak_shared::{Reason, metadata};
use pb::event::Event as Ev;
use support::{ClientExt, Raw, Session, TestServer, expect_err, expect_reason, within};
use tonic::{Code, Request, Status, metadata::MetadataValue};

/// A request with `client`'s token and `openspeak-session` set to `value`
/// exactly (or absent).
fn raw_session<T>(client: &Raw, value: Option<&str>, message: T) -> Request<T> {
    let mut request = client.req(message);
    if let Some(value) = value {
        request.metadata_mut().insert(
            metadata::SESSION,
            MetadataValue::try_from(value).expect("ASCII metadata"),
        );
    }
    request
}

/// Awaits the call `what` (bounded): it must be refused with
/// SESSION_REQUIRED.
async fn required<T>(what: &str, call: impl Future<Output = Result<tonic::Response<T>, Status>>) {
    expect_err(
        within(what, call).await.map(|_| ()),
        Reason::SessionRequired,
        Code::FailedPrecondition,
    );
}

/// Calls every session-scoped RPC with `client`'s token and the session
/// header `value`; each must be refused with SESSION_REQUIRED.
async fn session_required_everywhere(client: &Raw, value: Option<&str>) {
    let (mut presence, mut channels) = (client.presence(), client.channels());
    let update = pb::UpdatePresenceRequest {
        self_mute: Some(true),
        ..Default::default()
    };
    let update = presence.update_presence(raw_session(client, value, update));
    required("UpdatePresence", update).await;
    let lobby = client.list_channels().await[0].id.clone();
    let join = pb::JoinChannelRequest {
        channel_id: lobby,
        password: String::new(),
    };
    let join = channels.join_channel(raw_session(client, value, join));
    required("JoinChannel", join).await;
    let leave = channels.leave_channel(raw_session(client, value, pb::LeaveChannelRequest {}));
    required("LeaveChannel", leave).await;
    let mut voice = client.voice();
    let open = voice.open_voice(raw_session(client, value, pb::OpenVoiceRequest {}));
    required("OpenVoice", open).await;
}

fn me(session: &Session) -> pb::UserPresence {
    session
        .started()
        .users
        .iter()
        .find(|u| u.session_id == session.id())
        .cloned()
        .expect("session_started lists the session itself")
}

#[tokio::test]
async fn connect_starts_a_session_in_the_default_channel() {
    let (_server, admin, member) = TestServer::start_with_member().await;
    let session = member.session("  Alice  ").await;

    let lobby = &session.started().channels;
    assert_eq!(lobby.len(), 1, "the snapshot has every channel: {lobby:?}");
    assert_eq!(lobby[0].name, "Lobby");
    assert_eq!(lobby[0].member_count, 1, "the snapshot counts the session");
    let user = me(&session);
    assert_eq!(
        user.display_name, "Alice",
        "display names are stored trimmed"
    );
    assert_eq!(user.channel_id, lobby[0].id);
    assert_eq!(user.status, pb::Status::Online as i32);
    assert_eq!(user.status_text, "");
    assert!(!user.self_mute && !user.self_deaf && !user.speaking && !user.idle);

    let online = admin.list_online().await.unwrap();
    assert_eq!(online, vec![user.clone()]);
    assert_eq!(
        admin.list_channel_members(&lobby[0].id).await.unwrap(),
        vec![user]
    );

    // A token may hold several sessions, each with its own id.
    let again = member.session("Alice again").await;
    assert_ne!(again.id(), session.id());
    assert_eq!(again.started().users.len(), 2);
    assert_eq!(admin.list_online().await.unwrap().len(), 2);
}

#[tokio::test]
async fn display_names_have_limits() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    for bad in [String::new(), "   ".into(), "n".repeat(65), "é".repeat(65)] {
        expect_reason(admin.start_session(&bad).await, Reason::InvalidRequest);
    }
    let ok = admin.session(&"é".repeat(64)).await;
    assert_eq!(me(&ok).display_name, "é".repeat(64));
    // Refused connections left no session behind.
    assert_eq!(admin.list_online().await.unwrap().len(), 1);
}

#[tokio::test]
async fn update_presence_changes_the_fields_given() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let token = admin.member_token("m").await;
    let session = admin.with_token(&token).unwrap().session("Bob").await;

    let away = session
        .update_presence(
            PresenceUpdate::new()
                .status(pb::Status::Away)
                .status_text("lunch"),
        )
        .await
        .unwrap();
    assert_eq!(away.session_id, session.id());
    assert_eq!(away.status, pb::Status::Away as i32);
    assert_eq!(away.status_text, "lunch");
    assert!(!away.self_mute && !away.self_deaf);

    let muted = session
        .update_presence(PresenceUpdate::new().self_mute(true).self_deaf(true))
        .await
        .unwrap();
    assert_eq!(muted.status, pb::Status::Away as i32, "absent = unchanged");
    assert_eq!(muted.status_text, "lunch");
    assert!(muted.self_mute && muted.self_deaf);

    let dnd = session
        .update_presence(
            PresenceUpdate::new()
                .status(pb::Status::Dnd)
                .status_text("")
                .self_deaf(false),
        )
        .await
        .unwrap();
    assert_eq!(dnd.status, pb::Status::Dnd as i32);
    assert_eq!(dnd.status_text, "");
    assert!(dnd.self_mute && !dnd.self_deaf);
    assert_eq!(admin.list_online().await.unwrap(), vec![dnd.clone()]);

    // Limits: 128 characters of status text, and a status that is set.
    let raw = server.raw(&token).await;
    let long = session
        .update_presence(PresenceUpdate::new().status_text("é".repeat(128)))
        .await
        .unwrap();
    assert_eq!(long.status_text, "é".repeat(128));
    for request in [
        pb::UpdatePresenceRequest {
            status_text: Some("x".repeat(129)),
            ..Default::default()
        },
        pb::UpdatePresenceRequest {
            status: Some(pb::Status::Unspecified as i32),
            ..Default::default()
        },
        pb::UpdatePresenceRequest {
            status: Some(42),
            ..Default::default()
        },
        // A valid field does not make an invalid one acceptable.
        pb::UpdatePresenceRequest {
            self_mute: Some(false),
            status_text: Some("x".repeat(200)),
            ..Default::default()
        },
    ] {
        // Raw: a status of 42 is no `pb::Status`.
        expect_reason(
            within(
                "UpdatePresence",
                raw.presence()
                    .update_presence(raw.sreq(session.id(), request)),
            )
            .await,
            Reason::InvalidRequest,
        );
    }
    let after = admin.list_online().await.unwrap();
    assert_eq!(after[0].status, pb::Status::Dnd as i32);
    assert!(after[0].self_mute, "a refused update changed nothing");
    assert_eq!(after[0].status_text, "é".repeat(128));
}

#[tokio::test]
async fn session_scoped_calls_need_a_live_session_of_the_same_token() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let token = admin.member_token("m").await;
    let other_token = admin.member_token("other").await;
    let mut watcher = admin.session("watcher").await;
    let session = admin.with_token(&token).unwrap().session("mine").await;
    // Raw: these send the session header as given.
    let member = server.raw(&token).await;
    let other = server.raw(&other_token).await;
    let admin_raw = server.raw(&server.admin_token).await;

    // Missing and malformed headers.
    for value in [
        None,
        Some(""),
        Some("abc"),
        Some("0"),
        Some("-1"),
        Some("1.5"),
        Some("0x10"),
        Some("99999999999"),
    ] {
        session_required_everywhere(&member, value).await;
    }
    // A well-formed id that names no session.
    session_required_everywhere(&member, Some(&(session.id() + 1000).to_string())).await;
    // Another token's session, even an admin's token.
    session_required_everywhere(&other, Some(&session.id().to_string())).await;
    session_required_everywhere(&admin_raw, Some(&session.id().to_string())).await;
    session_required_everywhere(&member, Some(&watcher.id().to_string())).await;

    // The right token and id work.
    session
        .update_presence(PresenceUpdate::new().self_mute(true))
        .await
        .unwrap();

    // An ended session is gone for good.
    let ended_id = session.id();
    drop(session);
    watcher
        .wait_for(
            "user_offline",
            |e| matches!(e, Ev::UserOffline(u) if u.session_id == ended_id),
        )
        .await;
    session_required_everywhere(&member, Some(&ended_id.to_string())).await;
    assert!(!admin.online_ids().await.contains(&ended_id));
}

#[tokio::test]
async fn list_channel_members_lists_who_is_in_a_channel() {
    let (_server, admin, member) = TestServer::start_with_member().await;
    let games = admin.create_channel("Games").await.unwrap();
    let a = member.session("a").await;
    let b = member.session("b").await;
    let c = member.session("c").await;
    a.join(&games.id, "").await.unwrap();
    b.join(&games.id, "").await.unwrap();

    let users = member.list_channel_members(&games.id).await.unwrap();
    let mut ids: Vec<u32> = users.iter().map(|u| u.session_id).collect();
    ids.sort_unstable();
    let mut expected = vec![a.id(), b.id()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert!(users.iter().all(|u| u.channel_id == games.id));
    assert_eq!(
        member.member_ids(&c.started().channels[0].id).await,
        vec![c.id()]
    );
    assert_eq!(admin.get_channel(&games.id).await.unwrap().member_count, 2);
}

#[tokio::test]
async fn open_voice_needs_a_channel_and_a_data_plane() {
    let (_server, _, member) = TestServer::start_with_member().await;
    let session = member.session("talker").await;

    // In a channel, but no data plane is registered.
    expect_err(
        session.open_voice().await,
        Reason::NoDataplane,
        Code::Unavailable,
    );
    session.leave().await.unwrap();
    expect_err(
        session.open_voice().await,
        Reason::NotInChannel,
        Code::FailedPrecondition,
    );
    // Back in a channel: back to NO_DATAPLANE.
    session
        .join(&session.started().channels[0].id, "")
        .await
        .unwrap();
    expect_reason(session.open_voice().await, Reason::NoDataplane);
}
