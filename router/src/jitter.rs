//! The per-speaker jitter buffer: puts one speaker's stream back in order,
//! drops copies and stale packets, and measures its jitter.
//!
//! It holds a packet only while an earlier one is missing, so a clean
//! in-order stream passes straight through in the call that delivered it.
//! How long it waits for the missing one adapts to the measured jitter:
//!
//! ```text
//! target = min(max(3 · J, FRAME), jitter_buffer_ms)
//! ```
//!
//! where `J` is the RFC 3550 §6.4.1 interarrival jitter. Three times the
//! mean deviation covers most late arrivals without waiting long on a
//! steady network; one frame is the shortest wait that can help at all;
//! the configured cap bounds the delay a loss can add.
//!
//! Age: the stream's clock offset is the smallest transit time seen
//! (arrival − sender timestamp), so the first packet has age 0 and a
//! packet's age is how much longer than the fastest one it took.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use openspeak_voice::datagram::{VoicePacket, serial_diff, serial_lt};

use crate::{FRAME, RouterConfig, SpeakerStats};

/// A jump of more sequence numbers than this (about 20 s at 50 packets/s),
/// forwards or backwards, means the sender restarted its stream rather than
/// lost or delayed packets: the buffer starts over from that packet instead
/// of counting thousands of losses or dropping everything as late.
const RESYNC_DISTANCE: i32 = 1_000;

/// How many released sequence numbers the buffer remembers, to tell a
/// duplicate (released before) from a late packet (given up before).
const HISTORY: u32 = u64::BITS;

/// One speaker stream's reordering and timing state.
#[derive(Debug)]
pub(crate) struct JitterBuffer {
    /// Arrival times are measured from here, in µs, so that they can be
    /// compared with the sender's millisecond timestamps as integers.
    origin: Instant,
    /// The next sequence number to release; everything before it has been
    /// released or given up.
    next_seq: u32,
    /// Bit k set: `next_seq - 1 - k` was released (clear: given up).
    history: u64,
    /// The highest sequence number accepted, to count reordering.
    highest_seq: u32,
    /// Packets waiting for an earlier one, in sequence order, all after
    /// `next_seq`. A `None` packet is a slot already settled (a stale
    /// packet): it fills its gap without being forwarded.
    held: VecDeque<Held>,
    /// The last timestamp seen and its unwrapped value, to unwrap the next.
    last_ts: u32,
    last_ext_ts: i64,
    /// The transit time (arrival − timestamp, µs) of the previous packet,
    /// for the jitter estimate.
    last_transit_us: i64,
    /// The smallest transit time seen: the stream's clock offset.
    min_transit_us: i64,
    /// RFC 3550 interarrival jitter, in ms.
    jitter_ms: f64,
    /// When the last packet arrived, to forget an idle stream.
    last_arrival: Instant,
}

#[derive(Debug)]
struct Held {
    seq: u32,
    packet: Option<VoicePacket>,
    /// When to stop waiting for what is missing before it.
    deadline: Instant,
}

impl JitterBuffer {
    /// A stream whose first packet is `first`; push it next.
    pub(crate) fn new(now: Instant, first: &VoicePacket) -> Self {
        Self {
            origin: now,
            next_seq: first.sequence,
            history: 0,
            highest_seq: first.sequence,
            held: VecDeque::new(),
            last_ts: first.timestamp,
            last_ext_ts: 0,
            last_transit_us: 0,
            min_transit_us: 0,
            jitter_ms: 0.0,
            last_arrival: now,
        }
    }

    /// Takes one packet of the stream; appends to `out`, in order, what can
    /// be released now.
    pub(crate) fn push(
        &mut self,
        now: Instant,
        packet: VoicePacket,
        config: &RouterConfig,
        stats: &mut SpeakerStats,
        out: &mut Vec<VoicePacket>,
    ) {
        self.last_arrival = now;
        let seq = packet.sequence;
        let mut d = serial_diff(seq, self.next_seq);
        if !(-RESYNC_DISTANCE..=RESYNC_DISTANCE).contains(&d) {
            self.flush(stats, out);
            *self = Self::new(now, &packet);
            d = 0;
        }

        // Copies first: a copy says nothing new about timing.
        if self.is_duplicate(d, seq) {
            stats.duplicate += 1;
            return;
        }

        let age_us = self.observe_timing(now, packet.timestamp);
        stats.jitter_ms = self.jitter_ms;

        if age_us > config.max_packet_age_us() {
            stats.stale += 1;
            self.settle_slot(now, seq, d, config, stats, out);
            return;
        }
        if d < 0 {
            stats.late += 1;
            return;
        }

        if serial_lt(seq, self.highest_seq) {
            stats.reordered += 1;
        } else {
            self.highest_seq = seq;
        }
        if d == 0 {
            self.advance(true);
            out.push(packet);
            self.release_ready(out);
        } else {
            self.hold(now, seq, Some(packet), config, stats, out);
        }
    }

    /// Settles the slot of packet `seq`, which the router dropped before
    /// it reached the stream (over its session's send limits): the network
    /// delivered it and the server dropped it, so later packets must not
    /// wait for it and it must not be counted lost. Says nothing about
    /// timing, and a packet far outside the stream does not restart it.
    pub(crate) fn skip(
        &mut self,
        now: Instant,
        seq: u32,
        config: &RouterConfig,
        stats: &mut SpeakerStats,
        out: &mut Vec<VoicePacket>,
    ) {
        let d = serial_diff(seq, self.next_seq);
        if d > RESYNC_DISTANCE || self.is_duplicate(d, seq) {
            return;
        }
        self.settle_slot(now, seq, d, config, stats, out);
    }

