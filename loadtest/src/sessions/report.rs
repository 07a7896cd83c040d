//! The `sessions` run's results: one value, shown as a table and written as
//! JSON (see `common::report`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::common::report::{JsonReport, Outcome, latency_row, render_table, seconds, unknown};
use crate::common::stats::{LatencyPercentiles, micros_per};
use crate::common::tally::ErrorTally;
use crate::metrics::process::ServerUsage;

/// How the wait for the last events ended, named alike in the table and
/// the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::Display)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Settled {
    /// Every open session received the last client's last event.
    Sequence,
    /// No event came for a while (the server never echoed a client's last
    /// presence change, so the exact rule could not apply).
    Quiet,
    /// The run's deadline came first.
    Timeout,
    /// An interrupt came first.
    Interrupted,
}

/// The server process over the run (`--server-pid`): from the start of the
/// ramp to just before cleanup. A number that could not be read is null.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerStats {
    /// The process.
    pub pid: u32,
    /// CPU seconds (user plus system) it used in that window.
    pub cpu_s: Option<f64>,
    /// Its peak resident memory (`VmHWM`) at the end, kB. It covers the
    /// process's whole life, baseline included.
    pub peak_rss_kb: Option<u64>,
    /// CPU µs per event that all sessions together received.
    pub cpu_us_per_event: Option<f64>,
    /// `peak_rss_kb` / clients.
    pub rss_kb_per_session: Option<f64>,
}

impl ServerStats {
    /// The numbers for a run of `clients` whose sessions received `events`.
    pub fn new(usage: &ServerUsage, events: u64, clients: u64) -> Self {
        let cpu_s = usage.cpu.map(|d| d.as_secs_f64());
        ServerStats {
            pid: usage.pid,
            cpu_s,
            peak_rss_kb: usage.peak_rss_kb,
            cpu_us_per_event: micros_per(cpu_s, events),
            rss_kb_per_session: usage
                .peak_rss_kb
                .filter(|_| clients > 0)
                .map(|kb| kb as f64 / clients as f64),
        }
    }
}

/// The results of one `sessions` run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `sessions`.
    pub scenario: &'static str,
    /// Names the run's channels.
    pub run_id: String,
    /// The server.
    pub addr: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Clients asked for.
    pub clients: u64,
    /// Channels used.
    pub channels: u64,
    /// HTTP/2 connections used.
    pub connections: u64,
    /// Whether clients used the admin token.
    pub as_admin: bool,
    /// Whole run, setup and cleanup included, seconds.
    pub elapsed_s: f64,
    /// First `Connect` sent to last `JoinChannel` answered, seconds.
    pub join_phase_s: f64,
    /// Sessions that got `session_started`.
    pub sessions_started: u64,
    /// `JoinChannel` calls that answered OK.
    pub joins_ok: u64,
    /// Clients whose two presence updates succeeded.
    pub presence_ok: u64,
    /// `joins_ok` / `join_phase_s`.
    pub joins_per_sec: f64,
    /// Arrival of another session's `member_joined` minus the joiner's
    /// `JoinChannel` response (µs; clamped at 0, see `events_before_join_response`).
    pub event_delay_us: LatencyPercentiles,
    /// The same, measured from the `JoinChannel` request (µs).
    pub event_delay_from_request_us: LatencyPercentiles,
    /// `Connect` sent to `session_started` received (µs).
    pub connect_us: LatencyPercentiles,
    /// `JoinChannel` round trip (µs).
    pub join_us: LatencyPercentiles,
    /// `member_joined` events that arrived before the joiner's response.
    pub events_before_join_response: u64,
    /// Events received by all sessions together.
    pub events_received: u64,
    /// Events received per second over the join phase plus settling.
    pub events_per_sec: f64,
    /// The load generator's own CPU seconds over the same window as
    /// `server.cpu_s` (null when unreadable).
    pub loadtest_cpu_s: Option<f64>,
    /// The server process, with `--server-pid` (null without).
    pub server: Option<ServerStats>,
    /// Per event kind.
    pub events_by_kind: BTreeMap<String, u64>,
    /// `member_joined` events owed to sessions that lasted the run.
    pub expected_events: u64,
    /// Of those, never delivered.
    pub missing_events: u64,
    /// Sessions that missed at least one.
    pub sessions_missing_events: u64,
    /// The same join delivered twice to one session.
    pub duplicate_events: u64,
    /// `member_joined` of a client into a channel it did not ask for.
    pub wrong_channel_events: u64,
    /// `member_joined` seen for a join that did not answer OK.
    pub events_for_failed_joins: u64,
    /// Events whose sequence did not exceed the previous one's.
    pub sequence_violations: u64,
    /// Sessions with at least one such event.
    pub sessions_with_sequence_violations: u64,
    /// Sessions the server still listed as online after the run closed
    /// them (absent when it could not be checked).
    pub sessions_left_online: Option<u64>,
    /// How the wait for the last events ended.
    pub settled: Settled,
    /// Failures by reason and by step, with an example of each reason.
    #[serde(flatten)]
    pub failures: ErrorTally,
    /// Cleanup problems and other notes.
    pub warnings: Vec<String>,
}

