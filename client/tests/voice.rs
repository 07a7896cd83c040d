//! `VoiceClient` and `UdpVoiceClient` against a real `VoiceEndpoint` on
//! 127.0.0.1: voice between two clients, QUIC and plain UDP in one
//! channel, forged tickets, a wrong certificate pin, pings, and a UDP
//! session replaced or removed.

use std::time::Duration;

use bytes::Bytes;
use openspeak_client::udp::{UdpVoiceClient, UdpVoiceError};
use openspeak_client::voice::{VoiceClient, VoiceError};
use openspeak_dataplane::SessionId;
use openspeak_shared::ticket::{TicketIssuer, TicketKey};
use openspeak_testkit::voice::{Server, session_key, start, ticket};
use openspeak_testkit::{WAIT, within};
use tokio::time::timeout;

/// Session `session` over plain UDP, with the key its ticket carries,
/// once the data plane knows its address: it learns it from the first
/// sealed packet (the ping `connect` sends), which a pong confirms.
async fn udp_client(server: &Server, session: u32) -> UdpVoiceClient {
    let client = within(
        "UDP connect",
        UdpVoiceClient::connect(
            server.udp_addr,
            &server.ticket(session, 60),
            &session_key(session),
        ),
    )
    .await
    .unwrap();
    within("the first pong", async {
        while client.rtt().is_none() {
            let heard = timeout(Duration::from_millis(100), client.recv()).await;
            assert!(heard.is_err(), "nothing but pongs yet: {heard:?}");
            client.ping().unwrap();
        }
    })
    .await;
    client
}

fn payload(sequence: u32) -> Bytes {
    Bytes::from(vec![sequence as u8; 40])
}

#[tokio::test]
async fn voice_flows_between_two_clients() {
    let server = start();
    server.member(1, "c1", false).await;
    server.member(2, "c1", false).await;
    let a = within(
        "connect 1",
        VoiceClient::connect(server.addr, &server.pin_hex(), &server.ticket(1, 60)),
    )
    .await
    .unwrap();
    let b = within(
        "connect 2",
        VoiceClient::connect(server.addr, &server.pin_hex(), &server.ticket(2, 60)),
    )
    .await
    .unwrap();
    assert_eq!(a.session_id(), 1);
    assert_eq!(b.session_id(), 2);

    for sequence in 0..10 {
        a.send(sequence, sequence * 20, payload(sequence)).unwrap();
    }
    for sequence in 0..10 {
        let got = within("forwarded datagram", b.recv()).await.unwrap();
        assert_eq!(got.speaker, 1);
        assert_eq!(got.sequence, sequence);
        assert_eq!(got.timestamp, sequence * 20);
        assert_eq!(got.payload, payload(sequence));
    }
    assert_eq!(b.malformed(), 0);

    // An empty payload is refused locally, before anything is sent.
    assert!(matches!(
        a.send(10, 200, Bytes::new()),
        Err(VoiceError::Packet(_))
    ));

    within("close 1", a.close()).await;
    within("close 2", b.close()).await;
}

