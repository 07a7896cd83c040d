//! The data plane's own counters, read from its Prometheus text exposition
//! (`GET /metrics`), and the difference between two readings.
//!
//! Pure: text in, values out. The parser knows only what a scrape of the
//! data plane needs: sample lines `name{label="value",...} value`, with
//! comments (`# HELP`, `# TYPE`, `# EOF`) and blank lines skipped and
//! anything after the value (a timestamp, an exemplar) ignored. It does
//! not check metric types or families: the counters are picked by name.
//!
//! Every OpenSpeak process (control plane and data plane) also reports the
//! standard `process_*` metrics, unprefixed; [`ProcessGauges`] picks out
//! the two a soak run follows: resident memory and open descriptors.

use std::collections::BTreeMap;

use serde::Serialize;
use thiserror::Error;

/// The prefix of every data plane metric.
const PREFIX: &str = "openspeak_dataplane_";

/// The drop reasons the report always shows, even at zero: the ones an
/// impaired network provokes.
pub const NAMED_DROP_REASONS: [&str; 4] = ["stale", "duplicate", "late", "listener_lag"];

/// A line of the exposition that is not a sample.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetricsTextError {
    /// The line does not read as `name{labels} value`.
    #[error("line {line} is not a sample: {text:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The line, cut to a readable length.
        text: String,
    },
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, `_total` included.
    pub name: String,
    /// Label names and values, unescaped, in line order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of `text`, in order.
pub fn parse_samples(text: &str) -> Result<Vec<Sample>, MetricsTextError> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_line(line).ok_or_else(|| MetricsTextError::BadLine {
            line: i + 1,
            text: line.chars().take(80).collect(),
        })?;
        samples.push(sample);
    }
    Ok(samples)
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let valid_name = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if name.is_empty() || !valid_name {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Labels up to and including the closing `}`; returns them and the rest.
/// Bounded by the line: each turn consumes at least one character.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        if key.is_empty() {
            return None;
        }
        let after = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let close = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        s = after[close + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// The data plane's voice counters at one moment (or, after
/// [`DataplaneCounters::since`], over a window).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DataplaneCounters {
    /// Voice datagrams read from clients.
    pub received: u64,
    /// Voice datagrams handed to QUIC for a listener.
    pub forwarded: u64,
    /// Dropped datagrams by `reason`.
    pub dropped: BTreeMap<String, u64>,
    /// Sequence numbers given up after waiting for them.
    pub lost: u64,
    /// Datagrams put back in order.
    pub reordered: u64,
    /// The data plane process's CPU time, in microseconds
    /// (`process_cpu_seconds_total`).
    pub cpu_us: u64,
    /// The forward delay histogram (`forward_delay_seconds_bucket`): the
    /// cumulative count of packets by bucket upper bound in µs, the
    /// unbounded bucket under `u64::MAX`.
    pub forward_delay: BTreeMap<u64, u64>,
}

/// Quantiles of the data plane's forward delay, read from its histogram: each
/// is the upper bound of the bucket the quantile falls in, in µs, so a true
/// value lies at or under it; `None` when it falls above the last bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DelayBounds {
    /// Packets measured.
    pub count: u64,
    /// Median.
    pub p50: Option<u64>,
    /// 90th percentile.
    pub p90: Option<u64>,
    /// 99th percentile.
    pub p99: Option<u64>,
}

/// The standard process gauges a soak follows, from any OpenSpeak
/// process's `/metrics` (`--metrics`, `--control-metrics`). `None` when the
/// process did not report one (its platform has no `/proc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcessGauges {
    /// `process_resident_memory_bytes`.
    pub rss_bytes: Option<u64>,
    /// `process_open_fds`.
    pub open_fds: Option<u64>,
}

impl ProcessGauges {
    /// Picks the gauges out of `samples` by their standard names.
    pub fn from_samples(samples: &[Sample]) -> Self {
        let mut g = ProcessGauges::default();
        for s in samples {
            // Gauges of sizes and counts: whole and non-negative.
            let v = (s.value.is_finite() && s.value >= 0.0).then_some(s.value as u64);
            match s.name.as_str() {
                "process_resident_memory_bytes" => g.rss_bytes = v,
                "process_open_fds" => g.open_fds = v,
                _ => {}
            }
        }
        g
    }
}

