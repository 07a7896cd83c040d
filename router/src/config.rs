//! The router's tunables.

use std::time::Duration;

/// One Opus frame as clients send them: the shortest the adaptive hold ever
/// is, because holding for less than one frame cannot wait for anything.
pub const FRAME: Duration = Duration::from_millis(20);

/// How a [`crate::Router`] buffers, ages and queues voice.
///
/// The three `_ms` fields are the YAML keys of the same names
/// (`audio.jitter_buffer_ms`, `voice.max_packet_age_ms`,
/// `voice.max_broadcast_lag_ms`); the rest have no key yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// Upper bound of the adaptive hold: a packet waits at most this long
    /// for an earlier, missing one.
    pub jitter_buffer_ms: u32,
    /// A packet whose age (its transit time beyond the stream's fastest
    /// observed transit) exceeds this is dropped as stale.
    pub max_packet_age_ms: u32,
    /// The most audio, by queuing time, one listener may have waiting
    /// before its oldest packets are dropped.
    pub max_broadcast_lag_ms: u32,
    /// A speaker stops "speaking" after this long without a forwarded
    /// packet.
    pub speaking_timeout: Duration,
    /// A speaker silent this long loses its stream state (clock offset,
    /// jitter, sequence position), so a stream that stops costs no memory
    /// and a stream that restarts is not judged against the old one. Never
    /// shorter than the jitter buffer, so nothing held is ever cut short.
    pub stream_idle_timeout: Duration,
    /// The most packets one speaker stream holds while waiting for missing
    /// ones; beyond it the oldest gap is given up at once.
    pub max_held_packets: usize,
    /// A backstop to the lag rule: the most datagrams queued for one
    /// listener, for bursts that arrive within one instant.
    pub max_listener_queue: usize,
}

impl RouterConfig {
    /// The configuration for the three configured values, with defaults
    /// for the rest.
    pub fn new(jitter_buffer_ms: u32, max_packet_age_ms: u32, max_broadcast_lag_ms: u32) -> Self {
        Self {
            jitter_buffer_ms,
            max_packet_age_ms,
            max_broadcast_lag_ms,
            speaking_timeout: Duration::from_millis(250),
            stream_idle_timeout: Duration::from_secs(5),
            max_held_packets: 16,
            max_listener_queue: 256,
        }
    }

    pub(crate) fn jitter_cap(&self) -> Duration {
        Duration::from_millis(self.jitter_buffer_ms.into())
    }

    pub(crate) fn max_packet_age_us(&self) -> i64 {
        i64::from(self.max_packet_age_ms) * 1_000
    }

    pub(crate) fn max_lag(&self) -> Duration {
        Duration::from_millis(self.max_broadcast_lag_ms.into())
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.stream_idle_timeout.max(self.jitter_cap())
    }

    pub(crate) fn held_limit(&self) -> usize {
        self.max_held_packets.max(1)
    }

    pub(crate) fn queue_limit(&self) -> usize {
        self.max_listener_queue.max(1)
    }
}

impl Default for RouterConfig {
    /// The same values as the configuration's defaults (`audio.jitter_buffer_ms`,
    /// `voice.max_packet_age_ms`, `voice.max_broadcast_lag_ms`).
    fn default() -> Self {
        Self::new(60, 500, 200)
    }
}
