//! The per-session send limits, driven in fake time: what a real stream
//! sends always passes, a flood is forwarded at the limit and the rest is
//! counted, one session's flood costs the others nothing.

use super::*;

/// A voice datagram with a payload of `len` bytes.
fn sized(seq: u32, ts: u32, len: usize) -> Bytes {
    VoicePacket {
        sequence: seq,
        timestamp: ts,
        payload: Bytes::from(vec![0xfc; len]),
    }
    .encode()
    .expect("valid packet")
}

impl Net {
    /// `from` sends packet `seq`, timestamped with its arrival, with a
    /// payload of `len` bytes, arriving at `ms`.
    fn send_sized(&mut self, ms: u64, from: SessionId, seq: u32, len: usize) {
        let now = self.at(ms);
        self.r
            .handle_datagram(now, from, sized(seq, ms as u32, len));
    }

    fn speaker(&self, s: SessionId) -> crate::SpeakerStats {
        self.r.speaker_stats(s).expect("member")
    }
}

/// A stream of `frames` packets of `len` bytes, one every `frame_ms`,
/// arriving in order but bunched by jitter: each is delayed by 0 to 80 ms,
/// and every 250th by a 400 ms stall, which the ones sent during it queue
/// behind and arrive with at the same instant. Returns how many were sent.
fn bunched_stream(net: &mut Net, frames: u32, frame_ms: u64, len: usize) -> u64 {
    let mut rng = StdRng::seed_from_u64(0x5EED_0050);
    let mut arrival = 0u64;
    let mut bunched = 0u32;
    for seq in 0..frames {
        let sent = u64::from(seq) * frame_ms;
        let delay = if seq % 250 == 249 {
            400
        } else {
            rng.random_range(0..=80)
        };
        let next = (sent + delay).max(arrival);
        if next == arrival {
            bunched += 1;
        }
        arrival = next;
        let now = net.at(arrival);
        net.r.handle_datagram(now, A, sized(seq, sent as u32, len));
        net.run_until(arrival);
        net.drain();
    }
    assert!(
        bunched > frames / 20,
        "the jitter bunched packets: {bunched}"
    );
    u64::from(frames)
}

#[test]
fn a_real_stream_bunched_by_jitter_is_never_limited() {
    // 20 ms frames at 64 kbit/s, and 10 ms frames at Opus's highest
    // bitrate (510 kbit/s: 637 bytes each, 63,700 bytes a second, just
    // under the default byte limit), each for a minute, with the defaults.
    for (frame_ms, len) in [(20, 160), (10, 637)] {
        let mut net = Net::new();
        let frames = (60_000 / frame_ms) as u32;
        let sent = bunched_stream(&mut net, frames, frame_ms, len);
        let a = net.speaker(A);
        assert_eq!((a.rate_limited, a.oversized), (0, 0), "{frame_ms} ms");
        assert_eq!((a.received, a.forwarded), (sent, sent), "{frame_ms} ms");
        assert_eq!((a.lost, a.late, a.stale), (0, 0, 0), "{frame_ms} ms");
    }
}

#[test]
fn a_flood_is_forwarded_at_the_limit_and_the_rest_counted() {
    let mut net = Net::new();
    assert_eq!(net.r.config().max_packets_per_second, 200);
    // 1,000 packets a second, in order, for 3 s.
    let mut heard = 0usize;
    let mut per_second = Vec::new();
    let mut forwarded_before = 0;
    for ms in 0..3_000u64 {
        net.send(ms, A, ms as u32, ms as u32);
        // A dropped packet leaves no gap for the next to wait for.
        assert_eq!(net.r.held(A), Some(0), "at {ms} ms");
        heard += seqs(&net.drain(), B).len();
        if ms % 1_000 == 999 {
            let forwarded = net.speaker(A).forwarded;
            per_second.push(forwarded - forwarded_before);
            forwarded_before = forwarded;
        }
    }
    // The first second, the burst (200) and the refill of its 999 ms
    // (199.8, whole packets only); then the rate.
    assert_eq!(per_second, [399, 200, 200]);
    let a = net.speaker(A);
    assert!(a.forwarded <= 200 + 3 * 200);
    assert_eq!(a.rate_limited, 3_000 - a.forwarded);
    assert_eq!((a.received, a.lost, a.late), (3_000, 0, 0));
    assert_eq!(heard as u64, a.forwarded);
    let total = net.r.stats();
    assert_eq!(total.speakers.rate_limited, a.rate_limited);
    assert_eq!(total.dropped(), a.rate_limited, "the only drops");
}

#[test]
fn large_payloads_are_limited_by_bytes() {
    let mut net = Net::new();
    assert_eq!(net.r.config().max_bytes_per_second, 64_000);
    // 100 packets of 1,000 bytes a second: under the packet limit, but
    // 100,000 bytes a second.
    for seq in 0..300u32 {
        let ms = u64::from(seq) * 10;
        net.send_sized(ms, A, seq, 1_000);
        net.drain();
    }
    let a = net.speaker(A);
    // The burst (64 packets' worth) and 2.99 s of 64 bytes a millisecond:
    // 255.36 packets' worth.
    assert_eq!(a.forwarded, 255);
    assert!(a.forwarded <= (64_000 + 3 * 64_000) / 1_000);
    assert_eq!((a.rate_limited, a.lost), (300 - 255, 0));

    // 360 bytes were left, and 20 ms refills 1,280: two packets of 600
    // pass, a third does not.
    for seq in 300..303 {
        net.send_sized(3_010, A, seq, 600);
    }
    let a = net.speaker(A);
    assert_eq!((a.forwarded, a.rate_limited), (257, 46));
}

