//! The once-a-second progress line on stderr, for every scenario.
//!
//! Each scenario keeps its own live counters (relaxed atomics, read only for
//! display: reports are computed from the clients' own results) and says
//! how they read as a line; the timing, the phase and the printing are here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// What a run is doing, named in lower case on the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::FromRepr, strum::IntoStaticStr)]
#[cfg_attr(test, derive(strum::EnumIter))]
#[strum(serialize_all = "lowercase")]
#[repr(u8)]
pub enum Phase {
    /// `voice`: sessions, joins, tickets and QUIC connections.
    Setup,
    /// `sessions`: clients connect, join and update presence.
    Ramp,
    /// `voice`: speakers send unmeasured packets until every path carries
    /// voice.
    Warmup,
    /// `voice`: the measured sending.
    Send,
    /// `sessions`: waiting until every session has every event.
    Settle,
    /// `voice`: waiting for the last packets.
    Drain,
    /// Closing the sessions and cleaning up.
    Close,
}

/// A [`Phase`] that one task sets and the progress line reads.
#[derive(Debug, Default)]
pub struct PhaseCell(AtomicU8);

impl PhaseCell {
    /// Moves to `phase`.
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Relaxed);
    }

    /// The phase now.
    pub fn get(&self) -> Phase {
        Phase::from_repr(self.0.load(Ordering::Relaxed)).unwrap_or(Phase::Setup)
    }
}

/// A scenario's live counters, as the progress line shows them.
pub trait Progress: Send + Sync + 'static {
    /// The counters at one instant.
    type Snapshot: Copy + Send;

    /// The current values.
    fn snapshot(&self) -> Self::Snapshot;

    /// The line for `now`, given the previous line's snapshot and how long
    /// ago it was, `elapsed` into the run.
    fn line(
        elapsed: Duration,
        clients: u64,
        now: &Self::Snapshot,
        prev: &Self::Snapshot,
        since_prev: Duration,
    ) -> String;
}

/// How every progress line starts: the time into the run and the phase.
pub fn line_start(elapsed: Duration, phase: Phase) -> String {
    let name: &str = phase.into();
    format!("[{:>6.1}s] {name:<6}", elapsed.as_secs_f64())
}

/// Prints a progress line every second until `stop` turns true.
pub async fn print_progress<P: Progress>(
    counters: Arc<P>,
    clients: u64,
    started: Instant,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut prev, mut prev_at) = (counters.snapshot(), started);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let snap = counters.snapshot();
        eprintln!(
            "{}",
            P::line(now - started, clients, &snap, &prev, now - prev_at)
        );
        (prev, prev_at) = (snap, now);
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn phases_read_back_as_set() {
        let cell = PhaseCell::default();
        assert_eq!(cell.get(), Phase::Setup);
        for phase in Phase::iter() {
            cell.set(phase);
            assert_eq!(cell.get(), phase);
        }
        assert_eq!(
            line_start(Duration::from_millis(2_000), Phase::Ramp),
            "[   2.0s] ramp  "
        );
    }
}
