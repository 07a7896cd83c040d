//! `--timeline`: one row per interval of the measured part of a run, and
//! the soak verdict computed from the rows.
//!
//! Pure: the driver in `run` closes an interval every `--timeline` seconds
//! and hands over the scraped process gauges; this module keeps the
//! interval's latency histogram ([`LatencyBook`]), makes the rows, and
//! judges them ([`judge_soak`]).
//!
//! A row covers `[from_s, t_s)` of the send phase (seconds since it
//! started); the last row runs to the end of the drain, so that the rows
//! add up to the run's totals:
//! - `sent`, `expected`, `delivered`, `lost` count packets by their *send*
//!   time (a loss is only known after the drain, so these are filled in at
//!   the end, exactly; see `delivery::by_interval`);
//! - `latency_us` is of the deliveries that *arrived* in the interval (a
//!   histogram reset each interval, next to the run's overall one), taken
//!   live;
//! - `processes` are the gauges of each scraped process at the row's end.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::common::stats::{LatencyPercentiles, format_micros, new_histogram, record_all};
use crate::metrics::text::ProcessGauges;

/// The soak criteria (`--strict` fails the run when one is not met),
/// from the issue: "memory growth under 5 % after warm-up, no
/// file-descriptor growth, latency p99 unchanged from the first to the last
/// minute".
///
/// Resident memory may grow by less than this share, in %, from the end of
/// the warm-up to the end.
pub const MAX_RSS_GROWTH_PCT: f64 = 5.0;
/// Open descriptors may grow by at most this many from the end of the
/// warm-up to the end.
pub const MAX_FD_GROWTH: i64 = 0;
/// "p99 unchanged" with a tolerance: the last interval's p99 may be up to
/// this many times the first's...
pub const P99_MAX_RATIO: f64 = 2.0;
/// ...or the first's plus this many µs (`--soak-p99-slack-ms`), whichever
/// is more. On the 2-core
/// machine the server shares with the load generator and other builds, a
/// p99 of a few ms moves by a few ms from one minute to the next with no
/// change in the server: the ratio alone would fail a healthy run whose
/// first p99 happened to be low, the slack alone a run whose latency
/// doubled from a high base.
pub const P99_SLACK_US: u64 = 5_000;

/// How long after an interval's end its row is taken: time for listeners
/// to hand in the delays of packets that arrived before the end.
pub const ROW_GRACE: Duration = Duration::from_millis(250);

/// The latency histograms: the run's, and the current interval's.
///
/// Delays come in batches, each sample with its arrival time (µs since the
/// run's epoch). A sample that arrived before the cut belongs to the
/// interval being recorded; one at or after it, handed in before the row
/// was taken, to the next one.
#[derive(Debug)]
pub struct LatencyBook {
    /// Every delay of the run.
    overall: Histogram<u64>,
    /// The interval that ends at `cut_us`.
    current: Histogram<u64>,
    /// Arrivals at or after `cut_us`.
    next: Histogram<u64>,
    /// The current interval's end; `u64::MAX`: no intervals.
    cut_us: u64,
}

impl Default for LatencyBook {
    fn default() -> Self {
        LatencyBook {
            overall: new_histogram(),
            current: new_histogram(),
            next: new_histogram(),
            cut_us: u64::MAX,
        }
    }
}

impl LatencyBook {
    /// Records `(arrival_us, delay_us)` samples.
    pub fn record(&mut self, samples: &[(u64, u64)]) {
        for &(arrival_us, delay_us) in samples {
            let delay = std::slice::from_ref(&delay_us);
            record_all(&mut self.overall, delay);
            if arrival_us < self.cut_us {
                record_all(&mut self.current, delay);
            } else {
                record_all(&mut self.next, delay);
            }
        }
    }

    /// The end of the interval being recorded.
    pub fn cut_us(&self) -> u64 {
        self.cut_us
    }

    /// Sets the first interval's end (before anything is recorded).
    pub fn set_cut(&mut self, cut_us: u64) {
        self.cut_us = cut_us;
    }

