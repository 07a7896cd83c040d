//! The `voice` run's results: one value, shown as a table and written as
//! JSON (see `common::report`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::common::report::{JsonReport, Outcome, latency_row, render_table, seconds, unknown};
use crate::common::stats::{LatencyPercentiles, format_micros};
use crate::common::tally::ErrorTally;
use crate::metrics::text::{DataplaneCounters, DelayBounds, NAMED_DROP_REASONS};
use crate::voice::delivery::Totals;
use crate::voice::impairment::ImpairmentSpec;
use crate::voice::timeline::{SoakReport, TimelineRow, format_bytes};

/// The simulated network, as the run applied it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImpairmentReport {
    /// On the way to the data plane, before sending.
    pub uplink: ImpairmentSpec,
    /// On the way back, on receipt.
    pub downlink: ImpairmentSpec,
    /// Packets the simulated uplink lost.
    pub uplink_dropped: u64,
    /// Datagrams the simulated downlink lost.
    pub downlink_dropped: u64,
}

/// The warm-up: unmeasured packets until every speaker reached every
/// listener of its channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WarmupReport {
    /// Speaker-to-listener paths in voice.
    pub paths: u64,
    /// Of those, paths that carried a warm-up packet.
    pub paths_heard: u64,
    /// How long it took, seconds.
    pub seconds: f64,
}

/// Listeners leaving and rejoining (`--churn-every-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChurnReport {
    /// The mean period, ms.
    pub every_ms: u64,
    /// Clients that churn.
    pub churners: u64,
    /// Leave-and-rejoin cycles completed.
    pub cycles: u64,
    /// Cycles that failed half-way (the client stayed out).
    pub failed: u64,
}

/// Voice connections lost while listening (their data plane killed,
/// restarted or cut off) and got back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Outages {
    /// Connections found lost: an error, or nothing at all from the data
    /// plane for the protocol's 3 s.
    pub lost: u64,
    /// Of those, connections got back (`OpenVoice` again and a new
    /// connection).
    pub back: u64,
    /// The longest time from noticing a loss to having voice again, ms.
    pub longest_ms: f64,
}

/// The data plane process (`--server-pid`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VoiceServerStats {
    /// The process.
    pub pid: u32,
    /// Its peak resident memory at the end (whole life), kB.
    pub peak_rss_kb: Option<u64>,
}

/// What the data plane itself dropped over the send phase and the drain
/// (`--metrics`), by reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerDrops {
    /// Older than `voice.max_packet_age_ms` on arrival.
    pub stale: u64,
    /// Copies of a packet already released or held.
    pub duplicate: u64,
    /// Arrived after the data plane had given up waiting for it.
    pub late: u64,
    /// A slow listener's oldest, over `voice.max_broadcast_lag_ms`.
    pub listener_lag: u64,
    /// Every reason the data plane reported, the four above included.
    pub by_reason: BTreeMap<String, u64>,
    /// All drops, of every reason.
    pub total: u64,
}

impl ServerDrops {
    /// The drops in `delta`, a difference of two scrapes.
    pub fn of(delta: &DataplaneCounters) -> Self {
        let mut by_reason = delta.dropped.clone();
        for reason in NAMED_DROP_REASONS {
            by_reason.entry(reason.to_owned()).or_default();
        }
        ServerDrops {
            stale: delta.dropped("stale"),
            duplicate: delta.dropped("duplicate"),
            late: delta.dropped("late"),
            listener_lag: delta.dropped("listener_lag"),
            by_reason,
            total: delta.dropped_total(),
        }
    }
}

