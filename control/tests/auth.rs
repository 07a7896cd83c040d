//! AuthService over real gRPC, and authentication of every service: who
//! may call what, bad tokens, expiry, revocation and the ban on addresses
//! that keep presenting bad tokens.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use openspeak_shared::{Reason, metadata, pb};
use support::{Client, TestServer, expect_err, expect_reason, within};
use tonic::{Code, Request, Status, metadata::MetadataValue};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A request whose `authorization` metadata is `value` exactly, or none.
fn raw<T>(value: Option<&str>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = value {
        request.metadata_mut().insert(
            metadata::AUTHORIZATION,
            MetadataValue::try_from(value).expect("ASCII metadata"),
        );
    }
    request
}

fn unauthenticated<T: std::fmt::Debug>(result: Result<T, Status>) {
    expect_err(result, Reason::Unauthorized, Code::Unauthenticated);
}

fn denied<T: std::fmt::Debug>(result: Result<T, Status>) {
    expect_err(result, Reason::Unauthorized, Code::PermissionDenied);
}

fn seconds(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Calls one RPC of every service (and Connect) with `auth` as the
/// `authorization` metadata, and asserts each is refused as UNAUTHENTICATED.
async fn refused_everywhere(client: &Client, auth: Option<&str>) {
    unauthenticated(
        within(
            "WhoAmI",
            client.auth().who_am_i(raw(auth, pb::WhoAmIRequest {})),
        )
        .await,
    );
    unauthenticated(
        within(
            "ListChannels",
            client
                .channels()
                .list_channels(raw(auth, pb::ListChannelsRequest {})),
        )
        .await,
    );
    unauthenticated(
        within(
            "ListOnline",
            client
                .presence()
                .list_online(raw(auth, pb::ListOnlineRequest {})),
        )
        .await,
    );
    unauthenticated(
        within(
            "Connect",
            client.presence().connect(raw(
                auth,
                pb::ConnectRequest {
                    display_name: "x".into(),
                },
            )),
        )
        .await,
    );
    unauthenticated(
        within(
            "OpenVoice",
            client
                .voice()
                .open_voice(raw(auth, pb::OpenVoiceRequest {})),
        )
        .await,
    );
}

#[tokio::test]
async fn who_am_i_describes_the_callers_token() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let me = admin.who_am_i().await.unwrap();
    assert_eq!(me.role, pb::Role::Admin as i32);
    assert!(!me.id.is_empty());
    assert!(me.created_at.is_some());
    assert_eq!(me.expires_at, None, "the bootstrap token never expires");

    let (member, info) = admin.new_member("alice").await;
    let seen = member.who_am_i().await.unwrap();
    assert_eq!(seen, info);
    assert_eq!(seen.role, pb::Role::Member as i32);
    assert_eq!(seen.label, "alice");
}

#[tokio::test]
async fn create_token_shows_the_plaintext_once_and_lists_only_infos() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let before = now_secs();
    let created = within(
        "CreateToken",
        admin.auth().create_token(admin.req(pb::CreateTokenRequest {
            label: "  bob  ".into(),
            role: pb::Role::Member as i32,
            ttl_seconds: Some(3600),
        })),
    )
    .await
    .unwrap()
    .into_inner();
    let info = created.info.clone().unwrap();
    assert!(!created.token.is_empty());
    assert_ne!(created.token, info.id, "the id is not the secret");
    assert_eq!(info.label, "bob", "labels are stored trimmed");
    assert_eq!(info.role, pb::Role::Member as i32);
    let created_at = seconds(info.created_at.as_ref().unwrap());
    assert!((before - 1..=now_secs() + 1).contains(&created_at));
    assert_eq!(
        seconds(info.expires_at.as_ref().unwrap()) - created_at,
        3600,
        "expires_at is created_at + ttl_seconds"
    );
    assert_eq!(
        admin.with(&created.token).who_am_i().await.unwrap(),
        info,
        "the new token authenticates"
    );

    // ttl_seconds 0 means never; an admin token can do admin things.
    let never = within(
        "CreateToken",
        admin.auth().create_token(admin.req(pb::CreateTokenRequest {
            label: String::new(),
            role: pb::Role::Admin as i32,
            ttl_seconds: Some(0),
        })),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(never.info.as_ref().unwrap().expires_at, None);
    assert_eq!(never.info.as_ref().unwrap().label, "");
    let second_admin = admin.with(&never.token);
    second_admin
        .create_channel("Made by a second admin", "")
        .await;

    let listed = within(
        "ListTokens",
        admin
            .auth()
            .list_tokens(admin.req(pb::ListTokensRequest {})),
    )
    .await
    .unwrap()
    .into_inner()
    .tokens;
    assert_eq!(
        listed.len(),
        3,
        "bootstrap, bob, the second admin: {listed:?}"
    );
    assert!(listed.contains(&info));
    assert!(listed.contains(never.info.as_ref().unwrap()));
    let text = format!("{listed:?}");
    assert!(!text.contains(&created.token) && !text.contains(&never.token));
}

