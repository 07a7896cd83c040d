//! The routing core alone, without sockets: what one speaker packet costs
//! the router to take in and fan out to every other member of its channel.
//! The whole data plane is measured by the load generator instead
//! (`BENCHMARKS.md`); this tells how much of a forward is the router's.
//!
//! Run with `cargo bench -p openspeak-router`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use divan::{Bencher, black_box};
use openspeak_router::{ChannelKey, Member, Router, RouterConfig, SessionId};
use openspeak_voice::VoicePacket;

fn main() {
    divan::main();
}

/// A router with `members` sessions in one channel, session 1 speaking.
fn channel_of(members: u32) -> Router {
    let mut router = Router::new(RouterConfig::default());
    let channel = ChannelKey::from("c");
    for session in 1..=members {
        let member = Member {
            channel: Some(channel.clone()),
            ..Member::default()
        };
        router.set_member(SessionId(session), member).unwrap();
    }
    router
}

/// One in-order packet of session 1 every 20 ms of fake time, then every
/// forwarded datagram drained, as the driver does.
#[divan::bench(args = [5, 50, 200], sample_count = 1000)]
fn forward_one_packet(bencher: Bencher, members: u32) {
    let mut router = channel_of(members);
    let t0 = Instant::now();
    let payload = Bytes::from_static(&[0xfc; 80]);
    let mut sequence = 0u32;
    bencher
        .counter(divan::counter::ItemsCount::new(members - 1))
        .bench_local(|| {
            sequence += 1;
            let now = t0 + Duration::from_millis(20 * u64::from(sequence));
            let datagram = VoicePacket {
                sequence,
                timestamp: 20 * sequence,
                payload: payload.clone(),
            }
            .encode()
            .unwrap();
            router.handle_datagram(now, SessionId(1), datagram);
            while router.poll_timeout().is_some_and(|t| t <= now) {
                router.handle_timeout(now);
            }
            let mut forwarded = 0u32;
            while let Some(transmit) = router.poll_transmit() {
                black_box(transmit);
                forwarded += 1;
            }
            while router.poll_event().is_some() {}
            forwarded
        });
}
