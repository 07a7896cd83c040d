//! The router's tunables.

use std::time::Duration;

/// One Opus frame as clients send them: the shortest the adaptive hold ever
/// is, because holding for less than one frame cannot wait for anything.
pub const FRAME: Duration = Duration::from_millis(20);

/// How long a burst the per-session send limits allow: each bucket holds
/// this much of its rate. A whole second, because a real stream's packets
/// arrive bunched by network jitter (a stall, then several at once), and
/// what must be bounded is what a session sends over time, not how evenly.
pub const LIMIT_BURST: Duration = Duration::from_secs(1);

/// How a [`crate::Router`] buffers, ages and queues voice, and how much one
/// session may send.
///
/// The three `_ms` fields and the three send limits are the YAML keys of
/// the same names (`audio.jitter_buffer_ms`, `voice.max_packet_age_ms`,
/// `voice.max_broadcast_lag_ms`, `voice.max_packets_per_second`,
/// `voice.max_bytes_per_second`, `voice.max_payload_bytes`); the rest have
/// no key yet.
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
    /// Voice packets one session may send per second, with a burst of
    /// [`LIMIT_BURST`]; the excess is dropped as `rate_limited`.
    pub max_packets_per_second: u32,
    /// Payload bytes one session may send per second, with a burst of
    /// [`LIMIT_BURST`]; the excess is dropped as `rate_limited`.
    pub max_bytes_per_second: u32,
    /// The largest payload accepted; a larger one is dropped as
    /// `oversized`. Payloads over the protocol's 1,000 bytes do not parse
    /// at all, so a larger value changes nothing.
    pub max_payload_bytes: u32,
}

impl RouterConfig {
    /// The configuration for the three latency bounds, with defaults for
    /// the rest (the send limits included: set those fields to change
    /// them).
    pub fn new(jitter_buffer_ms: u32, max_packet_age_ms: u32, max_broadcast_lag_ms: u32) -> Self {
        Self {
            jitter_buffer_ms,
            max_packet_age_ms,
            max_broadcast_lag_ms,
            speaking_timeout: Duration::from_millis(250),
            stream_idle_timeout: Duration::from_secs(5),
            max_held_packets: 16,
            max_listener_queue: 256,
            // The configuration's defaults: four times a 20 ms stream's
            // packets, and Opus's highest bitrate (510 kbit/s) in bytes.
            max_packets_per_second: 200,
            max_bytes_per_second: 64_000,
            max_payload_bytes: 1_000,
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

    /// A zero rate would stop a session for good after its first burst;
    /// as with the other limits, the least that works is 1.
    pub(crate) fn packet_rate(&self) -> u64 {
        u64::from(self.max_packets_per_second.max(1))
    }

    pub(crate) fn byte_rate(&self) -> u64 {
        u64::from(self.max_bytes_per_second.max(1))
    }

    pub(crate) fn payload_limit(&self) -> usize {
        usize::try_from(self.max_payload_bytes.max(1)).unwrap_or(usize::MAX)
    }
}

impl Default for RouterConfig {
    /// The same values as the configuration's defaults (`audio.jitter_buffer_ms`,
    /// `voice.max_packet_age_ms`, `voice.max_broadcast_lag_ms` and the
    /// three send limits).
    fn default() -> Self {
        Self::new(60, 500, 200)
    }
}
