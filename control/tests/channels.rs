//! ChannelService over real gRPC: the channel tree, its input limits, and
//! moving sessions through it (passwords, capacity, MoveMember).

mod support;

use openspeak_client::{Client, ClientError, NewChannel, pb};
use openspeak_shared::Reason;
use support::{ClientExt, TestServer, expect_reason};

const LOBBY: &str = "Lobby";

async fn create_named(
    client: &Client,
    name: &str,
    parent_id: &str,
) -> Result<pb::Channel, ClientError> {
    client
        .create_channel_with(NewChannel::new(name).parent(parent_id))
        .await
}

/// An `UpdateChannelRequest` for channel `id` that changes only what `set`
/// sets: most updates here change one field.
fn change(id: &str, set: impl FnOnce(&mut pb::UpdateChannelRequest)) -> pb::UpdateChannelRequest {
    let mut request = pb::UpdateChannelRequest {
        channel_id: id.to_owned(),
        ..Default::default()
    };
    set(&mut request);
    request
}

async fn lobby_id(client: &Client) -> String {
    let channels = client.list_channels().await.unwrap();
    let lobby = channels
        .iter()
        .find(|c| c.name == LOBBY)
        .expect("the default channel exists");
    lobby.id.clone()
}

#[tokio::test]
async fn create_get_and_list_channels() {
    let server = TestServer::start().await;
    let admin = server.admin().await;

    // A fresh server has only the default channel.
    let channels = admin.list_channels().await.unwrap();
    assert_eq!(channels.len(), 1, "{channels:?}");
    let lobby = &channels[0];
    assert_eq!(lobby.name, LOBBY);
    assert_eq!(lobby.parent_id, "");
    assert!(!lobby.id.is_empty());
    assert!(!lobby.temporary && !lobby.has_password);

    let raid = admin
        .create_channel_with(
            NewChannel::new("  Raid Night  ")
                .description("  Tuesdays  ")
                .max_members(5)
                .password("hunter2"),
        )
        .await
        .unwrap();
    assert_eq!(raid.name, "Raid Night", "names are stored trimmed");
    assert_eq!(raid.parent_id, "");
    assert_eq!(raid.description.trim(), "Tuesdays");
    assert_eq!(raid.max_members, 5);
    assert!(raid.has_password);
    assert!(!raid.temporary);
    assert_eq!(raid.member_count, 0);
    assert!(!raid.id.is_empty() && raid.id != lobby.id);
    let text = format!("{raid:?}");
    assert!(!text.contains("hunter2"), "the password is never shown");

    let sub = create_named(&admin, "Strategy", &raid.id).await.unwrap();
    assert_eq!(sub.parent_id, raid.id);
    let temp = admin
        .create_channel_with(NewChannel::new("Pop-up").temporary(true))
        .await
        .unwrap();
    assert!(temp.temporary);

    assert_eq!(admin.get_channel(&raid.id).await.unwrap(), raid);
    assert_eq!(admin.get_channel(&sub.id).await.unwrap(), sub);

    let listed = admin.list_channels().await.unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    for channel in [&raid, &sub, &temp] {
        assert!(listed.contains(channel), "{channel:?} in {listed:?}");
    }
    let position = |id: &str| listed.iter().position(|c| c.id == id).unwrap();
    assert!(
        position(&raid.id) < position(&sub.id),
        "parents before children"
    );
}

#[tokio::test]
async fn names_are_counted_in_scalar_values_after_trimming() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let invalid = Reason::InvalidRequest;

    for bad in [
        String::new(),
        "   ".into(),
        "\t\n".into(),
        "x".repeat(65),
        "é".repeat(65),
        "🎧".repeat(65),
        // 33 × (e + combining accent) is 66 scalar values, though 33 graphemes.
        "e\u{301}".repeat(33),
    ] {
        expect_reason(create_named(&admin, &bad, "").await, invalid);
    }
    for (i, good) in [
        "x".repeat(64),
        format!("  {}  ", "y".repeat(64)),
        "é".repeat(64),
        "🎧".repeat(64),
        "e\u{301}".repeat(32),
        "z".into(),
    ]
    .into_iter()
    .enumerate()
    {
        let made = create_named(&admin, &good, "")
            .await
            .unwrap_or_else(|e| panic!("name #{i} {good:?} is valid: {e:?}"));
        assert_eq!(made.name, good.trim());
    }
}

