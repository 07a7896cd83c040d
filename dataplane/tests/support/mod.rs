//! What the data plane's socket tests share: a raw QUIC voice client (the
//! ticket exchange done by hand, so the tests check the wire, not a
//! library), voice datagrams, tickets, and bounded waits.

#![allow(dead_code, reason = "each test file uses a different part")]

pub mod control;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use openspeak_shared::ticket::{Ticket, TicketIssuer};
use openspeak_voice::client_config;
use openspeak_voice::datagram::{Forwarded, VoicePacket};
use quinn::{Connection, ConnectionError, Endpoint};
use tokio::time::timeout;

/// Every wait for something to happen is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a check for "nothing arrives" looks, after a counter has
/// already shown that nothing was sent.
pub const QUIET: Duration = Duration::from_millis(100);

pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Polls `check` every 10 ms until it holds, for at most [`WAIT`]: for
/// state that no event announces (a server-side counter).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A ticket for `session` in channel `c1`, valid for `valid_for` seconds
/// (negative: expired that long ago).
pub fn ticket(issuer: &TicketIssuer, session: u32, valid_for: i64) -> Vec<u8> {
    let now = SystemTime::now();
    let expires_at = if valid_for >= 0 {
        now + Duration::from_secs(valid_for as u64)
    } else {
        now - Duration::from_secs(valid_for.unsigned_abs())
    };
    issuer
        .issue(&Ticket {
            session_id: session,
            channel: "c1".into(),
            expires_at,
            session_key: [session as u8; 32],
        })
        .unwrap()
}

/// A QUIC connection to `addr`, pinning `pin`, before any ticket.
pub async fn connect(addr: SocketAddr, pin: [u8; 32]) -> (Endpoint, Connection) {
    let client = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connection = within(
        "handshake",
        client
            .connect_with(client_config(pin).unwrap(), addr, "localhost")
            .unwrap(),
    )
    .await
    .unwrap();
    (client, connection)
}

/// Connects and presents `ticket`; panics unless it is accepted for
/// `session`.
pub async fn join(
    addr: SocketAddr,
    pin: [u8; 32],
    ticket: &[u8],
    session: u32,
) -> (Endpoint, Connection) {
    let (client, connection) = connect(addr, pin).await;
    assert_eq!(
        present(&connection, ticket).await,
        Answer::Accepted(session)
    );
    (client, connection)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted(u32),
    /// Reject code, reason, and the connection's close code.
    Rejected(u8, String, u64),
}

/// The client side of the ticket exchange.
pub async fn present(connection: &Connection, ticket: &[u8]) -> Answer {
    let mut request = vec![1];
    request.extend_from_slice(&(ticket.len() as u16).to_be_bytes());
    request.extend_from_slice(ticket);
    send_request(connection, &request).await
}

/// Sends `request`, whatever it holds, as the ticket request; the answer.
pub async fn send_request(connection: &Connection, request: &[u8]) -> Answer {
    let (mut send, mut recv) = within("open stream", connection.open_bi()).await.unwrap();
    send.write_all(request).await.unwrap();
    send.finish().unwrap();
    let response = within("ticket answer", recv.read_to_end(1024))
        .await
        .unwrap();
    match response[..] {
        [0, a, b, c, d] => Answer::Accepted(u32::from_be_bytes([a, b, c, d])),
        [code, hi, lo, ref reason @ ..] => {
            assert_eq!(usize::from(u16::from_be_bytes([hi, lo])), reason.len());
            Answer::Rejected(
                code,
                String::from_utf8(reason.to_vec()).unwrap(),
                close_code(connection).await,
            )
        }
        _ => panic!("bad answer {response:?}"),
    }
}

/// Waits for the server to close `connection`; its application close code.
pub async fn close_code(connection: &Connection) -> u64 {
    let closed = within("the server closes the connection", connection.closed()).await;
    let ConnectionError::ApplicationClosed(close) = closed else {
        panic!("{closed:?}");
    };
    close.error_code.into_inner()
}

/// Voice datagram `sequence`: 40 bytes of payload derived from it.
pub fn voice(sequence: u32) -> Bytes {
    VoicePacket {
        sequence,
        timestamp: sequence * 20,
        payload: Bytes::from(vec![sequence as u8; 40]),
    }
    .encode()
    .unwrap()
}

/// Sends packets `range` from `from` and checks each `to` receives them all,
/// in order, from `speaker`.
pub async fn talk(from: &Connection, speaker: u32, range: Range<u32>, to: &[&Connection]) {
    for sequence in range.clone() {
        from.send_datagram(voice(sequence)).unwrap();
    }
    for listener in to {
        for sequence in range.clone() {
            let got = within("forwarded datagram", listener.read_datagram())
                .await
                .unwrap();
            let forwarded = Forwarded::parse(got).unwrap();
            assert_eq!(forwarded.speaker, speaker);
            assert_eq!(forwarded.sequence, sequence);
            assert_eq!(forwarded.timestamp, sequence * 20);
            assert_eq!(forwarded.payload, Bytes::from(vec![sequence as u8; 40]));
        }
    }
}

pub async fn hears_nothing(connection: &Connection) {
    assert!(
        timeout(QUIET, connection.read_datagram()).await.is_err(),
        "received a datagram it should not have"
    );
}
