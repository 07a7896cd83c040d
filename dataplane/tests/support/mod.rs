//! What the data plane's socket tests share: a raw QUIC voice client (the
//! ticket exchange done by hand, so the tests check the wire, not a
//! library), voice datagrams, tickets, and bounded waits.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test file uses a different part"
)]

pub mod control;
pub mod flood;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use openspeak_voice::client_config;
use openspeak_voice::datagram::{Forwarded, VoicePacket};
use openspeak_voice::udp::{self, Control, Direction, Packet, ReplayWindow, SessionKey};
use quinn::{Connection, ConnectionError, Endpoint};
use tokio::net::UdpSocket;
use tokio::time::timeout;

pub use openspeak_testkit::{WAIT, within};
/// How long a check for "nothing arrives" looks, after a counter has
/// already shown that nothing was sent.
pub const QUIET: Duration = Duration::from_millis(100);

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

pub use openspeak_testkit::voice::{
    Server, start, start_limited, start_with_send_workers, start_with_udp_workers, ticket,
};

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

/// The process's resident memory, in bytes (the flood tests run alone in
/// their binaries, so it is theirs).
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The QUIC side of a [`Server`], done by hand.
pub trait QuicServer {
    /// A QUIC connection to it, before any ticket.
    async fn connect(&self) -> (Endpoint, Connection);
    /// Connects and presents `ticket`; panics unless it is accepted.
    async fn join(&self, ticket: &[u8], session: u32) -> (Endpoint, Connection);
}

impl QuicServer for Server {
    async fn connect(&self) -> (Endpoint, Connection) {
        connect(self.addr, self.pin).await
    }

    async fn join(&self, ticket: &[u8], session: u32) -> (Endpoint, Connection) {
        join(self.addr, self.pin, ticket, session).await
    }
}

/// A plain-UDP voice client done by hand on the voice crate's framing, so
/// that a test can send exactly the packets it means (a replay, a forgery,
/// the same session from another socket).
pub struct RawUdp {
    pub socket: UdpSocket,
    pub session: u32,
    pub key: SessionKey,
    /// The next counter to seal with.
    pub counter: u64,
    replay: ReplayWindow,
}

impl RawUdp {
    /// A socket on 127.0.0.1 for `session`, whose key is the one
    /// [`ticket`] puts in its tickets.
    pub async fn new(session: u32) -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            session,
            key: SessionKey::new(&[session as u8; 32]),
            counter: 0,
            replay: ReplayWindow::default(),
        }
    }

    /// Presents `ticket` to `server` and waits for the sealed acceptance;
    /// then pings until answered, so that the data plane knows where this
    /// socket is.
    pub async fn join(&mut self, server: SocketAddr, ticket: &[u8]) {
        let hello = udp::encode_ticket(ticket).unwrap();
        within("UDP accept", async {
            loop {
                self.socket.send_to(&hello, server).await.unwrap();
                if let Ok(Some(Control::Accepted(id))) =
                    timeout(Duration::from_millis(200), self.control()).await
                {
                    assert_eq!(id, self.session);
                    return;
                }
            }
        })
        .await;
        within("UDP pong", async {
            loop {
                let ping = self.ping(1);
                self.socket.send_to(&ping, server).await.unwrap();
                if let Ok(Some(Control::Pong(1))) =
                    timeout(Duration::from_millis(200), self.control()).await
                {
                    return;
                }
            }
        })
        .await;
    }

    /// The next sealed packet of this client, as it would send it.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        udp::seal_into(
            &self.key,
            Direction::ToDataplane,
            self.session,
            self.counter,
            plaintext,
            &mut out,
        );
        self.counter += 1;
        out
    }

    /// The next sealed ping, with `id`: what a client sends in a silence
    /// to keep its session (and its NAT mapping) alive.
    pub fn ping(&mut self, id: u64) -> Vec<u8> {
        let mut plaintext = Vec::new();
        Control::Ping(id).encode(&mut plaintext);
        self.seal(&plaintext)
    }

    /// The next sealed voice packet.
    pub fn voice(&mut self, sequence: u32) -> Vec<u8> {
        self.seal(&voice(sequence))
    }

    /// Reads packets until one opens; its plaintext.
    pub async fn recv_plain(&mut self) -> Vec<u8> {
        let mut buf = vec![0; 2048];
        loop {
            let (len, _) = self.socket.recv_from(&mut buf).await.unwrap();
            let Ok(Packet::Sealed(header)) = udp::parse(&buf[..len]) else {
                continue;
            };
            if !self.replay.check(header.counter) {
                continue;
            }
            if let Ok(plaintext) =
                udp::open_in_place(&self.key, Direction::ToClient, header, &mut buf[..len])
            {
                let plaintext = plaintext.to_vec();
                self.replay.take(header.counter);
                return plaintext;
            }
        }
    }

    /// The next control message (skipping anything else).
    pub async fn control(&mut self) -> Option<Control> {
        Control::parse(&self.recv_plain().await)
    }

    /// The next forwarded voice datagram (skipping pongs).
    pub async fn forwarded(&mut self) -> Forwarded {
        loop {
            let plaintext = self.recv_plain().await;
            if Control::parse(&plaintext).is_none() {
                return Forwarded::parse(Bytes::from(plaintext)).unwrap();
            }
        }
    }
}