/// The results of one `voice` run.
#[derive(Debug, Clone, Serialize)]
pub struct VoiceReport {
    /// Always `voice`.
    pub scenario: &'static str,
    /// The `--scenario` preset, if any.
    pub preset: Option<&'static str>,
    /// Names the run's channels.
    pub run_id: String,
    /// The control plane.
    pub addr: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Always `quic` for now.
    pub transport: &'static str,
    /// Seeds every random choice; give it as `--seed` to repeat the run.
    pub seed: u64,
    /// Clients asked for.
    pub clients: u64,
    /// Channels.
    pub channels: u64,
    /// Speakers per channel.
    pub speakers_per_channel: u64,
    /// Packets per second per speaker while talking.
    pub pps: u64,
    /// Bytes per payload.
    pub payload_bytes: u64,
    /// The send phase asked for, seconds.
    pub duration_s: f64,
    /// Mean talk spurt, ms (null: continuous).
    pub talk_spurt_ms: Option<u64>,
    /// Mean silence, ms (null: continuous).
    pub silence_ms: Option<u64>,
    /// The listeners' playout delay, ms.
    pub playout_ms: u64,
    /// Shared QUIC sockets (0: one per client).
    pub sockets: u64,
    /// The simulated network.
    pub impairment: ImpairmentReport,
    /// Churn, when on.
    pub churn: Option<ChurnReport>,
    /// Sessions that started.
    pub sessions: u64,
    /// Clients that got into voice.
    pub voice_connected: u64,
    /// Clients that did not (any step failed or the setup timed out).
    pub setup_failures: u64,
    /// Whether `--timeout` cut the setup short.
    pub setup_timed_out: bool,
    /// The warm-up.
    pub warmup: WarmupReport,
    /// Whole run, setup and cleanup included, seconds.
    pub elapsed_s: f64,
    /// Setup, seconds.
    pub setup_s: f64,
    /// The measured sending as it happened, seconds.
    pub send_phase_s: f64,
    /// What the listeners received against what they were owed.
    #[serde(flatten)]
    pub delivery: Totals,
    /// `lost / expected`.
    pub loss_ratio: f64,
    /// `late / expected`.
    pub late_ratio: f64,
    /// `(lost + late) / expected`: what the listeners' ears miss.
    pub playout_loss_ratio: f64,
    /// Measured datagrams the listeners received from the data plane,
    /// duplicates included, warm-ups not, before the simulated downlink: what
    /// the data plane forwarded and the network delivered.
    pub received_datagrams: u64,
    /// Datagrams quinn would not send.
    pub send_errors: u64,
    /// Voice connections lost and got back.
    pub outages: Outages,
    /// `sent / send_phase_s`.
    pub sent_per_sec: f64,
    /// `delivered / send_phase_s`.
    pub delivered_per_sec: f64,
    /// One-way delay, send to listener, µs.
    pub latency_us: LatencyPercentiles,
    /// The data plane's CPU seconds over the send phase and the drain
    /// (`--server-pid`; null without, or when unreadable).
    pub cpu_seconds: Option<f64>,
    /// `cpu_seconds` in µs per datagram the listeners received.
    pub cpu_us_per_forwarded_packet: Option<f64>,
    /// The data plane process, with `--server-pid`.
    pub server: Option<VoiceServerStats>,
    /// The load generator's own CPU seconds over the same window.
    pub loadtest_cpu_s: Option<f64>,
    /// The data plane's metrics listener scraped (`--metrics`).
    pub metrics: Option<String>,
    /// The data plane's own count, from its metrics, of voice datagrams it
    /// read from clients between the scrape before the send phase and the
    /// one after the drain (null without `--metrics`, or when a scrape
    /// failed).
    pub server_received: Option<u64>,
    /// Datagrams it handed to QUIC for listeners (one per listener per
    /// packet) over the same window.
    pub server_forwarded: Option<u64>,
    /// Datagrams it dropped, by reason, over the same window.
    pub server_drops: Option<ServerDrops>,
    /// Sequence numbers it gave up waiting for: lost on the way in.
    pub server_lost: Option<u64>,
    /// Datagrams that reached it out of order and that it put back in order.
    pub server_reordered: Option<u64>,
    /// Its own measure of the time voice spent inside it (received by its
    /// kernel to written to a listener), over the same window: bucket upper
    /// bounds in µs from its `forward_delay_seconds` histogram.
    pub server_forward_delay_us: Option<DelayBounds>,
    /// The control plane's metrics listener scraped for the timeline
    /// (`--control-metrics`).
    pub control_metrics: Option<String>,
    /// `--timeline`, seconds (null: off).
    pub timeline_s: Option<u64>,
    /// One row per `--timeline` interval (empty without).
    pub timeline: Vec<TimelineRow>,
    /// The rows judged against the soak criteria (null without
    /// `--timeline`).
    pub soak: Option<SoakReport>,
    /// Presence events all sessions received.
    pub events_received: u64,
    /// Failures by reason and by step, with an example of each reason.
    #[serde(flatten)]
    pub failures: ErrorTally,
    /// Notes for the reader.
    pub warnings: Vec<String>,
}