#[test]
fn an_oversized_payload_is_dropped_and_counted() {
    let config = RouterConfig {
        max_payload_bytes: 200,
        // Two packets a second, with a burst of two: the oversized packet
        // must not use one up.
        max_packets_per_second: 2,
        ..RouterConfig::default()
    };
    let mut net = Net::with(config);
    net.send_sized(0, A, 0, 200);
    net.send_sized(0, A, 1, 201);
    net.send_sized(0, A, 2, 200);
    // Packet 2 went out at once: the slot of 1 was settled, not waited
    // for, nor given up as lost.
    assert_eq!(net.r.held(A), Some(0));
    assert_eq!(seqs(&net.drain(), B), [0, 2]);
    let a = net.speaker(A);
    assert_eq!((a.oversized, a.rate_limited, a.forwarded), (1, 0, 2));
    assert_eq!(a.lost, 0);
    assert_eq!(net.r.stats().dropped(), 1);

    // With the defaults, the protocol's largest payload passes; one byte
    // more does not parse at all.
    let mut net = Net::new();
    net.send_sized(0, A, 0, 1_000);
    assert_eq!(seqs(&net.drain(), B), [0]);
    let mut long = sized(1, 20, 1_000).to_vec();
    long.push(0);
    net.r.handle_datagram(net.at(20), A, Bytes::from(long));
    assert_eq!(net.speaker(A).oversized, 0);
    assert_eq!(net.r.stats().malformed.payload_too_long, 1);
}

#[test]
fn one_flooding_speaker_does_not_limit_another() {
    let mut net = Net::new();
    // A floods at 1,000 packets a second while C talks at 50, in the
    // same channel, for 5 s.
    let mut from_c = 0;
    let mut c_sent = 0;
    for ms in 0..5_000u64 {
        net.send(ms, A, ms as u32, ms as u32);
        if ms % 20 == 0 {
            let seq = (ms / 20) as u32;
            net.send(ms, C, seq, seq * 20);
            c_sent += 1;
        }
        let out = net.drain();
        from_c += out
            .iter()
            .filter(|(to, f)| *to == B && f.speaker == C.0)
            .count();
    }
    let (a, c) = (net.speaker(A), net.speaker(C));
    assert!(a.rate_limited > 3_000, "{a:?}");
    assert_eq!((c.rate_limited, c.forwarded), (0, c_sent));
    assert_eq!(from_c as u64, c_sent, "B heard every packet of C");
}

#[test]
fn the_buckets_refill_after_a_pause() {
    let mut net = Net::new();
    let burst = |net: &mut Net, ms: u64, first: u32, n: u32| {
        for seq in first..first + n {
            net.send(ms, A, seq, ms as u32);
        }
        net.drain();
        net.speaker(A)
    };
    // 300 at once: the burst of 200 passes, the bucket is empty.
    let a = burst(&mut net, 0, 0, 300);
    assert_eq!((a.forwarded, a.rate_limited), (200, 100));
    // Half a second of silence refills half of it.
    let a = burst(&mut net, 500, 300, 300);
    assert_eq!((a.forwarded, a.rate_limited), (300, 300));
    // A second or more refills all of it, and no more.
    let a = burst(&mut net, 3_000, 600, 300);
    assert_eq!((a.forwarded, a.rate_limited), (500, 400));
}

#[test]
fn a_sequence_jump_or_a_move_does_not_refill_the_buckets() {
    let mut net = Net::new();
    for seq in 0..200u32 {
        net.send(0, A, seq, 0);
    }
    net.send(0, A, 200, 0);
    assert_eq!(net.speaker(A).rate_limited, 1);
    // Far ahead: a new stream for the jitter buffer, not a new bucket.
    net.send(1, A, 900_000, 1);
    // A move ends the stream too; the bucket stays with the session.
    net.join(A, OTHER);
    net.send(2, A, 900_001, 2);
    net.drain();
    let a = net.speaker(A);
    assert_eq!((a.forwarded, a.rate_limited), (200, 3));
}

/// Two copies of the router (a data plane's UDP workers) that take one
/// session's packets in turn, the first second through one and the next
/// through the other, as when its client's address moves to another
/// worker: with the allowance kept outside and shared, the flood is
/// forwarded at the limit once, not once per router, and a dropped
/// packet still leaves no gap.
#[test]
fn routers_sharing_a_sessions_limit_forward_its_flood_at_the_limit_once() {
    let mut nets = [Net::new(), Net::new()];
    nets[1].t0 = nets[0].t0;
    let config = nets[0].r.config().clone();
    let shared = std::cell::RefCell::new(crate::SendLimit::default());
    let mut heard = 0usize;
    for ms in 0..2_000u64 {
        let net = &mut nets[usize::from(ms >= 1_000)];
        let now = net.at(ms);
        net.r
            .handle_datagram_limited(now, A, voice(ms as u32, ms as u32), |len| {
                shared.borrow_mut().admit(now, len, &config)
            });
        assert_eq!(net.r.held(A), Some(0), "at {ms} ms");
        heard += seqs(&net.drain(), B).len();
    }
    let [first, second] = nets.map(|n| n.speaker(A));
    // The burst (200) and 999 ms of refill, then one second at the rate:
    // each router on its own would have passed a burst of its own.
    assert_eq!((first.forwarded, second.forwarded), (399, 200));
    assert_eq!(
        first.rate_limited + second.rate_limited,
        2_000 - first.forwarded - second.forwarded
    );
    assert_eq!(heard as u64, first.forwarded + second.forwarded);
}
