//! The QUIC voice endpoint over real sockets on 127.0.0.1: the ticket
//! exchange and its reject codes, routing between three clients, and the
//! limits on connections not yet admitted.

mod support;

use bytes::Bytes;
use openspeak_dataplane::{AdmissionLimits, Member, Resynced, RouterEvent, SessionId};
use openspeak_voice::TICKET_TIMEOUT;
use openspeak_voice::datagram::{Forwarded, MAX_PAYLOAD, VoicePacket};
use openspeak_voice::exchange::MAX_TICKET_LEN;
use support::flood::Relay;
use support::{
    Answer, QuicServer, Server, close_code, eventually, hears_nothing, present, send_request,
    start, talk, voice, within,
};

#[tokio::test]
async fn routes_voice_between_members_of_a_channel() {
    let server = start();
    let mut events = server.handle.events().unwrap();
    for session in 1..=3 {
        server.member(session, "c1", false).await;
    }
    let (_a_ep, a) = server.join(&server.ticket(1, 60), 1).await;
    let (_b_ep, b) = server.join(&server.ticket(2, 60), 2).await;
    let (_c_ep, c) = server.join(&server.ticket(3, 60), 3).await;

    talk(&a, 1, 0..20, &[&b, &c]).await;
    assert_eq!(server.handle.stats().datagrams_out, 40);
    let event = within("speaking event", events.recv()).await.unwrap();
    assert_eq!(
        event,
        RouterEvent::SpeakingChanged {
            session: SessionId(1),
            speaking: true
        }
    );

    // B moves away: C alone hears the next 20, and the counter shows that
    // nothing was sent to B.
    server.member(2, "c2", false).await;
    talk(&a, 1, 20..40, &[&c]).await;
    assert_eq!(server.handle.stats().datagrams_out, 60);

    // B comes back, C deafens: B alone hears the next 20.
    server.member(2, "c1", false).await;
    server.member(3, "c1", true).await;
    talk(&a, 1, 40..60, &[&b]).await;
    let stats = server.handle.stats();
    assert_eq!(stats.datagrams_out, 80);
    assert_eq!(stats.datagrams_in, 60);
    assert_eq!(stats.accepted, 3);
    hears_nothing(&c).await;
    hears_nothing(&a).await;

    server.handle.shutdown();
}

#[tokio::test]
async fn the_largest_voice_packet_is_forwarded_whole() {
    let (_server, (_a_ep, a), (_b_ep, b)) = a_and_b_in_c1(2).await;
    let payload = Bytes::from(vec![0x5a; MAX_PAYLOAD]);
    let packet = VoicePacket {
        sequence: 1,
        timestamp: 20,
        payload: payload.clone(),
    };
    a.send_datagram(packet.encode().unwrap()).unwrap();
    let got = within("the forwarded packet", b.read_datagram())
        .await
        .unwrap();
    assert_eq!(got.len(), 1_013, "the largest datagram PROTOCOL.md names");
    let forwarded = Forwarded::parse(got).unwrap();
    assert_eq!((forwarded.speaker, forwarded.sequence), (1, 1));
    assert_eq!(forwarded.payload, payload);
}

#[tokio::test]
async fn forged_and_expired_tickets_are_rejected() {
    let server = start();

    let mut forged = server.ticket(1, 60);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let (_ep, connection) = server.connect().await;
    assert_eq!(
        present(&connection, &forged).await,
        Answer::Rejected(3, "forged ticket".into(), 3)
    );

    let (_ep, connection) = server.connect().await;
    assert_eq!(
        present(&connection, &server.ticket(1, -60)).await,
        Answer::Rejected(4, "expired ticket".into(), 4)
    );

    let stats = server.handle.stats();
    assert_eq!(stats.rejected[3], 1);
    assert_eq!(stats.rejected[4], 1);
    assert_eq!(stats.accepted, 0);
}

#[tokio::test]
async fn requests_that_are_no_ticket_are_refused_with_their_reason() {
    let server = start();
    let refused = |code: u8, reason: &str| Answer::Rejected(code, reason.into(), u64::from(code));

    let (_ep, connection) = server.connect().await;
    assert_eq!(
        send_request(&connection, &[2, 0, 0]).await,
        refused(7, "unsupported version")
    );
    // The length says five bytes; two follow.
    let (_ep, connection) = server.connect().await;
    assert_eq!(
        send_request(&connection, &[1, 0, 5, 9, 9]).await,
        refused(1, "malformed ticket")
    );
    let (_ep, connection) = server.connect().await;
    assert_eq!(
        send_request(&connection, &[]).await,
        refused(1, "malformed ticket")
    );
    // Longer than any request can be (its length field agrees): refused
    // once more than the longest request has been read.
    let len = MAX_TICKET_LEN + 100;
    let mut huge = vec![1];
    huge.extend_from_slice(&(len as u16).to_be_bytes());
    huge.resize(3 + len, 7);
    let (_ep, connection) = server.connect().await;
    assert_eq!(
        send_request(&connection, &huge).await,
        refused(1, "malformed ticket")
    );

    let stats = server.handle.stats();
    assert_eq!((stats.rejected[1], stats.rejected[7]), (3, 1));
    assert_eq!(stats.accepted, 0);
}