impl VoiceReport {
    /// Whether the run completed with no routing error, no damaged payload,
    /// no setup failure and no failed call. Loss is not judged: with a
    /// simulated bad network it is the point.
    pub fn clean(&self) -> bool {
        self.outcome == Outcome::Completed
            && self.delivery.wrong == 0
            && self.delivery.malformed == 0
            && self.setup_failures == 0
            && self.failures.errors_total == 0
    }

    /// Whether the soak criteria hold (true without `--timeline`).
    pub fn soak_passed(&self) -> bool {
        self.soak.as_ref().is_none_or(|s| s.passed)
    }

    /// The report as a table for a person.
    pub fn table(&self) -> String {
        let pct = |r: f64| format!("{:.3}%", r * 100.0);
        let mut rows: Vec<(&str, String)> = vec![
            ("outcome", self.outcome.to_string()),
            ("server", self.addr.clone()),
            ("run id / seed", format!("{} / {}", self.run_id, self.seed)),
            (
                "clients / channels / speakers",
                format!(
                    "{} / {} / {} per channel{}",
                    self.clients,
                    self.channels,
                    self.speakers_per_channel,
                    self.preset
                        .map_or_else(String::new, |p| format!(" (--scenario {p})"))
                ),
            ),
            (
                "traffic",
                format!(
                    "{} pps x {} B for {:.1}s{}",
                    self.pps,
                    self.payload_bytes,
                    self.duration_s,
                    match (self.talk_spurt_ms, self.silence_ms) {
                        (Some(t), Some(s)) => format!(", spurts {t} ms / silences {s} ms"),
                        _ => String::new(),
                    }
                ),
            ),
            ("uplink", describe_link(&self.impairment.uplink)),
            ("downlink", describe_link(&self.impairment.downlink)),
            (
                "sessions / in voice",
                format!(
                    "{} / {} ({} setup failures{})",
                    self.sessions,
                    self.voice_connected,
                    self.setup_failures,
                    if self.setup_timed_out {
                        ", setup timed out"
                    } else {
                        ""
                    }
                ),
            ),
            (
                "warm-up",
                format!(
                    "{} of {} paths in {:.2}s",
                    self.warmup.paths_heard, self.warmup.paths, self.warmup.seconds
                ),
            ),
            (
                "elapsed",
                format!(
                    "{:.2}s (setup {:.2}s, sending {:.2}s)",
                    self.elapsed_s, self.setup_s, self.send_phase_s
                ),
            ),
            (
                "sent / expected",
                format!(
                    "{} / {} ({:.0} sent/s)",
                    self.delivery.sent, self.delivery.expected, self.sent_per_sec
                ),
            ),
            (
                "delivered",
                format!(
                    "{} ({:.0}/s)",
                    self.delivery.delivered, self.delivered_per_sec
                ),
            ),
            (
                "lost",
                format!(
                    "{} ({}; simulated drops: uplink {}, downlink {})",
                    self.delivery.lost,
                    pct(self.loss_ratio),
                    self.impairment.uplink_dropped,
                    self.impairment.downlink_dropped
                ),
            ),
            (
                "late (playout)",
                format!(
                    "{} ({}; lost + late {}, playout {} ms)",
                    self.delivery.late,
                    pct(self.late_ratio),
                    pct(self.playout_loss_ratio),
                    self.playout_ms
                ),
            ),
            (
                "duplicates / reordered",
                format!("{} / {}", self.delivery.duplicates, self.delivery.reordered),
            ),
            (
                "wrong / malformed",
                format!("{} / {}", self.delivery.wrong, self.delivery.malformed),
            ),
            ("one-way delay", latency(&self.latency_us)),
        ];
        if let Some(c) = &self.churn {
            rows.push((
                "churn",
                format!(
                    "{} listeners every ~{} ms: {} cycles, {} failed; {} packets sent while away",
                    c.churners, c.every_ms, c.cycles, c.failed, self.delivery.outside_window
                ),
            ));
        }
        if let Some(s) = &self.server {
            let cpu = match (self.cpu_seconds, self.cpu_us_per_forwarded_packet) {
                (Some(cpu), Some(per)) => format!("{cpu:.2}s ({per:.2}µs per forwarded packet)"),
                (Some(cpu), None) => format!("{cpu:.2}s"),
                (None, _) => unknown(),
            };
            rows.push(("server pid", s.pid.to_string()));
            rows.push(("server CPU (send + drain)", cpu));
            rows.push((
                "server peak RSS",
                s.peak_rss_kb.map_or_else(unknown, |kb| format!("{kb} kB")),
            ));
        }
        if self.outages.lost > 0 {
            let o = &self.outages;
            rows.push((
                "voice lost / got back",
                format!(
                    "{} / {} (longest outage {:.0} ms)",
                    o.lost, o.back, o.longest_ms
                ),
            ));
        }
        if let Some(addr) = &self.metrics {
            rows.extend(self.dataplane_rows(addr));
        }
        if let Some(soak) = &self.soak {
            rows.extend(soak_rows(soak, self.timeline_s.unwrap_or(0)));
        }
        rows.extend([
            ("load generator CPU", seconds(self.loadtest_cpu_s)),
            (
                "datagrams received / send errors",
                format!("{} / {}", self.received_datagrams, self.send_errors),
            ),
            ("events received", self.events_received.to_string()),
        ]);
        render_table(rows, &self.failures, &self.warnings)
    }

