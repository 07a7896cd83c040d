//! The `voice` run's live counters and its once-a-second progress line on
//! stderr.
//!
//! Relaxed atomics, read only for display: the report is computed from the
//! listeners' own tallies at the end, not from here. The loss shown while
//! running is a live estimate (packets still in flight count as lost for a
//! moment); the report's loss is exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// What the run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum VoicePhase {
    /// Sessions, joins, tickets and QUIC connections.
    Setup = 0,
    /// Speakers send unmeasured packets until every path carries voice.
    Warmup = 1,
    /// The measured sending.
    Send = 2,
    /// Waiting for the last packets.
    Drain = 3,
    /// Closing and cleaning up.
    Close = 4,
}

impl VoicePhase {
    fn name(self) -> &'static str {
        match self {
            VoicePhase::Setup => "setup",
            VoicePhase::Warmup => "warmup",
            VoicePhase::Send => "send",
            VoicePhase::Drain => "drain",
            VoicePhase::Close => "close",
        }
    }
}

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
    /// Failures of any kind.
    pub errors: AtomicU64,
    /// A [`VoicePhase`].
    phase: AtomicU8,
}

impl VoiceCounters {
    /// Moves to `phase`.
    pub fn set_phase(&self, phase: VoicePhase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn phase(&self) -> VoicePhase {
        match self.phase.load(Ordering::Relaxed) {
            1 => VoicePhase::Warmup,
            2 => VoicePhase::Send,
            3 => VoicePhase::Drain,
            4 => VoicePhase::Close,
            _ => VoicePhase::Setup,
        }
    }

    /// The current values.
    pub fn snapshot(&self) -> VoiceSnapshot {
        VoiceSnapshot {
            phase: self.phase(),
            sessions_up: self.sessions_up.load(Ordering::Relaxed),
            voice_up: self.voice_up.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            owed: self.owed.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoiceSnapshot {
    /// The phase.
    pub phase: VoicePhase,
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

/// The progress line for `now`, given the previous line's snapshot and how
/// long ago it was.
pub fn voice_progress_line(
    elapsed: Duration,
    clients: u64,
    now: &VoiceSnapshot,
    prev: &VoiceSnapshot,
    since_prev: Duration,
) -> String {
    let rate = |a: u64, b: u64| crate::stats::per_second(a.saturating_sub(b), since_prev);
    let loss = if now.owed == 0 {
        0.0
    } else {
        (1.0 - now.delivered as f64 / now.owed as f64).max(0.0) * 100.0
    };
    format!(
        "[{:>6.1}s] {:<6} sessions {}/{clients}, voice {}, sent {:.0}/s, received {:.0}/s, loss {loss:.2}%, errors {}",
        elapsed.as_secs_f64(),
        now.phase.name(),
        now.sessions_up,
        now.voice_up,
        rate(now.sent, prev.sent),
        rate(now.received, prev.received),
        now.errors,
    )
}

/// Prints a progress line every second until `stop` turns true.
pub async fn print_voice_progress(
    counters: Arc<VoiceCounters>,
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
            voice_progress_line(now - started, clients, &snap, &prev, now - prev_at)
        );
        (prev, prev_at) = (snap, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_rates_and_live_loss() {
        let prev = VoiceSnapshot {
            phase: VoicePhase::Send,
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
        let line = voice_progress_line(
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
        let line = voice_progress_line(Duration::ZERO, 1, &s, &s, Duration::ZERO);
        assert!(
            line.contains("setup") && line.contains("loss 0.00%"),
            "{line}"
        );
    }
}