impl DataplaneCounters {
    /// Picks the voice counters out of `samples`. Absent ones read 0: a
    /// data plane that has not dropped for a reason may not list it.
    pub fn from_samples(samples: &[Sample]) -> Self {
        let mut c = DataplaneCounters::default();
        for s in samples {
            let Some(name) = s.name.strip_prefix(PREFIX) else {
                continue;
            };
            // Counters are whole and non-negative; `as` saturates anything else.
            let v = s.value as u64;
            match name {
                "datagrams_received_total" => c.received = v,
                "datagrams_forwarded_total" => c.forwarded = v,
                "datagrams_lost_total" => c.lost = v,
                "datagrams_reordered_total" => c.reordered = v,
                "process_cpu_seconds_total" => c.cpu_us = (s.value * 1e6) as u64,
                "datagrams_dropped_total" => {
                    let reason = s.label("reason").unwrap_or("").to_owned();
                    *c.dropped.entry(reason).or_default() += v;
                }
                "forward_delay_seconds_bucket" => {
                    let bound = match s.label("le") {
                        Some("+Inf") => u64::MAX,
                        Some(le) => match le.parse::<f64>() {
                            Ok(seconds) => (seconds * 1e6).round() as u64,
                            Err(_) => continue,
                        },
                        None => continue,
                    };
                    c.forward_delay.insert(bound, v);
                }
                _ => {}
            }
        }
        c
    }

    /// What happened between `before` and `self`. `None` when a counter went
    /// backwards: the data plane restarted in between, and the difference
    /// means nothing.
    pub fn since(&self, before: &DataplaneCounters) -> Option<DataplaneCounters> {
        let sub = |a: u64, b: u64| a.checked_sub(b);
        let mut dropped = BTreeMap::new();
        for (reason, &now) in &self.dropped {
            let then = before.dropped.get(reason).copied().unwrap_or(0);
            dropped.insert(reason.clone(), sub(now, then)?);
        }
        if before.dropped.keys().any(|r| !self.dropped.contains_key(r)) {
            return None;
        }
        let mut forward_delay = BTreeMap::new();
        for (&bound, &now) in &self.forward_delay {
            let then = before.forward_delay.get(&bound).copied().unwrap_or(0);
            forward_delay.insert(bound, sub(now, then)?);
        }
        Some(DataplaneCounters {
            received: sub(self.received, before.received)?,
            forwarded: sub(self.forwarded, before.forwarded)?,
            dropped,
            lost: sub(self.lost, before.lost)?,
            reordered: sub(self.reordered, before.reordered)?,
            cpu_us: sub(self.cpu_us, before.cpu_us)?,
            forward_delay,
        })
    }

    /// The forward delay's quantiles; `None` when the data plane measured
    /// no packet (or does not export the histogram).
    pub fn forward_delay_bounds(&self) -> Option<DelayBounds> {
        let count = self.forward_delay.values().copied().max().unwrap_or(0);
        if count == 0 {
            return None;
        }
        let quantile = |q: f64| {
            let rank = ((q * count as f64).ceil() as u64).max(1);
            self.forward_delay
                .iter()
                .find(|&(_, &cumulative)| cumulative >= rank)
                .map(|(&bound, _)| bound)
                .filter(|&bound| bound != u64::MAX)
        };
        Some(DelayBounds {
            count,
            p50: quantile(0.5),
            p90: quantile(0.9),
            p99: quantile(0.99),
        })
    }