    /// The "data plane" section: its own counts next to the clients'.
    fn dataplane_rows(&self, addr: &str) -> Vec<(&'static str, String)> {
        let (Some(received), Some(forwarded), Some(drops)) = (
            self.server_received,
            self.server_forwarded,
            &self.server_drops,
        ) else {
            return vec![(
                "data plane",
                format!("{addr}: no counters (a scrape failed, see the warnings)"),
            )];
        };
        let named: u64 = NAMED_DROP_REASONS
            .iter()
            .map(|r| drops.by_reason.get(*r).copied().unwrap_or(0))
            .sum();
        let mut others: Vec<String> = drops
            .by_reason
            .iter()
            .filter(|(r, n)| **n > 0 && !NAMED_DROP_REASONS.contains(&r.as_str()))
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        if others.is_empty() {
            others.push(format!("other {}", drops.total - named));
        }
        vec![
            (
                "data plane",
                format!("{addr} (send + drain, from its metrics)"),
            ),
            (
                "  received / forwarded",
                format!(
                    "{received} / {forwarded} (clients received {})",
                    self.received_datagrams
                ),
            ),
            (
                "  dropped",
                format!(
                    "{} (stale {}, duplicate {}, late {}, listener_lag {}, {})",
                    drops.total,
                    drops.stale,
                    drops.duplicate,
                    drops.late,
                    drops.listener_lag,
                    others.join(", ")
                ),
            ),
            (
                "  lost / reordered",
                format!(
                    "{} / {} (clients: lost {}, reordered {})",
                    self.server_lost.unwrap_or(0),
                    self.server_reordered.unwrap_or(0),
                    self.delivery.lost,
                    self.delivery.reordered
                ),
            ),
            (
                "  forward delay",
                forward_delay_row(self.server_forward_delay_us),
            ),
        ]
    }
}

impl JsonReport for VoiceReport {}

/// The "soak" section: per process, memory and descriptors from the end of
/// the warm-up to the end; the p99 after the warm-up and at the end; the
/// verdict.
fn soak_rows(s: &SoakReport, every_s: u64) -> Vec<(&'static str, String)> {
    let opt = |v: Option<u64>, f: fn(u64) -> String| v.map_or_else(unknown, f);
    let mut rows = vec![(
        "soak",
        format!(
            "{} rows of {every_s}s, warm-up {:.0}s ({} rows): {}",
            s.rows,
            s.warm_up_s,
            s.warm_up_rows,
            if s.passed { "passed" } else { "FAILED" }
        ),
    )];
    for p in &s.processes {
        let plane: &str = p.plane.into();
        rows.push((
            "  process",
            format!(
                "{plane} {}: rss {} -> {} ({}), fds {} -> {} ({})",
                p.addr,
                opt(p.rss_warm_bytes, format_bytes),
                opt(p.rss_end_bytes, format_bytes),
                p.rss_growth_pct
                    .map_or_else(unknown, |g| format!("{g:+.2}%")),
                opt(p.fds_warm, |n| n.to_string()),
                opt(p.fds_end, |n| n.to_string()),
                p.fd_growth.map_or_else(unknown, |g| format!("{g:+}")),
            ),
        ));
    }
    rows.push((
        "  latency p99",
        format!(
            "{} after warm-up -> {} last (x{}, limit {})",
            opt(s.p99_first_us, format_micros),
            opt(s.p99_last_us, format_micros),
            s.p99_ratio.map_or_else(unknown, |r| format!("{r:.2}")),
            opt(s.p99_limit_us, format_micros),
        ),
    ));
    for f in &s.failures {
        rows.push(("  not met", f.clone()));
    }
    rows
}

