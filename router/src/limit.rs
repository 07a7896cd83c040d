//! The per-session send limits: packets and payload bytes per second, so
//! that one client cannot flood its channel.
//!
//! Every packet a speaker sends costs the data plane one fan-out and every
//! other member of its channel the bandwidth of a copy, so a client sending
//! far faster than any Opus stream would degrade the channel for everyone.
//! Each session has two token buckets, one counting packets and one payload
//! bytes, refilled at their configured rates from the `now` of each arrival
//! and holding at most [`LIMIT_BURST`] of it. A packet passes only if both
//! buckets hold enough for it, and then takes from both; one that does not
//! fit takes nothing and is dropped. So a flood is forwarded at exactly the
//! configured rate, and the burst lets a legitimate stream's packets that
//! network jitter has bunched up pass unharmed.
//!
//! The levels are integers in nano-tokens (tokens × 10⁹): a refill is then
//! `rate × elapsed nanoseconds`, exact with `Instant`'s own resolution, so
//! no fraction of a token is lost between two arrivals however close, and
//! there is no floating point on the hot path. With a rate that fits a
//! `u32`, a full bucket (rate × 10⁹ for one second) still fits a `u64`.
//!
//! The state is three words in the session's [`crate::router`] entry, with
//! no allocation, and goes when the session does. It is deliberately not
//! part of the speaker's stream (`jitter.rs`): that is reset when the
//! sequence jumps, on mute and on moving, and a client that could reset
//! its bucket by jumping its sequence numbers would have no limit at all.

use std::time::Instant;

use crate::{LIMIT_BURST, RouterConfig};

/// Nano-tokens per token.
const NANO: u64 = 1_000_000_000;

/// One session's packet and byte buckets. The router keeps one per member;
/// a driver that shares one session's allowance across several routers
/// keeps its own and passes it to [`Router::handle_datagram_limited`](crate::Router::handle_datagram_limited).
#[derive(Debug, Default)]
pub struct SendLimit {
    /// When the buckets were last refilled; `None` before the session's
    /// first packet, when both are full.
    refilled: Option<Instant>,
    /// Packets left to send, in nano-packets.
    packets: u64,
    /// Payload bytes left to send, in nano-bytes.
    bytes: u64,
}

impl SendLimit {
    /// Refills both buckets up to `now`, then takes one packet of
    /// `payload_len` bytes if both hold enough for it. `false`: over a
    /// limit, nothing taken, to be dropped.
    pub fn admit(&mut self, now: Instant, payload_len: usize, config: &RouterConfig) -> bool {
        let (packet_rate, byte_rate) = (config.packet_rate(), config.byte_rate());
        let burst = u64::try_from(LIMIT_BURST.as_nanos()).unwrap_or(u64::MAX);
        let packet_cap = packet_rate.saturating_mul(burst);
        let byte_cap = byte_rate.saturating_mul(burst);
        match self.refilled {
            None => {
                self.packets = packet_cap;
                self.bytes = byte_cap;
                self.refilled = Some(now);
            }
            Some(last) => {
                // A `now` before the last refill (drivers pass a monotonic
                // clock, but the router never trusts its input) refills
                // nothing and leaves the mark where it is.
                let elapsed = now.saturating_duration_since(last);
                let elapsed = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
                self.packets = refill(self.packets, packet_rate, elapsed, packet_cap);
                self.bytes = refill(self.bytes, byte_rate, elapsed, byte_cap);
                self.refilled = Some(last.max(now));
            }
        }
        let packet_cost = NANO;
        let byte_cost = u64::try_from(payload_len)
            .unwrap_or(u64::MAX)
            .saturating_mul(NANO);
        if self.packets < packet_cost || self.bytes < byte_cost {
            return false;
        }
        self.packets -= packet_cost;
        self.bytes -= byte_cost;
        true
    }
}

