//! The `sessions` run's live counters, for the progress line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::progress::{Phase, PhaseCell, Progress, line_start};
use crate::common::stats::per_second;
use crate::common::tally::FailureLog;

/// Counters the clients bump as they go.
#[derive(Debug, Default)]
pub struct Counters {
    /// Sessions whose stream is open.
    pub sessions_up: AtomicU64,
    /// Successful `JoinChannel` calls.
    pub joined: AtomicU64,
    /// Events received, all sessions together.
    pub events: AtomicU64,
    /// Failures of any kind, counted and tallied.
    pub failures: FailureLog,
    /// Ramp, settle or close.
    pub phase: PhaseCell,
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The phase.
    pub phase: Phase,
    /// Open sessions.
    pub sessions_up: u64,
    /// Joins done.
    pub joined: u64,
    /// Events received so far.
    pub events: u64,
    /// Failures so far.
    pub errors: u64,
}

impl Progress for Counters {
    type Snapshot = Snapshot;

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            phase: self.phase.get(),
            sessions_up: self.sessions_up.load(Ordering::Relaxed),
            joined: self.joined.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            errors: self.failures.count.load(Ordering::Relaxed),
        }
    }

    fn line(
        elapsed: Duration,
        clients: u64,
        now: &Snapshot,
        prev: &Snapshot,
        since_prev: Duration,
    ) -> String {
        let rate = per_second(now.events.saturating_sub(prev.events), since_prev);
        format!(
            "{} sessions up {}/{clients}, joined {}, events {rate:.0}/s, errors {}",
            line_start(elapsed, now.phase),
            now.sessions_up,
            now.joined,
            now.errors,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_rate_since_previous() {
        let snap = Snapshot {
            phase: Phase::Ramp,
            sessions_up: 40,
            joined: 35,
            events: 3_000,
            errors: 2,
        };
        let prev = Snapshot {
            events: 1_000,
            ..snap
        };
        let line = Counters::line(
            Duration::from_millis(2_000),
            50,
            &snap,
            &prev,
            Duration::from_millis(500),
        );
        assert_eq!(
            line,
            "[   2.0s] ramp   sessions up 40/50, joined 35, events 4000/s, errors 2"
        );
    }
}