#[tokio::test]
async fn a_forged_ticket_is_rejected() {
    let server = start();
    server.member(1, "c1", false).await;
    // Same key id as the server's key, different secret: fails
    // authentication rather than naming an unknown key.
    let forger = TicketIssuer::new(TicketKey::generate(7).unwrap());
    let err = within(
        "connect",
        VoiceClient::connect(server.addr, &server.pin_hex(), &ticket(&forger, 1, 60)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, VoiceError::Rejected { code: 3, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_wrong_pin_fails_the_handshake() {
    let server = start();
    server.member(1, "c1", false).await;
    let mut wrong = server.pin_hex().into_bytes();
    wrong[63] = if wrong[63] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    let err = within(
        "connect",
        VoiceClient::connect(server.addr, &wrong, &server.ticket(1, 60)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, VoiceError::PinMismatch { addr } if addr == server.addr),
        "{err:?}"
    );

    let err = VoiceClient::connect(server.addr, "not a pin", &server.ticket(1, 60))
        .await
        .unwrap_err();
    assert!(matches!(err, VoiceError::MalformedPin(_)), "{err:?}");
}

#[tokio::test]
async fn quic_and_udp_clients_in_one_channel_hear_each_other() {
    let server = start();
    for session in 1..=3 {
        server.member(session, "c1", false).await;
    }
    let quic = within(
        "connect QUIC",
        VoiceClient::connect(server.addr, &server.pin_hex(), &server.ticket(1, 60)),
    )
    .await
    .unwrap();
    let udp = udp_client(&server, 2).await;
    let other = udp_client(&server, 3).await;
    assert_eq!(udp.session_id(), 2);
    assert!(udp.rtt().is_some_and(|rtt| rtt < WAIT));

    for sequence in 0..10 {
        quic.send(sequence, sequence * 20, payload(sequence))
            .unwrap();
    }
    for listener in [&udp, &other] {
        for sequence in 0..10 {
            let got = within("QUIC voice over UDP", listener.recv())
                .await
                .unwrap();
            assert_eq!((got.speaker, got.sequence), (1, sequence));
            assert_eq!(got.payload, payload(sequence));
        }
    }
    for sequence in 0..10 {
        udp.send(sequence, sequence * 20, payload(sequence))
            .unwrap();
    }
    for sequence in 0..10 {
        let got = within("UDP voice over QUIC", quic.recv()).await.unwrap();
        assert_eq!((got.speaker, got.sequence), (2, sequence));
        assert_eq!(got.payload, payload(sequence));
        let got = within("UDP voice over UDP", other.recv()).await.unwrap();
        assert_eq!((got.speaker, got.sequence), (2, sequence));
    }
    assert_eq!(udp.malformed() + other.malformed() + quic.malformed(), 0);
    assert!(matches!(
        udp.send(10, 200, Bytes::new()),
        Err(UdpVoiceError::Packet(_))
    ));
    let stats = server.handle.stats();
    assert_eq!(stats.accepted, 3);
    assert_eq!(stats.udp_dropped, [0; 4]);
    within("close QUIC", quic.close()).await;
}

#[tokio::test]
async fn udp_tickets_are_checked_like_quic_ones() {
    let server = start();
    let forged = TicketIssuer::new(TicketKey::generate(7).unwrap());
    let err = UdpVoiceClient::connect(server.udp_addr, &ticket(&forged, 1, 60), &session_key(1))
        .await
        .unwrap_err();
    match err {
        UdpVoiceError::Rejected { code, reason } => {
            assert_eq!((code, reason.as_str()), (3, "forged ticket"));
        }
        other => panic!("{other:?}"),
    }
    let unknown = TicketIssuer::new(TicketKey::generate(8).unwrap());
    let err = UdpVoiceClient::connect(server.udp_addr, &ticket(&unknown, 1, 60), &session_key(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, UdpVoiceError::Rejected { code: 2, .. }),
        "{err:?}"
    );
    // A client with the wrong key hears nothing it can open, and the data
    // plane cannot open what it sends.
    let err = UdpVoiceClient::connect(server.udp_addr, &server.ticket(1, 60), &[0; 32])
        .await
        .unwrap_err();
    assert!(matches!(err, UdpVoiceError::Timeout { .. }), "{err:?}");
    assert!(matches!(
        UdpVoiceClient::connect(server.udp_addr, &server.ticket(1, 60), &[0; 31]).await,
        Err(UdpVoiceError::BadKey(31))
    ));
    let stats = server.handle.stats();
    assert_eq!(stats.rejected[3], 1);
    assert_eq!(stats.rejected[2], 1);
}

#[tokio::test]
async fn a_new_ticket_replaces_a_udp_session_and_removal_ends_it() {
    let server = start();
    server.member(1, "c1", false).await;
    server.member(2, "c1", false).await;
    let udp = udp_client(&server, 1).await;
    // The same session connects over QUIC with a fresh ticket: the UDP
    // side is told it was replaced (code 8).
    let quic = within(
        "connect QUIC",
        VoiceClient::connect(server.addr, &server.pin_hex(), &server.ticket(1, 60)),
    )
    .await
    .unwrap();
    match within("closed", udp.recv()).await {
        Err(UdpVoiceError::Closed { code: 8 }) => {}
        other => panic!("{other:?}"),
    }
    within("close QUIC", quic.close()).await;

    let second = udp_client(&server, 2).await;
    within("removal", server.handle.remove_member(SessionId(2)))
        .await
        .unwrap();
    match within("closed", second.recv()).await {
        Err(UdpVoiceError::Closed { code: 9 }) => {}
        other => panic!("{other:?}"),
    }
    let stats = server.handle.stats();
    assert_eq!(stats.rejected[8], 1);
    assert_eq!(stats.rejected[9], 1);
}