/// `level` after `elapsed_ns` at `rate` tokens a second, at most `cap`
/// (all in nano-tokens but the rate).
fn refill(level: u64, rate: u64, elapsed_ns: u64, cap: u64) -> u64 {
    level
        .saturating_add(rate.saturating_mul(elapsed_ns))
        .min(cap)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(packets: u32, bytes: u32) -> RouterConfig {
        RouterConfig {
            max_packets_per_second: packets,
            max_bytes_per_second: bytes,
            ..RouterConfig::default()
        }
    }

    /// A limit no packet has passed yet, and the configuration to admit
    /// by: what each test starts from.
    fn fresh(packets: u32, bytes: u32) -> (SendLimit, RouterConfig) {
        (SendLimit::default(), config(packets, bytes))
    }

    /// How many of `n` packets of `len` bytes, all at `now`, pass.
    fn passes(
        limit: &mut SendLimit,
        now: Instant,
        n: usize,
        len: usize,
        c: &RouterConfig,
    ) -> usize {
        (0..n).filter(|_| limit.admit(now, len, c)).count()
    }

    #[test]
    fn a_fresh_bucket_holds_one_second_and_refills_exactly() {
        let (mut limit, c) = fresh(200, 1_000_000);
        let t0 = Instant::now();
        assert_eq!(passes(&mut limit, t0, 300, 10, &c), 200);
        // 200 a second is one every 5 ms: 4.999 ms gives nothing yet, and
        // what it did give is kept, so 5 ms in all gives exactly one.
        let almost = t0 + Duration::from_micros(4_999);
        assert_eq!(passes(&mut limit, almost, 1, 10, &c), 0);
        assert_eq!(
            passes(&mut limit, t0 + Duration::from_millis(5), 2, 10, &c),
            1
        );
        // A long pause refills to the burst, never beyond.
        let later = t0 + Duration::from_secs(3_600);
        assert_eq!(passes(&mut limit, later, 300, 10, &c), 200);
    }

    #[test]
    fn bytes_are_limited_apart_from_packets() {
        let (mut limit, c) = fresh(100, 64_000);
        let t0 = Instant::now();
        // 100 packets are allowed, but only 64 of 1,000 bytes.
        assert_eq!(passes(&mut limit, t0, 100, 1_000, &c), 64);
        // The byte bucket is empty: even a small packet waits for a refill.
        assert_eq!(passes(&mut limit, t0, 1, 1, &c), 0);
        // 1 ms refills 64 bytes (and a tenth of a packet). The 37 refused
        // packets took nothing: 36 packets are left, so two pass.
        let ms = t0 + Duration::from_millis(1);
        assert_eq!(passes(&mut limit, ms, 2, 32, &c), 2);
        assert_eq!(passes(&mut limit, ms, 1, 1, &c), 0);
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let (mut limit, c) = fresh(10, 64_000);
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(passes(&mut limit, t0, 20, 1, &c), 10);
        let earlier = t0 - Duration::from_secs(5);
        assert_eq!(passes(&mut limit, earlier, 1, 1, &c), 0);
        // The mark stayed at t0: 100 ms after it is one packet, not 5 s'
        // worth.
        let after = t0 + Duration::from_millis(100);
        assert_eq!(passes(&mut limit, after, 5, 1, &c), 1);
    }

    #[test]
    fn extreme_configurations_neither_overflow_nor_stop_for_good() {
        let t0 = Instant::now();
        let huge = config(u32::MAX, u32::MAX);
        let mut limit = SendLimit::default();
        assert!(!limit.admit(t0, usize::MAX, &huge), "more than a burst");
        assert!(limit.admit(t0, 1_000, &huge));
        let far = t0 + Duration::from_secs(1 << 40);
        assert!(limit.admit(far, 1_000, &huge));
        // Zero reads as one a second, like the other limits' zero.
        let zero = config(0, 0);
        let mut limit = SendLimit::default();
        assert_eq!(passes(&mut limit, t0, 5, 1, &zero), 1);
        assert_eq!(
            passes(&mut limit, t0 + Duration::from_secs(1), 5, 1, &zero),
            1
        );
    }
}