    /// Ends the current interval: its summary; the next interval (which
    /// ends at `next_cut_us`) starts with what arrived after the cut.
    pub fn close_interval(&mut self, next_cut_us: u64) -> IntervalLatency {
        let closed = IntervalLatency::of(&self.current);
        std::mem::swap(&mut self.current, &mut self.next);
        self.next.reset();
        self.cut_us = next_cut_us;
        closed
    }

    /// Ends the last interval, which runs to the end of the run: whatever
    /// arrived after its cut is in it too.
    pub fn close_last(&mut self) -> IntervalLatency {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.current.add(&self.next);
        self.next.reset();
        self.close_interval(u64::MAX)
    }

    /// The run's histogram.
    pub fn overall(&self) -> &Histogram<u64> {
        &self.overall
    }
}

/// One interval's one-way delays, µs; all 0 when `count` is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IntervalLatency {
    /// Deliveries that arrived in the interval.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl IntervalLatency {
    /// The summary of `h`: the run's own summary ([`LatencyPercentiles`],
    /// all zero when empty) cut to the row's columns, so that a row and
    /// the run's totals read a histogram the same way.
    pub fn of(h: &Histogram<u64>) -> Self {
        let LatencyPercentiles {
            count,
            p50,
            p99,
            max,
            ..
        } = LatencyPercentiles::of(h);
        IntervalLatency {
            count,
            p50,
            p99,
            max,
        }
    }
}

/// Which plane a scraped process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Plane {
    /// `--metrics`.
    Data,
    /// `--control-metrics`.
    Control,
}

/// One process's gauges at the end of a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    /// Which plane.
    pub plane: Plane,
    /// Its metrics address, as given.
    pub addr: String,
    /// `process_resident_memory_bytes`; null when the scrape failed or the
    /// process does not report it.
    pub rss_bytes: Option<u64>,
    /// `process_open_fds`; null likewise.
    pub open_fds: Option<u64>,
}

impl ProcessSample {
    /// The sample of `gauges` (`None`: the scrape failed).
    pub fn new(plane: Plane, addr: &str, gauges: Option<ProcessGauges>) -> Self {
        let g = gauges.unwrap_or_default();
        ProcessSample {
            plane,
            addr: addr.to_owned(),
            rss_bytes: g.rss_bytes,
            open_fds: g.open_fds,
        }
    }
}

/// Packets by send time within one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IntervalCounts {
    /// Measured packets the speakers made.
    pub sent: u64,
    /// Deliveries owed for them.
    pub expected: u64,
    /// Of those, delivered.
    pub delivered: u64,
    /// Of those, never delivered.
    pub lost: u64,
}

/// One `--timeline` row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineRow {
    /// Start of the interval, seconds since the send phase started.
    pub from_s: f64,
    /// Its end (the last row: when it was taken, after the drain).
    pub t_s: f64,
    /// Packets sent in the interval, and their fate (exact, after the
    /// drain).
    #[serde(flatten)]
    pub counts: IntervalCounts,
    /// Delays of the deliveries that arrived in the interval.
    pub latency_us: IntervalLatency,
    /// Every scraped process at the row's end: data planes, then the
    /// control plane.
    pub processes: Vec<ProcessSample>,
}

impl TimelineRow {
    /// The progress-style line for stderr, after the usual line start;
    /// `live_loss` is the progress line's estimate over the interval (the
    /// row's exact loss is only known after the drain).
    pub fn line(&self, live_loss: Option<f64>) -> String {
        let l = &self.latency_us;
        let mut line = format!(
            "timeline {:.0}-{:.0}s: received {}, p50 {} p99 {} max {}",
            self.from_s,
            self.t_s,
            l.count,
            format_micros(l.p50),
            format_micros(l.p99),
            format_micros(l.max)
        );
        if let Some(loss) = live_loss {
            line += &format!(", loss ~{:.2}%", loss * 100.0);
        }
        for p in &self.processes {
            let plane: &str = p.plane.into();
            line += &format!(
                "; {plane} {} rss {} fds {}",
                p.addr,
                p.rss_bytes.map_or_else(|| "?".into(), format_bytes),
                p.open_fds.map_or_else(|| "?".into(), |n| n.to_string())
            );
        }
        line
    }
}

