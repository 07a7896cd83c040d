//! The `voice` scenario against a real control plane and a real data plane,
//! both in process on `127.0.0.1` with any free ports, joined by the
//! internal link: a clean run delivers every packet in order to the right
//! listeners, a seeded 10 % uplink loss shows as 10 % loss, churn keeps the
//! arithmetic exact, and an interrupted run still reports and cleans up.
//!
//! Every wait is bounded: the scenario by its own setup timeout and
//! duration, the whole test by `support::WAIT`.

mod support;

use std::time::Duration;

use openspeak_loadtest::{LossModel, Outcome, VoicePlan, run_voice};
use openspeak_shared::metadata::AUTHORIZATION;
use openspeak_shared::pb;
use support::{System, bearer, connection, no_interrupt, start_system, within};
use tokio::sync::watch;

fn plan(system: &System, clients: u32, channels: u32) -> VoicePlan {
    let mut p = VoicePlan::new(&system.addr.to_string(), &system.admin_token);
    p.clients = clients;
    p.channels = channels;
    p.speakers = 1;
    p.duration = Duration::from_secs(2);
    p.seed = 42;
    p.quiet = true;
    p.connections = 4;
    p.setup_timeout = Duration::from_secs(20);
    p
}

/// The names of the channels the server still holds.
async fn channel_names(system: &System) -> Vec<String> {
    let mut list = tonic::Request::new(pb::ListChannelsRequest {});
    list.metadata_mut()
        .insert(AUTHORIZATION, bearer(&system.admin_token));
    pb::channel_service_client::ChannelServiceClient::new(connection(system).await)
        .list_channels(list)
        .await
        .unwrap()
        .into_inner()
        .channels
        .into_iter()
        .map(|c| c.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_delivers_everything_in_order_to_the_right_listeners() {
    within(async {
        let system = start_system().await;
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("voice.json");
        let mut p = plan(&system, 6, 2);
        p.json = Some(json.clone());
        // Both planes run in this very process.
        p.server_pid = Some(std::process::id());
        let report = run_voice(&p, no_interrupt()).await.expect("the run starts");
        let table = report.table();

        assert_eq!(report.outcome, Outcome::Completed, "{table}");
        assert!(report.clean(), "{table}");
        assert_eq!((report.sessions, report.voice_connected), (6, 6), "{table}");
        assert_eq!(report.warmup.paths, 4, "{table}");
        assert_eq!(report.warmup.paths_heard, 4, "{table}");
        // Two speakers at 50 packets/s for 2 s; each packet is owed to the
        // two other members of its channel.
        assert!((150..=210).contains(&report.sent), "{table}");
        assert_eq!(report.expected, 2 * report.sent, "{table}");
        assert_eq!(report.delivered, report.expected, "{table}");
        assert_eq!(report.lost, 0, "{table}");
        assert_eq!(report.loss_ratio, 0.0, "{table}");
        assert_eq!((report.wrong, report.malformed), (0, 0), "{table}");
        assert_eq!((report.duplicates, report.reordered), (0, 0), "{table}");
        assert_eq!(report.latency_us.count, report.delivered, "{table}");
        assert!(report.latency_us.p50 > 0, "{table}");
        assert_eq!(report.received_datagrams, report.delivered, "{table}");
        assert_eq!(report.impairment.uplink_dropped, 0);

        report.write_json(&json).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["lost"], 0);
        assert_eq!(v["wrong"], 0);
        assert_eq!(v["delivered"], v["expected"]);
        if cfg!(target_os = "linux") {
            assert!(v["cpu_seconds"].is_number(), "{v}");
            assert!(v["cpu_us_per_forwarded_packet"].is_number(), "{v}");
        }

        assert_eq!(
            channel_names(&system).await,
            ["Lobby"],
            "the run's channels are deleted"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_uplink_loss_shows_as_ten_percent_loss() {
    within(async {
        let system = start_system().await;
        // 12 speakers x 100 packets/s x 4 s: about 4,800 packets, each lost
        // or not once for the single listener of its channel, so the
        // measured loss has a standard deviation of about 0.0043.
        let mut p = plan(&system, 24, 12);
        p.pps = 100;
        p.duration = Duration::from_secs(4);
        p.uplink.loss = 0.10;
        p.uplink.loss_model = LossModel::Bernoulli;
        let report = run_voice(&p, no_interrupt()).await.expect("the run starts");
        let table = report.table();

        assert_eq!(report.outcome, Outcome::Completed, "{table}");
        assert!(report.clean(), "{table}");
        assert!(report.sent >= 3_000, "{table}");
        assert_eq!(report.expected, report.sent, "one listener per channel");
        let ratio = report.delivered as f64 / report.expected as f64;
        assert!(
            (0.88..=0.92).contains(&ratio),
            "delivered/expected {ratio}:\n{table}"
        );
        assert_eq!(report.lost, report.expected - report.delivered);
        // Every loss is the simulated uplink's.
        assert_eq!(report.lost, report.impairment.uplink_dropped, "{table}");
        assert_eq!((report.wrong, report.duplicates), (0, 0), "{table}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_listeners_are_owed_only_what_was_sent_while_they_were_in() {
    within(async {
        let system = start_system().await;
        // Two channels of four: one speaker and three listeners that leave
        // and rejoin every 0.5 to 1.5 s for 3 s.
        let mut p = plan(&system, 8, 2);
        p.duration = Duration::from_secs(3);
        p.churn_every = Some(Duration::from_secs(1));
        let report = run_voice(&p, no_interrupt()).await.expect("the run starts");
        let table = report.table();

        assert_eq!(report.outcome, Outcome::Completed, "{table}");
        assert!(report.clean(), "{table}");
        let churn = report.churn.expect("churn is reported");
        assert_eq!(churn.churners, 6);
        assert!(churn.cycles >= 6, "{table}");
        assert_eq!(churn.failed, 0, "{table}");
        assert!(report.outside_window > 0, "{table}");
        assert!(report.expected < 3 * report.sent, "{table}");
        assert_eq!(report.lost, 0, "{table}");
        assert_eq!(report.delivered, report.expected, "{table}");
        assert_eq!(report.wrong, 0, "{table}");
        assert_eq!(channel_names(&system).await, ["Lobby"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_still_reports_and_cleans_up() {
    within(async {
        let system = start_system().await;
        let p = plan(&system, 4, 2);
        // Interrupted before it begins: the setup stops at once.
        let (_tx, interrupt) = watch::channel(true);
        let report = run_voice(&p, interrupt).await.expect("the run starts");
        assert_eq!(report.outcome, Outcome::Interrupted, "{}", report.table());
        assert_eq!(report.sent, 0);
        assert!(!report.clean());
        assert_eq!(channel_names(&system).await, ["Lobby"]);
    })
    .await;
}
