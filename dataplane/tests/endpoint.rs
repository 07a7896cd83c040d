//! The QUIC voice endpoint over real sockets on 127.0.0.1: the ticket
//! exchange and its reject codes, and routing between three clients.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use openspeak_dataplane::{
    DataplaneCert, Handle, Member, RouterConfig, RouterEvent, SessionId, VoiceEndpoint,
    client_config,
};
use openspeak_shared::ticket::{Ticket, TicketIssuer, TicketKey, TicketVerifier};
use openspeak_shared::voice::{Forwarded, VoicePacket};
use quinn::{Connection, ConnectionError, Endpoint};
use tokio::time::timeout;

/// Every wait for something to happen is bounded by this.
const WAIT: Duration = Duration::from_secs(10);
/// How long a check for "nothing arrives" looks, after a counter has
/// already shown that nothing was sent.
const QUIET: Duration = Duration::from_millis(100);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

struct Server {
    addr: SocketAddr,
    pin: [u8; 32],
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
        pin: cert.sha256(),
        handle,
        issuer,
        _dir: dir,
    }
}

impl Server {
    fn ticket(&self, session: u32, valid_for: i64) -> Vec<u8> {
        let now = SystemTime::now();
        let expires_at = if valid_for >= 0 {
            now + Duration::from_secs(valid_for as u64)
        } else {
            now - Duration::from_secs(valid_for.unsigned_abs())
        };
        self.issuer
            .issue(&Ticket {
                session_id: session,
                channel: "c1".into(),
                expires_at,
                session_key: [session as u8; 32],
            })
            .unwrap()
    }

    async fn connect(&self) -> (Endpoint, Connection) {
        let client = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let connection = within(
            "handshake",
            client
                .connect_with(client_config(self.pin).unwrap(), self.addr, "localhost")
                .unwrap(),
        )
        .await
        .unwrap();
        (client, connection)
    }

    /// Connects and presents `ticket`; panics unless it is accepted.
    async fn join(&self, ticket: &[u8], session: u32) -> (Endpoint, Connection) {
        let (client, connection) = self.connect().await;
        let answer = present(&connection, ticket).await;
        assert_eq!(answer, Answer::Accepted(session));
        (client, connection)
    }

    async fn member(&self, session: u32, channel: &str, deafened: bool) {
        self.handle
            .set_member(
                SessionId(session),
                Member {
                    channel: Some(channel.into()),
                    muted: false,
                    deafened,
                },
            )
            .await
            .unwrap();
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Accepted(u32),
    /// Reject code, reason, and the connection's close code.
    Rejected(u8, String, u64),
}

/// The client side of the ticket exchange.
async fn present(connection: &Connection, ticket: &[u8]) -> Answer {
    let (mut send, mut recv) = within("open stream", connection.open_bi()).await.unwrap();
    let mut request = vec![1];
    request.extend_from_slice(&(ticket.len() as u16).to_be_bytes());
    request.extend_from_slice(ticket);
    send.write_all(&request).await.unwrap();
    send.finish().unwrap();
    let response = within("ticket answer", recv.read_to_end(1024))
        .await
        .unwrap();
    match response[..] {
        [0, a, b, c, d] => Answer::Accepted(u32::from_be_bytes([a, b, c, d])),
        [code, hi, lo, ref reason @ ..] => {
            assert_eq!(usize::from(u16::from_be_bytes([hi, lo])), reason.len());
            let closed = within("close after reject", connection.closed()).await;
            let ConnectionError::ApplicationClosed(close) = closed else {
                panic!("{closed:?}");
            };
            Answer::Rejected(
                code,
                String::from_utf8(reason.to_vec()).unwrap(),
                close.error_code.into_inner(),
            )
        }
        _ => panic!("bad answer {response:?}"),
    }
}

fn voice(sequence: u32) -> Bytes {
    VoicePacket {
        sequence,
        timestamp: sequence * 20,
        payload: Bytes::from(vec![sequence as u8; 40]),
    }
    .encode()
    .unwrap()
}

/// Sends packets `range` from `from` and checks each `to` receives them all,
/// in order, from speaker 1.
async fn talk(from: &Connection, range: std::ops::Range<u32>, to: &[&Connection]) {
    for sequence in range.clone() {
        from.send_datagram(voice(sequence)).unwrap();
    }
    for listener in to {
        for sequence in range.clone() {
            let got = within("forwarded datagram", listener.read_datagram())
                .await
                .unwrap();
            let forwarded = Forwarded::parse(got).unwrap();
            assert_eq!(forwarded.speaker, 1);
            assert_eq!(forwarded.sequence, sequence);
            assert_eq!(forwarded.timestamp, sequence * 20);
            assert_eq!(forwarded.payload, Bytes::from(vec![sequence as u8; 40]));
        }
    }
}

async fn hears_nothing(connection: &Connection) {
    assert!(
        timeout(QUIET, connection.read_datagram()).await.is_err(),
        "received a datagram it should not have"
    );
}

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

    talk(&a, 0..20, &[&b, &c]).await;
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
    talk(&a, 20..40, &[&c]).await;
    assert_eq!(server.handle.stats().datagrams_out, 60);

    // B comes back, C deafens: B alone hears the next 20.
    server.member(2, "c1", false).await;
    server.member(3, "c1", true).await;
    talk(&a, 40..60, &[&b]).await;
    let stats = server.handle.stats();
    assert_eq!(stats.datagrams_out, 80);
    assert_eq!(stats.datagrams_in, 60);
    assert_eq!(stats.accepted, 3);
    hears_nothing(&c).await;
    hears_nothing(&a).await;

    server.handle.shutdown();
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
async fn a_ticket_serves_one_connection_and_a_new_ticket_replaces_it() {
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
    let (_ep3, _third) = server.join(&server.ticket(1, 60), 1).await;
    let closed = within("replaced connection closes", first.closed()).await;
    let ConnectionError::ApplicationClosed(close) = closed else {
        panic!("{closed:?}");
    };
    assert_eq!(close.error_code.into_inner(), 8);
    assert_eq!(server.handle.stats().rejected[5], 1);
}