#[tokio::test]
async fn a_client_that_presents_no_ticket_is_closed_after_the_timeout() {
    let server = start();
    let (_ep, connection) = server.connect().await;
    let started = std::time::Instant::now();
    assert_eq!(close_code(&connection).await, 6);
    let waited = started.elapsed();
    assert!(
        waited >= TICKET_TIMEOUT - std::time::Duration::from_millis(500),
        "closed after {waited:?}"
    );
    assert_eq!(server.handle.stats().rejected[6], 1);
}

#[tokio::test]
async fn a_ticket_serves_one_connection_and_a_newer_ticket_replaces_it() {
    let server = start();
    let ticket = server.ticket(1, 60);
    let (_ep1, first) = server.join(&ticket, 1).await;

    let (_ep2, second) = server.connect().await;
    assert_eq!(
        present(&second, &ticket).await,
        Answer::Rejected(5, "ticket already in use".into(), 5)
    );
    assert!(first.close_reason().is_none());

    // A fresh ticket for the same session is a reconnect: the old
    // connection is closed with code 8.
    let (_ep3, third) = server.join(&server.ticket(1, 60), 1).await;
    assert_eq!(close_code(&first).await, 8);
    assert_eq!(server.handle.stats().rejected[5], 1);
    assert_eq!(server.handle.stats().rejected[8], 1, "the replaced one");

    // An older ticket (expiring earlier, as one issued earlier would; a
    // late, resent copy, say) cannot take the session back: refused with
    // 8, and the newer connection goes on.
    let (_ep4, fourth) = server.connect().await;
    assert_eq!(
        present(&fourth, &server.ticket(1, 30)).await,
        Answer::Rejected(8, "replaced".into(), 8)
    );
    assert!(third.close_reason().is_none());
    assert_eq!(server.handle.stats().rejected[8], 2, "and the refused one");
}

/// A client's side of a joined connection: its endpoint (kept so that the
/// connection lives) and the connection.
type Client = (quinn::Endpoint, quinn::Connection);

/// Sessions 1 to `members` in c1, of which A and B (1 and 2) have joined
/// over QUIC: how the tests of forwarding and resyncs begin.
async fn a_and_b_in_c1(members: u32) -> (Server, Client, Client) {
    let server = start();
    for session in 1..=members {
        server.member(session, "c1", false).await;
    }
    let a = server.join(&server.ticket(1, 60), 1).await;
    let b = server.join(&server.ticket(2, 60), 2).await;
    (server, a, b)
}

/// Resyncs `server` to a snapshot of `session` alone in c1, `restarted`
/// telling whether the control plane restarted, and checks what the resync
/// did: `(members, removed, orphaned)`.
async fn resync_to(server: &Server, session: u32, restarted: bool, done: (usize, usize, usize)) {
    let in_c1 = Member {
        channel: Some("c1".into()),
        muted: false,
        deafened: false,
    };
    let (members, removed, orphaned) = done;
    let resynced = server
        .handle
        .resync(vec![(SessionId(session), in_c1)], restarted)
        .await
        .unwrap();
    assert_eq!(
        resynced,
        Resynced {
            members,
            removed,
            orphaned
        }
    );
}

#[tokio::test]
async fn a_resync_after_a_restart_keeps_connected_sessions_until_they_leave() {
    let (server, (_a_ep, a), (_b_ep, b)) = a_and_b_in_c1(3).await;

    // A restarted control plane knows only session 4. Session 3 has no
    // connection and goes; 1 and 2 are still talking and stay.
    resync_to(&server, 4, true, (1, 1, 2)).await;
    let (_d_ep, d) = server.join(&server.ticket(4, 60), 4).await;
    talk(&a, 1, 0..10, &[&b, &d]).await;

    // A hangs up: it is forgotten, so a new connection of session 1 is
    // admitted by its ticket but not routed.
    a.close(0u32.into(), b"bye");
    let handle = &server.handle;
    eventually("A's connection is gone", || async {
        handle.stats().connections == 2
    })
    .await;
    let (_a2_ep, a2) = server.join(&server.ticket(1, 60), 1).await;
    a2.send_datagram(voice(0)).unwrap();
    eventually(
        "A's datagram counted as from an unknown session",
        || async { handle.router_stats().await.unwrap().unknown_session == 1 },
    )
    .await;
    hears_nothing(&d).await;
    talk(&b, 2, 0..5, &[&d]).await;
}

