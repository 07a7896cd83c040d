//! AuthService over real gRPC, and authentication of every service: who
//! may call what, bad tokens, expiry, revocation and the ban on addresses
//! that keep presenting bad tokens.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openspeak_client::{Client, TokenLifetime, pb};
use openspeak_shared::{Reason, metadata};
use support::{AsStatus, ClientExt, Raw, TestServer, expect_err, expect_reason, within};
use tonic::{Code, Request, Status, metadata::MetadataValue};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A request whose `authorization` metadata is `value` exactly, or none.
fn with_auth<T>(value: Option<&str>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = value {
        request.metadata_mut().insert(
            metadata::AUTHORIZATION,
            MetadataValue::try_from(value).expect("ASCII metadata"),
        );
    }
    request
}

fn unauthenticated<T: std::fmt::Debug>(result: Result<T, impl AsStatus>) {
    expect_err(result, Reason::Unauthorized, Code::Unauthenticated);
}

fn denied<T: std::fmt::Debug>(result: Result<T, impl AsStatus>) {
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

/// A new member token labelled `label` that lives for `lifetime`: its
/// plaintext and its info, as CreateToken answers.
async fn member_token_lasting(
    admin: &Client,
    label: &str,
    lifetime: TokenLifetime,
) -> (String, pb::TokenInfo) {
    admin
        .create_token(label, pb::Role::Member, lifetime)
        .await
        .expect("CreateToken succeeds")
}

/// Calls one RPC of every service (and Connect) with `auth` as the
/// `authorization` metadata, and asserts each is refused as UNAUTHENTICATED.
async fn refused_everywhere(client: &Raw, auth: Option<&str>) {
    let request = with_auth(auth, pb::WhoAmIRequest {});
    refused("WhoAmI", client.auth().who_am_i(request)).await;
    let request = with_auth(auth, pb::ListChannelsRequest {});
    refused("ListChannels", client.channels().list_channels(request)).await;
    let request = with_auth(auth, pb::ListOnlineRequest {});
    refused("ListOnline", client.presence().list_online(request)).await;
    let display_name = "x".into();
    let request = with_auth(auth, pb::ConnectRequest { display_name });
    refused("Connect", client.presence().connect(request)).await;
    let request = with_auth(auth, pb::OpenVoiceRequest {});
    refused("OpenVoice", client.voice().open_voice(request)).await;
}

/// Awaits `call` (bounded, named `rpc` in messages) and asserts that it was
/// refused as UNAUTHENTICATED.
async fn refused<T: std::fmt::Debug>(rpc: &str, call: impl Future<Output = Result<T, Status>>) {
    unauthenticated(within(rpc, call).await);
}

#[tokio::test]
async fn who_am_i_describes_the_callers_token() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let me = admin.whoami().await.unwrap();
    assert_eq!(me.role, pb::Role::Admin as i32);
    assert!(!me.id.is_empty());
    assert!(me.created_at.is_some());
    assert_eq!(me.expires_at, None, "the bootstrap token never expires");

    let (member, info) = admin.new_member("alice").await;
    let seen = member.whoami().await.unwrap();
    assert_eq!(seen, info);
    assert_eq!(seen.role, pb::Role::Member as i32);
    assert_eq!(seen.label, "alice");
}

#[tokio::test]
async fn create_token_shows_the_plaintext_once_and_lists_only_infos() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let before = now_secs();
    let (token, info) = member_token_lasting(
        &admin,
        "  bob  ",
        TokenLifetime::For(Duration::from_secs(3600)),
    )
    .await;
    assert!(!token.is_empty());
    assert_ne!(token, info.id, "the id is not the secret");
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
        admin.with_token(&token).unwrap().whoami().await.unwrap(),
        info,
        "the new token authenticates"
    );

    // ttl_seconds 0 means never; an admin token can do admin things.
    let (never, never_info) = admin
        .create_token("", pb::Role::Admin, TokenLifetime::Never)
        .await
        .unwrap();
    assert_eq!(never_info.expires_at, None);
    assert_eq!(never_info.label, "");
    let second_admin = admin.with_token(&never).unwrap();
    second_admin
        .create_channel("Made by a second admin")
        .await
        .unwrap();

    let listed = admin.list_tokens().await.unwrap();
    assert_eq!(
        listed.len(),
        3,
        "bootstrap, bob, the second admin: {listed:?}"
    );
    assert!(listed.contains(&info));
    assert!(listed.contains(&never_info));
    let text = format!("{listed:?}");
    assert!(!text.contains(&token) && !text.contains(&never));
}

