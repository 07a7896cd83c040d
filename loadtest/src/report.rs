//! The run's results: one value, shown as a table and written as JSON.
//!
//! The JSON field names are an interface (scripts compare runs with them):
//! add fields freely, rename none.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::error::SessionsError;
use crate::stats::{LatencySummary, format_micros};

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every step finished (individual calls may still have failed).
    Completed,
    /// The `--timeout` expired; the numbers cover what happened until then.
    TimedOut,
    /// Interrupted (Ctrl-C); the numbers cover what happened until then.
    Interrupted,
}

impl Outcome {
    /// The name shown in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::TimedOut => "timed out",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// How the wait for the last events ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
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

impl Settled {
    /// The name shown in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Settled::Sequence => "sequence",
            Settled::Quiet => "quiet",
            Settled::Timeout => "timeout",
            Settled::Interrupted => "interrupted",
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
    pub event_delay_us: LatencySummary,
    /// The same, measured from the `JoinChannel` request (µs).
    pub event_delay_from_request_us: LatencySummary,
    /// `Connect` sent to `session_started` received (µs).
    pub connect_us: LatencySummary,
    /// `JoinChannel` round trip (µs).
    pub join_us: LatencySummary,
    /// `member_joined` events that arrived before the joiner's response.
    pub events_before_join_response: u64,
    /// Events received by all sessions together.
    pub events_received: u64,
    /// Events received per second over the join phase plus settling.
    pub events_per_sec: f64,
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
    /// Failures by reason (an OpenSpeak reason, `grpc:<CODE>`, or the tool's own).
    pub errors: BTreeMap<String, u64>,
    /// All failures.
    pub errors_total: u64,
    /// Failures by client step.
    pub errors_by_step: BTreeMap<String, u64>,
    /// One message per reason, for a person.
    pub error_examples: BTreeMap<String, String>,
    /// Cleanup problems and other notes.
    pub warnings: Vec<String>,
}

impl Report {
    /// Whether every correctness check passed and nothing failed.
    pub fn clean(&self) -> bool {
        self.outcome == Outcome::Completed
            && self.errors_total == 0
            && self.missing_events == 0
            && self.duplicate_events == 0
            && self.wrong_channel_events == 0
            && self.sequence_violations == 0
            && self.sessions_left_online.unwrap_or(0) == 0
    }

    /// The report as a table for a person.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("outcome", self.outcome.as_str().to_owned()),
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
            ("settled by", self.settled.as_str().to_owned()),
            ("errors", self.errors_total.to_string()),
        ];
        for (reason, n) in &self.errors {
            let example = self.error_examples.get(reason).map_or("", String::as_str);
            rows.push(("", format!("{reason}: {n}  e.g. {example}")));
        }
        for w in &self.warnings {
            rows.push(("warning", w.clone()));
        }
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }
        out
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // A struct of plain fields and string-keyed maps always serializes.
        serde_json::to_string_pretty(self).expect("report serializes") + "\n"
    }

    /// Writes the JSON report to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), SessionsError> {
        std::fs::write(path, self.to_json()).map_err(|source| SessionsError::WriteJson {
            path: path.to_owned(),
            source,
        })
    }
}

fn latency(s: &LatencySummary) -> String {
    if s.count == 0 {
        return "no samples".into();
    }
    format!(
        "p50 {}  p99 {}  max {}  (n={})",
        format_micros(s.p50),
        format_micros(s.p99),
        format_micros(s.max),
        s.count
    )
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
            event_delay_us: LatencySummary {
                p50: 100,
                p99: 900,
                max: 1000,
                mean: 150,
                count: 1225,
            },
            event_delay_from_request_us: LatencySummary::default(),
            connect_us: LatencySummary::default(),
            join_us: LatencySummary::default(),
            events_before_join_response: 3,
            events_received: 10_000,
            events_per_sec: 5_000.0,
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
            errors: BTreeMap::new(),
            errors_total: 0,
            errors_by_step: BTreeMap::new(),
            error_examples: BTreeMap::new(),
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
    fn clean_means_no_failure_of_any_kind() {
        assert!(sample().clean());
        let mut r = sample();
        r.missing_events = 1;
        assert!(!r.clean());
        let mut r = sample();
        r.errors_total = 1;
        assert!(!r.clean());
    }

    #[test]
    fn table_lists_errors_with_examples() {
        let mut r = sample();
        r.errors.insert("CHANNEL_FULL".into(), 2);
        r.errors_total = 2;
        r.error_examples
            .insert("CHANNEL_FULL".into(), "join: full".into());
        let t = r.table();
        assert!(t.contains("CHANNEL_FULL: 2  e.g. join: full"), "{t}");
        assert!(
            t.contains("p50 100µs  p99 900µs  max 1.0ms  (n=1225)"),
            "{t}"
        );
    }
}