    /// Releases what waited long enough: every gap before a packet whose
    /// deadline has passed is given up (counted lost).
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        stats: &mut SpeakerStats,
        out: &mut Vec<VoicePacket>,
    ) {
        if let Some(last) = self.held.iter().rposition(|h| h.deadline <= now) {
            for _ in 0..=last {
                self.release_front(stats, out);
            }
            self.release_ready(out);
        }
    }

    /// Releases everything held, giving up every gap.
    pub(crate) fn flush(&mut self, stats: &mut SpeakerStats, out: &mut Vec<VoicePacket>) {
        while !self.held.is_empty() {
            self.release_front(stats, out);
        }
    }

    /// The earliest instant [`JitterBuffer::expire`] has work.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.deadline).min()
    }

    pub(crate) fn last_arrival(&self) -> Instant {
        self.last_arrival
    }

    /// Packets (and settled slots) held now.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// The current hold for a packet behind a gap.
    pub(crate) fn target_delay(&self, config: &RouterConfig) -> Duration {
        // `as` saturates, and a NaN (impossible here) would become 0.
        let three_j = Duration::from_micros((self.jitter_ms * 3_000.0) as u64);
        three_j.max(FRAME).min(config.jitter_cap())
    }

    fn is_duplicate(&self, d: i32, seq: u32) -> bool {
        if d < 0 {
            let k = d.unsigned_abs() - 1;
            k < HISTORY && self.history & (1 << k) != 0
        } else {
            self.held.iter().any(|h| h.seq == seq)
        }
    }

    /// Updates the jitter estimate and the clock offset with one arrival;
    /// returns the packet's age in µs.
    fn observe_timing(&mut self, now: Instant, timestamp: u32) -> i64 {
        let ext_ts = self.last_ext_ts + i64::from(serial_diff(timestamp, self.last_ts));
        self.last_ts = timestamp;
        self.last_ext_ts = ext_ts;

        let arrival_us = i64::try_from(now.saturating_duration_since(self.origin).as_micros())
            .unwrap_or(i64::MAX);
        let transit_us = arrival_us.saturating_sub(ext_ts.saturating_mul(1_000));

        // RFC 3550 §6.4.1: D = (Rj − Ri) − (Sj − Si) = transit_j − transit_i,
        // J += (|D| − J) / 16.
        let d_ms = transit_us.saturating_sub(self.last_transit_us) as f64 / 1_000.0;
        self.jitter_ms += (d_ms.abs() - self.jitter_ms) / 16.0;
        self.last_transit_us = transit_us;

        self.min_transit_us = self.min_transit_us.min(transit_us);
        transit_us - self.min_transit_us
    }

    /// Marks slot `seq` (at distance `d` from `next_seq`) as done without
    /// a packet to forward, so that later packets do not wait for it. A
    /// slot already behind the stream needs nothing.
    fn settle_slot(
        &mut self,
        now: Instant,
        seq: u32,
        d: i32,
        config: &RouterConfig,
        stats: &mut SpeakerStats,
        out: &mut Vec<VoicePacket>,
    ) {
        if d == 0 {
            self.advance(false);
            self.release_ready(out);
        } else if d > 0 {
            self.hold(now, seq, None, config, stats, out);
        }
    }

    fn hold(
        &mut self,
        now: Instant,
        seq: u32,
        packet: Option<VoicePacket>,
        config: &RouterConfig,
        stats: &mut SpeakerStats,
        out: &mut Vec<VoicePacket>,
    ) {
        let at = self
            .held
            .iter()
            .position(|h| serial_lt(seq, h.seq))
            .unwrap_or(self.held.len());
        let deadline = now + self.target_delay(config);
        self.held.insert(
            at,
            Held {
                seq,
                packet,
                deadline,
            },
        );
        // Bounded memory whatever the sender does: past the limit, the
        // oldest gap is given up now rather than at its deadline.
        while self.held.len() > config.held_limit() {
            self.release_front(stats, out);
        }
        self.release_ready(out);
        // A zero cap means "never wait": release at once.
        self.expire(now, stats, out);
    }

    /// Gives up the gap before the first held slot and releases it.
    fn release_front(&mut self, stats: &mut SpeakerStats, out: &mut Vec<VoicePacket>) {
        let Some(front) = self.held.pop_front() else {
            return;
        };
        let gap = serial_diff(front.seq, self.next_seq).max(0).unsigned_abs();
        stats.lost += u64::from(gap);
        self.history = if gap >= HISTORY {
            0
        } else {
            self.history << gap
        };
        self.next_seq = front.seq;
        self.settle(front, out);
    }

    /// Releases held slots that follow on from `next_seq` without a gap.
    fn release_ready(&mut self, out: &mut Vec<VoicePacket>) {
        while self.held.front().is_some_and(|h| h.seq == self.next_seq) {
            if let Some(front) = self.held.pop_front() {
                self.settle(front, out);
            }
        }
    }

    fn settle(&mut self, held: Held, out: &mut Vec<VoicePacket>) {
        self.advance(held.packet.is_some());
        out.extend(held.packet);
    }

    fn advance(&mut self, released: bool) {
        self.history = (self.history << 1) | u64::from(released);
        self.next_seq = self.next_seq.wrapping_add(1);
    }
}
