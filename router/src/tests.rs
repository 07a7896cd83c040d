//! The router driven in fake time: one `Instant::now()` at the start, then
//! only durations added to it. Nothing here sleeps.

use std::time::{Duration, Instant};

use bytes::Bytes;
use openspeak_voice::datagram::{Forwarded, VoicePacket};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{
    ChannelKey, FRAME, Member, MembershipError, Router, RouterConfig, RouterEvent, SessionId,
};

mod limits;

const A: SessionId = SessionId(1);
const B: SessionId = SessionId(2);
const C: SessionId = SessionId(3);
const D: SessionId = SessionId(4);
const LOBBY: &str = "lobby";
const OTHER: &str = "other";

/// A router plus a fake clock.
struct Net {
    r: Router,
    t0: Instant,
}

impl Net {
    /// A, B and C in the lobby, D in another channel.
    fn new() -> Self {
        Self::with(RouterConfig::default())
    }

    fn with(config: RouterConfig) -> Self {
        let mut net = Self {
            r: Router::new(config),
            t0: Instant::now(),
        };
        for s in [A, B, C] {
            net.join(s, LOBBY);
        }
        net.join(D, OTHER);
        net
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn join(&mut self, s: SessionId, channel: &str) {
        self.update(s, |m| m.channel = Some(ChannelKey::from(channel)));
    }

    /// Changes `s`'s membership by `change`, wherever it is.
    fn update(&mut self, s: SessionId, change: impl FnOnce(&mut Member)) {
        let mut member = self.member(s);
        change(&mut member);
        self.set(s, member);
    }

    fn member(&self, s: SessionId) -> Member {
        self.r.member(s).cloned().unwrap_or_default()
    }

    fn set(&mut self, s: SessionId, member: Member) {
        self.r.set_member(s, member).expect("non-zero session");
    }

    /// `from` sends packet `seq` with sender timestamp `ts`, arriving at
    /// `ms`.
    fn send(&mut self, ms: u64, from: SessionId, seq: u32, ts: u32) {
        let now = self.at(ms);
        self.r.handle_datagram(now, from, voice(seq, ts));
    }

    /// Every transmit queued now.
    fn drain(&mut self) -> Vec<(SessionId, Forwarded)> {
        let mut out = Vec::new();
        while let Some(t) = self.r.poll_transmit() {
            let f = Forwarded::parse(t.datagram).expect("router sends valid datagrams");
            out.push((t.to, f));
        }
        out
    }

    fn events(&mut self) -> Vec<RouterEvent> {
        std::iter::from_fn(|| self.r.poll_event()).collect()
    }

    /// Fires every timer due by `ms`, as a driver's timer would.
    fn run_until(&mut self, ms: u64) {
        let end = self.at(ms);
        for _ in 0..10_000 {
            match self.r.poll_timeout() {
                Some(t) if t <= end => self.r.handle_timeout(t),
                _ => return,
            }
        }
        panic!("timers did not settle");
    }

    fn lost(&self, s: SessionId) -> u64 {
        self.r.speaker_stats(s).expect("member").lost
    }
}

fn payload(seq: u32) -> Bytes {
    Bytes::from(format!("opus frame {seq}"))
}

fn voice(seq: u32, ts: u32) -> Bytes {
    VoicePacket {
        sequence: seq,
        timestamp: ts,
        payload: payload(seq),
    }
    .encode()
    .expect("valid packet")
}

/// The sequence numbers `who` received, in order.
fn seqs(out: &[(SessionId, Forwarded)], who: SessionId) -> Vec<u32> {
    out.iter()
        .filter(|(to, _)| *to == who)
        .map(|(_, f)| f.sequence)
        .collect()
}

fn speaking(session: SessionId, speaking: bool) -> RouterEvent {
    RouterEvent::SpeakingChanged { session, speaking }
}

#[test]
fn in_order_stream_reaches_every_other_member_at_once() {
    let mut net = Net::new();
    for seq in 0..10u32 {
        let ms = u64::from(seq) * 20;
        let now = net.at(ms);
        net.r.handle_datagram(now, A, voice(seq, 5_000 + seq * 20));
        // Released in the same call: nothing held, nothing to wait for.
        assert_eq!(net.r.held(A), Some(0));
        let mut shared = Vec::new();
        while let Some(t) = net.r.poll_transmit() {
            shared.push(t.datagram.as_ptr());
            let f = Forwarded::parse(t.datagram).expect("valid");
            assert!(t.to == B || t.to == C, "sent to {}", t.to);
            assert_eq!(f.speaker, A.0);
            assert_eq!(f.sequence, seq);
            assert_eq!(f.timestamp, 5_000 + seq * 20);
            assert_eq!(f.payload, payload(seq));
        }
        // Two listeners, one buffer.
        assert_eq!(shared.len(), 2);
        assert_eq!(shared[0], shared[1]);
        // No hold pending: only the speaking timeout and the idle timer.
        assert_eq!(
            net.r.poll_timeout(),
            Some(now + net.r.config().speaking_timeout)
        );
    }
    let a = net.r.speaker_stats(A).expect("member");
    assert_eq!(
        (a.received, a.forwarded, a.lost, a.reordered),
        (10, 10, 0, 0)
    );
    assert_eq!(a.jitter_ms, 0.0);
    for l in [B, C] {
        let s = net.r.listener_stats(l).expect("member");
        assert_eq!(
            (s.enqueued, s.delivered, s.dropped_lag, s.queued),
            (10, 10, 0, 0)
        );
    }
    for l in [A, D] {
        assert_eq!(net.r.listener_stats(l).expect("member").enqueued, 0);
    }
}

#[test]
fn duplicates_are_dropped() {
    let mut net = Net::new();
    for (ms, seq) in [
        (0, 0),
        (20, 1),
        (21, 1),
        (22, 0),
        (60, 3),
        (61, 3),
        (62, 2),
        (63, 2),
    ] {
        net.send(ms, A, seq, seq * 20);
    }
    let out = net.drain();
    assert_eq!(seqs(&out, B), [0, 1, 2, 3]);
    assert_eq!(seqs(&out, C), [0, 1, 2, 3]);
    let a = net.r.speaker_stats(A).expect("member");
    assert_eq!((a.duplicate, a.forwarded, a.lost), (4, 4, 0));
}

#[test]
fn reordered_packets_are_put_back_in_order() {
    let mut net = Net::new();
    net.send(0, A, 1, 20);
    assert_eq!(seqs(&net.drain(), B), [1]);
    net.send(40, A, 3, 60);
    assert_eq!(net.r.held(A), Some(1));
    assert!(net.drain().is_empty(), "3 waits for 2");
    net.send(45, A, 2, 40);
    assert_eq!(net.r.held(A), Some(0));
    assert_eq!(seqs(&net.drain(), B), [2, 3]);
    let a = net.r.speaker_stats(A).expect("member");
    assert_eq!((a.reordered, a.lost, a.late, a.forwarded), (1, 0, 0, 3));
}

#[test]
fn a_gap_that_never_fills_is_given_up_at_the_target_delay() {
    let mut net = Net::new();
    net.send(0, A, 0, 0);
    net.send(20, A, 1, 20);
    net.send(60, A, 3, 60);
    assert_eq!(seqs(&net.drain(), B), [0, 1]);
    // A clean stream has no jitter, so the target is one frame.
    assert_eq!(net.r.poll_timeout(), Some(net.at(60) + FRAME));
    net.run_until(79);
    assert!(net.drain().is_empty());
    net.run_until(80);
    assert_eq!(seqs(&net.drain(), B), [3]);
    assert_eq!(net.lost(A), 1);

    // The missing one shows up after its slot was given up: late.
    net.send(90, A, 2, 40);
    assert!(net.drain().is_empty());
    let a = net.r.speaker_stats(A).expect("member");
    assert_eq!((a.late, a.lost, a.forwarded), (1, 1, 3));
    // And the stream goes on without waiting.
    net.send(100, A, 4, 80);
    assert_eq!(seqs(&net.drain(), B), [4]);
}

#[test]
fn jitter_follows_rfc_3550_and_sets_the_hold() {
    let mut net = Net::new();
    net.send(0, A, 0, 0);
    // 16 ms later than its timestamp says: D = 16, J = 0 + (16 - 0) / 16.
    net.send(36, A, 1, 20);
    let j = net.r.speaker_stats(A).expect("member").jitter_ms;
    assert!((j - 1.0).abs() < 1e-9, "jitter {j}");

    // Arrivals alternately 0 and 40 ms apart for 20 ms of audio each:
    // |D| = 20, so J tends to 20 and 3·J = 60 passes a 40 ms cap: the
    // hold stops at the cap.
    let mut net = Net::with(RouterConfig::new(40, 500, 200));
    let mut ms = 0;
    for seq in 0..200u32 {
        ms += if seq % 2 == 0 { 0 } else { 40 };
        net.send(ms, A, seq, seq * 20);
    }
    let j = net.r.speaker_stats(A).expect("member").jitter_ms;
    assert!((19.0..=20.0).contains(&j), "jitter {j}");
    net.drain();
    ms += 40;
    net.send(ms, A, 201, 201 * 20);
    assert_eq!(
        net.r.poll_timeout(),
        Some(net.at(ms) + Duration::from_millis(40))
    );

    // Moderate jitter (|D| = 10): the hold is 3·J, between one frame and
    // the cap.
    let cap = Duration::from_millis(60);
    let mut net = Net::new();
    let mut ms = 0;
    for seq in 0..200u32 {
        ms += if seq % 2 == 0 { 10 } else { 30 };
        net.send(ms, A, seq, seq * 20);
    }
    let j = net.r.speaker_stats(A).expect("member").jitter_ms;
    assert!((9.0..=10.0).contains(&j), "jitter {j}");
    net.send(ms + 40, A, 201, 201 * 20);
    let hold = net.r.poll_timeout().expect("held") - net.at(ms + 40);
    assert!(hold > FRAME && hold < cap, "hold {hold:?}");
    let expected = 3.0 * net.r.speaker_stats(A).expect("member").jitter_ms;
    assert!((hold.as_secs_f64() * 1_000.0 - expected).abs() < 0.01);
}

#[test]
fn stale_packets_are_dropped_at_exactly_the_configured_age() {
    let mut net = Net::new();
    assert_eq!(net.r.config().max_packet_age_ms, 500);
    // The sender's clock has its own origin; only differences matter.
    let ts0 = 7_777_000;
    net.send(0, A, 0, ts0);
    assert_eq!(seqs(&net.drain(), B), [0]);
    // Age = transit − the fastest transit seen = 520 − 20 = 500: kept.
    net.send(520, A, 1, ts0 + 20);
    assert_eq!(seqs(&net.drain(), B), [1]);
    // 541 − 40 = 501: stale.
    net.send(541, A, 2, ts0 + 40);
    assert!(net.drain().is_empty());
    // Its slot is settled: the next packet does not wait for it.
    net.send(545, A, 3, ts0 + 60);
    assert_eq!(seqs(&net.drain(), B), [3]);
    assert_eq!(net.r.held(A), Some(0));
    let a = net.r.speaker_stats(A).expect("member");
    assert_eq!((a.stale, a.lost, a.late, a.forwarded), (1, 0, 0, 3));

    // A stale packet behind a gap settles its slot too.
    net.send(560, A, 5, ts0 + 100);
    net.send(1_000, A, 4, ts0 + 80);
    assert_eq!(net.r.held(A), Some(0));
    assert_eq!(seqs(&net.drain(), B), [5]);
    assert_eq!(net.r.speaker_stats(A).expect("member").stale, 2);
}

#[test]
fn muted_speakers_are_not_forwarded() {
    let mut net = Net::new();
    for seq in 0..5u32 {
        net.send(u64::from(seq) * 20, A, seq, seq * 20);
    }
    net.update(A, |m| m.muted = true);
    // Stopping is reported at once, not 250 ms later.
    assert_eq!(net.events(), [speaking(A, true), speaking(A, false)]);
    for seq in 5..10u32 {
        net.send(u64::from(seq) * 20, A, seq, seq * 20);
    }
    assert_eq!(seqs(&net.drain(), B), [0, 1, 2, 3, 4]);
    let a = net.r.speaker_stats(A).expect("member");
    assert_eq!((a.muted, a.forwarded, a.lost), (5, 5, 0));

    net.update(A, |m| m.muted = false);
    net.send(200, A, 10, 200);
    assert_eq!(seqs(&net.drain(), C), [10]);
    assert_eq!(net.events(), [speaking(A, true)]);
    assert_eq!(net.lost(A), 0, "a new stream starts after unmute");
}

#[test]
fn deafened_listeners_hear_nothing() {
    let mut net = Net::new();
    net.send(0, A, 0, 0);
    // Queued but not yet sent when C deafens: dropped too.
    net.update(C, |m| m.deafened = true);
    net.send(20, A, 1, 20);
    let out = net.drain();
    assert_eq!(seqs(&out, B), [0, 1]);
    assert!(seqs(&out, C).is_empty());
    assert_eq!(net.r.listener_stats(C).expect("member").discarded, 1);

    // A deafened member still talks.
    net.send(25, C, 0, 0);
    assert_eq!(seqs(&net.drain(), A), [0]);

    net.update(C, |m| m.deafened = false);
    net.send(40, A, 2, 40);
    assert_eq!(seqs(&net.drain(), C), [2]);
}

#[test]
fn join_leave_and_move_mid_stream() {
    let mut net = Net::new();
    net.send(0, A, 0, 0);
    assert_eq!(seqs(&net.drain(), D), Vec::<u32>::new());

    // D joins the lobby: it hears A from the next packet on.
    net.join(D, LOBBY);
    net.send(20, A, 1, 20);
    let out = net.drain();
    assert_eq!(seqs(&out, D), [1]);
    assert_eq!(seqs(&out, B), [1]);

    // B moves away: it stops hearing A.
    net.join(B, OTHER);
    net.send(40, A, 2, 40);
    let out = net.drain();
    assert!(seqs(&out, B).is_empty());
    assert_eq!(seqs(&out, C), [2]);

    // C leaves every channel: it hears nothing and its voice goes nowhere.
    net.set(C, Member::default());
    net.send(60, A, 3, 60);
    net.send(60, C, 0, 0);
    let out = net.drain();
    assert_eq!(seqs(&out, D), [3]);
    assert!(seqs(&out, C).is_empty());
    assert_eq!(net.r.speaker_stats(C).expect("member").no_channel, 1);

    // The speaker moves: its stream follows it to the other channel.
    net.events();
    net.join(A, OTHER);
    assert_eq!(net.events(), [speaking(A, false)]);
    net.send(80, A, 4, 80);
    let out = net.drain();
    assert_eq!(seqs(&out, B), [4]);
    assert!(seqs(&out, D).is_empty());

    // A removed session is forgotten; its datagrams are unknown.
    let (speaker, _) = net.r.remove_member(A).expect("was a member");
    assert_eq!(speaker.forwarded, 5);
    assert_eq!(net.events(), [speaking(A, true), speaking(A, false)]);
    net.send(100, A, 5, 100);
    assert!(net.drain().is_empty());
    let total = net.r.stats();
    assert_eq!(total.unknown_session, 1);
    assert_eq!(total.speakers.forwarded, 5, "removed sessions still count");
    assert!(net.r.remove_member(A).is_none());
}

#[test]
fn a_slow_listener_loses_only_its_own_oldest_packets() {
    let mut net = Net::new();
    assert_eq!(net.r.config().max_broadcast_lag_ms, 200);
    net.r.set_blocked(C, true);
    for seq in 0..50u32 {
        net.send(u64::from(seq) * 20, A, seq, seq * 20);
        let out = net.drain();
        assert_eq!(seqs(&out, B), [seq]);
        assert!(seqs(&out, C).is_empty());
    }
    let b = net.r.listener_stats(B).expect("member");
    assert_eq!((b.delivered, b.dropped_lag), (50, 0));
    let c = net.r.listener_stats(C).expect("member");
    // Queued at 780..=980 ms: 200 ms of lag, 11 packets.
    assert_eq!((c.queued, c.dropped_lag, c.delivered), (11, 39, 0));

    net.r.set_blocked(C, false);
    let out = net.drain();
    assert_eq!(seqs(&out, C), (39..50).collect::<Vec<_>>());
    assert!(seqs(&out, B).is_empty());
    assert_eq!(net.r.speaker_stats(A).expect("member").forwarded, 50);
}

#[test]
fn a_burst_in_one_instant_is_capped_by_count() {
    let config = RouterConfig {
        max_listener_queue: 4,
        ..RouterConfig::default()
    };
    let mut net = Net::with(config);
    net.r.set_blocked(C, true);
    for seq in 0..10u32 {
        net.send(0, A, seq, seq * 20);
        assert_eq!(seqs(&net.drain(), B), [seq]);
    }
    let c = net.r.listener_stats(C).expect("member");
    assert_eq!((c.queued, c.dropped_lag), (4, 6));
}

#[test]
fn listeners_are_served_in_turn() {
    let mut net = Net::new();
    net.r.set_blocked(B, true);
    net.r.set_blocked(C, true);
    net.send(0, A, 0, 0);
    net.send(20, A, 1, 20);
    net.r.set_blocked(B, false);
    net.r.set_blocked(C, false);
    let order: Vec<(SessionId, u32)> = net
        .drain()
        .iter()
        .map(|(to, f)| (*to, f.sequence))
        .collect();
    assert_eq!(order, [(B, 0), (C, 0), (B, 1), (C, 1)]);
}

#[test]
fn idle_sessions_cost_only_their_membership() {
    let mut net = Net::new();
    let (active, entry) = net.r.footprint();
    assert_eq!(active, 0, "nobody has talked or been sent anything");
    // The channel id, mute, deafen and a pointer: each UDP worker's copy of
    // the router holds one of these per session of the data plane.
    assert!(entry <= 32, "an idle session's entry is {entry} bytes");

    // Blocking alone makes nothing; talking makes the speaker's state and
    // its listeners', not that of the member of another channel.
    net.r.set_blocked(B, false);
    assert_eq!(net.r.footprint().0, 0);
    net.send(0, A, 0, 0);
    assert_eq!(seqs(&net.drain(), B), [0]);
    assert_eq!(net.r.footprint().0, 3);
    assert_eq!(net.r.listener_stats(D).expect("member").enqueued, 0);
    assert_eq!(net.r.speaker_stats(D).expect("member").received, 0);
    assert_eq!(net.r.footprint().0, 3, "reading counters makes nothing");

    // An idle session leaves with zero counters, and the totals keep the
    // others'.
    let (speaker, listener) = net.r.remove_member(D).expect("member");
    assert_eq!((speaker.received, listener.enqueued), (0, 0));
    let total = net.r.stats();
    assert_eq!((total.speakers.forwarded, total.members), (1, 3));
}

#[test]
fn a_stream_that_stops_frees_its_memory() {
    let mut net = Net::new();
    let limit = net.r.config().max_held_packets;
    net.send(0, A, 0, 0);
    // Packet 1 never comes; the rest arrive in one burst.
    for seq in 2..=40u32 {
        net.send(1, A, seq, seq * 20);
        assert!(net.r.held(A).expect("stream") <= limit);
    }
    net.run_until(10_000);
    assert_eq!(net.r.held(A), None, "stream state forgotten");
    assert!(!net.r.is_speaking(A));
    assert_eq!(net.r.poll_timeout(), None);
    let out = net.drain();
    assert_eq!(
        seqs(&out, B),
        [0].into_iter().chain(2..=40).collect::<Vec<_>>()
    );
    let a = net.r.speaker_stats(A).expect("member");
    assert_eq!((a.lost, a.forwarded), (1, 40));

    // The stream's clock offset went with it: a new start is judged afresh.
    net.send(20_000, A, 900, 5);
    assert_eq!(seqs(&net.drain(), B), [900]);
    assert_eq!(net.r.speaker_stats(A).expect("member").stale, 0);
}

#[test]
fn idle_stream_is_forgotten_after_the_idle_timeout() {
    let mut net = Net::new();
    net.send(0, A, 0, 0);
    let idle = net.r.config().stream_idle_timeout;
    net.run_until(4_999);
    assert_eq!(net.r.held(A), Some(0));
    assert_eq!(net.r.poll_timeout(), Some(net.t0 + idle));
    net.run_until(5_000);
    assert_eq!(net.r.held(A), None);
}

#[test]
fn speaking_starts_with_the_first_packet_and_stops_after_250_ms() {
    let mut net = Net::new();
    net.send(0, A, 0, 0);
    assert_eq!(net.events(), [speaking(A, true)]);
    for seq in 1..=10u32 {
        net.send(u64::from(seq) * 20, A, seq, seq * 20);
    }
    assert!(net.events().is_empty());
    assert!(net.r.is_speaking(A));
    assert_eq!(net.r.poll_timeout(), Some(net.at(200 + 250)));
    net.run_until(449);
    assert!(net.events().is_empty());
    net.run_until(450);
    assert_eq!(net.events(), [speaking(A, false)]);
    assert!(!net.r.is_speaking(A));
    net.send(500, A, 11, 220);
    assert_eq!(net.events(), [speaking(A, true)]);
}

#[test]
fn sequence_and_timestamp_wrap_around() {
    let mut net = Net::new();
    let s0 = u32::MAX - 2;
    let t0 = u32::MAX - 30;
    let at = |i: u32| (s0.wrapping_add(i), t0.wrapping_add(i * 20));
    // MAX-2, MAX-1, 0 (ahead of MAX), MAX, 1, 1 again, 2.
    for (ms, i) in [
        (0, 0),
        (20, 1),
        (60, 3),
        (61, 2),
        (80, 4),
        (81, 4),
        (100, 5),
    ] {
        let (seq, ts) = at(i);
        net.send(ms, A, seq, ts);
    }
    let expected: Vec<u32> = (0..6).map(|i| at(i).0).collect();
    assert_eq!(seqs(&net.drain(), B), expected);
    let a = net.r.speaker_stats(A).expect("member");
    assert_eq!(
        (
            a.forwarded,
            a.reordered,
            a.duplicate,
            a.lost,
            a.stale,
            a.late
        ),
        (6, 1, 1, 0, 0, 0)
    );
}

#[test]
fn a_restarted_sequence_resyncs_instead_of_counting_losses() {
    let mut net = Net::new();
    // Far backwards, then far forwards: both read as a new stream.
    for (ms, seq) in [(0, 50_000), (20, 50_001), (40, 3), (60, 4), (80, 900_000)] {
        net.send(ms, A, seq, ms as u32);
        assert_eq!(seqs(&net.drain(), B), [seq]);
    }
    let a = net.r.speaker_stats(A).expect("member");
    assert_eq!((a.lost, a.late, a.forwarded), (0, 0, 5));
    // Within the resync distance, behind the stream is late, not a restart.
    net.send(100, A, 899_990, 100);
    assert!(net.drain().is_empty());
    assert_eq!(net.r.speaker_stats(A).expect("member").late, 1);
}

#[test]
fn zero_cap_never_holds() {
    let mut net = Net::with(RouterConfig::new(0, 500, 200));
    net.send(0, A, 0, 0);
    net.send(40, A, 2, 40);
    assert_eq!(seqs(&net.drain(), B), [0, 2]);
    assert_eq!(net.lost(A), 1);
}

#[test]
fn session_zero_is_refused() {
    let mut r = Router::new(RouterConfig::default());
    assert_eq!(
        r.set_member(SessionId(0), Member::default()),
        Err(MembershipError::ZeroSession)
    );
}

#[test]
fn malformed_datagrams_are_counted_by_reason() {
    let mut net = Net::new();
    let now = net.at(0);
    for d in [
        &b""[..],
        &[1, 0, 0][..],
        &[9, 0, 0, 0, 0, 0, 0, 0, 0, 1][..],
        &[2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1][..],
        &[1, 0, 0, 0, 0, 0, 0, 0, 0][..],
    ] {
        net.r.handle_datagram(now, A, Bytes::copy_from_slice(d));
    }
    let mut long = vec![1u8; 9 + 1001];
    long[1..9].fill(0);
    net.r.handle_datagram(now, A, Bytes::from(long));
    let m = net.r.stats().malformed;
    assert_eq!(
        (
            m.too_short,
            m.unknown_kind,
            m.empty_payload,
            m.payload_too_long
        ),
        (2, 2, 1, 1)
    );
    assert_eq!(net.r.speaker_stats(A).expect("member").malformed, 6);
    assert!(net.drain().is_empty());
}

#[test]
fn random_datagrams_never_panic() {
    let mut net = Net::new();
    let mut rng = StdRng::seed_from_u64(0x5EED_0003);
    let sessions = [A, B, C, D, SessionId(99)];
    let mut sent = 0u64;
    for i in 0..20_000u64 {
        let len = rng.random_range(0..1_100);
        let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        // Mostly voice-kind, so the sequence and timing logic sees
        // arbitrary numbers too, not only the kind check.
        if let Some(first) = d.first_mut()
            && rng.random_bool(0.8)
        {
            *first = 1;
        }
        let from = sessions[rng.random_range(0..sessions.len())];
        let now = net.at(i / 4);
        net.r.handle_datagram(now, from, Bytes::from(d));
        sent += 1;
        if rng.random_bool(0.1) {
            net.r.set_blocked(B, rng.random_bool(0.5));
        }
        if i % 64 == 0 {
            net.run_until(i / 4);
            net.drain();
            net.events();
        }
        for s in [A, B, C, D] {
            assert!(net.r.held(s).unwrap_or(0) <= net.r.config().max_held_packets);
        }
    }
    net.run_until(60_000);
    net.r.set_blocked(B, false);
    net.drain();
    assert_eq!(net.r.poll_timeout(), None);
    let total = net.r.stats();
    assert_eq!(
        total.unknown_session + total.malformed.total() + total.speakers.received,
        sent
    );
    assert!(total.malformed.total() > 0 && total.speakers.received > 0);
    assert_eq!(total.listeners.queued, 0);
}