#[tokio::test]
async fn create_token_checks_label_and_role() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let create = |label: String, role: i32| {
        let admin = admin.clone();
        async move {
            within(
                "CreateToken",
                admin.auth().create_token(admin.req(pb::CreateTokenRequest {
                    label,
                    role,
                    ttl_seconds: None,
                })),
            )
            .await
            .map(|r| r.into_inner())
        }
    };
    let member = pb::Role::Member as i32;
    // 128 characters (multi-byte ones, and padded with white space) fit.
    assert!(create("é".repeat(128), member).await.is_ok());
    assert!(
        create(format!("  {}  ", "x".repeat(128)), member)
            .await
            .is_ok()
    );
    expect_reason(
        create("x".repeat(129), member).await,
        Reason::InvalidRequest,
    );
    expect_reason(
        create("é".repeat(129), member).await,
        Reason::InvalidRequest,
    );
    expect_reason(
        create("label".into(), pb::Role::Unspecified as i32).await,
        Reason::InvalidRequest,
    );
    expect_reason(create("label".into(), 99).await, Reason::InvalidRequest);
}

#[tokio::test]
async fn revoke_token_refuses_the_token_and_hides_it() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (member, info) = admin.new_member("carol").await;
    member.who_am_i().await.unwrap();

    admin.revoke(&info.id).await.unwrap();
    unauthenticated(member.who_am_i().await);
    let listed = within(
        "ListTokens",
        admin
            .auth()
            .list_tokens(admin.req(pb::ListTokensRequest {})),
    )
    .await
    .unwrap()
    .into_inner()
    .tokens;
    assert!(listed.iter().all(|t| t.id != info.id), "{listed:?}");

    expect_reason(admin.revoke(&info.id).await, Reason::TokenNotFound);
    expect_reason(
        admin.revoke("no-such-token-id").await,
        Reason::TokenNotFound,
    );
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated_on_every_service() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (revoked, info) = admin.new_member("soon revoked").await;
    admin.revoke(&info.id).await.unwrap();
    let unknown = support::random_secret("test");

    let cases = [
        None,
        Some(String::new()),
        Some("Bearer".to_owned()),
        Some("Bearer ".to_owned()),
        Some(format!("Basic {}", server.admin_token)),
        Some(server.admin_token.clone()),
        Some(format!("Bearer {unknown}")),
        Some(format!("Bearer {}", revoked.token)),
    ];
    for auth in &cases {
        refused_everywhere(&admin, auth.as_deref()).await;
    }
    // The scheme is case-insensitive; the right token still works.
    let ok = within(
        "WhoAmI",
        admin.auth().who_am_i(raw(
            Some(&format!("bearer {}", server.admin_token)),
            pb::WhoAmIRequest {},
        )),
    )
    .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn an_expired_token_is_refused_and_its_sessions_end() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let created = within(
        "CreateToken",
        admin.auth().create_token(admin.req(pb::CreateTokenRequest {
            label: "brief".into(),
            role: pb::Role::Member as i32,
            ttl_seconds: Some(2),
        })),
    )
    .await
    .unwrap()
    .into_inner();
    let brief = admin.with(&created.token);
    let mut session = brief.connect("brief").await;

    // The server's clock ends the session: `kicked`, then UNAUTHENTICATED.
    session
        .wait_for("kicked", |e| matches!(e, pb::event::Event::Kicked(_)))
        .await;
    match session.wait_end().await {
        support::StreamEnd::Error(status) => {
            support::assert_status(&status, Reason::Unauthorized, Code::Unauthenticated)
        }
        other => panic!("the stream of a kicked session ends with UNAUTHENTICATED: {other:?}"),
    }
    let info = created.info.unwrap();
    let expires_at = seconds(info.expires_at.as_ref().unwrap());
    assert!(now_secs() >= expires_at, "kicked only once expired");
    unauthenticated(brief.who_am_i().await);
    // ListTokens lists every token that is not revoked, expired ones too.
    let listed = within(
        "ListTokens",
        admin
            .auth()
            .list_tokens(admin.req(pb::ListTokensRequest {})),
    )
    .await
    .unwrap()
    .into_inner()
    .tokens;
    assert!(listed.contains(&info), "{listed:?}");
    refused_everywhere(&admin, Some(&format!("Bearer {}", created.token))).await;
}

