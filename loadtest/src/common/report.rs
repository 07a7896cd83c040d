//! How every report is shown: a table of aligned rows for a person, and
//! pretty JSON for scripts.
//!
//! The JSON field names are an interface (scripts and benchmarks compare
//! runs with them): add fields freely, rename none.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::common::stats::format_micros;

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

/// A report's table: `rows` as `key  value` lines with the keys aligned,
/// then one line per error reason (with an example) and per warning.
pub fn render_table(
    mut rows: Vec<(&str, String)>,
    errors: &BTreeMap<String, u64>,
    examples: &BTreeMap<String, String>,
    warnings: &[String],
) -> String {
    for (reason, n) in errors {
        let example = examples.get(reason).map_or("", String::as_str);
        rows.push(("", format!("{reason}: {n}  e.g. {example}")));
    }
    for w in warnings {
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

/// A latency row: `p50 1.0ms  p99 2.0ms  max 3.0ms  (n=10)`, or `no
/// samples`.
pub fn latency_row(count: u64, quantiles: &[(&str, u64)]) -> String {
    if count == 0 {
        return "no samples".into();
    }
    let mut row = String::new();
    for (name, us) in quantiles {
        let _ = write!(row, "{name} {}  ", format_micros(*us));
    }
    row + &format!("(n={count})")
}

/// Seconds as the tables show them, or `unknown`.
pub fn seconds(s: Option<f64>) -> String {
    s.map_or_else(unknown, |s| format!("{s:.2}s"))
}

/// A number that could not be read.
pub fn unknown() -> String {
    "unknown".into()
}

/// A report as pretty JSON, with a final newline.
pub fn to_json(report: &impl Serialize) -> String {
    // Plain fields and string-keyed maps always serialize; a NaN would
    // become null, and no ratio of a report can be NaN.
    serde_json::to_string_pretty(report).expect("report serializes") + "\n"
}

/// Writes a report as JSON to `path`.
pub fn write_json(report: &impl Serialize, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, to_json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_rows_name_each_quantile() {
        assert_eq!(latency_row(0, &[("p50", 1)]), "no samples");
        assert_eq!(
            latency_row(3, &[("p50", 100), ("max", 1_000)]),
            "p50 100µs  max 1.0ms  (n=3)"
        );
    }
}
