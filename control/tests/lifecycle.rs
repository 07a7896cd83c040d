//! The control plane's life in one process: graceful shutdown (in the
//! grace period and past it) and state that survives a restart.

mod support;

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    time::{Duration, Instant},
};

use openspeak_client::{TokenLifetime, pb};
use openspeak_shared::{
    Reason,
    config::{Config, Seconds},
};
use pb::{auth_service_client::AuthServiceClient, event::Event as Ev};
use support::{ClientExt, TestServer, expect_err, random_secret, test_config, with_token, within};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

fn is_shutdown(e: &Ev) -> bool {
    matches!(e, Ev::ServerShutdown(s) if !s.reason.is_empty())
}

#[tokio::test]
async fn shutdown_tells_sessions_drains_and_returns_once_streams_close() {
    let mut server = TestServer::start_with(|c| c.server.shutdown_grace = Seconds(20)).await;
    let admin = server.admin().await;
    let (member, _) = admin.new_member("m").await;
    let mut a = admin.session("a").await;
    let mut b = member.session("b").await;
    let mut health = HealthClient::new(server.connection().await);
    let mut watch = within(
        "Health.Watch",
        health.watch(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let first = within("the first health status", watch.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let triggered = Instant::now();
    server.trigger_shutdown();
    a.wait_for("server_shutdown", is_shutdown).await;
    b.wait_for("server_shutdown", is_shutdown).await;
    within("health to report NOT_SERVING", async {
        for _ in 0..100 {
            let update = watch
                .message()
                .await
                .expect("the watch stream stays open while draining")
                .expect("a health update");
            if update.status == ServingStatus::NotServing as i32 {
                return;
            }
        }
        panic!("no NOT_SERVING within 100 health updates");
    })
    .await;

    // New connections are no longer accepted.
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2));
    let refused = within("a connection attempt while draining", async {
        let channel = endpoint.connect().await?;
        AuthServiceClient::new(channel)
            .who_am_i(with_token(&server.admin_token, pb::WhoAmIRequest {}))
            .await
            .map(|_| ())
            .map_err(|s| Box::new(s) as Box<dyn std::error::Error + Send + Sync>)?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })
    .await;
    assert!(refused.is_err(), "a new call succeeded while draining");

    // The clients close their streams: serve returns long before the grace.
    drop((a, b, watch, health, admin, member));
    server.join(Duration::from_secs(10)).await;
    let took = triggered.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "serve returned {took:?} after the trigger; the grace is 20 s"
    );
}

#[tokio::test]
async fn shutdown_closes_streams_left_open_after_the_grace() {
    let mut server = TestServer::start_with(|c| c.server.shutdown_grace = Seconds(2)).await;
    let admin = server.admin().await;
    let mut stubborn = admin.session("stubborn").await;

    let triggered = Instant::now();
    server.trigger_shutdown();
    stubborn.wait_for("server_shutdown", is_shutdown).await;
    // The client keeps reading and never hangs up; the server ends the stream.
    let end = stubborn.wait_end().await;
    let ended = triggered.elapsed();
    assert!(
        ended >= Duration::from_secs(1),
        "the stream was closed after {ended:?}, before the 2 s grace was over ({end:?})"
    );
    server.join(Duration::from_secs(10)).await;
    let took = triggered.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "serve took {took:?} with a 2 s grace"
    );
    drop(admin);
}

#[tokio::test]
async fn shutdown_without_sessions_is_prompt() {
    let mut server = TestServer::start().await;
    let admin = server.admin().await;
    admin.whoami().await.unwrap();
    let took = server.stop().await;
    assert!(took < Duration::from_secs(3), "serve took {took:?}");
}

#[tokio::test]
async fn tokens_and_session_ids_survive_a_restart_and_bootstrap_happens_once() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = random_secret("test");
    let config = test_config(dir.path(), Some(&bootstrap));

    let mut first = TestServer::serve(config.clone()).await;
    let admin = first.admin().await;
    let member_of =
        |label| admin.create_token(label, pb::Role::Member, TokenLifetime::ServerDefault);
    let (member_token, member_info) = member_of("kept").await.unwrap();
    let (revoked_token, revoked_info) = member_of("revoked").await.unwrap();
    admin.revoke_token(&revoked_info.id).await.unwrap();
    let member = admin.with_token(&member_token).unwrap();
    let session = member.session("before").await;
    let old_id = session.id();
    let listed_before = admin.list_tokens().await.unwrap();
    assert!(
        !dir.path().join("admin_token").exists(),
        "a configured bootstrap token is not written"
    );
    let stored = every_file(dir.path());
    assert!(stored.len() > 1000, "the state is in the data directory");
    for plaintext in [&bootstrap, &member_token, &revoked_token] {
        assert!(
            !stored.contains(plaintext.as_str()),
            "only hashes are stored"
        );
    }
    drop(session);
    first.stop().await;

    // Restart on the same data dir, with another bootstrap token configured:
    // the store is not empty, so it is not used.
    let mut second_config = config.clone();
    let ignored = random_secret("test");
    second_config.auth.bootstrap_token = Some(ignored.clone());
    let second = TestServer::serve(second_config).await;
    // One connection, several tokens.
    let admin = second.client(&bootstrap).await;
    let member = admin.with_token(&member_token).unwrap();
    let revoked = admin.with_token(&revoked_token).unwrap();

    assert_eq!(member.whoami().await.unwrap(), member_info);
    assert_eq!(admin.whoami().await.unwrap().role, pb::Role::Admin as i32);
    expect_err(
        revoked.whoami().await,
        Reason::Unauthorized,
        Code::Unauthenticated,
    );
    expect_err(
        admin.with_token(&ignored).unwrap().whoami().await,
        Reason::Unauthorized,
        Code::Unauthenticated,
    );
    let listed_after = admin.list_tokens().await.unwrap();
    assert_eq!(listed_after, listed_before);
    // A revoked token stays revoked: revoking it again is TOKEN_NOT_FOUND.
    expect_err(
        admin.revoke_token(&revoked_info.id).await,
        Reason::TokenNotFound,
        Code::NotFound,
    );

    // Session ids are not reused across the restart.
    let again = member.session("after").await;
    assert!(
        again.id() > old_id,
        "session id {} after a restart reuses or precedes {old_id}",
        again.id()
    );
}