fn describe_link(s: &ImpairmentSpec) -> String {
    if s.is_clean() {
        return "clean".into();
    }
    let mut parts = Vec::new();
    if s.loss > 0.0 {
        parts.push(match s.loss_model {
            crate::voice::impairment::LossModel::Bernoulli => {
                format!("loss {:.2}% bernoulli", s.loss * 100.0)
            }
            crate::voice::impairment::LossModel::Gilbert => format!(
                "loss {:.2}% gilbert (bursts of {})",
                s.loss * 100.0,
                s.burst_len
            ),
        });
    }
    if !s.delay.is_zero() || !s.jitter.is_zero() {
        parts.push(format!(
            "delay {} ms ± {} ms {:?}",
            s.delay.as_millis(),
            s.jitter.as_millis(),
            s.jitter_dist
        ));
    }
    if s.reorder > 0.0 {
        parts.push(format!("reorder {:.2}%", s.reorder * 100.0));
    }
    if s.duplicate > 0.0 {
        parts.push(format!("duplicate {:.2}%", s.duplicate * 100.0));
    }
    parts.join(", ")
}

fn latency(s: &LatencyPercentiles) -> String {
    latency_row(
        s.count,
        &[
            ("p50", s.p50),
            ("p90", s.p90),
            ("p99", s.p99),
            ("p99.9", s.p999),
            ("max", s.max),
        ],
    )
}

