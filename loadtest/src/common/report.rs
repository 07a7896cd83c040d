//! How every report is shown: a table of aligned rows for a person, and
//! pretty JSON for scripts.
//!
//! The JSON field names are an interface (scripts and benchmarks compare
//! runs with them): add fields freely, rename none.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::common::error::RunError;
use crate::common::stats::format_micros;
use crate::common::tally::ErrorTally;

/// How the run ended: `timed_out` in the JSON, `timed out` in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::Display)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "lowercase")]
pub enum Outcome {
    /// Every step finished (individual calls may still have failed).
    Completed,
    /// The `--timeout` expired; the numbers cover what happened until then.
    #[strum(to_string = "timed out")]
    TimedOut,
    /// Interrupted (Ctrl-C); the numbers cover what happened until then.
    Interrupted,
}

/// A report's table: `rows` as `key  value` lines with the keys aligned,
/// then the error count, one line per error reason (with an example) and
/// per warning.
pub fn render_table(
    mut rows: Vec<(&str, String)>,
    failures: &ErrorTally,
    warnings: &[String],
) -> String {
    rows.push(("errors", failures.errors_total.to_string()));
    for (reason, n) in &failures.errors {
        let example = failures
            .error_examples
            .get(reason)
            .map_or("", String::as_str);
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

/// A report written as JSON: every scenario's, for scripts.
pub trait JsonReport: Serialize {
    /// The report as pretty JSON, with a final newline.
    fn to_json(&self) -> String {
        // Plain fields and string-keyed maps always serialize; a NaN would
        // become null, and no ratio of a report can be NaN.
        serde_json::to_string_pretty(self).expect("report serializes") + "\n"
    }

    /// Writes the JSON report to `path`.
    fn write_json(&self, path: &Path) -> Result<(), RunError> {
        std::fs::write(path, self.to_json()).map_err(|source| RunError::WriteJson {
            path: path.to_owned(),
            source,
        })
    }
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
