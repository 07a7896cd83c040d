//! The `voice` run's live counters, for the progress line.
//!
//! Relaxed atomics, read only for display: the report is computed from the
//! listeners' own tallies at the end, not from here. The loss shown while
//! running is a live estimate (packets still in flight count as lost for a
//! moment); the report's loss is exact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::progress::{Phase, PhaseCell, Progress, line_start};
use crate::common::stats::per_second;
use crate::common::tally::FailureLog;

/// Counters the clients bump as they go.
#[derive(Debug, Default)]
pub struct VoiceCounters {
    /// Sessions whose event stream is open.
    pub sessions_up: AtomicU64,
    /// Sessions that ever started (never decreases).
    pub sessions_started: AtomicU64,
    /// Clients connected to the data plane.
    pub voice_up: AtomicU64,
    /// Measured packets the speakers made.
    pub sent: AtomicU64,
    /// Measured datagrams the listeners received from the data plane
    /// (warm-ups not counted), before the simulated downlink.
    pub received: AtomicU64,
    /// Owed packets delivered (distinct).
    pub delivered: AtomicU64,
    /// Deliveries owed so far: each measured packet adds the listeners in
    /// voice in its channel at the time.
    pub owed: AtomicU64,
    /// Failures of any kind, counted and tallied.
    pub failures: FailureLog,
    /// Setup, warm-up, send, drain or close.
    pub phase: PhaseCell,
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoiceSnapshot {
    /// The phase.
    pub phase: Phase,
    /// Open sessions.
    pub sessions_up: u64,
    /// Clients in voice.
    pub voice_up: u64,
    /// Packets sent so far.
    pub sent: u64,
    /// Datagrams received so far.
    pub received: u64,
    /// Packets delivered so far.
    pub delivered: u64,
    /// Deliveries owed so far.
    pub owed: u64,
    /// Failures so far.
    pub errors: u64,
}

impl Progress for VoiceCounters {
    type Snapshot = VoiceSnapshot;

    fn snapshot(&self) -> VoiceSnapshot {
        VoiceSnapshot {
            phase: self.phase.get(),
            sessions_up: self.sessions_up.load(Ordering::Relaxed),
            voice_up: self.voice_up.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            owed: self.owed.load(Ordering::Relaxed),
            errors: self.failures.count.load(Ordering::Relaxed),
        }
    }

    fn line(
        elapsed: Duration,
        clients: u64,
        now: &VoiceSnapshot,
        prev: &VoiceSnapshot,
        since_prev: Duration,
    ) -> String {
        let rate = |a: u64, b: u64| per_second(a.saturating_sub(b), since_prev);
        let loss = if now.owed == 0 {
            0.0
        } else {
            (1.0 - now.delivered as f64 / now.owed as f64).max(0.0) * 100.0
        };
        format!(
            "{} sessions {}/{clients}, voice {}, sent {:.0}/s, received {:.0}/s, loss {loss:.2}%, errors {}",
            line_start(elapsed, now.phase),
            now.sessions_up,
            now.voice_up,
            rate(now.sent, prev.sent),
            rate(now.received, prev.received),
            now.errors,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_rates_and_live_loss() {
        let prev = VoiceSnapshot {
            phase: Phase::Send,
            sessions_up: 50,
            voice_up: 50,
            sent: 1_000,
            received: 4_000,
            delivered: 3_900,
            owed: 4_000,
            errors: 0,
        };
        let now = VoiceSnapshot {
            sent: 1_250,
            received: 5_000,
            delivered: 4_950,
            owed: 5_000,
            errors: 1,
            ..prev
        };
        let line = VoiceCounters::line(
            Duration::from_millis(3_000),
            50,
            &now,
            &prev,
            Duration::from_secs(1),
        );
        assert_eq!(
            line,
            "[   3.0s] send   sessions 50/50, voice 50, sent 250/s, received 1000/s, loss 1.00%, errors 1"
        );
    }

    #[test]
    fn nothing_owed_is_no_loss() {
        let s = VoiceCounters::default().snapshot();
        let line = VoiceCounters::line(Duration::ZERO, 1, &s, &s, Duration::ZERO);
        assert!(
            line.contains("setup") && line.contains("loss 0.00%"),
            "{line}"
        );
    }
}