/// Bytes as the lines show them: `52.4 MB`.
pub fn format_bytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// How many rows the warm-up takes: those covering `warm_up`, at least one.
pub fn warm_up_rows(warm_up: Duration, every: Duration) -> usize {
    let every = every.as_secs_f64().max(f64::MIN_POSITIVE);
    ((warm_up.as_secs_f64() / every).ceil() as usize).max(1)
}

/// How many rows a send phase of `duration` makes: one per interval, the
/// last one possibly shorter.
pub fn row_count(duration: Duration, every: Duration) -> usize {
    warm_up_rows(duration, every)
}

/// The p99 the last interval may reach, given the first's, with the
/// default slack.
#[cfg(test)]
fn p99_limit_us(first_us: u64) -> u64 {
    p99_limit_with(first_us, P99_SLACK_US)
}

fn p99_limit_with(first_us: u64, slack_us: u64) -> u64 {
    let scaled = (first_us as f64 * P99_MAX_RATIO).round() as u64;
    scaled.max(first_us.saturating_add(slack_us))
}

/// One process over the soak.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoakProcess {
    /// Which plane.
    pub plane: Plane,
    /// Its metrics address.
    pub addr: String,
    /// Resident memory at the end of the warm-up, bytes.
    pub rss_warm_bytes: Option<u64>,
    /// At the end.
    pub rss_end_bytes: Option<u64>,
    /// `(end - warm) / warm`, in %.
    pub rss_growth_pct: Option<f64>,
    /// Open descriptors at the end of the warm-up.
    pub fds_warm: Option<u64>,
    /// At the end.
    pub fds_end: Option<u64>,
    /// `end - warm`.
    pub fd_growth: Option<i64>,
}

/// The soak section: the rows judged against the soak criteria.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoakReport {
    /// The warm-up asked for (`--warm-up`, else 20 % of the duration).
    pub warm_up_s: f64,
    /// Rows it took (at least one); the warm-up ends with the last of them.
    pub warm_up_rows: usize,
    /// Rows in all.
    pub rows: usize,
    /// Each scraped process.
    pub processes: Vec<SoakProcess>,
    /// p99 of the first interval after the warm-up, µs.
    pub p99_first_us: Option<u64>,
    /// p99 of the last interval, µs.
    pub p99_last_us: Option<u64>,
    /// `p99_last_us / p99_first_us`.
    pub p99_ratio: Option<f64>,
    /// The most `p99_last_us` may be: max(2 × first, first + the slack,
    /// 5 ms unless `--soak-p99-slack-ms` says otherwise).
    pub p99_limit_us: Option<u64>,
    /// Every criterion not met, or not measurable, in words; empty when
    /// the soak passed.
    pub failures: Vec<String>,
    /// No failure.
    pub passed: bool,
}

/// Judges `rows` (the warm-up being their first `warm_rows`) against the
/// soak criteria.
#[cfg(test)]
fn judge_soak(rows: &[TimelineRow], warm_rows: usize, warm_up: Duration) -> SoakReport {
    judge_soak_with(rows, warm_rows, warm_up, P99_SLACK_US)
}