#[tokio::test]
async fn descriptions_and_passwords_have_limits() {
    let (_server, admin, raw) = TestServer::start_with_raw_admin().await;
    let request = |name: &str, description: String, password: String| {
        NewChannel::new(name)
            .description(description)
            .password(password)
    };

    admin
        .create_channel_with(request("d ok", "é".repeat(1024), String::new()))
        .await
        .unwrap();
    admin
        .create_channel_with(request(
            "d padded",
            format!("  {}  ", "d".repeat(1024)),
            String::new(),
        ))
        .await
        .unwrap();
    expect_reason(
        admin
            .create_channel_with(request("d long", "d".repeat(1025), String::new()))
            .await,
        Reason::InvalidRequest,
    );
    admin
        .create_channel_with(request("p ok", String::new(), "é".repeat(128)))
        .await
        .unwrap();
    expect_reason(
        admin
            .create_channel_with(request("p long", String::new(), "p".repeat(129)))
            .await,
        Reason::InvalidRequest,
    );

    let channel = create_named(&admin, "Target", "").await.unwrap();
    expect_reason(
        raw.update_channel(change(&channel.id, |u| {
            u.description = Some("d".repeat(1025))
        }))
        .await,
        Reason::InvalidRequest,
    );
    expect_reason(
        raw.update_channel(change(&channel.id, |u| u.password = Some("p".repeat(129))))
            .await,
        Reason::InvalidRequest,
    );
    for name in [String::new(), " ".into(), "n".repeat(65)] {
        expect_reason(
            raw.update_channel(change(&channel.id, |u| u.name = Some(name)))
                .await,
            Reason::InvalidRequest,
        );
    }
    // A refused update changed nothing.
    assert_eq!(admin.get_channel(&channel.id).await.unwrap(), channel);
}

#[tokio::test]
async fn sibling_names_are_unique_ignoring_case() {
    let (_server, admin, raw) = TestServer::start_with_raw_admin().await;
    let invalid = Reason::InvalidRequest;

    // The default channel is a top-level sibling too.
    expect_reason(create_named(&admin, "lobby", "").await, invalid);
    expect_reason(create_named(&admin, " LOBBY ", "").await, invalid);

    let games = create_named(&admin, "Games", "").await.unwrap();
    expect_reason(create_named(&admin, "gAMES", "").await, invalid);
    expect_reason(create_named(&admin, "  games ", "").await, invalid);
    // Under another parent the same name is fine, and a name may repeat
    // its parent's.
    let inner = create_named(&admin, "Games", &games.id).await.unwrap();
    expect_reason(create_named(&admin, "GAMES", &games.id).await, invalid);

    // Renaming into a sibling's name, or moving next to a namesake, is refused.
    let music = create_named(&admin, "Music", "").await.unwrap();
    expect_reason(
        raw.update_channel(change(&music.id, |u| u.name = Some("GAMES".into())))
            .await,
        invalid,
    );
    expect_reason(
        raw.update_channel(change(&inner.id, |u| u.parent_id = Some(String::new())))
            .await,
        invalid,
    );
    // Renaming a channel to a new case of its own name is fine.
    let renamed = raw
        .update_channel(change(&music.id, |u| u.name = Some("MUSIC".into())))
        .await
        .unwrap();
    assert_eq!(renamed.name, "MUSIC");
}

