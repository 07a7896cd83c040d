//! Latency histograms and the arithmetic of the summary.
//!
//! Every latency is recorded in whole microseconds into an HdrHistogram with
//! three significant digits, so percentiles are exact to 0.1 %.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// `seconds` in µs per one of `count`; `None` without seconds or count.
pub fn micros_per(seconds: Option<f64>, count: u64) -> Option<f64> {
    seconds
        .filter(|_| count > 0)
        .map(|s| s * 1e6 / count as f64)
}

/// Largest latency a histogram keeps (one hour); longer ones are clamped.
const MAX_MICROS: u64 = 3_600_000_000;

/// `later - earlier` in microseconds, 0 when `later` is not later.
pub fn micros_between(earlier: Instant, later: Instant) -> u64 {
    duration_micros(later.saturating_duration_since(earlier))
}

/// A duration in whole microseconds, saturating.
pub fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `count` per second over `elapsed`; 0 when nothing elapsed.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// An empty latency histogram.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; a failure here is a
    // bug in this file, found by the tests.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

/// Records latencies (µs), clamping the absurd.
pub fn record_all(histogram: &mut Histogram<u64>, micros: &[u64]) {
    for &v in micros {
        histogram.saturating_record(v.min(MAX_MICROS));
    }
}

/// What a report shows of one histogram: the tail matters, for audio most.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyPercentiles {
    /// Median, µs.
    pub p50: u64,
    /// 90th percentile, µs.
    pub p90: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// 99.9th percentile, µs.
    pub p999: u64,
    /// Largest, µs.
    pub max: u64,
    /// Mean, µs (rounded).
    pub mean: u64,
    /// Number of samples; 0 means the other fields mean nothing.
    pub count: u64,
}

impl LatencyPercentiles {
    /// The summary of `h`; all zero for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> LatencyPercentiles {
        if h.is_empty() {
            return LatencyPercentiles::default();
        }
        LatencyPercentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean().round() as u64,
            count: h.len(),
        }
    }
}

/// Human form of a µs latency: `850µs`, `12.3ms`, `4.05s`.
pub fn format_micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1_000.0)
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_saturate_at_zero() {
        let t = Instant::now();
        let later = t + Duration::from_micros(1500);
        assert_eq!(micros_between(t, later), 1500);
        assert_eq!(micros_between(later, t), 0);
    }

    #[test]
    fn rate_of_nothing_is_zero() {
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000.0);
    }

    #[test]
    fn summary_of_known_samples() {
        let mut h = new_histogram();
        let samples: Vec<u64> = (1..=1000).collect();
        record_all(&mut h, &samples);
        record_all(&mut h, &[0, MAX_MICROS * 10]);
        let s = LatencyPercentiles::of(&h);
        assert_eq!(s.count, 1002);
        assert_eq!(s.p50, 500);
        assert_eq!(s.p99, 991, "the 992nd of 0..=1000 and the outlier");
        // The clamped outlier lands in the histogram's top bucket.
        assert!(s.max >= MAX_MICROS && s.max < MAX_MICROS + MAX_MICROS / 1000);
    }

    #[test]
    fn percentiles_of_known_samples() {
        let mut h = new_histogram();
        record_all(&mut h, &(1..=10_000).collect::<Vec<u64>>());
        let p = LatencyPercentiles::of(&h);
        // Three significant digits: exact to 0.1 %.
        assert_eq!(p.count, 10_000);
        assert!((4_995..=5_005).contains(&p.p50), "{}", p.p50);
        assert!((8_991..=9_009).contains(&p.p90), "{}", p.p90);
        assert!((9_895..=9_905).contains(&p.p99), "{}", p.p99);
        assert!((9_985..=9_995).contains(&p.p999), "{}", p.p999);
        assert_eq!(
            LatencyPercentiles::of(&new_histogram()),
            LatencyPercentiles::default()
        );
    }

    #[test]
    fn micros_read_well() {
        assert_eq!(format_micros(850), "850µs");
        assert_eq!(format_micros(12_345), "12.3ms");
        assert_eq!(format_micros(4_050_000), "4.05s");
    }
}