/// [`judge_soak`] with the p99 slack given, in µs.
pub fn judge_soak_with(
    rows: &[TimelineRow],
    warm_rows: usize,
    warm_up: Duration,
    p99_slack_us: u64,
) -> SoakReport {
    let warm_rows = warm_rows.max(1);
    let mut failures = Vec::new();
    let (warm, last, first_after) = match (rows.get(warm_rows - 1), rows.last()) {
        (Some(warm), Some(last)) if rows.len() > warm_rows => (warm, last, &rows[warm_rows]),
        _ => {
            failures.push(format!(
                "no row after the warm-up ({} rows, {warm_rows} of warm-up): lengthen \
                 --duration or shorten --timeline or --warm-up",
                rows.len()
            ));
            return SoakReport {
                warm_up_s: warm_up.as_secs_f64(),
                warm_up_rows: warm_rows,
                rows: rows.len(),
                processes: Vec::new(),
                p99_first_us: None,
                p99_last_us: None,
                p99_ratio: None,
                p99_limit_us: None,
                failures,
                passed: false,
            };
        }
    };

    let mut processes = Vec::new();
    for (k, at_warm) in warm.processes.iter().enumerate() {
        let at_end = last.processes.get(k);
        let rss_end = at_end.and_then(|p| p.rss_bytes);
        let fds_end = at_end.and_then(|p| p.open_fds);
        let rss_growth_pct = match (at_warm.rss_bytes, rss_end) {
            (Some(w), Some(e)) if w > 0 => Some((e as f64 - w as f64) / w as f64 * 100.0),
            _ => None,
        };
        let fd_growth = match (at_warm.open_fds, fds_end) {
            (Some(w), Some(e)) => Some(e as i64 - w as i64),
            _ => None,
        };
        let name = format!("{} plane {}", <&str>::from(at_warm.plane), at_warm.addr);
        match rss_growth_pct {
            None => failures.push(format!("{name}: resident memory not measured")),
            Some(g) if g >= MAX_RSS_GROWTH_PCT => failures.push(format!(
                "{name}: resident memory grew {g:.1}% after the warm-up (limit: under \
                 {MAX_RSS_GROWTH_PCT}%)"
            )),
            Some(_) => {}
        }
        match fd_growth {
            None => failures.push(format!("{name}: open descriptors not measured")),
            Some(g) if g > MAX_FD_GROWTH => failures.push(format!(
                "{name}: open descriptors grew by {g} after the warm-up"
            )),
            Some(_) => {}
        }
        processes.push(SoakProcess {
            plane: at_warm.plane,
            addr: at_warm.addr.clone(),
            rss_warm_bytes: at_warm.rss_bytes,
            rss_end_bytes: rss_end,
            rss_growth_pct,
            fds_warm: at_warm.open_fds,
            fds_end,
            fd_growth,
        });
    }
    if processes.is_empty() {
        failures.push(
            "no process scraped: give --metrics (data plane) and --control-metrics (control \
             plane) to judge memory and descriptors"
                .into(),
        );
    }

    let (first, end) = (first_after.latency_us, last.latency_us);
    let (p99_first_us, p99_last_us) = (
        (first.count > 0).then_some(first.p99),
        (end.count > 0).then_some(end.p99),
    );
    let p99_limit = p99_first_us.map(|first| p99_limit_with(first, p99_slack_us));
    let p99_ratio = match (p99_first_us, p99_last_us) {
        (Some(f), Some(l)) if f > 0 => Some(l as f64 / f as f64),
        _ => None,
    };
    match (p99_last_us, p99_limit) {
        (Some(l), Some(limit)) if l > limit => failures.push(format!(
            "latency p99 went from {} after the warm-up to {} in the last interval (limit {})",
            format_micros(p99_first_us.unwrap_or(0)),
            format_micros(l),
            format_micros(limit)
        )),
        (Some(_), Some(_)) => {}
        _ => failures.push(
            "latency p99 not measured: no delivery in the first interval after the warm-up \
             or in the last"
                .into(),
        ),
    }

    SoakReport {
        warm_up_s: warm_up.as_secs_f64(),
        warm_up_rows: warm_rows,
        rows: rows.len(),
        processes,
        p99_first_us,
        p99_last_us,
        p99_ratio,
        p99_limit_us: p99_limit,
        passed: failures.is_empty(),
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: usize, p99: u64, processes: &[(u64, u64)]) -> TimelineRow {
        TimelineRow {
            from_s: k as f64 * 60.0,
            t_s: (k + 1) as f64 * 60.0,
            counts: IntervalCounts::default(),
            latency_us: IntervalLatency {
                count: 1_000,
                p50: p99 / 2,
                p99,
                max: p99 * 2,
            },
            processes: processes
                .iter()
                .enumerate()
                .map(|(i, &(rss, fds))| ProcessSample {
                    plane: if i == 0 { Plane::Data } else { Plane::Control },
                    addr: format!("127.0.0.1:910{i}"),
                    rss_bytes: Some(rss),
                    open_fds: Some(fds),
                })
                .collect(),
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn the_book_splits_delays_at_the_cut() {
        let mut book = LatencyBook::default();
        // No intervals: everything is current, nothing is next.
        book.record(&[(5, 100)]);
        assert_eq!(book.cut_us(), u64::MAX);
        book.set_cut(1_000);
        book.record(&[(10, 1_000), (999, 1_500), (1_000, 50), (5_000, 70)]);
        let first = book.close_interval(2_000);
        assert_eq!(first.count, 3);
        assert_eq!(first.max, 1_500);
        assert_eq!(first.p50, 1_000);
        // Arrivals after the cut, handed in before the row, open the next
        // interval; a late hand-in of an earlier arrival lands here too.
        book.record(&[(1_500, 60), (900, 80)]);
        let second = book.close_interval(3_000);
        assert_eq!((second.count, second.max), (4, 80));
        // The last interval takes in what arrived after its cut as well.
        book.record(&[(2_500, 90), (3_500, 95)]);
        let last = book.close_last();
        assert_eq!((last.count, last.max), (2, 95));
        assert_eq!(book.close_last(), IntervalLatency::default());
        assert_eq!(book.overall().len(), 9, "the run's histogram keeps all");
    }

    #[test]
    fn interval_counts_sum_to_the_overall_histogram() {
        let mut book = LatencyBook::default();
        book.set_cut(100);
        let mut total = 0;
        for k in 1..=10u64 {
            let samples: Vec<(u64, u64)> = (0..k).map(|i| (k * 100 - 50 + i, 10 * k)).collect();
            book.record(&samples);
            total += book.close_interval((k + 1) * 100).count;
        }
        // The last cut (1,100 µs) leaves later arrivals to the last row.
        book.record(&[(1_099, 1), (5_000, 2)]);
        total += book.close_last().count;
        assert_eq!(total, book.overall().len());
        assert_eq!(total, 57);
    }

    #[test]
    fn warm_up_takes_the_rows_covering_it_at_least_one() {
        assert_eq!(warm_up_rows(Duration::from_secs(360), MIN), 6);
        assert_eq!(warm_up_rows(Duration::from_secs(361), MIN), 7);
        assert_eq!(warm_up_rows(Duration::from_secs(1), MIN), 1);
        assert_eq!(warm_up_rows(Duration::ZERO, MIN), 1);
        assert_eq!(row_count(Duration::from_secs(1_800), MIN), 30);
        assert_eq!(row_count(Duration::from_secs(6), Duration::from_secs(4)), 2);
    }

    #[test]
    fn the_p99_limit_is_twice_or_five_ms_more() {
        assert_eq!(p99_limit_us(1_000), 6_000, "low base: the slack");
        assert_eq!(p99_limit_us(5_000), 10_000, "equal");
        assert_eq!(p99_limit_us(20_000), 40_000, "high base: the ratio");
        assert_eq!(p99_limit_us(0), 5_000);
        // A larger slack (`--soak-p99-slack-ms 30`) for a noisier host.
        assert_eq!(p99_limit_with(4_800, 30_000), 34_800);
        assert_eq!(p99_limit_with(40_000, 30_000), 80_000);
    }

    #[test]
    fn a_steady_run_passes() {
        let rows: Vec<_> = (0..30)
            .map(|k| {
                row(
                    k,
                    4_000 + (k as u64 % 3) * 500,
                    &[(100_000_000, 50), (80_000_000, 60)],
                )
            })
            .collect();
        let s = judge_soak(&rows, 6, Duration::from_secs(360));
        assert!(s.passed, "{:?}", s.failures);
        assert_eq!((s.warm_up_rows, s.rows), (6, 30));
        assert_eq!(s.processes.len(), 2);
        assert_eq!(s.processes[0].rss_growth_pct, Some(0.0));
        assert_eq!(s.processes[1].fd_growth, Some(0));
        // Row 6 is the first after the warm-up: 4,000 µs; row 29: 5,000.
        assert_eq!((s.p99_first_us, s.p99_last_us), (Some(4_000), Some(5_000)));
        assert_eq!(s.p99_ratio, Some(1.25));
        assert_eq!(s.p99_limit_us, Some(9_000));
    }

    #[test]
    fn growth_during_the_warm_up_does_not_count() {
        let mut rows: Vec<_> = (0..10).map(|k| row(k, 3_000, &[(104, 10)])).collect();
        rows[0].processes[0].rss_bytes = Some(50);
        rows[0].processes[0].open_fds = Some(2);
        // Two rows of warm-up: the baseline is the second's.
        let s = judge_soak(&rows, 2, MIN);
        assert!(s.passed, "{:?}", s.failures);
    }

    #[test]
    fn memory_fds_and_latency_each_fail_the_soak() {
        // 5 % exactly is not "under 5 %".
        let mut rows: Vec<_> = (0..5).map(|k| row(k, 2_000, &[(100, 10)])).collect();
        rows[4].processes[0].rss_bytes = Some(105);
        let s = judge_soak(&rows, 1, MIN);
        assert_eq!(s.processes[0].rss_growth_pct, Some(5.0));
        assert!(!s.passed);
        assert!(
            s.failures[0].contains("resident memory grew 5.0%"),
            "{:?}",
            s.failures
        );

        let mut rows: Vec<_> = (0..5).map(|k| row(k, 2_000, &[(100, 10)])).collect();
        rows[4].processes[0].open_fds = Some(11);
        let s = judge_soak(&rows, 1, MIN);
        assert_eq!(s.processes[0].fd_growth, Some(1));
        assert_eq!(s.failures.len(), 1, "{:?}", s.failures);
        assert!(s.failures[0].contains("descriptors grew by 1"));

        // Fewer descriptors at the end is fine.
        rows[4].processes[0].open_fds = Some(9);
        assert!(judge_soak(&rows, 1, MIN).passed);

        // From 2 ms the limit is 7 ms: 7 passes, 7.001 fails.
        let mut rows: Vec<_> = (0..5).map(|k| row(k, 2_000, &[(100, 10)])).collect();
        rows[4].latency_us.p99 = 7_000;
        assert!(judge_soak(&rows, 1, MIN).passed);
        rows[4].latency_us.p99 = 7_001;
        let s = judge_soak(&rows, 1, MIN);
        assert!(!s.passed);
        assert!(s.failures[0].contains("latency p99"), "{:?}", s.failures);
        assert_eq!(s.p99_limit_us, Some(7_000));
    }

    #[test]
    fn what_was_not_measured_fails_rather_than_passes() {
        let mut rows: Vec<_> = (0..3).map(|k| row(k, 2_000, &[(100, 10)])).collect();
        rows[2].processes[0].rss_bytes = None; // the last scrape failed
        rows[2].latency_us = IntervalLatency::default();
        let s = judge_soak(&rows, 1, MIN);
        assert_eq!(s.failures.len(), 2, "{:?}", s.failures);
        assert_eq!(s.processes[0].rss_growth_pct, None);
        assert_eq!(s.p99_last_us, None);

        let rows: Vec<_> = (0..3).map(|k| row(k, 2_000, &[])).collect();
        let s = judge_soak(&rows, 1, MIN);
        assert!(
            s.failures[0].contains("no process scraped"),
            "{:?}",
            s.failures
        );

        let s = judge_soak(&rows, 3, MIN);
        assert!(!s.passed);
        assert!(s.failures[0].contains("no row after the warm-up"));
        assert!(!judge_soak(&[], 1, MIN).passed);
    }

    #[test]
    fn a_row_reads_as_a_line() {
        let mut r = row(1, 4_500, &[(52_400_000, 120)]);
        r.processes
            .push(ProcessSample::new(Plane::Control, "127.0.0.1:9100", None));
        assert_eq!(
            r.line(Some(0.0001)),
            "timeline 60-120s: received 1000, p50 2.2ms p99 4.5ms max 9.0ms, loss ~0.01%; \
             data 127.0.0.1:9100 rss 52.4 MB fds 120; control 127.0.0.1:9100 rss ? fds ?"
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["processes"][0]["plane"], "data");
        assert_eq!(v["processes"][1]["rss_bytes"], serde_json::Value::Null);
        assert_eq!(v["latency_us"]["p99"], 4_500);
        assert_eq!(v["lost"], 0);
    }
}
