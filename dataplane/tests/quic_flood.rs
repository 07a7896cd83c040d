//! Floods at the QUIC port while a conversation goes on over it: 50,000
//! Initials that never finish their handshake, 100,000 random datagrams,
//! then 100,000 mutants of the talker's own packets (replayed, cut short,
//! bit-flipped) sent from the talker's own address. Through each the
//! endpoint keeps at most a bounded number of handshakes (past
//! `RETRY_ABOVE` it answers with a stateless Retry), its memory stays
//! flat, and the conversation loses under 0.1%. A test binary of its own,
//! so that the process's memory is this test's.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openspeak_dataplane::RETRY_ABOVE;
use openspeak_voice::datagram::Forwarded;
use support::flood::{self, Conversation, Relay};
use support::{Server, join, rss, start, talk, voice};

const INITIALS: usize = 50_000;
const FLOOD: usize = 100_000;
/// Distinct Initials, sent over and over from many source ports: making
/// each one costs a client connection's state, which would count in this
/// process's memory.
const DISTINCT: usize = 200;
/// Initials per burst, one burst per millisecond at most: about 10,000 a
/// second, each answered with a Retry of its own.
const INITIALS_BURST: usize = 10;
/// Other datagrams per burst: about 20,000 a second, far beyond any client.
const BURST: usize = 20;
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

/// Sessions `talker` and `talker + 1` join a channel of their own, the
/// talker through a relay, and talk through the flood that `flood` starts
/// (given the relay, once the talker has sent some voice for it to copy).
async fn converse(
    server: &Server,
    talker_id: u32,
    flood: impl FnOnce(&Relay) -> tokio::task::JoinHandle<()>,
) -> Conversation {
    let relay = flood::pair_with_relay(server, talker_id, server.addr).await;
    let join_as =
        |addr, id| async move { join(addr, server.pin, &server.ticket(id, 60), id).await };
    let (_a_ep, talker) = join_as(relay.addr, talker_id).await;
    let (_b_ep, listener) = join_as(server.addr, talker_id + 1).await;

    // Some voice first, heard in full, for the relay to copy: packets of
    // an established connection, not of its handshake. One at a time, so
    // that each goes in a packet of its own.
    relay.forget();
    for sequence in 0..50 {
        talk(&talker, talker_id, sequence..sequence + 1, &[&listener]).await;
    }

    let flood = flood(&relay);
    let heard = tokio::spawn(async move {
        let mut heard = 0u32;
        while let Ok(Ok(datagram)) =
            tokio::time::timeout(Duration::from_secs(2), listener.read_datagram()).await
        {
            if Forwarded::parse(datagram).is_ok_and(|f| f.speaker == talker_id) {
                heard += 1;
            }
        }
        heard
    });
    flood::converse_through(
        flood,
        async |n| talker.send_datagram(voice(50 + n)).unwrap(),
        heard,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_initials_random_and_mutated_datagrams_leave_the_conversation_whole() {
    let server = start();
    let target = server.addr;
    let initials = initials(server.addr, server.pin, DISTINCT);
    assert!(initials.iter().all(|p| p.len() >= 1200), "padded Initials");
    let before = rss();

    let sources = flood::sources(SOURCES).await;
    let handshakes = converse(&server, 1, |_| {
        flood::spawn(
            target,
            sources.clone(),
            INITIALS,
            INITIALS_BURST,
            move |n| initials[n % DISTINCT].clone(),
        )
    })
    .await;
    handshakes.assert_whole("flood of Initials");
    let stats = server.handle.stats();
    // Of the Initials that reached it (the kernel may drop some), the
    // endpoint kept state for at most RETRY_ABOVE at a time; the rest got a
    // Retry. The ones it kept never finish and are let go in time.
    assert!(
        stats.handshakes_retried >= (INITIALS / 2) as u64,
        "most of the flood was answered statelessly: {stats:?}"
    );
    assert_eq!(stats.handshakes_refused, 0, "{stats:?}");

    let random = converse(&server, 3, |_| {
        let mut rng = flood::rng(0x0F100D);
        flood::spawn(target, sources, FLOOD, BURST, move |_| {
            flood::random(&mut rng)
        })
    })
    .await;
    random.assert_whole("random flood");

    let mutants = converse(&server, 5, |relay| {
        flood::mutants(relay, target, FLOOD, BURST)
    })
    .await;
    mutants.assert_whole("flood of mutants");
    mutants.assert_no_replay_heard();

    let grown = flood::assert_unharmed(&server, before);
    let stats = server.handle.stats();
    eprintln!(
        "QUIC floods: Initials {handshakes:?} ({} answered with a Retry, state kept for at most \
         {RETRY_ABOVE} at a time), random {random:?}, mutants {mutants:?}; RSS grew {} KiB",
        stats.handshakes_retried,
        grown / 1024
    );
}
