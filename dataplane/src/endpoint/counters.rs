//! The QUIC endpoint's counters: atomics the endpoint task bumps and any
//! [`Handle`](super::Handle) reads without a round trip to it, so a
//! metrics scrape costs the voice path nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The endpoint's counters, shared with every [`Handle`](super::Handle).
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) accepted: AtomicU64,
    /// Indexed by [`RejectCode`](openspeak_voice::RejectCode) value; 0 is unused.
    pub(super) rejected: [AtomicU64; 10],
    pub(super) datagrams_in: AtomicU64,
    pub(super) datagrams_out: AtomicU64,
    /// Transmits for a session with no live connection.
    pub(super) dropped_no_connection: AtomicU64,
    /// Transmits dropped because the connection's datagram send buffer was
    /// full (rather than let quinn silently drop older ones).
    pub(super) dropped_send_buffer: AtomicU64,
    /// Transmits `send_datagram` refused (connection closing, too large).
    pub(super) dropped_send_error: AtomicU64,
    /// Forwarded datagrams that waited in front of a congested QUIC
    /// connection longer than `voice.max_broadcast_lag_ms` (its oldest).
    pub(super) dropped_lag: AtomicU64,
    /// Router events dropped because nobody drained [`Handle::events`](super::Handle::events).
    pub(super) dropped_events: AtomicU64,
    /// Sessions with a live connection now (a gauge).
    pub(super) connections: AtomicU64,
    pub(super) forward_delay: DelayHistogram,
    /// New QUIC connections asked to prove their address (a Retry),
    /// because many were not admitted yet.
    pub(super) handshakes_retried: AtomicU64,
    /// New QUIC connections refused because too many were not admitted.
    pub(super) handshakes_refused: AtomicU64,
    /// Packets read from the plain-UDP sockets, one counter per thread
    /// reading them, in the order they were handed out: the loop's first,
    /// then each UDP worker's. Locked only to hand one out and to read
    /// them; each thread bumps its own.
    udp_readers: Mutex<Vec<Arc<ReadCount>>>,
    /// Plain-UDP packets dropped before any routing, indexed by the
    /// `plain::Discard` value.
    pub(super) udp_dropped: [AtomicU64; 4],
}

/// One plain-UDP thread's count of packets read, on a cache line of its
/// own so that threads counting side by side do not slow each other.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(super) struct ReadCount(AtomicU64);

impl ReadCount {
    /// Counts `n` packets read.
    pub(super) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

impl Counters {
    /// A counter of packets read for the next plain-UDP thread.
    pub(super) fn udp_reader(&self) -> Arc<ReadCount> {
        let count = Arc::new(ReadCount::default());
        self.udp_readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&count));
        count
    }

    /// The counters as they are now.
    pub(super) fn snapshot(&self) -> EndpointStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let udp_received_by_thread: Vec<u64> = self
            .udp_readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| load(&c.0))
            .collect();
        EndpointStats {
            accepted: load(&self.accepted),
            rejected: std::array::from_fn(|i| load(&self.rejected[i])),
            datagrams_in: load(&self.datagrams_in),
            datagrams_out: load(&self.datagrams_out),
            dropped_no_connection: load(&self.dropped_no_connection),
            dropped_send_buffer: load(&self.dropped_send_buffer),
            dropped_lag: load(&self.dropped_lag),
            dropped_send_error: load(&self.dropped_send_error),
            dropped_events: load(&self.dropped_events),
            connections: load(&self.connections),
            handshakes_retried: load(&self.handshakes_retried),
            handshakes_refused: load(&self.handshakes_refused),
            udp_received: udp_received_by_thread.iter().sum(),
            udp_received_by_thread,
            udp_dropped: std::array::from_fn(|i| load(&self.udp_dropped[i])),
            forward_delay: ForwardDelay {
                counts: std::array::from_fn(|i| load(&self.forward_delay.counts[i])),
                sum_nanos: load(&self.forward_delay.sum_nanos),
            },
        }
    }
}

