//! The plain-UDP transport over real sockets on 127.0.0.1, with clients
//! done by hand on the voice crate's framing: QUIC and UDP members of one
//! channel hear each other, replays and forgeries are dropped and counted,
//! the session follows its client to a new address, and a repeated ticket
//! is answered again, and a ticket of an ended session is refused; the
//! same with several UDP workers sharing the port, where the kernel
//! spreads the clients over the workers' sockets.

mod support;

use openspeak_dataplane::SessionId;
use openspeak_voice::udp::{self, Control, Direction, SessionKey};
use support::{
    QuicServer, RawUdp, Server, eventually, start, start_with_send_workers, start_with_udp_workers,
    voice, within,
};

#[tokio::test]
async fn quic_and_udp_members_of_one_channel_hear_each_other() {
    both_transports_in_one_channel(start()).await;
}

/// The same with two threads sending the plain-UDP fan-out
/// (`dataplane.udp_send_workers`): nothing lost, nothing out of order.
#[tokio::test]
async fn with_send_workers_quic_and_udp_members_still_hear_each_other() {
    both_transports_in_one_channel(start_with_send_workers(2)).await;
}

/// A channel big enough that one speaker packet fills whole send batches
/// (64 packets), which go to the workers: each of 200 listeners gets every
/// packet, in order, from the voice port.
#[tokio::test]
async fn send_workers_carry_a_full_fan_out_in_order() {
    const LISTENERS: u32 = 200;
    const PACKETS: u32 = 10;
    let server = start_with_send_workers(2);
    for session in 1..=LISTENERS + 1 {
        server.member(session, "big", false).await;
    }
    let mut speaker = RawUdp::new(LISTENERS + 1).await;
    speaker
        .join(server.udp_addr, &server.ticket(LISTENERS + 1, 60))
        .await;
    let mut listeners = joined(&server, 1..=LISTENERS).await;
    for sequence in 0..PACKETS {
        let packet = speaker.voice(sequence);
        speaker
            .socket
            .send_to(&packet, server.udp_addr)
            .await
            .unwrap();
    }
    for listener in &mut listeners {
        for sequence in 0..PACKETS {
            let got = within("the fan-out at every listener", listener.forwarded()).await;
            assert_eq!(
                (got.speaker, got.sequence),
                (LISTENERS + 1, sequence),
                "listener {}",
                listener.session
            );
        }
    }
    let forwarded = u64::from(LISTENERS * PACKETS);
    let stats = within("every forwarded packet counted", async {
        loop {
            let stats = server.handle.stats();
            if stats.datagrams_out >= forwarded {
                return stats;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(stats.datagrams_out, forwarded);
    assert_eq!(stats.dropped_send_error, 0);
}

/// A plain-UDP client for each of `sessions`, joined with a fresh ticket.
async fn joined(server: &Server, sessions: std::ops::RangeInclusive<u32>) -> Vec<RawUdp> {
    let mut clients = Vec::new();
    for session in sessions {
        let mut client = RawUdp::new(session).await;
        client
            .join(server.udp_addr, &server.ticket(session, 60))
            .await;
        clients.push(client);
    }
    clients
}

async fn both_transports_in_one_channel(server: Server) {
    for session in 1..=3 {
        server.member(session, "c1", false).await;
    }
    let (_ep, quic) = server.join(&server.ticket(1, 60), 1).await;
    let mut b = RawUdp::new(2).await;
    b.join(server.udp_addr, &server.ticket(2, 60)).await;
    let mut c = RawUdp::new(3).await;
    c.join(server.udp_addr, &server.ticket(3, 60)).await;

    for sequence in 0..20 {
        quic.send_datagram(voice(sequence)).unwrap();
    }
    for listener in [&mut b, &mut c] {
        for sequence in 0..20 {
            let got = within("QUIC voice at a UDP listener", listener.forwarded()).await;
            assert_eq!((got.speaker, got.sequence), (1, sequence));
        }
    }
    for sequence in 0..20 {
        let packet = b.voice(sequence);
        b.socket.send_to(&packet, server.udp_addr).await.unwrap();
    }
    for sequence in 0..20 {
        let got = within("UDP voice over QUIC", quic.read_datagram())
            .await
            .unwrap();
        let got = openspeak_voice::Forwarded::parse(got).unwrap();
        assert_eq!((got.speaker, got.sequence), (2, sequence));
        let got = within("UDP voice at a UDP listener", c.forwarded()).await;
        assert_eq!((got.speaker, got.sequence), (2, sequence));
    }
    // A send worker counts its packets once the kernel has them, which
    // may be just after a listener read them.
    let stats = within("every forwarded packet counted", async {
        loop {
            let stats = server.handle.stats();
            if stats.datagrams_out >= 80 {
                return stats;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(stats.datagrams_in, 40);
    assert_eq!(stats.datagrams_out, 80);
    assert_eq!(stats.udp_dropped, [0; 4]);
}

/// The same with three UDP workers (`dataplane.udp_workers`), each with a
/// socket on the port: QUIC voice reaches UDP listeners through whichever
/// worker sends it, and UDP voice reaches the QUIC listener through the
/// loop.
#[tokio::test]
async fn with_udp_workers_quic_and_udp_members_still_hear_each_other() {
    both_transports_in_one_channel(start_with_udp_workers(3)).await;
}

/// Sixteen UDP clients and one QUIC client in one channel, three UDP
/// workers: the kernel puts the UDP clients on different workers (all on
/// one would take odds of about 1 in 14 million), so most fan-outs cross
/// from one worker's clients to another's. Every member hears every
/// other's packets, in order, each once; the workers' routers are counted
/// in the router's totals.
#[tokio::test]
async fn udp_workers_carry_one_channel_whatever_worker_each_client_is_on() {
    const UDP_CLIENTS: u32 = 16;
    const PACKETS: u32 = 5;
    let server = start_with_udp_workers(3);
    let quic_session = UDP_CLIENTS + 1;
    for session in 1..=quic_session {
        server.member(session, "c1", false).await;
    }
    let (_ep, quic) = server
        .join(&server.ticket(quic_session, 60), quic_session)
        .await;
    let mut clients = joined(&server, 1..=UDP_CLIENTS).await;
    for sequence in 0..PACKETS {
        for client in &mut clients {
            let packet = client.voice(sequence);
            client
                .socket
                .send_to(&packet, server.udp_addr)
                .await
                .unwrap();
        }
        quic.send_datagram(voice(sequence)).unwrap();
    }
    // Per listener: the next sequence expected from each speaker.
    let speakers = quic_session as usize;
    for listener in &mut clients {
        let mut next = vec![0u32; speakers + 1];
        for _ in 0..PACKETS * UDP_CLIENTS {
            let got = within("every other member's voice", listener.forwarded()).await;
            assert_ne!(got.speaker, listener.session, "nobody hears themselves");
            let expected = &mut next[got.speaker as usize];
            assert_eq!(got.sequence, *expected, "speaker {} in order", got.speaker);
            *expected += 1;
        }
    }
    let mut next = vec![0u32; speakers + 1];
    for _ in 0..PACKETS * UDP_CLIENTS {
        let got = within("UDP voice over QUIC", quic.read_datagram())
            .await
            .unwrap();
        let got = openspeak_voice::Forwarded::parse(got).unwrap();
        let expected = &mut next[got.speaker as usize];
        assert_eq!(got.sequence, *expected, "speaker {} in order", got.speaker);
        *expected += 1;
    }
    assert!(next[1..=UDP_CLIENTS as usize].iter().all(|n| *n == PACKETS));
    let forwarded = u64::from(PACKETS * quic_session * UDP_CLIENTS);
    eventually("every forwarded packet counted", || async {
        server.handle.stats().datagrams_out >= forwarded
    })
    .await;
    let stats = server.handle.stats();
    assert_eq!(stats.datagrams_out, forwarded);
    assert_eq!(stats.datagrams_in, u64::from(PACKETS * quic_session));
    assert_eq!(stats.udp_dropped, [0; 4]);
    // The loop and both workers have a count, and more than one of them
    // read voice: the workers carried clients of their own.
    let by_thread = &stats.udp_received_by_thread;
    assert_eq!(by_thread.len(), 3, "{by_thread:?}");
    assert!(
        stats.udp_received >= u64::from(PACKETS * UDP_CLIENTS),
        "{by_thread:?}"
    );
    assert!(
        by_thread.iter().filter(|&&n| n > 0).count() >= 2,
        "{by_thread:?}"
    );
    let router = server.handle.router_stats().await.unwrap();
    assert_eq!(router.speakers.received, u64::from(PACKETS * quic_session));
    assert_eq!(router.speakers.forwarded, u64::from(PACKETS * quic_session));
    assert_eq!(router.listeners.delivered, forwarded);
    assert_eq!(router.members, quic_session as usize);
}

#[tokio::test]
async fn replays_and_forgeries_are_dropped_and_counted() {
    replays_and_forgeries(start()).await;
}

/// With three UDP workers the replays come from eight addresses, which the
/// kernel spreads over the workers: one replay window serves them all.
#[tokio::test]
async fn with_udp_workers_replays_from_any_worker_are_dropped() {
    replays_and_forgeries(start_with_udp_workers(3)).await;
}

async fn replays_and_forgeries(server: Server) {
    server.member(1, "c1", false).await;
    server.member(2, "c1", false).await;
    let mut a = RawUdp::new(1).await;
    a.join(server.udp_addr, &server.ticket(1, 60)).await;
    let mut b = RawUdp::new(2).await;
    b.join(server.udp_addr, &server.ticket(2, 60)).await;

    let packet = a.voice(0);
    a.socket.send_to(&packet, server.udp_addr).await.unwrap();
    assert_eq!(within("the original", b.forwarded()).await.sequence, 0);
    // The same bytes again, from the client and from strangers: replays.
    a.socket.send_to(&packet, server.udp_addr).await.unwrap();
    for _ in 0..STRANGERS {
        let elsewhere = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        elsewhere.send_to(&packet, server.udp_addr).await.unwrap();
    }
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // A forgery: session 1's header, sealed with another key.
    let mut forged = Vec::new();
    udp::seal_into(
        &SessionKey::new(&[0xee; 32]),
        Direction::ToDataplane,
        1,
        99,
        &voice(1),
        &mut forged,
    );
    stranger.send_to(&forged, server.udp_addr).await.unwrap();
    // A bit flipped in a valid packet's ciphertext.
    let mut flipped = a.voice(1);
    flipped[20] ^= 0x01;
    a.socket.send_to(&flipped, server.udp_addr).await.unwrap();
    // A session nobody holds, and bytes that are no packet at all.
    let mut unknown = RawUdp::new(9).await;
    let packet = unknown.voice(0);
    stranger.send_to(&packet, server.udp_addr).await.unwrap();
    stranger
        .send_to(&[0xff; 40], server.udp_addr)
        .await
        .unwrap();
    // A valid packet of the session with a payload no packet of the
    // protocol has (over 2,048 bytes): cut short by the read, malformed.
    let mut long = Vec::new();
    udp::seal_into(
        &a.key,
        Direction::ToDataplane,
        1,
        a.counter + 1_000,
        &[0x01; 2_100],
        &mut long,
    );
    a.socket.send_to(&long, server.udp_addr).await.unwrap();

    // The next real packet goes through, and B heard nothing else.
    let packet = a.voice(2);
    a.socket.send_to(&packet, server.udp_addr).await.unwrap();
    assert_eq!(within("the next packet", b.forwarded()).await.sequence, 2);
    // Other workers may still be reading the strangers' packets.
    let dropped = [2, 1, 2, 1 + STRANGERS];
    eventually("every drop counted", || async {
        server.handle.stats().udp_dropped.iter().sum::<u64>() >= dropped.iter().sum()
    })
    .await;
    let stats = server.handle.stats();
    // malformed, unknown_session, bad_seal, replay
    assert_eq!(stats.udp_dropped, dropped);
    assert_eq!(stats.datagrams_in, 2);
}

/// How many other addresses replay a packet in [`replays_and_forgeries`].
const STRANGERS: u64 = 8;

#[tokio::test]
async fn the_session_follows_its_client_to_a_new_address() {
    follows_its_client(start()).await;
}

/// The same with three UDP workers: the new address may be on another
/// worker than the old, and the session follows it all the same.
#[tokio::test]
async fn with_udp_workers_the_session_follows_its_client_to_a_new_address() {
    follows_its_client(start_with_udp_workers(3)).await;
}

async fn follows_its_client(server: Server) {
    server.member(1, "c1", false).await;
    server.member(2, "c1", false).await;
    let (_ep, quic) = server.join(&server.ticket(1, 60), 1).await;
    let mut b = RawUdp::new(2).await;
    b.join(server.udp_addr, &server.ticket(2, 60)).await;

    quic.send_datagram(voice(0)).unwrap();
    assert_eq!(within("before the move", b.forwarded()).await.sequence, 0);

    // B's NAT rebinds: the same session, keys and counters, a new socket.
    let old = std::mem::replace(
        &mut b.socket,
        tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
    );
    let ping = b.seal(&[udp::KIND_PING, 0, 0, 0, 0, 0, 0, 0, 7]);
    b.socket.send_to(&ping, server.udp_addr).await.unwrap();
    assert_eq!(
        within("pong at the new address", b.control()).await,
        Some(Control::Pong(7))
    );
    quic.send_datagram(voice(1)).unwrap();
    assert_eq!(within("after the move", b.forwarded()).await.sequence, 1);

    // A packet older than the newest (but within the replay window) from
    // the old address is taken, yet does not move the session back; a
    // replay from there is dropped.
    b.counter = 2_000;
    let newest = b.seal(&[udp::KIND_PING, 0, 0, 0, 0, 0, 0, 0, 8]);
    b.socket.send_to(&newest, server.udp_addr).await.unwrap();
    assert_eq!(within("pong", b.control()).await, Some(Control::Pong(8)));
    let mut older = Vec::new();
    udp::seal_into(
        &b.key,
        Direction::ToDataplane,
        2,
        1_950,
        &voice(5),
        &mut older,
    );
    old.send_to(&older, server.udp_addr).await.unwrap();
    let got = within("the older packet, routed", quic.read_datagram())
        .await
        .unwrap();
    assert_eq!(openspeak_voice::Forwarded::parse(got).unwrap().sequence, 5);
    old.send_to(&newest, server.udp_addr).await.unwrap();
    quic.send_datagram(voice(2)).unwrap();
    assert_eq!(
        within("still at the new address", b.forwarded())
            .await
            .sequence,
        2
    );
    let mut buf = [0; 64];
    assert!(
        tokio::time::timeout(support::QUIET, old.recv_from(&mut buf))
            .await
            .is_err(),
        "nothing goes to the old address"
    );
    eventually("the replay from the old address counted", || async {
        server.handle.stats().udp_dropped[3] >= 1
    })
    .await;
    let stats = server.handle.stats();
    assert_eq!(stats.udp_dropped[3], 1, "the replay from the old address");
}

#[tokio::test]
async fn a_repeated_ticket_is_answered_again_and_a_reused_one_is_refused() {
    let server = start();
    server.member(1, "c1", false).await;
    let ticket = server.ticket(1, 60);
    let mut a = RawUdp::new(1).await;
    a.join(server.udp_addr, &ticket).await;
    // The answer was "lost": the same ticket again gets the same answer.
    let hello = udp::encode_ticket(&ticket).unwrap();
    a.socket.send_to(&hello, server.udp_addr).await.unwrap();
    assert_eq!(
        within("accepted again", a.control()).await,
        Some(Control::Accepted(1))
    );
    // Over QUIC, while the UDP side holds it, the same ticket is in use.
    let (_ep, connection) = server.connect().await;
    assert_eq!(
        support::present(&connection, &ticket).await,
        support::Answer::Rejected(5, "ticket already in use".into(), 5)
    );
    // An expired ticket over UDP: refused, in the clear, with its code.
    assert_eq!(
        udp_answer(server.udp_addr, &server.ticket(1, -10)).await,
        (4, "expired ticket".into())
    );
    assert_eq!(server.handle.stats().rejected[4], 1);
}

#[tokio::test]
async fn a_ticket_issued_before_its_session_ended_is_refused_as_removed() {
    let server = start();
    server.member(1, "c1", false).await;
    // Tickets issued while the session lived, one presented before its
    // end and two kept for later.
    let mut a = RawUdp::new(1).await;
    a.join(server.udp_addr, &server.ticket(1, 60)).await;
    let (for_quic, for_udp) = (server.ticket(1, 60), server.ticket(1, 60));
    assert!(server.handle.remove_member(SessionId(1)).await.unwrap());
    assert_eq!(
        within("closed", a.control()).await,
        Some(Control::Closed(9)),
        "the live UDP side is told"
    );

    // Still valid, but their session is over: refused with code 9.
    let (_ep, connection) = server.connect().await;
    assert_eq!(
        support::present(&connection, &for_quic).await,
        support::Answer::Rejected(9, "removed".into(), 9)
    );
    assert_eq!(
        udp_answer(server.udp_addr, &for_udp).await,
        (9, "removed".into())
    );
    let stats = server.handle.stats();
    // One close of the live side, two refused tickets.
    assert_eq!(stats.rejected[9], 3);
    assert_eq!(stats.connections, 0);
}

/// A late copy of an older ticket (a TICKET resent before the client
/// reconnected over QUIC) does not take the session back.
#[tokio::test]
async fn an_older_ticket_over_udp_cannot_take_the_session_back() {
    let server = start();
    // Expiring a minute later, as a ticket issued a minute later would.
    let older = server.ticket(1, 60);
    let (_ep, quic) = server.join(&server.ticket(1, 120), 1).await;
    assert_eq!(
        udp_answer(server.udp_addr, &older).await,
        (8, "replaced".into())
    );
    assert!(quic.close_reason().is_none());
    assert_eq!(server.handle.stats().rejected[8], 1);
}

/// Presents `ticket` over UDP from a fresh socket; the REJECT's code and
/// reason (panics on any other answer).
async fn udp_answer(server: std::net::SocketAddr, ticket: &[u8]) -> (u8, String) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hello = udp::encode_ticket(ticket).unwrap();
    socket.send_to(&hello, server).await.unwrap();
    let mut buf = [0; 64];
    let (len, _) = within("the answer", socket.recv_from(&mut buf))
        .await
        .unwrap();
    match udp::parse(&buf[..len]) {
        Ok(udp::Packet::Reject { code, reason }) => {
            (code, String::from_utf8(reason.to_vec()).unwrap())
        }
        other => panic!("expected a REJECT, got {other:?}"),
    }
}

/// Sockets that share a port admit any later one that asks to share it,
/// so a second data plane started on a taken plain-UDP port by mistake
/// would quietly take a share of the clients. It is refused instead, as
/// it is with one socket.
#[tokio::test]
async fn a_taken_plain_udp_port_is_refused_even_to_shared_sockets() {
    use std::sync::{Arc, RwLock};

    use openspeak_dataplane::{DataplaneCert, RouterConfig, VoiceEndpoint};
    use openspeak_shared::ticket::TicketVerifier;

    let dir = tempfile::tempdir().unwrap();
    let cert = DataplaneCert::load_or_generate(dir.path()).unwrap();
    let endpoint = || {
        VoiceEndpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            &cert,
            RouterConfig::default(),
            Arc::new(RwLock::new(TicketVerifier::new())),
        )
        .unwrap()
        .0
    };
    let first = endpoint()
        .with_plain_udp_workers("127.0.0.1:0".parse().unwrap(), 2)
        .unwrap();
    assert_eq!(first.udp_workers(), 2);
    let taken = first.plain_addr().unwrap();
    let err = endpoint()
        .with_plain_udp_workers(taken, 2)
        .expect_err("the port is taken");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
}

/// A session that floods from eight addresses at once, which the kernel
/// spreads over three UDP workers, still gets one allowance
/// (`voice.max_packets_per_second`, 200 here, with one second of burst):
/// each worker's router takes from the session's shared limit, not from a
/// bucket of its own.
#[tokio::test]
async fn a_flood_from_many_addresses_meets_one_send_limit() {
    const FLOOD: u32 = 1_000;
    let server = start_with_udp_workers(3);
    server.member(1, "c1", false).await;
    server.member(2, "c1", false).await;
    let mut a = RawUdp::new(1).await;
    a.join(server.udp_addr, &server.ticket(1, 60)).await;
    let mut b = RawUdp::new(2).await;
    b.join(server.udp_addr, &server.ticket(2, 60)).await;
    let mut addresses = Vec::new();
    for _ in 0..8 {
        addresses.push(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    let started = std::time::Instant::now();
    for sequence in 0..FLOOD {
        let packet = a.voice(sequence);
        let socket = &addresses[sequence as usize % addresses.len()];
        socket.send_to(&packet, server.udp_addr).await.unwrap();
    }
    // Workers read their shares at once, so a packet may reach the shared
    // replay window more than 128 behind the newest and be dropped there;
    // every other one reaches a router.
    let accounted = || async {
        let r = server.handle.router_stats().await.unwrap();
        r.speakers.received + server.handle.stats().udp_dropped[3]
    };
    eventually("every packet of the flood accounted for", || async {
        accounted().await >= u64::from(FLOOD)
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let router = server.handle.router_stats().await.unwrap();
    let replayed = server.handle.stats().udp_dropped[3];
    let allowance = 200 + (200.0 * elapsed).ceil() as u64;
    eprintln!(
        "flood from 8 addresses: received {}, forwarded {}, rate limited {}, late {}, \
         dropped as replays {replayed}, in {elapsed:.2} s",
        router.speakers.received,
        router.speakers.forwarded,
        router.speakers.rate_limited,
        router.speakers.late
    );
    assert_eq!(router.speakers.received + replayed, u64::from(FLOOD));
    assert!(
        router.speakers.forwarded <= allowance,
        "forwarded {} in {elapsed:.2} s; one allowance is {allowance}",
        router.speakers.forwarded
    );
    assert!(
        router.speakers.rate_limited + allowance >= router.speakers.received,
        "what the routers took beyond one allowance was refused: {router:?}"
    );
    let mut heard = 0;
    while tokio::time::timeout(support::QUIET, b.forwarded())
        .await
        .is_ok()
    {
        heard += 1;
        assert!(heard <= FLOOD, "bounded");
    }
    assert_eq!(heard, router.speakers.forwarded as u32);
}