#[tokio::test]
async fn update_changes_only_the_fields_given() {
    let (_server, admin, raw) = TestServer::start_with_raw_admin().await;
    let top = create_named(&admin, "Top", "").await.unwrap();
    let channel = admin
        .create_channel_with(
            NewChannel::new("Old")
                .description("old description")
                .max_members(3)
                .password("pw"),
        )
        .await
        .unwrap();

    // Nothing given: nothing changes.
    let same = raw
        .update_channel(pb::UpdateChannelRequest {
            channel_id: channel.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(same, channel);

    let renamed = raw
        .update_channel(change(&channel.id, |u| u.name = Some(" New ".into())))
        .await
        .unwrap();
    assert_eq!(renamed.name, "New");
    assert_eq!(renamed.description, "old description");
    assert_eq!(renamed.max_members, 3);
    assert!(renamed.has_password);

    let changed = raw
        .update_channel(pb::UpdateChannelRequest {
            channel_id: channel.id.clone(),
            parent_id: Some(top.id.clone()),
            description: Some("new description".into()),
            max_members: Some(0),
            password: Some(String::new()),
            temporary: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(changed.name, "New");
    assert_eq!(changed.parent_id, top.id);
    assert_eq!(changed.description, "new description");
    assert_eq!(changed.max_members, 0);
    assert!(!changed.has_password, "an empty password removes it");
    assert_eq!(admin.get_channel(&channel.id).await.unwrap(), changed);

    // An empty parent_id moves it back to the top level.
    let back = raw
        .update_channel(pb::UpdateChannelRequest {
            channel_id: channel.id.clone(),
            parent_id: Some(String::new()),
            password: Some("again".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(back.parent_id, "");
    assert!(back.has_password);
}

#[tokio::test]
async fn a_channel_cannot_move_below_itself() {
    let (_server, admin, raw) = TestServer::start_with_raw_admin().await;
    let a = create_named(&admin, "A", "").await.unwrap();
    let b = create_named(&admin, "B", &a.id).await.unwrap();
    let c = create_named(&admin, "C", &b.id).await.unwrap();
    for parent in [&a.id, &b.id, &c.id] {
        expect_reason(
            raw.update_channel(change(&a.id, |u| u.parent_id = Some(parent.clone())))
                .await,
            Reason::InvalidRequest,
        );
    }
    assert_eq!(admin.get_channel(&a.id).await.unwrap().parent_id, "");
    // Moving the other way is fine.
    let moved = raw
        .update_channel(change(&c.id, |u| u.parent_id = Some(a.id.clone())))
        .await
        .unwrap();
    assert_eq!(moved.parent_id, a.id);
}

#[tokio::test]
async fn unknown_and_empty_channel_ids() {
    let (_server, admin, raw) = TestServer::start_with_raw_admin().await;
    let session = admin.session("admin").await;
    let not_found = Reason::ChannelNotFound;
    let invalid = Reason::InvalidRequest;

    let lobby = lobby_id(&admin).await;
    for id in [
        "no-such-channel".to_owned(),
        lobby.to_uppercase(),
        format!(" {lobby}"),
        format!("{lobby} "),
        " ".to_owned(),
        "🎧".to_owned(),
    ] {
        let id = id.as_str();
        expect_reason(admin.get_channel(id).await, not_found);
        expect_reason(admin.delete_channel(id).await, not_found);
        expect_reason(admin.list_channel_members(id).await, not_found);
        expect_reason(session.join(id, "").await, not_found);
        expect_reason(admin.move_member(session.id(), id).await, not_found);
        expect_reason(
            raw.update_channel(change(id, |u| u.name = Some("x".into())))
                .await,
            not_found,
        );
        // An unknown parent is CHANNEL_NOT_FOUND too.
        expect_reason(create_named(&admin, "Orphan", id).await, not_found);
    }
    let real = create_named(&admin, "Real", "").await.unwrap();
    expect_reason(
        raw.update_channel(change(&real.id, |u| {
            u.parent_id = Some("no-such-parent".into())
        }))
        .await,
        not_found,
    );

    expect_reason(admin.get_channel("").await, invalid);
    expect_reason(admin.delete_channel("").await, invalid);
    expect_reason(admin.list_channel_members("").await, invalid);
    expect_reason(session.join("", "").await, invalid);
    expect_reason(admin.move_member(session.id(), "").await, invalid);
    expect_reason(
        raw.update_channel(change("", |u| u.name = Some("x".into())))
            .await,
        invalid,
    );
}

#[tokio::test]
async fn delete_removes_the_channel_but_never_the_default_one() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let lobby = lobby_id(&admin).await;
    expect_reason(admin.delete_channel(&lobby).await, Reason::InvalidRequest);
    assert!(admin.get_channel(&lobby).await.is_ok());

    let doomed = create_named(&admin, "Doomed", "").await.unwrap();
    let child = create_named(&admin, "Child", &doomed.id).await.unwrap();
    admin.delete_channel(&doomed.id).await.unwrap();
    expect_reason(admin.get_channel(&doomed.id).await, Reason::ChannelNotFound);
    expect_reason(admin.get_channel(&child.id).await, Reason::ChannelNotFound);
    expect_reason(
        admin.delete_channel(&doomed.id).await,
        Reason::ChannelNotFound,
    );
    assert_eq!(admin.list_channels().await.unwrap().len(), 1);
    // The name is free again.
    create_named(&admin, "Doomed", "").await.unwrap();
}

#[tokio::test]
async fn the_default_channel_stays_a_top_level_channel_that_is_never_temporary() {
    let (_server, admin, raw) = TestServer::start_with_raw_admin().await;
    let lobby = lobby_id(&admin).await;
    let other = create_named(&admin, "Other", "").await.unwrap();
    // Temporary channels get deleted; the default one always exists.
    expect_reason(
        raw.update_channel(change(&lobby, |u| u.temporary = Some(true)))
            .await,
        Reason::InvalidRequest,
    );
    // It is a top-level sibling, and deleting a parent must not take it along.
    expect_reason(
        raw.update_channel(change(&lobby, |u| u.parent_id = Some(other.id.clone())))
            .await,
        Reason::InvalidRequest,
    );
    let now = admin.get_channel(&lobby).await.unwrap();
    assert!(!now.temporary);
    assert_eq!(now.parent_id, "");
    // It may be renamed and described like any other.
    let renamed = raw
        .update_channel(pb::UpdateChannelRequest {
            channel_id: lobby.clone(),
            name: Some("Entrance".into()),
            description: Some("everyone starts here".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(renamed.name, "Entrance");
    admin.delete_channel(&other.id).await.unwrap();
    assert_eq!(admin.list_channels().await.unwrap(), vec![renamed]);
}

#[tokio::test]
async fn join_and_leave_move_a_session_and_count_members() {
    let (_server, admin, member) = TestServer::start_with_member().await;
    let lobby = lobby_id(&admin).await;
    let games = create_named(&admin, "Games", "").await.unwrap();
    let session = member.session("player").await;

    assert_eq!(admin.member_ids(&lobby).await, vec![session.id()]);
    assert_eq!(admin.get_channel(&lobby).await.unwrap().member_count, 1);

    let joined = session.join(&games.id, "").await.unwrap();
    assert_eq!(joined.id, games.id);
    assert_eq!(joined.member_count, 1);
    assert_eq!(admin.member_ids(&games.id).await, vec![session.id()]);
    assert_eq!(admin.member_ids(&lobby).await, Vec::<u32>::new());
    assert_eq!(admin.get_channel(&lobby).await.unwrap().member_count, 0);
    let online = admin.list_online().await.unwrap();
    assert_eq!(online.len(), 1);
    assert_eq!(online[0].channel_id, games.id);

    // Joining the channel one is in is fine and changes nothing.
    assert_eq!(session.join(&games.id, "").await.unwrap().member_count, 1);

    session.leave().await.unwrap();
    assert_eq!(admin.member_ids(&games.id).await, Vec::<u32>::new());
    let online = admin.list_online().await.unwrap();
    assert_eq!(
        online[0].channel_id, "",
        "after LeaveChannel, in no channel"
    );
    assert!(
        admin
            .list_channels()
            .await
            .unwrap()
            .iter()
            .all(|c| c.member_count == 0)
    );
    expect_reason(session.leave().await, Reason::NotInChannel);

    // From nowhere one can join again.
    session.join(&lobby, "").await.unwrap();
    assert_eq!(admin.member_ids(&lobby).await, vec![session.id()]);
}

#[tokio::test]
async fn members_need_the_password_and_room_but_admins_and_move_member_do_not() {
    let (_server, admin, member) = TestServer::start_with_member().await;
    let locked = admin
        .create_channel_with(NewChannel::new("Locked").password("open sesame"))
        .await
        .unwrap();
    let solo = admin
        .create_channel_with(NewChannel::new("Solo").max_members(1))
        .await
        .unwrap();
    let both = admin
        .create_channel_with(NewChannel::new("Both").max_members(1).password("pw"))
        .await
        .unwrap();
    let first = member.session("first").await;
    let second = member.session("second").await;
    let third = member.session("third").await;
    let boss = admin.session("boss").await;

    expect_reason(first.join(&locked.id, "").await, Reason::WrongPassword);
    expect_reason(first.join(&locked.id, "open").await, Reason::WrongPassword);
    expect_reason(
        first.join(&locked.id, &"p".repeat(129)).await,
        Reason::InvalidRequest,
    );
    first.join(&locked.id, "open sesame").await.unwrap();
    boss.join(&locked.id, "").await.unwrap();
    assert_eq!(admin.get_channel(&locked.id).await.unwrap().member_count, 2);

    second.join(&solo.id, "").await.unwrap();
    expect_reason(third.join(&solo.id, "").await, Reason::ChannelFull);
    boss.join(&solo.id, "").await.unwrap();
    assert_eq!(admin.get_channel(&solo.id).await.unwrap().member_count, 2);

    // A refused join leaves the session where it was.
    let third_where = admin
        .list_online()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.session_id == third.id())
        .unwrap();
    assert_eq!(third_where.channel_id, lobby_id(&admin).await);

    // MoveMember ignores both password and capacity.
    second.leave().await.unwrap();
    admin.move_member(second.id(), &both.id).await.unwrap();
    admin.move_member(third.id(), &both.id).await.unwrap();
    assert_eq!(admin.member_ids(&both.id).await, {
        let mut ids = vec![second.id(), third.id()];
        ids.sort_unstable();
        ids
    });
    assert_eq!(admin.get_channel(&both.id).await.unwrap().member_count, 2);
    // A member still cannot get in by itself.
    expect_reason(first.join(&both.id, "pw").await, Reason::ChannelFull);
}

#[tokio::test]
async fn move_member_moves_another_session() {
    let (_server, admin, member) = TestServer::start_with_member().await;
    let games = create_named(&admin, "Games", "").await.unwrap();
    let session = member.session("moved").await;

    admin.move_member(session.id(), &games.id).await.unwrap();
    assert_eq!(admin.member_ids(&games.id).await, vec![session.id()]);
    // Moving it to where it is changes nothing.
    admin.move_member(session.id(), &games.id).await.unwrap();
    assert_eq!(admin.member_ids(&games.id).await, vec![session.id()]);
    // A session in no channel can be moved too.
    session.leave().await.unwrap();
    admin.move_member(session.id(), &games.id).await.unwrap();
    assert_eq!(admin.member_ids(&games.id).await, vec![session.id()]);

    for unknown in [0, session.id() + 1000, u32::MAX] {
        expect_reason(
            admin.move_member(unknown, &games.id).await,
            Reason::UserNotFound,
        );
    }
}