#[tokio::test]
async fn a_resync_from_the_same_control_plane_drops_what_it_lacks() {
    let (server, (_a_ep, a), (_b_ep, b)) = a_and_b_in_c1(2).await;

    // Session 2 ended while the link was down: the snapshot lacks it.
    resync_to(&server, 1, false, (1, 1, 0)).await;
    assert_eq!(close_code(&b).await, 9, "closed as removed");
    assert_eq!(server.handle.stats().rejected[9], 1);
    assert_eq!(server.handle.stats().connections, 1);
    assert!(a.close_reason().is_none());
}

#[tokio::test]
async fn past_the_limits_new_connections_prove_their_address_or_are_refused() {
    // Retry from the first connection on; at most two not admitted.
    let server = support::start_limited(AdmissionLimits {
        retry_above: 0,
        max_unadmitted: 2,
    });
    // Each is asked to prove its address first; quinn's client answers
    // the Retry by itself, and the handshake goes on.
    let (_ep1, first) = server.connect().await;
    let (_ep2, second) = server.connect().await;
    assert_eq!(server.handle.stats().handshakes_retried, 2);

    // Two hold their place without a ticket: a third is refused at once.
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let third = client
        .connect_with(
            openspeak_voice::client_config(server.pin).unwrap(),
            server.addr,
            "localhost",
        )
        .unwrap();
    let refused = within("the refusal", third).await.unwrap_err();
    assert!(
        matches!(&refused, quinn::ConnectionError::ConnectionClosed(close)
            if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED),
        "{refused:?}"
    );
    assert_eq!(server.handle.stats().handshakes_refused, 1);

    // One is admitted: its place frees, and a new client gets in.
    assert_eq!(
        present(&first, &server.ticket(1, 60)).await,
        Answer::Accepted(1)
    );
    let (_ep3, _) = server.join(&server.ticket(2, 60), 2).await;
    drop(second);
    let stats = server.handle.stats();
    assert_eq!((stats.accepted, stats.handshakes_refused), (2, 1));
}

/// A listener whose path stops carrying the data plane's packets for a
/// while: QUIC's congestion control holds its voice back, and what waits
/// is judged by age (`voice.max_broadcast_lag_ms`, 500 ms on this test
/// server), so when the path comes back it hears the last half-second, not
/// a backlog of the oldest. quinn's own queue would have held about 90 of
/// these datagrams and dropped the newest instead.
#[tokio::test]
async fn a_congested_quic_listener_hears_recent_voice_not_a_backlog() {
    const CUT: std::ops::Range<u32> = 10..160;
    let server = start();
    for session in 1..=2 {
        server.member(session, "c1", false).await;
    }
    let (_a_ep, a) = server.join(&server.ticket(1, 60), 1).await;
    let relay = Relay::start(server.addr).await;
    let (_b_ep, b) = support::join(relay.addr, server.pin, &server.ticket(2, 60), 2).await;
    let packet = |sequence: u32| {
        VoicePacket {
            sequence,
            timestamp: sequence * 20,
            // 300 bytes: 15,000 bytes a second, well inside the send limits.
            payload: Bytes::from(vec![sequence as u8; 300]),
        }
        .encode()
        .unwrap()
    };
    let mut frames = tokio::time::interval(std::time::Duration::from_millis(20));
    for sequence in 0..CUT.start {
        frames.tick().await;
        a.send_datagram(packet(sequence)).unwrap();
        let heard = within("voice before the cut", b.read_datagram()).await;
        assert_eq!(Forwarded::parse(heard.unwrap()).unwrap().sequence, sequence);
    }

    // Three seconds of voice that cannot reach B: more than its congestion
    // window and quinn's queue together hold.
    relay.cut(true);
    for sequence in CUT {
        frames.tick().await;
        a.send_datagram(packet(sequence)).unwrap();
    }
    relay.cut(false);

    // A talks on until B hears the voice after the cut: once QUIC finds
    // the path again (its next probe), what waited goes out first.
    let speaker = {
        let a = a.clone();
        tokio::spawn(async move {
            for sequence in CUT.end..CUT.end + 500 {
                frames.tick().await;
                if a.send_datagram(packet(sequence)).is_err() {
                    return;
                }
            }
        })
    };
    let mut from_the_cut = Vec::new();
    for _ in 0..1000 {
        let heard = within("voice after the cut", b.read_datagram()).await;
        let sequence = Forwarded::parse(heard.unwrap()).unwrap().sequence;
        if sequence >= CUT.end {
            break;
        }
        from_the_cut.push(sequence);
    }
    speaker.abort();

    // At most what quinn's queue may hold of these 313-byte datagrams
    // (2 KiB) plus the 500 ms that may wait in front of it (25 at 50 a
    // second, and the one that arrives as the oldest goes).
    assert!(
        from_the_cut.len() <= 6 + 26,
        "heard {} datagrams from the cut: {from_the_cut:?}",
        from_the_cut.len()
    );
    let stats = server.handle.stats();
    assert!(
        stats.dropped_lag > 0,
        "the lag rule dropped none: {stats:?}"
    );
    assert_eq!(stats.dropped_send_buffer, 0, "quinn's queue never filled");
}
