//! `VoiceClient` against a real `VoiceEndpoint` on 127.0.0.1: voice
//! between two clients, a forged ticket, and a wrong certificate pin.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use openspeak_client::voice::{VoiceClient, VoiceError};
use openspeak_dataplane::{DataplaneCert, Handle, Member, RouterConfig, SessionId, VoiceEndpoint};
use openspeak_shared::ticket::{Ticket, TicketIssuer, TicketKey, TicketVerifier};
use tokio::time::timeout;

/// Every wait for something to happen is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

struct Server {
    addr: SocketAddr,
    pin: String,
    handle: Handle,
    issuer: TicketIssuer,
    _dir: tempfile::TempDir,
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let cert = DataplaneCert::load_or_generate(dir.path()).unwrap();
    let key = TicketKey::generate(7).unwrap();
    let mut verifier = TicketVerifier::new();
    verifier.insert(key.clone());
    let issuer = TicketIssuer::new(key);
    let (endpoint, handle) = VoiceEndpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &cert,
        RouterConfig::new(60, 1000, 500),
        Arc::new(RwLock::new(verifier)),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(endpoint.run());
    Server {
        addr,
        pin: cert.sha256().iter().map(|b| format!("{b:02x}")).collect(),
        handle,
        issuer,
        _dir: dir,
    }
}

impl Server {
    fn ticket(&self, session: u32) -> Vec<u8> {
        ticket_from(&self.issuer, session)
    }

    async fn member(&self, session: u32) {
        self.handle
            .set_member(
                SessionId(session),
                Member {
                    channel: Some("c1".into()),
                    muted: false,
                    deafened: false,
                },
            )
            .await
            .unwrap();
    }
}

fn ticket_from(issuer: &TicketIssuer, session: u32) -> Vec<u8> {
    issuer
        .issue(&Ticket {
            session_id: session,
            channel: "c1".into(),
            expires_at: SystemTime::now() + Duration::from_secs(60),
            session_key: [session as u8; 32],
        })
        .unwrap()
}

fn payload(sequence: u32) -> Bytes {
    Bytes::from(vec![sequence as u8; 40])
}

#[tokio::test]
async fn voice_flows_between_two_clients() {
    let server = start();
    server.member(1).await;
    server.member(2).await;
    let a = within(
        "connect 1",
        VoiceClient::connect(server.addr, &server.pin, &server.ticket(1)),
    )
    .await
    .unwrap();
    let b = within(
        "connect 2",
        VoiceClient::connect(server.addr, &server.pin, &server.ticket(2)),
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
    server.member(1).await;
    // Same key id as the server's key, different secret: fails
    // authentication rather than naming an unknown key.
    let forger = TicketIssuer::new(TicketKey::generate(7).unwrap());
    let err = within(
        "connect",
        VoiceClient::connect(server.addr, &server.pin, &ticket_from(&forger, 1)),
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
    server.member(1).await;
    let mut wrong = server.pin.clone().into_bytes();
    wrong[63] = if wrong[63] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    let err = within(
        "connect",
        VoiceClient::connect(server.addr, &wrong, &server.ticket(1)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, VoiceError::PinMismatch { addr } if addr == server.addr),
        "{err:?}"
    );

    let err = VoiceClient::connect(server.addr, "not a pin", &server.ticket(1))
        .await
        .unwrap_err();
    assert!(matches!(err, VoiceError::MalformedPin(_)), "{err:?}");
}