    /// Drops of every reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Drops for one reason (0 when not listed).
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped.get(reason).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP openspeak_dataplane_datagrams_received Voice datagrams read.
# TYPE openspeak_dataplane_datagrams_received counter
openspeak_dataplane_datagrams_received_total 1200
openspeak_dataplane_datagrams_forwarded_total 2300
openspeak_dataplane_datagrams_dropped_total{reason=\"stale\"} 4
openspeak_dataplane_datagrams_dropped_total{reason=\"late\"} 2
openspeak_dataplane_datagrams_dropped_total{reason=\"duplicate\"} 0
openspeak_dataplane_datagrams_dropped_total{reason=\"no_connection\"} 7
openspeak_dataplane_datagrams_lost_total 9
openspeak_dataplane_datagrams_reordered_total 11
openspeak_dataplane_speaker_jitter_max_milliseconds 3
openspeak_dataplane_process_cpu_seconds_total 1.25
openspeak_dataplane_forward_delay_seconds_sum 0.5
openspeak_dataplane_forward_delay_seconds_count 1000
openspeak_dataplane_forward_delay_seconds_bucket{le=\"0.0001\"} 400
openspeak_dataplane_forward_delay_seconds_bucket{le=\"0.0005\"} 880
openspeak_dataplane_forward_delay_seconds_bucket{le=\"0.002\"} 995
openspeak_dataplane_forward_delay_seconds_bucket{le=\"+Inf\"} 1000
other_metric{a=\"x\"} 5
# EOF
";

    #[test]
    fn sample_lines_are_read_and_comments_skipped() {
        let s = parse_samples(TEXT).unwrap();
        assert_eq!(s.len(), 17);
        assert_eq!(s[0].name, "openspeak_dataplane_datagrams_received_total");
        assert_eq!(s[0].value, 1200.0);
        assert_eq!(s[2].labels, [("reason".to_owned(), "stale".to_owned())]);
    }

    #[test]
    fn labels_unescape_and_trailing_fields_are_ignored() {
        let s = parse_samples(
            "m{a=\"x\\\"y\", b = \"1,2}\" ,} 3.5 1700000000\nn 1e3\ni +Inf\nlabelled{} 2\n",
        )
        .unwrap();
        assert_eq!(
            s[0].labels,
            [
                ("a".to_owned(), "x\"y".to_owned()),
                ("b".to_owned(), "1,2}".to_owned())
            ]
        );
        assert_eq!(s[0].value, 3.5);
        assert_eq!(s[1].value, 1000.0);
        assert_eq!(s[2].value, f64::INFINITY);
        assert!(s[3].labels.is_empty());
    }

    #[test]
    fn a_line_that_is_no_sample_is_an_error() {
        for bad in [
            "m{a=\"x\" 3",
            "m{a=x} 3",
            "m",
            "m abc",
            "9m 1",
            "<html>",
            "m{=\"x\"} 1",
        ] {
            let text = format!("ok 1\n{bad}\n");
            assert!(
                matches!(
                    parse_samples(&text),
                    Err(MetricsTextError::BadLine { line: 2, .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn process_gauges_are_the_unprefixed_standard_ones() {
        let text = "process_cpu_seconds_total 1.5\n\
                    process_resident_memory_bytes 5.24288e+07\n\
                    process_open_fds 42\n\
                    openspeak_dataplane_process_open_fds 7\n";
        let g = ProcessGauges::from_samples(&parse_samples(text).unwrap());
        assert_eq!(g.rss_bytes, Some(52_428_800));
        assert_eq!(g.open_fds, Some(42));
        let none = ProcessGauges::from_samples(&parse_samples(TEXT).unwrap());
        assert_eq!(none, ProcessGauges::default());
        let bad = ProcessGauges::from_samples(&parse_samples("process_open_fds -1\n").unwrap());
        assert_eq!(bad.open_fds, None);
    }

    #[test]
    fn the_voice_counters_are_picked_by_name() {
        let c = DataplaneCounters::from_samples(&parse_samples(TEXT).unwrap());
        assert_eq!((c.received, c.forwarded), (1200, 2300));
        assert_eq!((c.lost, c.reordered), (9, 11));
        assert_eq!(c.cpu_us, 1_250_000);
        assert_eq!(c.dropped("stale"), 4);
        assert_eq!(c.dropped("listener_lag"), 0);
        assert_eq!(c.dropped_total(), 13);
        assert_eq!(c.dropped.len(), 4);
        assert_eq!(
            c.forward_delay
                .iter()
                .map(|(b, n)| (*b, *n))
                .collect::<Vec<_>>(),
            [(100, 400), (500, 880), (2_000, 995), (u64::MAX, 1000)]
        );
    }

    #[test]
    fn forward_delay_quantiles_are_bucket_bounds() {
        let c = DataplaneCounters::from_samples(&parse_samples(TEXT).unwrap());
        // 400 of 1,000 at or under 100 µs, 880 under 500 µs, 995 under 2 ms.
        assert_eq!(
            c.forward_delay_bounds(),
            Some(DelayBounds {
                count: 1000,
                p50: Some(500),
                p90: Some(2_000),
                p99: Some(2_000),
            })
        );
        let mut slow = c.clone();
        slow.forward_delay.insert(2_000, 980);
        assert_eq!(slow.forward_delay_bounds().unwrap().p99, None, "above 2 ms");
        assert_eq!(DataplaneCounters::default().forward_delay_bounds(), None);
    }

    #[test]
    fn the_difference_is_per_counter_and_none_after_a_restart() {
        let before = DataplaneCounters::from_samples(&parse_samples(TEXT).unwrap());
        let mut after = before.clone();
        after.forwarded += 100;
        after.received += 50;
        after.lost += 1;
        *after.dropped.get_mut("stale").unwrap() += 3;
        after.dropped.insert("listener_lag".into(), 2);
        *after.forward_delay.get_mut(&u64::MAX).unwrap() += 100;
        *after.forward_delay.get_mut(&2_000).unwrap() += 100;
        let d = after.since(&before).unwrap();
        assert_eq!(d.forward_delay[&u64::MAX], 100);
        assert_eq!(d.forward_delay[&100], 0);
        assert_eq!(
            (d.forwarded, d.received, d.lost, d.reordered),
            (100, 50, 1, 0)
        );
        assert_eq!((d.dropped("stale"), d.dropped("late")), (3, 0));
        assert_eq!(d.dropped("listener_lag"), 2);
        assert_eq!(d.dropped_total(), 5);

        let mut restarted = before.clone();
        restarted.forwarded = 1;
        assert_eq!(restarted.since(&before), None);
        let mut fewer = before.clone();
        fewer.dropped.remove("late");
        assert_eq!(fewer.since(&before), None);
    }
}