impl Report {
    /// Whether every correctness check passed and nothing failed.
    pub fn clean(&self) -> bool {
        self.outcome == Outcome::Completed
            && self.failures.errors_total == 0
            && self.missing_events == 0
            && self.duplicate_events == 0
            && self.wrong_channel_events == 0
            && self.sequence_violations == 0
            && self.sessions_left_online.unwrap_or(0) == 0
    }

    /// The report as a table for a person.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("outcome", self.outcome.to_string()),
            ("server", self.addr.clone()),
            ("run id", self.run_id.clone()),
            (
                "clients / channels",
                format!(
                    "{} / {} over {} connections{}",
                    self.clients,
                    self.channels,
                    self.connections,
                    if self.as_admin { " (admin token)" } else { "" }
                ),
            ),
            ("elapsed", format!("{:.2}s", self.elapsed_s)),
            (
                "sessions / joins / presence",
                format!(
                    "{} / {} / {}",
                    self.sessions_started, self.joins_ok, self.presence_ok
                ),
            ),
            (
                "joins per second",
                format!(
                    "{:.1} (join phase {:.2}s)",
                    self.joins_per_sec, self.join_phase_s
                ),
            ),
            ("connect latency", latency(&self.connect_us)),
            ("join latency", latency(&self.join_us)),
            ("event delay (from response)", latency(&self.event_delay_us)),
            (
                "event delay (from request)",
                latency(&self.event_delay_from_request_us),
            ),
            (
                "events before response",
                self.events_before_join_response.to_string(),
            ),
            (
                "events received",
                format!("{} ({:.0}/s)", self.events_received, self.events_per_sec),
            ),
            ("load generator CPU", seconds(self.loadtest_cpu_s)),
        ];
        if let Some(server) = &self.server {
            rows.extend(server_rows(server));
        }
        rows.extend([
            (
                "missing member_joined",
                format!(
                    "{} of {} (in {} sessions)",
                    self.missing_events, self.expected_events, self.sessions_missing_events
                ),
            ),
            (
                "duplicate / wrong channel",
                format!("{} / {}", self.duplicate_events, self.wrong_channel_events),
            ),
            (
                "sequence violations",
                format!(
                    "{} (in {} sessions)",
                    self.sequence_violations, self.sessions_with_sequence_violations
                ),
            ),
            (
                "left online after close",
                self.sessions_left_online
                    .map_or_else(|| "not checked".into(), |n| n.to_string()),
            ),
            ("settled by", self.settled.to_string()),
        ]);
        render_table(rows, &self.failures, &self.warnings)
    }
}

impl JsonReport for Report {}