/// A bucket bound exactly, as the data plane wrote it: `750µs`, `1.75ms`.
fn bucket_bound(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else {
        let ms = format!("{:.3}", us as f64 / 1_000.0);
        format!("{}ms", ms.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// The data plane's forward delay quantiles, as bucket bounds.
fn forward_delay_row(bounds: Option<DelayBounds>) -> String {
    let Some(b) = bounds else {
        return "not measured".into();
    };
    let bound = |us: Option<u64>| {
        us.map_or_else(
            || "above the last bucket".into(),
            |us| format!("≤ {}", bucket_bound(us)),
        )
    };
    format!(
        "p50 {}  p90 {}  p99 {}  (n={} packets; histogram bucket bounds, inside the data plane)",
        bound(b.p50),
        bound(b.p90),
        bound(b.p99),
        b.count
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::common::stats::micros_per;
    use crate::voice::impairment::LossModel;

    pub(crate) fn sample() -> VoiceReport {
        let frame = Duration::from_millis(20);
        VoiceReport {
            scenario: "voice",
            preset: Some("impaired"),
            run_id: "abc".into(),
            addr: "127.0.0.1:50051".into(),
            outcome: Outcome::Completed,
            transport: "quic",
            seed: 7,
            clients: 6,
            channels: 2,
            speakers_per_channel: 1,
            pps: 50,
            payload_bytes: 80,
            duration_s: 2.0,
            talk_spurt_ms: None,
            silence_ms: None,
            playout_ms: 60,
            sockets: 0,
            impairment: ImpairmentReport {
                uplink: ImpairmentSpec {
                    loss: 0.05,
                    loss_model: LossModel::Gilbert,
                    burst_len: 3.0,
                    delay: Duration::from_millis(30),
                    jitter: Duration::from_millis(30),
                    reorder: 0.02,
                    ..ImpairmentSpec::clean(frame)
                },
                downlink: ImpairmentSpec::clean(frame),
                uplink_dropped: 10,
                downlink_dropped: 0,
            },
            churn: None,
            sessions: 6,
            voice_connected: 6,
            setup_failures: 0,
            setup_timed_out: false,
            warmup: WarmupReport {
                paths: 4,
                paths_heard: 4,
                seconds: 0.1,
            },
            elapsed_s: 3.5,
            setup_s: 0.3,
            send_phase_s: 2.0,
            delivery: Totals {
                sent: 200,
                expected: 400,
                delivered: 380,
                lost: 20,
                late: 4,
                reordered: 3,
                listeners: 4,
                ..Totals::default()
            },
            loss_ratio: 0.05,
            late_ratio: 0.01,
            playout_loss_ratio: 0.06,
            received_datagrams: 380,
            send_errors: 0,
            outages: Outages::default(),
            sent_per_sec: 100.0,
            delivered_per_sec: 190.0,
            latency_us: LatencyPercentiles {
                p50: 31_000,
                p90: 52_000,
                p99: 59_000,
                p999: 60_000,
                max: 61_000,
                mean: 32_000,
                count: 380,
            },
            cpu_seconds: Some(0.19),
            cpu_us_per_forwarded_packet: micros_per(Some(0.19), 380),
            server: Some(VoiceServerStats {
                pid: 42,
                peak_rss_kb: Some(30_000),
            }),
            loadtest_cpu_s: Some(0.5),
            metrics: None,
            server_received: None,
            server_forwarded: None,
            server_drops: None,
            server_lost: None,
            server_reordered: None,
            server_forward_delay_us: None,
            control_metrics: None,
            timeline_s: None,
            timeline: vec![],
            soak: None,
            events_received: 100,
            failures: ErrorTally::default(),
            warnings: vec![],
        }
    }

    #[test]
    fn json_has_the_promised_fields() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        for key in [
            "sessions",
            "sent",
            "expected",
            "delivered",
            "lost",
            "late",
            "duplicates",
            "reordered",
            "loss_ratio",
            "wrong",
            "malformed",
            "setup_failures",
            "cpu_seconds",
            "cpu_us_per_forwarded_packet",
        ] {
            assert!(v[key].is_number(), "{key} is a number");
        }
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(v["latency_us"][key].is_u64(), "latency_us.{key}");
        }
        let up = &v["impairment"]["uplink"];
        assert_eq!(up["loss"], 0.05);
        assert_eq!(up["loss_model"], "gilbert");
        assert_eq!(up["burst_len"], 3.0);
        assert_eq!(up["jitter_ms"], 30.0);
        assert_eq!(up["jitter_dist"], "uniform");
        assert_eq!(up["reorder"], 0.02);
        assert!(up.get("frame").is_none());
        assert_eq!(v["outcome"], "completed");
        assert_eq!(v["transport"], "quic");
        assert_eq!(v["cpu_us_per_forwarded_packet"], 500.0);
        assert!(v["churn"].is_null());
    }

    #[test]
    fn without_server_pid_cpu_is_null() {
        let mut r = sample();
        r.cpu_seconds = None;
        r.cpu_us_per_forwarded_packet = micros_per(None, 380);
        r.server = None;
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert!(v["cpu_seconds"].is_null());
        assert!(v["cpu_us_per_forwarded_packet"].is_null());
        assert_eq!(micros_per(Some(1.0), 0), None);
        assert!(!r.table().contains("server CPU"));
    }

    #[test]
    fn the_table_names_loss_late_and_the_links() {
        let t = sample().table();
        assert!(t.contains("lost"), "{t}");
        assert!(
            t.contains("20 (5.000%; simulated drops: uplink 10, downlink 0)"),
            "{t}"
        );
        assert!(t.contains("loss 5.00% gilbert (bursts of 3)"), "{t}");
        assert!(t.contains("reorder 2.00%"), "{t}");
        assert!(t.contains("downlink"), "{t}");
        assert!(t.contains("p99.9 60.0ms"), "{t}");
        assert!(t.contains("0.19s (500.00µs per forwarded packet)"), "{t}");
    }

    #[test]
    fn without_metrics_the_server_counts_are_null() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        for key in [
            "metrics",
            "server_received",
            "server_forwarded",
            "server_drops",
            "server_lost",
            "server_reordered",
            "server_forward_delay_us",
        ] {
            assert!(v[key].is_null(), "{key}");
        }
        assert!(!sample().table().contains("data plane"));
    }

    #[test]
    fn with_metrics_the_server_counts_are_reported() {
        let mut delta = DataplaneCounters {
            received: 190,
            forwarded: 378,
            lost: 12,
            reordered: 5,
            ..DataplaneCounters::default()
        };
        delta.dropped.insert("stale".into(), 2);
        delta.dropped.insert("no_connection".into(), 1);
        let mut r = sample();
        r.metrics = Some("127.0.0.1:9101".into());
        r.server_received = Some(delta.received);
        r.server_forwarded = Some(delta.forwarded);
        r.server_drops = Some(ServerDrops::of(&delta));
        r.server_lost = Some(delta.lost);
        r.server_reordered = Some(delta.reordered);
        r.server_forward_delay_us = Some(DelayBounds {
            count: 378,
            p50: Some(300),
            p90: Some(1_750),
            p99: None,
        });
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["server_forward_delay_us"]["p50"], 300);
        assert_eq!(v["server_forward_delay_us"]["p99"], serde_json::Value::Null);
        assert_eq!(v["server_received"], 190);
        assert_eq!(v["server_forwarded"], 378);
        assert_eq!(v["server_lost"], 12);
        assert_eq!(v["server_reordered"], 5);
        let drops = &v["server_drops"];
        assert_eq!(drops["stale"], 2);
        assert_eq!(drops["duplicate"], 0);
        assert_eq!(drops["late"], 0);
        assert_eq!(drops["listener_lag"], 0);
        assert_eq!(drops["total"], 3);
        assert_eq!(drops["by_reason"]["no_connection"], 1);
        assert_eq!(drops["by_reason"]["late"], 0);
        let t = r.table();
        assert!(t.contains("190 / 378 (clients received 380)"), "{t}");
        assert!(
            t.contains("3 (stale 2, duplicate 0, late 0, listener_lag 0, no_connection 1)"),
            "{t}"
        );
        assert!(t.contains("12 / 5 (clients: lost 20, reordered 3)"), "{t}");
        assert!(
            t.contains("p50 ≤ 300µs  p90 ≤ 1.75ms  p99 above the last bucket  (n=378 packets"),
            "{t}"
        );

        r.server_received = None;
        r.server_forwarded = None;
        r.server_drops = None;
        assert!(r.table().contains("no counters"), "{}", r.table());
    }

    #[test]
    fn the_soak_section_shows_each_process_and_the_verdict() {
        use crate::voice::timeline::{Plane, SoakProcess};
        let mut r = sample();
        assert!(r.soak_passed(), "no timeline, nothing to fail");
        r.timeline_s = Some(60);
        r.soak = Some(SoakReport {
            warm_up_s: 360.0,
            warm_up_rows: 6,
            rows: 30,
            processes: vec![SoakProcess {
                plane: Plane::Data,
                addr: "127.0.0.1:9101".into(),
                rss_warm_bytes: Some(50_000_000),
                rss_end_bytes: Some(53_000_000),
                rss_growth_pct: Some(6.0),
                fds_warm: Some(2_050),
                fds_end: Some(2_050),
                fd_growth: Some(0),
            }],
            p99_first_us: Some(4_000),
            p99_last_us: Some(4_400),
            p99_ratio: Some(1.1),
            p99_limit_us: Some(9_000),
            failures: vec!["data plane 127.0.0.1:9101: resident memory grew 6.0%".into()],
            passed: false,
        });
        assert!(!r.soak_passed());
        assert!(r.clean(), "the soak verdict is apart from the checks");
        let t = r.table();
        assert!(
            t.contains("30 rows of 60s, warm-up 360s (6 rows): FAILED"),
            "{t}"
        );
        assert!(
            t.contains(
                "data 127.0.0.1:9101: rss 50.0 MB -> 53.0 MB (+6.00%), fds 2050 -> 2050 (+0)"
            ),
            "{t}"
        );
        assert!(
            t.contains("4.0ms after warm-up -> 4.4ms last (x1.10, limit 9.0ms)"),
            "{t}"
        );
        assert!(t.contains("resident memory grew 6.0%"), "{t}");
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["soak"]["passed"], false);
        assert_eq!(v["soak"]["processes"][0]["rss_growth_pct"], 6.0);
        assert_eq!(v["timeline"], serde_json::json!([]));
    }

    #[test]
    fn bucket_bounds_print_exactly() {
        assert_eq!(bucket_bound(750), "750µs");
        assert_eq!(bucket_bound(1_000), "1ms");
        assert_eq!(bucket_bound(1_250), "1.25ms");
        assert_eq!(bucket_bound(2_000), "2ms");
        assert_eq!(bucket_bound(50_000), "50ms");
    }

    #[test]
    fn clean_ignores_loss_but_not_routing_errors() {
        assert!(sample().clean());
        let mut r = sample();
        r.delivery.wrong = 1;
        assert!(!r.clean());
        let mut r = sample();
        r.setup_failures = 1;
        assert!(!r.clean());
        let mut r = sample();
        r.outcome = Outcome::Interrupted;
        assert!(!r.clean());
    }
}
