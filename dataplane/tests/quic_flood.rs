//! A flood of 50,000 QUIC Initials that never finish their handshake, at
//! the QUIC port while a conversation goes on over it: the endpoint keeps
//! at most a bounded number of them (past `RETRY_ABOVE` it answers with a
//! stateless Retry), its memory stays flat, and the conversation loses
//! under 0.1%. A test binary of its own, so that the process's memory is
//! this test's.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openspeak_dataplane::RETRY_ABOVE;
use openspeak_voice::datagram::Forwarded;
use support::{QuicServer, rss, start, voice, within};
use tokio::net::UdpSocket;

const FLOOD: usize = 50_000;
/// Distinct Initials, sent over and over from many source ports: making
/// each one costs a client connection's state, which would count in this
/// process's memory.
const DISTINCT: usize = 200;
/// Initials per burst, one burst per millisecond at most: about 10,000 a
/// second, paced so that the kernel's receive buffer is not what gives.
const BURST: usize = 10;
const SOURCES: usize = 50;

/// `count` first packets of client handshakes to `server`, each a real
/// Initial with a ClientHello, as a flooding client would send.
fn initials(server: SocketAddr, pin: [u8; 32], count: usize) -> Vec<Vec<u8>> {
    let mut client = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let config = openspeak_voice::client_config(pin).unwrap();
    let now = Instant::now();
    (0..count)
        .map(|_| {
            let (_, mut conn) = client
                .connect(now, config.clone(), server, "localhost")
                .unwrap();
            let mut buf = Vec::new();
            let transmit = conn.poll_transmit(now, 1, &mut buf).unwrap();
            buf.truncate(transmit.size);
            buf
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_quic_initials_leaves_the_conversation_whole() {
    let server = start();
    server.member(1, "c1", false).await;
    server.member(2, "c1", false).await;
    let (_a_ep, talker) = server.join(&server.ticket(1, 60), 1).await;
    let (_b_ep, listener) = server.join(&server.ticket(2, 60), 2).await;
    let initials = initials(server.addr, server.pin, DISTINCT);
    assert!(initials.iter().all(|p| p.len() >= 1200), "padded Initials");
    let before = rss();

    let target = server.addr;
    let flood = tokio::spawn(async move {
        let mut sockets = Vec::new();
        for _ in 0..SOURCES {
            sockets.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        for burst in 0..FLOOD / BURST {
            for i in 0..BURST {
                let n = burst * BURST + i;
                let packet = &initials[n % DISTINCT];
                sockets[n % SOURCES].send_to(packet, target).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });

    // The conversation: a packet every 20 ms until the flood is over.
    let heard = tokio::spawn(async move {
        let mut heard = 0u32;
        while let Ok(Ok(datagram)) =
            tokio::time::timeout(Duration::from_secs(2), listener.read_datagram()).await
        {
            if Forwarded::parse(datagram).is_ok_and(|f| f.speaker == 1) {
                heard += 1;
            }
        }
        heard
    });
    let mut sent = 0u32;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    while !flood.is_finished() {
        ticker.tick().await;
        talker.send_datagram(voice(sent)).unwrap();
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
    // Of the Initials that reached it (the kernel may drop some), the
    // endpoint kept state for at most RETRY_ABOVE at a time; the rest got a
    // Retry. The ones it kept never finish and are let go in time.
    assert!(
        stats.handshakes_retried >= (FLOOD / 2) as u64,
        "most of the flood was answered statelessly: {stats:?}"
    );
    assert_eq!(stats.handshakes_refused, 0, "{stats:?}");
    assert!(!server.handle.is_closed(), "the endpoint is still running");
    eprintln!(
        "QUIC flood: {sent} voice packets sent, {heard} heard; {} Initials answered with a \
         Retry (state kept for at most {RETRY_ABOVE} at a time); RSS grew {} KiB",
        stats.handshakes_retried,
        grown / 1024
    );
}
