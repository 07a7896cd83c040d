//! The `voice` scenario against a real control plane and a real data plane,
//! both in process on `127.0.0.1` with any free ports, joined by the
//! internal link: a clean run delivers every packet in order to the right
//! listeners, a seeded 10 % uplink loss shows as 10 % loss, churn keeps the
//! arithmetic exact, and an interrupted run still reports and cleans up.
//! With `--metrics` the data plane's own counts are set beside the
//! listeners': it drops nothing of a lossy stream, puts a jittered and
//! reordered stream back in order, and drops as stale exactly the packets
//! held back beyond `voice.max_packet_age_ms`. With `--timeline`, the
//! rows add up to the run's totals and carry both planes' memory and
//! descriptors, scraped from their `/metrics`.
//!
//! Every wait is bounded: the scenario by its own setup timeout and
//! duration, the whole test by `support::WAIT`.

mod support;

use std::time::Duration;

use openspeak_loadtest::{
    JitterDist, JsonReport, LossModel, Outcome, Plane, Transport, VoicePlan, VoiceReport, run_voice,
};
use support::{
    System, free_addr, no_interrupt, start_system, start_system_with,
    start_system_with_control_metrics, within,
};
use tokio::sync::watch;

fn plan(system: &System, clients: u32, channels: u32) -> VoicePlan {
    let mut p = VoicePlan::new(&system.addr.to_string(), &system.admin_token);
    p.clients = clients;
    p.channels = channels;
    p.speakers = 1;
    p.duration = Duration::from_secs(2);
    p.seed = 42;
    p.run.quiet = true;
    p.run.connections = 4;
    p.setup_timeout = Duration::from_secs(20);
    p
}

/// The two reordering tests' run: four channels of two (one listener per
/// speaker) for 3 s, 5 % of the uplink's packets held back one frame, each
/// delayed by `delay` ± `jitter` (uniform), the data plane's metrics
/// scraped. They differ only in the delay and how wide the jitter is.
fn reordered_plan(system: &System, delay: Duration, jitter: Duration) -> VoicePlan {
    let mut p = plan(system, 8, 4);
    p.duration = Duration::from_secs(3);
    p.uplink.delay = delay;
    p.uplink.jitter = jitter;
    p.uplink.jitter_dist = JitterDist::Uniform;
    p.uplink.reorder = 0.05;
    p.metrics = Some(system.metrics_addr.to_string());
    p
}

/// Runs `p` and checks that it completed with every check passed; returns
/// the report and its table, for the messages of the caller's assertions.
async fn run_clean(p: &VoicePlan) -> (VoiceReport, String) {
    let report = run_voice(p, no_interrupt()).await.expect("the run starts");
    let table = report.table();
    assert_eq!(report.outcome, Outcome::Completed, "{table}");
    assert!(report.clean(), "{table}");
    (report, table)
}

