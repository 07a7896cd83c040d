//! Floods at the plain-UDP port while a conversation goes on: 100,000
//! random datagrams, then 100,000 mutants of the talker's own packets
//! (replayed, cut short, bit-flipped) sent from the talker's own address.
//! Through both the endpoint stays up, its memory stays flat, the
//! conversation loses under 0.1%, no mutant is taken as voice, and the
//! flood is counted as dropped. The endpoint has two UDP workers, as the
//! data plane has by default on a 2-core machine, and the random flood
//! comes from eight addresses, so that every worker takes its share. A
//! test binary of its own, so that the process's memory is this test's.

mod support;

use std::ops::Range;
use std::time::Duration;

use openspeak_dataplane::EndpointStats;
use rand::Rng;
use support::flood::{self, Conversation, Relay};
use support::{RawUdp, Server, rss, start_with_udp_workers};

const FLOOD: usize = 100_000;
/// Datagrams per burst, one burst per millisecond at most: about 20,000 a
/// second, far beyond any client.
const BURST: usize = 20;

/// A random datagram, and a third of them posing as sealed packets of the
/// sessions in `sessions` with fresh counters, so that they reach the
/// replay check and the decryption rather than stopping at the type byte.
fn garbage(rng: &mut rand::rngs::StdRng, sessions: &Range<u32>) -> Vec<u8> {
    let mut packet = flood::random(rng);
    if packet.len() >= 30 && rng.random_ratio(1, 3) {
        packet[0] = 0x02;
        packet[1..5].copy_from_slice(&rng.random_range(sessions.clone()).to_be_bytes());
        packet[5..13].copy_from_slice(&rng.random_range(1_000_000u64..u64::MAX).to_be_bytes());
    }
    packet
}

/// Sessions `talker` and `talker + 1` join a channel of their own, the
/// talker through a relay, and talk through the flood that `flood` starts
/// (given the relay, once the talker has sent some voice for it to copy).
async fn converse(
    server: &Server,
    talker_id: u32,
    flood: impl FnOnce(&Relay) -> tokio::task::JoinHandle<()>,
) -> Conversation {
    let relay = flood::pair_with_relay(server, talker_id, server.udp_addr).await;
    let mut talker = RawUdp::new(talker_id).await;
    talker.join(relay.addr, &server.ticket(talker_id, 60)).await;
    let mut listener = RawUdp::new(talker_id + 1).await;
    listener
        .join(server.udp_addr, &server.ticket(talker_id + 1, 60))
        .await;

    // Some voice first, heard in full, for the relay to copy.
    relay.forget();
    for sequence in 0..50 {
        let packet = talker.voice(sequence);
        talker.socket.send_to(&packet, relay.addr).await.unwrap();
        assert_eq!(listener.forwarded().await.sequence, sequence);
    }

    let flood = flood(&relay);
    let server_addr = server.udp_addr;
    let heard = tokio::spawn(async move {
        // A listener that only listens still pings about once a second, as
        // a client must (docs/PROTOCOL.md): the data plane ends a UDP
        // session that sends nothing for 15 s, and setting up and running
        // a flood can take longer than that. Done after 2 s of silence.
        let (mut heard, mut silent, mut pings) = (0u32, 0u32, 1u64);
        let mut pinged = tokio::time::Instant::now();
        while silent < 2 {
            match tokio::time::timeout(Duration::from_secs(1), listener.forwarded()).await {
                Ok(_) => (heard, silent) = (heard + 1, 0),
                Err(_) => silent += 1,
            }
            if pinged.elapsed() >= Duration::from_secs(1) {
                pinged = tokio::time::Instant::now();
                pings += 1;
                let ping = listener.ping(pings);
                listener.socket.send_to(&ping, server_addr).await.unwrap();
            }
        }
        heard
    });
    flood::converse_through(
        flood,
        async |n| {
            let packet = talker.voice(50 + n);
            talker.socket.send_to(&packet, relay.addr).await.unwrap();
        },
        heard,
    )
    .await
}

/// Between two snapshots around `flood`: at least 90% of it was dropped
/// or refused on the UDP port (the kernel may lose a little), and no more
/// voice datagrams were taken than the conversation's 50 + `sent`.
fn assert_turned_away(
    before: &EndpointStats,
    after: &EndpointStats,
    conversation: &Conversation,
    flood: &str,
) {
    let sum =
        |s: &EndpointStats| s.udp_dropped.iter().sum::<u64>() + s.rejected.iter().sum::<u64>();
    let dropped = sum(after) - sum(before);
    assert!(
        dropped >= FLOOD as u64 * 9 / 10,
        "the {flood} reached the data plane and was dropped: {dropped} of {FLOOD}"
    );
    let voice = after.datagrams_in - before.datagrams_in;
    let sent = u64::from(conversation.sent) + 50;
    assert!(
        voice <= sent,
        "nothing of the {flood} was taken as voice: {voice} datagrams for {sent} sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_random_and_of_mutated_datagrams_leave_the_conversation_whole() {
    let server = start_with_udp_workers(2);
    let target = server.udp_addr;
    let before = rss();

    let sources = flood::sources(8).await;
    let stats = server.handle.stats();
    let random = converse(&server, 1, |_| {
        let mut rng = flood::rng(0x0F100D);
        flood::spawn(target, sources, FLOOD, BURST, move |_| {
            garbage(&mut rng, &(1..3))
        })
    })
    .await;
    random.assert_whole("random flood");
    let after_random = server.handle.stats();
    assert_turned_away(&stats, &after_random, &random, "random flood");

    let mutants = converse(&server, 3, |relay| {
        flood::mutants(relay, target, FLOOD, BURST)
    })
    .await;
    mutants.assert_whole("flood of mutants");
    let after_mutants = server.handle.stats();
    assert_turned_away(&after_random, &after_mutants, &mutants, "flood of mutants");
    mutants.assert_no_replay_heard();

    let grown = flood::assert_unharmed(&server, before);
    eprintln!(
        "UDP floods: random {random:?}, mutants {mutants:?}; {} UDP packets read, dropped by \
         reason (malformed, unknown_session, bad_seal, replay) {:?}, tickets refused {:?}; RSS \
         grew {} KiB",
        after_mutants.udp_received,
        after_mutants.udp_dropped,
        after_mutants.rejected,
        grown / 1024
    );
}