#[tokio::test]
async fn members_may_not_call_admin_rpcs() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (member, _) = admin.new_member("member").await;
    let games = admin.create_channel("Games", "").await;
    let session = member.connect("m").await;

    denied(
        within(
            "CreateToken",
            member
                .auth()
                .create_token(member.req(pb::CreateTokenRequest {
                    label: "x".into(),
                    role: pb::Role::Member as i32,
                    ttl_seconds: None,
                })),
        )
        .await,
    );
    denied(member.revoke("whatever").await);
    denied(
        within(
            "ListTokens",
            member
                .auth()
                .list_tokens(member.req(pb::ListTokensRequest {})),
        )
        .await,
    );
    denied(
        within(
            "CreateChannel",
            member
                .channels()
                .create_channel(member.req(pb::CreateChannelRequest {
                    name: "Mine".into(),
                    ..Default::default()
                })),
        )
        .await,
    );
    denied(
        within(
            "UpdateChannel",
            member
                .channels()
                .update_channel(member.req(pb::UpdateChannelRequest {
                    channel_id: games.id.clone(),
                    name: Some("Renamed".into()),
                    ..Default::default()
                })),
        )
        .await,
    );
    denied(member.delete_channel(&games.id).await);
    denied(member.move_member(session.id, &games.id).await);

    // Nothing changed.
    let now = admin.get_channel(&games.id).await.unwrap();
    assert_eq!(now.name, "Games");
    assert_eq!(admin.member_ids(&games.id).await, Vec::<u32>::new());

    // Reads are for any valid token.
    member.list_channels().await;
    member.list_online().await;
    member.get_channel(&games.id).await.unwrap();
    member.members(&games.id).await.unwrap();
    member.who_am_i().await.unwrap();
}

#[tokio::test]
async fn members_create_channels_when_configured() {
    let server = TestServer::start_with(|c| c.channels.members_can_create = true).await;
    let admin = server.admin().await;
    let (member, _) = admin.new_member("builder").await;
    let made = member.create_channel("Members' Corner", "").await;
    assert_eq!(made.name, "Members' Corner");
    // Other admin-only RPCs stay admin-only.
    denied(member.delete_channel(&made.id).await);
}

#[tokio::test]
async fn repeated_bad_tokens_get_the_address_rate_limited() {
    let server = TestServer::start_with(|c| {
        c.auth.max_failures = 3;
        c.auth.failure_window = openspeak_shared::config::Seconds(120);
        c.auth.ban_duration = openspeak_shared::config::Seconds(300);
    })
    .await;
    let admin = server.admin().await;
    admin.who_am_i().await.unwrap();
    let bad = admin.with(&support::random_secret("test"));
    for _ in 0..3 {
        unauthenticated(bad.who_am_i().await);
    }
    // From 127.0.0.1, even the good token is refused now, on every service
    // and on a fresh connection.
    expect_reason(admin.who_am_i().await, Reason::RateLimited);
    let fresh = server.admin().await;
    expect_reason(fresh.who_am_i().await, Reason::RateLimited);
    expect_reason(
        within(
            "ListChannels",
            fresh
                .channels()
                .list_channels(fresh.req(pb::ListChannelsRequest {})),
        )
        .await,
        Reason::RateLimited,
    );
    expect_reason(fresh.try_connect("x").await, Reason::RateLimited);

    // Health is not authenticated, so it is not refused.
    let health = within(
        "Health.Check",
        HealthClient::new(fresh.channel.clone()).check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn refusals_for_want_of_a_right_do_not_count_as_failures() {
    let server = TestServer::start_with(|c| c.auth.max_failures = 3).await;
    let admin = server.admin().await;
    let (member, _) = admin.new_member("eager").await;
    for _ in 0..6 {
        denied(
            within(
                "ListTokens",
                member
                    .auth()
                    .list_tokens(member.req(pb::ListTokensRequest {})),
            )
            .await,
        );
    }
    member.who_am_i().await.unwrap();
    admin.who_am_i().await.unwrap();
}

#[tokio::test]
async fn failures_below_the_limit_do_not_ban() {
    let server = TestServer::start_with(|c| c.auth.max_failures = 3).await;
    let admin = server.admin().await;
    let bad = admin.with(&support::random_secret("test"));
    for _ in 0..2 {
        unauthenticated(bad.who_am_i().await);
    }
    admin.who_am_i().await.unwrap();
    // The failure limit is per address and window, so the next bad token
    // is the third and bans.
    unauthenticated(bad.who_am_i().await);
    expect_reason(admin.who_am_i().await, Reason::RateLimited);
}