/// The names of the channels the server still holds.
async fn channel_names(system: &System) -> Vec<String> {
    support::leftovers(system.addr, &system.admin_token).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_delivers_everything_in_order_to_the_right_listeners() {
    within(async {
        let system = start_system().await;
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("voice.json");
        let mut p = plan(&system, 6, 2);
        p.run.json = Some(json.clone());
        // Both planes run in this very process.
        p.run.server_pid = Some(std::process::id());
        let (report, table) = run_clean(&p).await;
        let d = report.delivery;

        assert_eq!((report.sessions, report.voice_connected), (6, 6), "{table}");
        assert_eq!(report.warmup.paths, 4, "{table}");
        assert_eq!(report.warmup.paths_heard, 4, "{table}");
        // Two speakers at 50 packets/s for 2 s; each packet is owed to the
        // two other members of its channel.
        assert!((150..=210).contains(&d.sent), "{table}");
        assert_eq!(d.expected, 2 * d.sent, "{table}");
        assert_eq!(d.delivered, d.expected, "{table}");
        assert_eq!(d.lost, 0, "{table}");
        assert_eq!(report.loss_ratio, 0.0, "{table}");
        assert_eq!((d.wrong, d.malformed), (0, 0), "{table}");
        assert_eq!((d.duplicates, d.reordered), (0, 0), "{table}");
        assert_eq!(report.latency_us.count, d.delivered, "{table}");
        assert!(report.latency_us.p50 > 0, "{table}");
        assert_eq!(report.received_datagrams, d.delivered, "{table}");
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
async fn a_clean_run_over_plain_udp_delivers_everything() {
    within(async {
        let system = start_system().await;
        let mut p = plan(&system, 6, 2);
        p.transport = Transport::Udp;
        p.metrics = Some(system.metrics_addr.to_string());
        let (report, table) = run_clean(&p).await;
        let d = report.delivery;

        assert_eq!(report.transport, "udp", "{table}");
        assert_eq!((report.sessions, report.voice_connected), (6, 6), "{table}");
        assert!((150..=210).contains(&d.sent), "{table}");
        assert_eq!(d.expected, 2 * d.sent, "{table}");
        assert_eq!(d.delivered, d.expected, "{table}");
        assert_eq!(d.lost, 0, "{table}");
        assert_eq!((d.wrong, d.malformed), (0, 0), "{table}");
        assert_eq!((d.duplicates, d.reordered), (0, 0), "{table}");
        let drops = report.server_drops.as_ref().expect("scraped");
        assert_eq!(drops.total, 0, "{table}");
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
        p.metrics = Some(system.metrics_addr.to_string());
        let (report, table) = run_clean(&p).await;
        let d = report.delivery;

        // Speakers keep to the wall clock, so a loaded machine sends fewer
        // than planned; the bound below widens with fewer samples.
        assert!(d.sent >= 1_000, "{table}");
        assert_eq!(d.expected, d.sent, "one listener per channel");
        let ratio = d.delivered as f64 / d.expected as f64;
        // Five standard deviations of the delivered share: 0.022 at 4,800
        // packets; a run this far off by chance is one in 1.7 million.
        let bound = 5.0 * (0.1 * 0.9 / d.expected as f64).sqrt();
        assert!(
            (ratio - 0.90).abs() <= bound,
            "delivered/expected {ratio}, more than {bound:.4} from 0.90:\n{table}"
        );
        assert_eq!(d.lost, d.expected - d.delivered);
        // Every loss is the simulated uplink's.
        assert_eq!(d.lost, report.impairment.uplink_dropped, "{table}");
        assert_eq!((d.wrong, d.duplicates), (0, 0), "{table}");

        // The data plane waited for the missing packets and dropped none of
        // those that came. Its window may also hold the last warm-ups.
        let drops = report.server_drops.as_ref().expect("scraped");
        assert_eq!(drops.total, 0, "{table}");
        let arrived = d.sent - report.impairment.uplink_dropped;
        assert!(report.server_received.unwrap() >= arrived, "{table}");
        assert!(report.server_forwarded.unwrap() >= d.delivered, "{table}");
        // It timed the packets that carried them: at most one each, as two
        // datagrams for one listener may share a packet.
        let delay = report.server_forward_delay_us.expect("measured");
        assert!(delay.count > 0, "{table}");
        assert!(delay.count <= report.server_forwarded.unwrap(), "{table}");
        assert!(delay.p50 <= delay.p99 || delay.p99.is_none(), "{table}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_plane_puts_a_jittered_reordered_uplink_back_in_order() {
    within(async {
        let system = start_system().await;
        // Four channels of two: one listener per speaker. 5 % of the packets
        // are held back one frame (20 ms) and every delay is uniform in
        // 0 to 10 ms, so a packet is at most 30 ms late against one sent
        // 20 ms after it: the data plane waits at most 10 ms for it, well
        // inside its shortest wait (one frame) and its 60 ms cap. Wider
        // jitter would let its adaptive wait (three times the measured
        // jitter) run out on a busy machine, and the test measure that.
        let mut p = reordered_plan(&system, Duration::from_millis(5), Duration::from_millis(5));
        // The metrics listener given as a URL, as a person might copy it.
        p.metrics = Some(format!("http://{}", system.metrics_addr));
        let (report, table) = run_clean(&p).await;
        let d = report.delivery;

        assert!(d.sent >= 400, "{table}");
        assert_eq!(d.expected, d.sent, "one listener per channel");
        // The listeners get every packet, once, in order...
        assert_eq!(d.delivered, d.expected, "{table}");
        assert_eq!(d.lost, 0, "{table}");
        assert_eq!((d.reordered, d.duplicates), (0, 0), "{table}");
        // ...because the data plane put back what the network swapped.
        assert!(report.server_reordered.unwrap() > 0, "{table}");
        assert_eq!(report.server_lost, Some(0), "{table}");
        assert_eq!(report.server_drops.as_ref().unwrap().total, 0, "{table}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_20_ms_jitter_listeners_still_hear_in_order() {
    within(async {
        let system = start_system().await;
        // The case: 5 % reordering and 20 ms of jitter (uniform,
        // 0 to 20 ms). A packet can now be up to 40 ms late against its
        // successor, about what the data plane's adaptive wait (three
        // times the measured jitter) allows, so it may give some up. What
        // must hold whatever it gives up: listeners hear every stream in
        // order, and every packet they miss is one the data plane counted
        // as lost (a gap it stopped waiting for), not silently dropped.
        let p = reordered_plan(&system, Duration::ZERO, Duration::from_millis(20));
        let (report, table) = run_clean(&p).await;
        let d = report.delivery;

        assert!(d.sent >= 400, "{table}");
        assert_eq!((d.reordered, d.duplicates), (0, 0), "{table}");
        assert!(report.server_reordered.unwrap() > 0, "{table}");
        assert_eq!(Some(d.lost), report.server_lost, "{table}");
        let drops = report.server_drops.as_ref().expect("scraped");
        assert_eq!(
            drops.total, drops.late,
            "only late arrivals dropped: {table}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_held_beyond_the_max_age_are_dropped_as_stale() {
    within(async {
        let system = start_system_with(|c| c.voice.max_packet_age_ms = 100).await;
        // At 5 packets/s a frame is 200 ms, so the quarter of the packets
        // that the uplink holds back one frame arrive 200 ms old, over the
        // 100 ms limit; the others arrive at once. A held packet reaches the
        // data plane with (or just before) its successor, so nothing waits
        // for it long enough to be given up: it is stale, not late.
        let mut p = plan(&system, 8, 4);
        p.pps = 5;
        p.duration = Duration::from_secs(4);
        p.uplink.reorder = 0.25;
        p.metrics = Some(system.metrics_addr.to_string());
        let (report, table) = run_clean(&p).await;
        let d = report.delivery;

        assert!(d.sent >= 60, "{table}");
        assert_eq!(d.expected, d.sent, "one listener per channel");
        assert_eq!(report.impairment.uplink_dropped, 0, "{table}");
        let drops = report.server_drops.as_ref().expect("scraped");
        assert!(drops.stale > 0, "{table}");
        assert_eq!(drops.total, drops.stale, "only stale drops: {table}");
        // Exactly the stale packets are missing, one listener each: every
        // other packet arrived.
        assert_eq!(d.lost, drops.stale, "{table}");
        assert_eq!(d.delivered + drops.stale, d.expected, "{table}");
        assert_eq!((d.wrong, d.duplicates), (0, 0), "{table}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_metrics_listener_is_a_warning_not_a_failure() {
    within(async {
        let system = start_system().await;
        // Nobody answers there.
        let addr = free_addr();
        let mut p = plan(&system, 4, 2);
        p.duration = Duration::from_secs(1);
        p.metrics = Some(addr.to_string());
        let (report, table) = run_clean(&p).await;

        assert_eq!(report.server_drops, None);
        assert_eq!(report.server_forwarded, None);
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("data plane metrics")),
            "{table}"
        );
        assert!(table.contains("no counters"), "{table}");
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
        let (report, table) = run_clean(&p).await;
        let d = report.delivery;

        let churn = report.churn.expect("churn is reported");
        assert_eq!(churn.churners, 6);
        assert!(churn.cycles >= 6, "{table}");
        assert_eq!(churn.failed, 0, "{table}");
        assert!(d.outside_window > 0, "{table}");
        assert!(d.expected < 3 * d.sent, "{table}");
        assert_eq!(d.lost, 0, "{table}");
        assert_eq!(d.delivered, d.expected, "{table}");
        assert_eq!(d.wrong, 0, "{table}");
        assert_eq!(channel_names(&system).await, ["Lobby"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_rows_add_up_to_the_totals_and_carry_both_planes_gauges() {
    within(async {
        let (system, control_metrics) = start_system_with_control_metrics().await;
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("soak.json");
        // The soak's shape, small: two channels of four, one speaker each,
        // the listeners churning; a row every 2 s of a 6 s send phase.
        let mut p = plan(&system, 8, 2);
        p.duration = Duration::from_secs(6);
        p.churn_every = Some(Duration::from_secs(1));
        p.timeline = Some(Duration::from_secs(2));
        p.metrics = Some(system.metrics_addr.to_string());
        p.control_metrics = Some(format!("http://{control_metrics}"));
        p.run.json = Some(json.clone());
        let (report, table) = run_clean(&p).await;
        let d = report.delivery;
        let rows = &report.timeline;

        // Rows end at 2 and 4 s; the last runs from 4 s to the drain's end.
        assert_eq!(rows.len(), 3, "{table}");
        assert_eq!(report.timeline_s, Some(2));
        for (k, row) in rows.iter().enumerate() {
            assert_eq!(row.from_s, 2.0 * k as f64, "{table}");
        }
        assert_eq!((rows[0].t_s, rows[1].t_s), (2.0, 4.0));
        assert!(rows[2].t_s >= 6.0, "{}", rows[2].t_s);

        // Sorted by send time, the rows' packets are the run's, exactly.
        let sum = |f: fn(&openspeak_loadtest::TimelineRow) -> u64| rows.iter().map(f).sum::<u64>();
        assert!(d.sent > 0 && d.delivered > 0, "{table}");
        assert_eq!(sum(|r| r.counts.sent), d.sent, "{table}");
        assert_eq!(sum(|r| r.counts.expected), d.expected, "{table}");
        assert_eq!(sum(|r| r.counts.delivered), d.delivered, "{table}");
        assert_eq!(sum(|r| r.counts.lost), d.lost, "{table}");
        // Sorted by arrival, their delays are the run's histogram's.
        assert_eq!(sum(|r| r.latency_us.count), report.latency_us.count);
        assert_eq!(report.latency_us.count, d.delivered, "{table}");
        for row in rows {
            assert!(row.counts.sent > 0, "{row:?}");
            let l = row.latency_us;
            assert!(l.count > 0 && l.p50 <= l.p99 && l.p99 <= l.max, "{row:?}");
            assert!(l.max <= report.latency_us.max, "{row:?}");

            // Both planes, scraped at each row's end. They run in this
            // process, so both read the test process's own numbers.
            let planes: Vec<_> = row.processes.iter().map(|p| p.plane).collect();
            assert_eq!(planes, [Plane::Data, Plane::Control], "{row:?}");
            assert_eq!(row.processes[1].addr, format!("http://{control_metrics}"));
            for p in &row.processes {
                assert!(p.rss_bytes.is_some_and(|b| b > 1_000_000), "{row:?}");
                assert!(p.open_fds.is_some_and(|n| n > 0), "{row:?}");
            }
        }

        // The soak section judges those rows: a fifth of 6 s is one row of
        // warm-up. Whether it passes is this process's business (it holds
        // the load generator too), so only its arithmetic is checked.
        let soak = report.soak.as_ref().expect("judged with --timeline");
        assert_eq!((soak.warm_up_rows, soak.rows), (1, 3));
        assert_eq!(soak.processes.len(), 2);
        let data = &soak.processes[0];
        assert_eq!(data.rss_warm_bytes, rows[0].processes[0].rss_bytes);
        assert_eq!(data.rss_end_bytes, rows[2].processes[0].rss_bytes);
        assert!(data.rss_growth_pct.is_some() && data.fd_growth.is_some());
        assert_eq!(soak.p99_first_us, Some(rows[1].latency_us.p99));
        assert_eq!(soak.p99_last_us, Some(rows[2].latency_us.p99));
        assert_eq!(soak.passed, soak.failures.is_empty());
        assert_eq!(report.soak_passed(), soak.passed);
        assert!(table.contains("soak"), "{table}");
        assert!(
            !report.warnings.iter().any(|w| w.contains("timeline")),
            "{table}"
        );

        report.write_json(&json).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let row = &v["timeline"][1];
        for key in ["from_s", "t_s", "sent", "expected", "delivered", "lost"] {
            assert!(row[key].is_number(), "{key}: {row}");
        }
        for key in ["count", "p50", "p99", "max"] {
            assert!(row["latency_us"][key].is_u64(), "{key}: {row}");
        }
        assert_eq!(row["processes"][0]["plane"], "data");
        assert!(row["processes"][1]["rss_bytes"].is_u64(), "{row}");
        assert!(row["processes"][1]["open_fds"].is_u64(), "{row}");
        assert!(v["soak"]["passed"].is_boolean(), "{}", v["soak"]);
        assert!(v["soak"]["processes"][1]["fd_growth"].is_i64());
        assert_eq!(v["timeline_s"], 2);
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
        let d = report.delivery;
        assert_eq!(report.outcome, Outcome::Interrupted, "{}", report.table());
        assert_eq!(d.sent, 0);
        assert!(!report.clean());
        assert_eq!(channel_names(&system).await, ["Lobby"]);
    })
    .await;
}