fn server_rows(s: &ServerStats) -> [(&'static str, String); 3] {
    let cpu = match (s.cpu_s, s.cpu_us_per_event) {
        (Some(cpu), Some(per_event)) => format!("{cpu:.2}s ({per_event:.1}µs per event)"),
        (Some(cpu), None) => format!("{cpu:.2}s"),
        (None, _) => unknown(),
    };
    let rss = match (s.peak_rss_kb, s.rss_kb_per_session) {
        (Some(kb), Some(per_session)) => format!("{kb} kB ({per_session:.1} kB per session)"),
        (Some(kb), None) => format!("{kb} kB"),
        (None, _) => unknown(),
    };
    [
        ("server pid", s.pid.to_string()),
        ("server CPU", cpu),
        ("server peak RSS", rss),
    ]
}

fn latency(s: &LatencyPercentiles) -> String {
    latency_row(s.count, &[("p50", s.p50), ("p99", s.p99), ("max", s.max)])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Report {
        Report {
            scenario: "sessions",
            run_id: "abc".into(),
            addr: "127.0.0.1:50051".into(),
            outcome: Outcome::Completed,
            clients: 50,
            channels: 5,
            connections: 50,
            as_admin: false,
            elapsed_s: 1.5,
            join_phase_s: 0.5,
            sessions_started: 50,
            joins_ok: 50,
            presence_ok: 50,
            joins_per_sec: 100.0,
            event_delay_us: LatencyPercentiles {
                p50: 100,
                p90: 500,
                p99: 900,
                p999: 990,
                max: 1000,
                mean: 150,
                count: 1225,
            },
            event_delay_from_request_us: LatencyPercentiles::default(),
            connect_us: LatencyPercentiles::default(),
            join_us: LatencyPercentiles::default(),
            events_before_join_response: 3,
            events_received: 10_000,
            events_per_sec: 5_000.0,
            loadtest_cpu_s: Some(0.75),
            server: None,
            events_by_kind: BTreeMap::from([("member_joined".into(), 2_500)]),
            expected_events: 1225,
            missing_events: 0,
            sessions_missing_events: 0,
            duplicate_events: 0,
            wrong_channel_events: 0,
            events_for_failed_joins: 0,
            sequence_violations: 0,
            sessions_with_sequence_violations: 0,
            sessions_left_online: Some(0),
            settled: Settled::Sequence,
            failures: ErrorTally::default(),
            warnings: vec![],
        }
    }

    #[test]
    fn json_has_the_promised_shape() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        for key in [
            "clients",
            "channels",
            "joins_per_sec",
            "events_received",
            "missing_events",
            "elapsed_s",
        ] {
            assert!(v[key].is_number(), "{key} is a number");
        }
        for key in ["p50", "p99", "max", "count"] {
            assert!(v["event_delay_us"][key].is_u64(), "event_delay_us.{key}");
        }
        assert!(v["errors"].is_object());
        assert_eq!(v["errors_total"], 0);
        assert_eq!(v["outcome"], "completed");
        assert_eq!(v["settled"], "sequence");
        assert_eq!(v["event_delay_us"]["p99"], 900);
    }

    #[test]
    fn unchecked_leftovers_are_null_and_timeouts_snake_case() {
        let mut r = sample();
        r.sessions_left_online = None;
        r.outcome = Outcome::TimedOut;
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert!(v["sessions_left_online"].is_null());
        assert_eq!(v["outcome"], "timed_out");
    }

    #[test]
    fn server_numbers_are_per_event_and_per_session() {
        let usage = ServerUsage {
            pid: 7,
            cpu: Some(std::time::Duration::from_millis(250)),
            peak_rss_kb: Some(20_000),
        };
        let s = ServerStats::new(&usage, 10_000, 50);
        assert_eq!(s.cpu_s, Some(0.25));
        assert_eq!(s.cpu_us_per_event, Some(25.0));
        assert_eq!(s.rss_kb_per_session, Some(400.0));
        let none = ServerStats::new(&usage, 0, 0);
        assert_eq!(
            (none.cpu_us_per_event, none.rss_kb_per_session),
            (None, None)
        );

        let mut r = sample();
        r.server = Some(s);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["server"]["pid"], 7);
        assert_eq!(v["server"]["peak_rss_kb"], 20_000);
        assert_eq!(v["server"]["cpu_us_per_event"], 25.0);
        assert_eq!(v["loadtest_cpu_s"], 0.75);
        let t = r.table();
        assert!(t.contains("0.25s (25.0µs per event)"), "{t}");
        assert!(t.contains("20000 kB (400.0 kB per session)"), "{t}");
    }

    #[test]
    fn unreadable_server_numbers_are_null() {
        let usage = ServerUsage {
            pid: 7,
            cpu: None,
            peak_rss_kb: None,
        };
        let mut r = sample();
        r.server = Some(ServerStats::new(&usage, 10_000, 50));
        r.loadtest_cpu_s = None;
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        // Each field is there (a missing one would read as null too), and
        // all but the pid are null.
        let server = v["server"].as_object().expect("an object");
        let mut keys: Vec<_> = server.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "cpu_s",
                "cpu_us_per_event",
                "peak_rss_kb",
                "pid",
                "rss_kb_per_session"
            ]
        );
        for (key, value) in server {
            assert_eq!(value.is_null(), key != "pid", "{key}: {value}");
        }
        assert!(v["loadtest_cpu_s"].is_null());
        assert!(r.table().contains("server CPU"));
        // Without --server-pid the object itself is null.
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert!(v["server"].is_null());
    }

    #[test]
    fn clean_means_no_failure_of_any_kind() {
        assert!(sample().clean());
        let mut r = sample();
        r.missing_events = 1;
        assert!(!r.clean());
        let mut r = sample();
        r.failures.errors_total = 1;
        assert!(!r.clean());
    }

    #[test]
    fn table_lists_errors_with_examples() {
        let mut r = sample();
        r.failures.errors.insert("CHANNEL_FULL".into(), 2);
        r.failures.errors_total = 2;
        r.failures
            .error_examples
            .insert("CHANNEL_FULL".into(), "join: full".into());
        let t = r.table();
        assert!(t.contains("CHANNEL_FULL: 2  e.g. join: full"), "{t}");
        assert!(
            t.contains("p50 100µs  p99 900µs  max 1.0ms  (n=1225)"),
            "{t}"
        );
    }
}