/// Upper bounds, in seconds, of the buckets of the forward delay: the time
/// from the kernel receiving a speaker's packet (or the router releasing it
/// from a jitter buffer) to the data plane writing the packet that carries
/// it to a listener. Finer around 1 to 3 ms, where a voice server's target
/// lies (2 ms at the 99th percentile, BENCHMARKS.md). A last, unbounded
/// bucket takes the rest.
pub const FORWARD_DELAY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.001_25, 0.001_5, 0.001_75,
    0.002, 0.002_5, 0.003, 0.005, 0.01, 0.02, 0.05,
];

/// The forward delay's histogram, updated by the endpoint task and read by
/// [`Handle::stats`].
#[derive(Debug, Default)]
pub(super) struct DelayHistogram {
    /// Per bucket, not cumulative; the last is the unbounded one.
    counts: [AtomicU64; FORWARD_DELAY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl DelayHistogram {
    pub(super) fn record(&self, delay: Duration) {
        self.record_many(delay, 1);
    }

    /// Records `count` packets that all waited `delay`.
    pub(super) fn record_many(&self, delay: Duration, count: u64) {
        if count == 0 {
            return;
        }
        let seconds = delay.as_secs_f64();
        let i = FORWARD_DELAY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(FORWARD_DELAY_BUCKETS.len());
        self.counts[i].fetch_add(count, Ordering::Relaxed);
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos
            .fetch_add(nanos.saturating_mul(count), Ordering::Relaxed);
    }
}

/// A snapshot of the forward delay's histogram; see
/// [`FORWARD_DELAY_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardDelay {
    /// Packets per bucket (not cumulative), the unbounded bucket last.
    pub counts: [u64; FORWARD_DELAY_BUCKETS.len() + 1],
    /// The sum of the delays, in nanoseconds.
    pub sum_nanos: u64,
}

impl ForwardDelay {
    /// Packets measured.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of the endpoint's counters; see [`Handle::stats`](super::Handle::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Connections whose ticket was accepted.
    pub accepted: u64,
    /// Refused or closed connections, indexed by reject code (index 0
    /// unused): tickets refused (1 to 7), and live connections closed
    /// because a newer one replaced them (8) or the session was removed (9).
    pub rejected: [u64; 10],
    /// Datagrams handed to the router.
    pub datagrams_in: u64,
    /// Datagrams given to quinn to send.
    pub datagrams_out: u64,
    /// Outbound datagrams for a session with no live connection.
    pub dropped_no_connection: u64,
    /// Outbound datagrams dropped for lack of datagram send buffer.
    pub dropped_send_buffer: u64,
    /// Outbound datagrams quinn refused.
    pub dropped_send_error: u64,
    /// Outbound datagrams dropped as the oldest waiting for a congested
    /// QUIC listener, past `voice.max_broadcast_lag_ms`.
    pub dropped_lag: u64,
    /// Router events dropped because the event receiver was full or gone.
    pub dropped_events: u64,
    /// Sessions with a live connection now.
    pub connections: u64,
    /// How long forwarded voice spent in the data plane.
    pub forward_delay: ForwardDelay,
    /// New QUIC connections sent a Retry (to prove their address) because
    /// many connections were not admitted yet.
    pub handshakes_retried: u64,
    /// New QUIC connections refused because too many were not admitted.
    pub handshakes_refused: u64,
    /// Packets read from the plain-UDP sockets (tickets and sealed
    /// packets, those then dropped included).
    pub udp_received: u64,
    /// `udp_received` by the thread that read them: the endpoint's loop
    /// first, then each UDP worker (`dataplane.udp_workers`); empty
    /// without a plain-UDP listener. The kernel gives each client address
    /// to one thread's socket, so this shows how evenly it spread them.
    pub udp_received_by_thread: Vec<u64>,
    /// Plain-UDP packets dropped before routing, in the order of
    /// [`UDP_DROP_REASONS`].
    pub udp_dropped: [u64; 4],
}

/// The reasons a plain-UDP packet is dropped before routing, as metric
/// labels, in the order of [`EndpointStats::udp_dropped`].
pub const UDP_DROP_REASONS: [&str; 4] = ["malformed", "unknown_session", "bad_seal", "replay"];
