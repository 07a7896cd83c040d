//! A flood of 100,000 random datagrams at the plain-UDP port while a
//! conversation goes on: the endpoint stays up, its memory stays flat, the
//! conversation loses under 0.1%, and the garbage is counted as dropped.
//! A test binary of its own, so that the process's memory is this test's.

mod support;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{RawUdp, rss, start, within};
use tokio::net::UdpSocket;

const FLOOD: usize = 100_000;
/// Datagrams per burst, one burst per millisecond at most: about 20,000 a
/// second, far beyond any client, yet paced so that the kernel's receive
/// buffer, not the data plane, is never what gives.
const BURST: usize = 20;

/// One flood datagram: random bytes, and a third of them posing as sealed
/// packets of the two real sessions with fresh counters, so they reach the
/// replay check and the decryption rather than stopping at the type byte.
fn garbage(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(0..1200);
    let mut packet: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    if len >= 30 && rng.random_ratio(1, 3) {
        packet[0] = 0x02;
        packet[1..5].copy_from_slice(&rng.random_range(1u32..=2).to_be_bytes());
        packet[5..13].copy_from_slice(&rng.random_range(1_000_000u64..u64::MAX).to_be_bytes());
    }
    packet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_datagrams_leaves_the_conversation_whole() {
    let server = start();
    server.member(1, "c1", false).await;
    server.member(2, "c1", false).await;
    let mut talker = RawUdp::new(1).await;
    talker.join(server.udp_addr, &server.ticket(1, 60)).await;
    let mut listener = RawUdp::new(2).await;
    listener.join(server.udp_addr, &server.ticket(2, 60)).await;
    let before = rss();

    // The flood, on a task of its own.
    let target = server.udp_addr;
    let flood = tokio::spawn(async move {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut rng = StdRng::seed_from_u64(0x0F100D);
        for _ in 0..FLOOD / BURST {
            for _ in 0..BURST {
                let packet = garbage(&mut rng);
                socket.send_to(&packet, target).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });

    // The conversation: a packet every 20 ms until the flood is over.
    let heard = tokio::spawn(async move {
        let mut heard = 0u32;
        while tokio::time::timeout(Duration::from_secs(2), listener.forwarded())
            .await
            .is_ok()
        {
            heard += 1;
        }
        heard
    });
    let mut sent = 0u32;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    while !flood.is_finished() {
        ticker.tick().await;
        let packet = talker.voice(sent);
        talker
            .socket
            .send_to(&packet, server.udp_addr)
            .await
            .unwrap();
        sent += 1;
        assert!(sent < 50 * 120, "the flood takes more than two minutes");
    }
    flood.await.unwrap();
    let heard = within("the listener's count", heard).await.unwrap();

    let lost = sent - heard;
    assert!(
        sent >= 100,
        "the conversation ran through the flood: {sent}"
    );
    assert!(
        f64::from(lost) / f64::from(sent) < 0.001,
        "lost {lost} of {sent}"
    );
    let grown = rss().saturating_sub(before);
    assert!(grown < 16 << 20, "memory grew by {grown} bytes");
    let stats = server.handle.stats();
    let dropped: u64 = stats.udp_dropped.iter().sum();
    assert!(
        dropped >= FLOOD as u64 * 9 / 10,
        "the flood reached the data plane and was dropped: {:?} of {} read",
        stats.udp_dropped,
        stats.udp_received
    );
    assert!(!server.handle.is_closed(), "the endpoint is still running");
    eprintln!(
        "flood: {sent} voice packets sent, {heard} heard; {} UDP packets read, dropped by reason \
         (malformed, unknown_session, bad_seal, replay) {:?}; RSS grew {} KiB",
        stats.udp_received,
        stats.udp_dropped,
        grown / 1024
    );
}