#[tokio::test]
async fn create_token_checks_label_and_role() {
    let server = TestServer::start().await;
    // Raw: a role of 99 is no `pb::Role`.
    let admin = server.raw(&server.admin_token).await;
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
    member.whoami().await.unwrap();

    admin.revoke_token(&info.id).await.unwrap();
    unauthenticated(member.whoami().await);
    let listed = admin.list_tokens().await.unwrap();
    assert!(listed.iter().all(|t| t.id != info.id), "{listed:?}");

    expect_reason(admin.revoke_token(&info.id).await, Reason::TokenNotFound);
    expect_reason(
        admin.revoke_token("no-such-token-id").await,
        Reason::TokenNotFound,
    );
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated_on_every_service() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let (revoked, info) =
        member_token_lasting(&admin, "soon revoked", TokenLifetime::ServerDefault).await;
    admin.revoke_token(&info.id).await.unwrap();
    let unknown = support::random_secret("test");
    let raw = server.raw(&server.admin_token).await;

    let cases = [
        None,
        Some(String::new()),
        Some("Bearer".to_owned()),
        Some("Bearer ".to_owned()),
        Some(format!("Basic {}", server.admin_token)),
        Some(server.admin_token.clone()),
        Some(format!("Bearer {unknown}")),
        Some(format!("Bearer {revoked}")),
    ];
    for auth in &cases {
        refused_everywhere(&raw, auth.as_deref()).await;
    }
    // The scheme is case-insensitive; the right token still works.
    let ok = within(
        "WhoAmI",
        raw.auth().who_am_i(with_auth(
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
    let (token, info) =
        member_token_lasting(&admin, "brief", TokenLifetime::For(Duration::from_secs(2))).await;
    let brief = admin.with_token(&token).unwrap();
    let mut session = brief.session("brief").await;

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
    let expires_at = seconds(info.expires_at.as_ref().unwrap());
    assert!(now_secs() >= expires_at, "kicked only once expired");
    unauthenticated(brief.whoami().await);
    // ListTokens lists every token that is not revoked, expired ones too.
    let listed = admin.list_tokens().await.unwrap();
    assert!(listed.contains(&info), "{listed:?}");
    let raw = server.raw(&server.admin_token).await;
    refused_everywhere(&raw, Some(&format!("Bearer {token}"))).await;
}

#[tokio::test]
async fn members_may_not_call_admin_rpcs() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let token = admin.member_token("member").await;
    let member = admin.with_token(&token).unwrap();
    let games = admin.create_channel("Games").await.unwrap();
    let session = member.session("m").await;

    denied(
        member
            .create_token("x", pb::Role::Member, TokenLifetime::ServerDefault)
            .await,
    );
    denied(member.revoke_token("whatever").await);
    denied(member.list_tokens().await);
    denied(member.create_channel("Mine").await);
    denied(
        server
            .raw(&token)
            .await
            .update_channel(pb::UpdateChannelRequest {
                channel_id: games.id.clone(),
                name: Some("Renamed".into()),
                ..Default::default()
            })
            .await,
    );
    denied(member.delete_channel(&games.id).await);
    denied(member.move_member(session.id(), &games.id).await);

    // Nothing changed.
    let now = admin.get_channel(&games.id).await.unwrap();
    assert_eq!(now.name, "Games");
    assert_eq!(admin.member_ids(&games.id).await, Vec::<u32>::new());

    // Reads are for any valid token.
    member.list_channels().await.unwrap();
    member.list_online().await.unwrap();
    member.get_channel(&games.id).await.unwrap();
    member.list_channel_members(&games.id).await.unwrap();
    member.whoami().await.unwrap();
}

#[tokio::test]
async fn members_create_channels_when_configured() {
    let server = TestServer::start_with(|c| c.channels.members_can_create = true).await;
    let admin = server.admin().await;
    let (member, _) = admin.new_member("builder").await;
    let made = member.create_channel("Members' Corner").await.unwrap();
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
    admin.whoami().await.unwrap();
    let bad = admin.with_token(&support::random_secret("test")).unwrap();
    for _ in 0..3 {
        unauthenticated(bad.whoami().await);
    }
    // From 127.0.0.1, even the good token is refused now, on every service
    // and on a fresh connection.
    expect_reason(admin.whoami().await, Reason::RateLimited);
    let fresh = server.admin().await;
    expect_reason(fresh.whoami().await, Reason::RateLimited);
    expect_reason(fresh.list_channels().await, Reason::RateLimited);
    expect_reason(fresh.start_session("x").await, Reason::RateLimited);

    // Health is not authenticated, so it is not refused.
    let health = within(
        "Health.Check",
        HealthClient::new(server.connection().await).check(HealthCheckRequest {
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
        denied(member.list_tokens().await);
    }
    member.whoami().await.unwrap();
    admin.whoami().await.unwrap();
}

#[tokio::test]
async fn failures_below_the_limit_do_not_ban() {
    let server = TestServer::start_with(|c| c.auth.max_failures = 3).await;
    let admin = server.admin().await;
    let bad = admin.with_token(&support::random_secret("test")).unwrap();
    for _ in 0..2 {
        unauthenticated(bad.whoami().await);
    }
    admin.whoami().await.unwrap();
    // The failure limit is per address and window, so the next bad token
    // is the third and bans.
    unauthenticated(bad.whoami().await);
    expect_reason(admin.whoami().await, Reason::RateLimited);
}
