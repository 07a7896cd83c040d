//! What one member token may take of the control plane: at most
//! `auth.max_sessions_per_token` sessions open at once, and calls at
//! `auth.requests_per_second` over time. Beyond either it gets
//! `RATE_LIMITED` with a message naming the key, while other tokens and
//! admins go on untouched.

mod support;

use openspeak_client::PresenceUpdate;
use openspeak_shared::{Reason, pb};
use support::{ClientExt, TestServer, expect_reason, within};

#[tokio::test]
async fn a_member_token_past_its_session_cap_is_refused_and_no_one_else_is() {
    let server = TestServer::start_with(|config| config.auth.max_sessions_per_token = 3).await;
    let (server, admin, member) = server.with_member().await;

    let mut open = Vec::new();
    for i in 0..3 {
        open.push(member.session(&format!("m{i}")).await);
    }
    let refused = expect_reason(
        within("the fourth Connect", member.start_session("m3")).await,
        Reason::RateLimited,
    );
    assert!(
        refused.message().contains("auth.max_sessions_per_token"),
        "{}",
        refused.message()
    );
    assert_eq!(
        admin.online_ids().await.len(),
        3,
        "the refused session never came online"
    );

    // Another member token has places of its own, and admins have no cap.
    let (other, _) = admin.new_member("other").await;
    let _other = other.session("o").await;
    let mut admins = Vec::new();
    for i in 0..5 {
        admins.push(admin.session(&format!("a{i}")).await);
    }

    // A session that ends gives its place back.
    drop(open.pop());
    let _again = within("a place frees up", async {
        loop {
            match member.start_session("m3").await {
                Ok(session) => return session,
                Err(e) => {
                    expect_reason::<()>(Err(e), Reason::RateLimited);
                    tokio::task::yield_now().await;
                }
            }
        }
    })
    .await;
    drop(server);
}

#[tokio::test]
async fn a_member_token_calling_too_fast_is_refused_and_no_one_else_is() {
    let server = TestServer::start_with(|config| {
        config.auth.requests_per_second = 5;
        config.auth.request_burst = 10;
    })
    .await;
    let (_server, admin, member) = server.with_member().await;
    let session = member.session("fast").await;

    // The burst, less what opening the session took, then refusals.
    let mut accepted = 0;
    let mut refused = None;
    for _ in 0..50 {
        match within(
            "UpdatePresence",
            session.update_presence(PresenceUpdate::new().status_text("typing")),
        )
        .await
        {
            Ok(_) => accepted += 1,
            Err(e) => refused = Some(expect_reason::<()>(Err(e), Reason::RateLimited)),
        }
    }
    let refused = refused.expect("calls beyond the burst are refused");
    assert!(
        accepted <= 10,
        "no more than the burst went through at once: {accepted}"
    );
    assert!(
        refused.message().contains("auth.requests_per_second"),
        "{}",
        refused.message()
    );

    // Another member token and the admin are not slowed by it.
    let (other, _) = admin.new_member("other").await;
    within("another token's call", other.list_channels())
        .await
        .expect("another token is not limited");
    for _ in 0..50 {
        within("an admin's call", admin.list_channels())
            .await
            .expect("admins are not limited");
    }
    let who = within("WhoAmI", admin.whoami()).await.unwrap();
    assert_eq!(who.role, pb::Role::Admin as i32);
}

/// 10,000 wrong tokens from one address: the first `auth.max_failures`
/// are UNAUTHENTICATED, every one after is RATE_LIMITED without its token
/// being looked at, the server keeps answering, and a client from another
/// address (127.0.0.2 on the loopback) still gets in.
#[tokio::test]
async fn ten_thousand_wrong_tokens_from_one_address_leave_other_addresses_alone() {
    const TRIES: usize = 10_000;
    const MAX_FAILURES: u32 = 10;
    let server = TestServer::start_with(|config| config.auth.max_failures = MAX_FAILURES).await;
    let admin_token = server.admin_token.clone();
    let guesser = server
        .admin()
        .await
        .with_token(&openspeak_testkit::random_secret("wrong"))
        .unwrap();
    let (mut unauthenticated, mut limited) = (0, 0);
    for _ in 0..TRIES {
        let refused = within("a wrong token's call", guesser.whoami()).await;
        let status = support::AsStatus::as_status(&refused.unwrap_err()).clone();
        match status.code() {
            tonic::Code::Unauthenticated => unauthenticated += 1,
            tonic::Code::ResourceExhausted => limited += 1,
            other => panic!("unexpected {other:?}: {status:?}"),
        }
    }
    assert_eq!(
        unauthenticated, MAX_FAILURES as usize,
        "refused after the limit"
    );
    assert_eq!(limited, TRIES - MAX_FAILURES as usize);

    // Another address is not touched by the ban.
    let other = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .local_address(Some("127.0.0.2".parse().unwrap()));
    let channel = within("a connection from 127.0.0.2", other.connect())
        .await
        .expect("the server accepts another address");
    let me = within(
        "WhoAmI from 127.0.0.2",
        pb::auth_service_client::AuthServiceClient::new(channel)
            .who_am_i(support::with_token(&admin_token, pb::WhoAmIRequest {})),
    )
    .await
    .expect("another address gets in")
    .into_inner();
    assert_eq!(me.role, pb::Role::Admin as i32);
}
