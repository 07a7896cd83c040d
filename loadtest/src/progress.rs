//! Live counters, and the once-a-second progress line on stderr.
//!
//! The counters are relaxed atomics: they are only read for display, and
//! the final report is computed from the clients' own results, not from here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// What the run is doing, for the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Clients connect, join and update presence.
    Ramp = 0,
    /// Waiting until every session has every event.
    Settle = 1,
    /// Closing the sessions.
    Close = 2,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Ramp => "ramp",
            Phase::Settle => "settle",
            Phase::Close => "close",
        }
    }
}

/// Counters the clients bump as they go.
#[derive(Debug, Default)]
pub struct Counters {
    /// Sessions whose stream is open.
    pub sessions_up: AtomicU64,
    /// Successful `JoinChannel` calls.
    pub joined: AtomicU64,
    /// Events received, all sessions together.
    pub events: AtomicU64,
    /// Failures of any kind.
    pub errors: AtomicU64,
    /// A [`Phase`].
    phase: AtomicU8,
}

impl Counters {
    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            1 => Phase::Settle,
            2 => Phase::Close,
            _ => Phase::Ramp,
        }
    }

    /// The current values.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            phase: self.phase(),
            sessions_up: self.sessions_up.load(Ordering::Relaxed),
            joined: self.joined.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
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

/// The progress line for `now`, given the previous line's event count and
/// how long ago it was.
pub fn progress_line(
    elapsed: Duration,
    clients: u64,
    now: &Snapshot,
    prev_events: u64,
    since_prev: Duration,
) -> String {
    let rate = crate::stats::per_second(now.events.saturating_sub(prev_events), since_prev);
    format!(
        "[{:>6.1}s] {:<6} sessions up {}/{clients}, joined {}, events {:.0}/s, errors {}",
        elapsed.as_secs_f64(),
        now.phase.name(),
        now.sessions_up,
        now.joined,
        rate,
        now.errors,
    )
}

/// Prints a progress line every second until `stop` turns true.
pub async fn print_progress(
    counters: Arc<Counters>,
    clients: u64,
    started: Instant,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut prev_events, mut prev_at) = (0, started);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let snap = counters.snapshot();
        eprintln!(
            "{}",
            progress_line(now - started, clients, &snap, prev_events, now - prev_at)
        );
        (prev_events, prev_at) = (snap.events, now);
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
        let line = progress_line(
            Duration::from_millis(2_000),
            50,
            &snap,
            1_000,
            Duration::from_millis(500),
        );
        assert_eq!(
            line,
            "[   2.0s] ramp   sessions up 40/50, joined 35, events 4000/s, errors 2"
        );
    }
}