#[tokio::test]
async fn a_generated_bootstrap_token_is_written_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), None);
    let file = dir.path().join("admin_token");

    let mut first = TestServer::serve(config.clone()).await;
    let token = std::fs::read_to_string(&file)
        .expect("the bootstrap token file is written")
        .trim()
        .to_owned();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin_token mode {mode:o}");
    let admin = first.client(&token).await;
    assert_eq!(admin.whoami().await.unwrap().role, pb::Role::Admin as i32);
    let tokens_before = admin.list_tokens().await.unwrap();
    assert_eq!(tokens_before.len(), 1);
    first.stop().await;

    std::fs::remove_file(&file).unwrap();
    let second = TestServer::serve(config).await;
    assert!(!file.exists(), "no second bootstrap on a store with tokens");
    let admin = second.client(&token).await;
    let tokens_after = admin.list_tokens().await.unwrap();
    assert_eq!(tokens_after, tokens_before);
}

/// Every file in `dir`, as text, one after the other: where a plaintext
/// token must not be, whichever store wrote them.
fn every_file(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    all
}

/// `config` with `storage.backend: json`. Set through serde: the shared
/// crate does not re-export the backend's enum.
fn json_backend(mut config: Config) -> Config {
    config.storage = serde_json::from_value(serde_json::json!({
        "data_dir": config.storage.data_dir,
        "backend": "json",
    }))
    .unwrap();
    config
}

/// The state files of each backend, as a first start leaves them.
fn state_files(config: &Config) -> &'static [&'static str] {
    if config.storage.uses_sqlite() {
        &["openspeak.db"]
    } else {
        &["tokens.json", "channels.json", "session_ids"]
    }
}

/// A state file lost from a data directory that had it stops start-up,
/// naming the file, instead of passing for a new server (which would make
/// a new admin token and forget every user). The first start creates all
/// of them, so that a lost one can be told from one never written.
#[tokio::test]
async fn a_lost_state_file_stops_start_up_naming_it() {
    for json in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path(), Some(&random_secret("test")));
        if json {
            config = json_backend(config);
        }
        let mut first = TestServer::serve(config.clone()).await;
        first.stop().await;
        let files = state_files(&config);
        for name in files.iter().chain([&openspeak_control::STATE_MARKER]) {
            assert!(
                dir.path().join(name).exists(),
                "{name} after the first start"
            );
        }

        for name in files {
            let path = dir.path().join(name);
            let kept = std::fs::read(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            let refused = openspeak_control::ControlPlane::bind(config.clone()).await;
            let Err(error) = refused else {
                panic!("started without {name}");
            };
            let message = error.to_string();
            assert!(message.contains(name), "{message}");
            assert!(message.contains("restore"), "{message}");
            assert!(!path.exists(), "nothing was written in its place");
            std::fs::write(&path, kept).unwrap();
        }
        // Everything back: it starts.
        let mut again = TestServer::serve(config).await;
        again.stop().await;
    }
}

/// A data directory written before the marker existed (state files, no
/// marker) starts as it is, and gets the marker and its missing state; with
/// SQLite, the JSON files there are imported.
#[tokio::test]
async fn a_data_directory_from_before_the_marker_is_adopted() {
    for json in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = test_config(dir.path(), Some(&random_secret("test")));
        let mut first = TestServer::serve(json_backend(config.clone())).await;
        first.stop().await;
        for name in [
            "channels.json",
            "session_ids",
            openspeak_control::STATE_MARKER,
        ] {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
        let config = if json { json_backend(config) } else { config };
        let mut adopted = TestServer::serve(config.clone()).await;
        let who = adopted.admin().await.whoami().await.unwrap();
        assert_eq!(
            who.role,
            pb::Role::Admin as i32,
            "the old tokens still work"
        );
        adopted.stop().await;
        for name in state_files(&config)
            .iter()
            .chain([&openspeak_control::STATE_MARKER])
        {
            assert!(dir.path().join(name).exists(), "{name} was created");
        }
        if !json {
            assert!(dir.path().join("tokens.json.imported").exists());
            assert!(!dir.path().join("tokens.json").exists());
        }
    }
}
