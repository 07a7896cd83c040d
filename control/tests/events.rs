//! The session event stream over real gRPC: what each change announces,
//! to whom, and in which order.

mod support;

use openspeak_client::{Client, NewChannel, PresenceUpdate, pb};
use openspeak_shared::Reason;
use pb::event::Event as Ev;
use support::{
    ClientExt, Model, Session, StreamEnd, TestServer, assert_status, is_channel_created, kind,
};
use tonic::Code;

fn is_member_left(e: &Ev, session: u32, channel: &str) -> bool {
    matches!(e, Ev::MemberLeft(m) if m.session_id == session && m.channel_id == channel)
}

fn is_member_joined(e: &Ev, session: u32, channel: &str) -> bool {
    matches!(e, Ev::MemberJoined(m) if m.session_id == session && m.channel_id == channel)
}

fn is_offline(e: &Ev, session: u32) -> bool {
    matches!(e, Ev::UserOffline(u) if u.session_id == session)
}

fn is_deleted(e: &Ev, channel: &str) -> bool {
    matches!(e, Ev::ChannelDeleted(c) if c.channel_id == channel)
}

/// Index of the first event in `events` matching `pred`.
fn position(events: &[pb::Event], what: &str, pred: impl Fn(&Ev) -> bool) -> usize {
    events
        .iter()
        .position(|e| e.event.as_ref().is_some_and(&pred))
        .unwrap_or_else(|| {
            let kinds: Vec<_> = events
                .iter()
                .filter_map(|e| e.event.as_ref().map(kind))
                .collect();
            panic!("no {what} among {kinds:?}")
        })
}

/// Reads `session`'s events up to the `channel_created` of `marker`;
/// returns those before it.
async fn until_marker(session: &mut Session, marker: &str) -> Vec<pb::Event> {
    session
        .events_until(&format!("marker {marker}"), |e| {
            is_channel_created(e, marker)
        })
        .await
        .0
}

#[tokio::test]
async fn session_started_comes_first_and_others_get_user_online() {
    let (_server, admin, member) = TestServer::start_with_member().await;
    let games = admin.create_channel("Games").await.unwrap();

    let mut a = admin.session("A").await;
    assert_eq!(a.started().users.len(), 1);
    assert_eq!(a.started().users[0].session_id, a.id());
    let names: Vec<_> = a
        .started()
        .channels
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["Lobby", "Games"]);

    let mut b = member.session("B").await;
    assert!(b.started_sequence() > a.started_sequence());
    let ids: Vec<u32> = b.started().users.iter().map(|u| u.session_id).collect();
    assert!(ids.contains(&a.id()) && ids.contains(&b.id()), "{ids:?}");

    let online = a
        .wait_for("user_online of B", |e| matches!(e, Ev::UserOnline(_)))
        .await;
    let Some(Ev::UserOnline(online)) = online.event else {
        unreachable!()
    };
    let user = online.user.unwrap();
    assert_eq!(user.session_id, b.id());
    assert_eq!(user.display_name, "B");
    assert_eq!(
        user.channel_id,
        a.started().channels[0].id,
        "in the default channel"
    );
    assert_eq!(
        Some(&user),
        b.started().users.iter().find(|u| u.session_id == b.id()),
        "user_online carries the same presence as B's own snapshot"
    );

    // B gets no user_online of its own; both see the same later events
    // under the same numbers.
    admin
        .create_channel_with(NewChannel::new("marker").parent(&games.id))
        .await
        .unwrap();
    let b_before = until_marker(&mut b, "marker").await;
    assert!(
        !b_before
            .iter()
            .any(|e| matches!(&e.event, Some(Ev::UserOnline(u)) if u.user.as_ref().unwrap().session_id == b.id())),
        "a session gets no user_online of its own: {b_before:?}"
    );
    until_marker(&mut a, "marker").await;
    assert_eq!(
        a.log.last().unwrap(),
        b.log.last().unwrap(),
        "one event, one sequence number, for every session"
    );
    assert_eq!(
        a.log
            .iter()
            .filter(|e| matches!(&e.event, Some(Ev::UserOnline(_))))
            .count(),
        1,
        "A got exactly one user_online, B's"
    );
}

#[tokio::test]
async fn moves_send_member_left_then_member_joined() {
    let (_server, admin, member) = TestServer::start_with_member().await;
    let games = admin.create_channel("Games").await.unwrap();
    let music = admin.create_channel("Music").await.unwrap();
    let mut watcher = admin.session("watcher").await;
    let mut mover = member.session("mover").await;
    let lobby = mover.started().channels[0].id.clone();

    mover.join(&games.id, "").await.unwrap();
    admin.move_member(mover.id(), &music.id).await.unwrap();
    mover.leave().await.unwrap();
    mover.join(&games.id, "").await.unwrap();
    admin.create_channel("marker").await.unwrap();

    let id = mover.id();
    for session in [&mut watcher, &mut mover] {
        let events = until_marker(session, "marker").await;
        let moves: Vec<(&'static str, u32, String)> = events
            .iter()
            .filter_map(|e| match e.event.as_ref()? {
                Ev::MemberLeft(m) => Some(("left", m.session_id, m.channel_id.clone())),
                Ev::MemberJoined(m) => Some(("joined", m.session_id, m.channel_id.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            moves,
            vec![
                ("left", id, lobby.clone()),
                ("joined", id, games.id.clone()),
                ("left", id, games.id.clone()),
                ("joined", id, music.id.clone()),
                // LeaveChannel: left only; joining from nowhere: joined only.
                ("left", id, music.id.clone()),
                ("joined", id, games.id.clone()),
            ],
            "session {}",
            session.id()
        );
    }
}

#[tokio::test]
async fn a_dropped_stream_sends_only_user_offline() {
    let (_server, admin, member) = TestServer::start_with_member().await;
    let games = admin.create_channel("Games").await.unwrap();
    let mut watcher = admin.session("watcher").await;
    let leaver = member.session("leaver").await;
    leaver.join(&games.id, "").await.unwrap();
    let id = leaver.id();
    watcher
        .wait_for("the leaver in Games", |e| {
            is_member_joined(e, id, &games.id)
        })
        .await;
    drop(leaver);

    let (before, _) = watcher
        .events_until("user_offline", |e| is_offline(e, id))
        .await;
    assert!(
        !before
            .iter()
            .any(|e| matches!(&e.event, Some(Ev::MemberLeft(m)) if m.session_id == id)),
        "the end of a session is user_offline alone: {before:?}"
    );
    assert_eq!(admin.member_ids(&games.id).await, Vec::<u32>::new());
    assert_eq!(admin.get_channel(&games.id).await.unwrap().member_count, 0);
    assert!(!admin.online_ids().await.contains(&id));
}

#[tokio::test]
async fn channel_changes_are_announced_with_the_channel() {
    let (server, admin, member) = TestServer::start_with_member().await;
    let mut session = member.session("watcher").await;

    let created = admin.create_channel("News").await.unwrap();
    let event = session
        .wait_for("channel_created", |e| matches!(e, Ev::ChannelCreated(_)))
        .await;
    let Some(Ev::ChannelCreated(c)) = event.event else {
        unreachable!()
    };
    assert_eq!(c.channel.unwrap(), created);

    let updated = server
        .raw(&server.admin_token)
        .await
        .update_channel(pb::UpdateChannelRequest {
            channel_id: created.id.clone(),
            description: Some("what happened".into()),
            max_members: Some(9),
            ..Default::default()
        })
        .await
        .unwrap();
    let event = session
        .wait_for("channel_updated", |e| matches!(e, Ev::ChannelUpdated(_)))
        .await;
    let Some(Ev::ChannelUpdated(c)) = event.event else {
        unreachable!()
    };
    assert_eq!(c.channel.unwrap(), updated);

    admin.delete_channel(&created.id).await.unwrap();
    session
        .wait_for("channel_deleted", |e| is_deleted(e, &created.id))
        .await;
}

#[tokio::test]
async fn presence_changes_are_announced_to_everyone() {
    let (_server, admin, member) = TestServer::start_with_member().await;
    let mut watcher = admin.session("watcher").await;
    let mut bob = member.session("bob").await;

    let user = bob
        .update_presence(
            PresenceUpdate::new()
                .status(pb::Status::Away)
                .status_text("brb")
                .self_mute(true),
        )
        .await
        .unwrap();
    for session in [&mut watcher, &mut bob] {
        let event = session
            .wait_for("presence_changed", |e| matches!(e, Ev::PresenceChanged(_)))
            .await;
        let Some(Ev::PresenceChanged(p)) = event.event else {
            unreachable!()
        };
        assert_eq!(p.user.unwrap(), user);
    }
}

#[tokio::test]
async fn deleting_a_channel_moves_its_members_up_and_deletes_its_subchannels() {
    let (_server, admin, member) = TestServer::start_with_member().await;
    let top = admin.create_channel("Top").await.unwrap();
    let mid = admin
        .create_channel_with(NewChannel::new("Mid").parent(&top.id))
        .await
        .unwrap();
    let low = admin
        .create_channel_with(NewChannel::new("Low").parent(&mid.id))
        .await
        .unwrap();
    let mut watcher = admin.session("watcher").await;
    let a = member.session("a").await;
    let b = member.session("b").await;
    let lobby = a.started().channels[0].id.clone();
    a.join(&mid.id, "").await.unwrap();
    b.join(&low.id, "").await.unwrap();
    watcher
        .wait_for("b in Low", |e| is_member_joined(e, b.id(), &low.id))
        .await;

    admin.delete_channel(&mid.id).await.unwrap();
    admin.create_channel("marker").await.unwrap();
    let events = until_marker(&mut watcher, "marker").await;
    let a_left = position(&events, "a leaving Mid", |e| {
        is_member_left(e, a.id(), &mid.id)
    });
    let a_joined = position(&events, "a joining Top", |e| {
        is_member_joined(e, a.id(), &top.id)
    });
    let b_left = position(&events, "b leaving Low", |e| {
        is_member_left(e, b.id(), &low.id)
    });
    let b_joined = position(&events, "b joining Top", |e| {
        is_member_joined(e, b.id(), &top.id)
    });
    let low_gone = position(&events, "Low deleted", |e| is_deleted(e, &low.id));
    let mid_gone = position(&events, "Mid deleted", |e| is_deleted(e, &mid.id));
    assert!(a_left < a_joined && b_left < b_joined);
    assert!(a_joined < mid_gone && b_joined < low_gone);
    assert_eq!(
        events.len(),
        6,
        "two moves and two deletions, nothing else: {events:?}"
    );

    let mut ids = vec![a.id(), b.id()];
    ids.sort_unstable();
    assert_eq!(admin.member_ids(&top.id).await, ids);
    assert_eq!(admin.get_channel(&top.id).await.unwrap().member_count, 2);
    assert_eq!(
        admin.list_channels().await.unwrap().len(),
        3,
        "Lobby, Top, marker"
    );

    // A top-level channel's members go to the default channel.
    admin.delete_channel(&top.id).await.unwrap();
    watcher
        .wait_for("Top deleted", |e| is_deleted(e, &top.id))
        .await;
    let mut lobby_ids = vec![a.id(), b.id(), watcher.id()];
    lobby_ids.sort_unstable();
    assert_eq!(admin.member_ids(&lobby).await, lobby_ids);
    let events = &watcher.log;
    let a_back = position(events, "a joining the Lobby", |e| {
        is_member_joined(e, a.id(), &lobby)
    });
    let top_gone = position(events, "Top deleted", |e| is_deleted(e, &top.id));
    assert!(a_back < top_gone);
}

#[tokio::test]
async fn a_temporary_channel_goes_with_its_last_member() {
    let (_server, admin, member) = TestServer::start_with_member().await;
    let mut watcher = admin.session("watcher").await;
    let temporary = |name: &str| NewChannel::new(name).temporary(true);

    // The last member's session ends.
    let t1 = admin.create_channel_with(temporary("T1")).await.unwrap();
    let a = member.session("a").await;
    let b = member.session("b").await;
    a.join(&t1.id, "").await.unwrap();
    b.join(&t1.id, "").await.unwrap();
    a.leave().await.unwrap();
    assert_eq!(admin.get_channel(&t1.id).await.unwrap().member_count, 1);
    let b_id = b.id();
    drop(b);
    let (before, _) = watcher
        .events_until("T1 deleted", |e| is_deleted(e, &t1.id))
        .await;
    position(&before, "b going offline", |e| is_offline(e, b_id));
    expect_not_found(&admin, &t1.id).await;

    // The last member leaves with LeaveChannel.
    let t2 = admin.create_channel_with(temporary("T2")).await.unwrap();
    a.join(&t2.id, "").await.unwrap();
    a.leave().await.unwrap();
    watcher
        .wait_for("T2 deleted", |e| is_deleted(e, &t2.id))
        .await;
    expect_not_found(&admin, &t2.id).await;

    // The last member is moved out by an admin, or joins elsewhere.
    let t3 = admin.create_channel_with(temporary("T3")).await.unwrap();
    let t4 = admin.create_channel_with(temporary("T4")).await.unwrap();
    a.join(&t3.id, "").await.unwrap();
    admin.move_member(a.id(), &t4.id).await.unwrap();
    watcher
        .wait_for("T3 deleted", |e| is_deleted(e, &t3.id))
        .await;
    a.join(&a.started().channels[0].id, "").await.unwrap();
    watcher
        .wait_for("T4 deleted", |e| is_deleted(e, &t4.id))
        .await;
    expect_not_found(&admin, &t3.id).await;
    expect_not_found(&admin, &t4.id).await;
    assert_eq!(admin.list_channels().await.unwrap().len(), 1);
}

async fn expect_not_found(admin: &Client, id: &str) {
    support::expect_reason(admin.get_channel(id).await, Reason::ChannelNotFound);
}

#[tokio::test]
async fn revoking_a_token_kicks_its_sessions_and_ends_their_streams() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (member, info) = admin.new_member("doomed").await;
    let (other, _) = admin.new_member("bystander").await;
    let mut watcher = admin.session("watcher").await;
    let mut bystander = other.session("bystander").await;
    let mut first = member.session("first").await;
    let mut second = member.session("second").await;

    admin.revoke_token(&info.id).await.unwrap();
    for session in [&mut first, &mut second] {
        session
            .wait_for(
                "kicked",
                |e| matches!(e, Ev::Kicked(k) if !k.reason.is_empty()),
            )
            .await;
        match session.wait_end().await {
            StreamEnd::Error(status) => {
                assert_status(&status, Reason::Unauthorized, Code::Unauthenticated)
            }
            other => panic!("a kicked session's stream ends with UNAUTHENTICATED: {other:?}"),
        }
    }
    for id in [first.id(), second.id()] {
        watcher
            .wait_for("user_offline of a kicked session", |e| is_offline(e, id))
            .await;
    }
    let online = admin.online_ids().await;
    assert!(!online.contains(&first.id()) && !online.contains(&second.id()));
    assert!(online.contains(&bystander.id()));

    // Others are not kicked and their streams go on.
    admin.create_channel("marker").await.unwrap();
    for session in [&mut watcher, &mut bystander] {
        let events = until_marker(session, "marker").await;
        assert!(
            session.kinds().iter().all(|e| !matches!(e, Ev::Kicked(_))),
            "only the revoked token's sessions are kicked: {events:?}"
        );
    }
}

#[tokio::test]
async fn every_session_sees_the_same_numbered_events_and_can_rebuild_the_state() {
    let (server, admin, member) = TestServer::start_with_member().await;
    let games = admin.create_channel("Games").await.unwrap();
    let mut early = admin.session("early").await;
    let a = member.session("a").await;
    a.join(&games.id, "").await.unwrap();
    let mut late = member.session("late").await;
    let sub = admin
        .create_channel_with(NewChannel::new("Sub").parent(&games.id))
        .await
        .unwrap();
    let b = member.session("b").await;
    b.join(&sub.id, "").await.unwrap();
    a.update_presence(
        PresenceUpdate::new()
            .self_deaf(true)
            .status(pb::Status::Dnd)
            .status_text("busy"),
    )
    .await
    .unwrap();
    server
        .raw(&server.admin_token)
        .await
        .update_channel(pb::UpdateChannelRequest {
            channel_id: sub.id.clone(),
            name: Some("Renamed".into()),
            password: Some("secret".into()),
            max_members: Some(4),
            ..Default::default()
        })
        .await
        .unwrap();
    let temp = admin
        .create_channel_with(NewChannel::new("Temp").temporary(true))
        .await
        .unwrap();
    let c = member.session("c").await;
    c.join(&temp.id, "").await.unwrap();
    admin.move_member(c.id(), &sub.id).await.unwrap();
    admin.delete_channel(&games.id).await.unwrap();
    let b_id = b.id();
    drop(b);
    early
        .wait_for("user_offline of b", |e| is_offline(e, b_id))
        .await;
    admin.create_channel("marker").await.unwrap();

    until_marker(&mut early, "marker").await;
    until_marker(&mut late, "marker").await;
    // Over the range both saw, the events and their numbers are identical.
    let late_events = late.log.clone();
    let early_events: Vec<_> = early
        .log
        .iter()
        .filter(|e| e.sequence > late.started_sequence())
        .cloned()
        .collect();
    assert_eq!(early_events, late_events);

    // Snapshot plus events is the server's state.
    let server = Model::from_server(&admin).await;
    for session in [&early, &late] {
        let mut model = Model::from_started(session.started());
        for event in &session.log {
            model.apply(event.event.as_ref().unwrap());
        }
        assert_eq!(model, server, "session {}", session.id());
    }
}
