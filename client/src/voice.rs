//! The voice half of a client: one QUIC connection to a data plane, the
//! ticket exchange, and sending and receiving voice datagrams
//! (`docs/PROTOCOL.md`, "Voice"). Tests and the load generator use it to
//! act as real clients; it holds no audio logic and no jitter buffer.
//!
//! A [`VoiceClient`] is a thin driver around quinn: the wire formats, the
//! ticket exchange's framing and the TLS setup (certificate pinning) come
//! from `openspeak-voice`, which the data plane uses too, so this file only
//! sequences them and turns their failures into one typed [`VoiceError`].

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use openspeak_voice::exchange::{self, Answer, MAX_ANSWER, MalformedAnswer, TicketTooLong};
use openspeak_voice::quic::is_pin_mismatch;
use openspeak_voice::{
    Forwarded, PinError, QuicConfigError, VoicePacket, WireError, client_config, parse_pin,
};
use quinn::{
    ConnectionError, Endpoint, ReadError, ReadToEndError, SendDatagramError, VarInt, WriteError,
};
use thiserror::Error;

/// How long [`VoiceClient::connect`] may take, handshake and ticket
/// exchange together. The data plane itself gives a client 5 s to present
/// its ticket; the extra allows for a slow handshake on a loaded machine.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`VoiceClient::close`] waits for the close to reach the data
/// plane before giving up on it.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Why connecting, sending or receiving failed.
#[derive(Debug, Error)]
pub enum VoiceError {
    /// The certificate pin is not 64 hex digits.
    #[error("malformed certificate pin")]
    MalformedPin(#[from] PinError),
    /// The QUIC client configuration could not be built.
    #[error("invalid QUIC configuration")]
    Config(#[from] QuicConfigError),
    /// No local UDP socket could be bound.
    #[error("cannot bind a local socket")]
    Bind(#[source] io::Error),
    /// quinn refused to start a connection to this address.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The data plane's address.
        addr: SocketAddr,
        /// quinn's reason.
        #[source]
        source: quinn::ConnectError,
    },
    /// The server's certificate is not the pinned one.
    #[error("the certificate of {addr} does not match the pin")]
    PinMismatch {
        /// The data plane's address.
        addr: SocketAddr,
    },
    /// The TLS or QUIC handshake failed for another reason.
    #[error("handshake with {addr} failed")]
    Handshake {
        /// The data plane's address.
        addr: SocketAddr,
        /// What the handshake ended with.
        #[source]
        source: ConnectionError,
    },
    /// The data plane refused the ticket (`docs/PROTOCOL.md` lists codes).
    #[error("ticket rejected with code {code}: {reason}")]
    Rejected {
        /// The reject code, also the connection's close code.
        code: u8,
        /// The data plane's reason, for people.
        reason: String,
    },
    /// The data plane's answer to the ticket does not parse.
    #[error("malformed ticket answer ({len} bytes)")]
    BadAnswer {
        /// The answer's length.
        len: usize,
    },
    /// The ticket is longer than the exchange can carry.
    #[error("ticket of {0} bytes is too long")]
    TicketTooLong(usize),
    /// Connecting took longer than [`CONNECT_TIMEOUT`].
    #[error("timed out")]
    Timeout,
    /// The connection ended.
    #[error("connection lost")]
    ConnectionLost {
        /// The QUIC application error code, when the data plane closed the
        /// connection with one (a reject code such as 8, replaced).
        code: Option<u64>,
        /// How it ended.
        #[source]
        source: ConnectionError,
    },
    /// The ticket stream failed other than by the connection ending.
    #[error("ticket stream failed: {0}")]
    Stream(String),
    /// The packet to send is not a valid voice packet.
    #[error("invalid voice packet")]
    Packet(#[from] WireError),
    /// quinn could not send the datagram (too large, or datagrams are off).
    #[error("cannot send datagram")]
    Datagram(#[source] SendDatagramError),
}

impl VoiceError {
    /// The error for a connection that ended, with its application close
    /// code when there is one.
    fn lost(source: ConnectionError) -> Self {
        let code = match &source {
            ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
            _ => None,
        };
        VoiceError::ConnectionLost { code, source }
    }
}

/// One client's voice connection to a data plane, after its ticket was
/// accepted.
///
/// `send` and `recv` take `&self`, so one task can talk while another
/// listens on the same client.
#[derive(Debug)]
pub struct VoiceClient {
    /// The UDP socket's endpoint; the connection dies with it.
    endpoint: Endpoint,
    /// Whether this client alone uses `endpoint` (and so may wait for it to
    /// go idle when closing).
    owns_endpoint: bool,
    connection: quinn::Connection,
    /// The session id the data plane accepted the ticket for.
    session_id: u32,
    /// Received datagrams that were not valid forwarded voice: counted so
    /// that a test or the load report can show them, never a panic.
    malformed: AtomicU64,
}

impl VoiceClient {
    /// Connects to the data plane at `endpoint`, whose certificate has
    /// SHA-256 `cert_sha256_hex` (64 hex digits), and presents `ticket`.
    /// Returns once the ticket is accepted; bounded by [`CONNECT_TIMEOUT`].
    /// The client gets a UDP socket of its own, as a real client has.
    pub async fn connect(
        endpoint: SocketAddr,
        cert_sha256_hex: &str,
        ticket: &[u8],
    ) -> Result<Self, VoiceError> {
        let socket = client_endpoint(endpoint)?;
        Self::handshake(socket, true, endpoint, cert_sha256_hex, ticket).await
    }

    /// Like [`connect`](Self::connect), over `socket`, a client endpoint
    /// that other connections share (see [`client_endpoint`]): QUIC tells
    /// connections apart by their ids, so one UDP socket can carry many,
    /// which spares a load generator thousands of sockets and tasks.
    pub async fn connect_via(
        socket: &Endpoint,
        endpoint: SocketAddr,
        cert_sha256_hex: &str,
        ticket: &[u8],
    ) -> Result<Self, VoiceError> {
        Self::handshake(socket.clone(), false, endpoint, cert_sha256_hex, ticket).await
    }

    async fn handshake(
        client: Endpoint,
        owns_endpoint: bool,
        endpoint: SocketAddr,
        cert_sha256_hex: &str,
        ticket: &[u8],
    ) -> Result<Self, VoiceError> {
        let pin = parse_pin(cert_sha256_hex)?;
        let request = exchange::encode_request(ticket)
            .map_err(|TicketTooLong(len)| VoiceError::TicketTooLong(len))?;
        let config = client_config(pin)?;
        let connecting = client
            .connect_with(config, endpoint, "localhost")
            .map_err(|source| VoiceError::Connect {
                addr: endpoint,
                source,
            })?;
        let exchange = async {
            let connection = connecting
                .await
                .map_err(|source| handshake_error(endpoint, source))?;
            let session_id = present(&connection, &request).await?;
            Ok::<_, VoiceError>((connection, session_id))
        };
        let (connection, session_id) = tokio::time::timeout(CONNECT_TIMEOUT, exchange)
            .await
            .map_err(|_| VoiceError::Timeout)??;
        Ok(Self {
            endpoint: client,
            owns_endpoint,
            connection,
            session_id,
            malformed: AtomicU64::new(0),
        })
    }

    /// The session id the data plane accepted the ticket for.
    pub fn session_id(&self) -> u32 {
        self.session_id
    }

    /// How many received datagrams were skipped as malformed.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// Sends one voice datagram. It is unreliable: success means quinn
    /// queued it, not that it arrived.
    pub fn send(&self, sequence: u32, timestamp_ms: u32, payload: Bytes) -> Result<(), VoiceError> {
        let datagram = VoicePacket {
            sequence,
            timestamp: timestamp_ms,
            payload,
        }
        .encode()?;
        self.connection
            .send_datagram(datagram)
            .map_err(|e| match e {
                SendDatagramError::ConnectionLost(source) => VoiceError::lost(source),
                other => VoiceError::Datagram(other),
            })
    }

    /// UDP datagrams received on the connection so far, of any kind
    /// (voice, ACKs, keep-alive answers): whether the data plane is still
    /// there.
    pub fn packets_received(&self) -> u64 {
        self.connection.stats().udp_rx.datagrams
    }

    /// The next valid forwarded datagram. Malformed ones are skipped and
    /// counted (see [`malformed`](Self::malformed)). Waits without bound:
    /// callers that need one wrap it in a timeout.
    pub async fn recv(&self) -> Result<Forwarded, VoiceError> {
        loop {
            let datagram = self
                .connection
                .read_datagram()
                .await
                .map_err(VoiceError::lost)?;
            match Forwarded::parse(datagram) {
                Ok(forwarded) => return Ok(forwarded),
                Err(_) => {
                    self.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Closes the connection with application code 0 and waits, briefly,
    /// for the data plane to learn of it, so its slot frees at once rather
    /// than after the idle timeout.
    pub async fn close(self) {
        self.connection.close(VarInt::from_u32(0), b"bye");
        if self.owns_endpoint {
            // Bounded: a data plane that is gone must not hold the caller up.
            let _ = tokio::time::timeout(CLOSE_LINGER, self.endpoint.wait_idle()).await;
        }
        // A shared endpoint outlives this client, and its driver sends the
        // close; waiting for it to go idle would wait for the others.
    }
}

/// A client endpoint on a fresh local UDP socket of the family of `target`,
/// for [`VoiceClient::connect_via`].
pub fn client_endpoint(target: SocketAddr) -> Result<Endpoint, VoiceError> {
    Endpoint::client(local_for(target)).map_err(VoiceError::Bind)
}

/// The local address a client socket for `target` binds: the target's
/// family (a v4 socket cannot reach a v6 address, and a v6 one may not
/// reach v4 where dual-stack is off); loopback for a loopback target
/// (nothing listens outside the machine), else the unspecified address,
/// to route.
pub(crate) fn local_for(target: SocketAddr) -> SocketAddr {
    match (target.is_ipv4(), target.ip().is_loopback()) {
        (true, true) => (Ipv4Addr::LOCALHOST, 0).into(),
        (true, false) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        (false, true) => (Ipv6Addr::LOCALHOST, 0).into(),
        (false, false) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// Runs the ticket exchange on the first bidirectional stream; returns the
/// accepted session id.
async fn present(connection: &quinn::Connection, request: &[u8]) -> Result<u32, VoiceError> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(VoiceError::lost)?;
    send.write_all(request).await.map_err(write_error)?;
    // Only fails if the stream was already finished or reset.
    send.finish()
        .map_err(|e| VoiceError::Stream(e.to_string()))?;
    let answer = recv.read_to_end(MAX_ANSWER).await.map_err(read_error)?;
    parse_answer(&answer)
}

/// The session id of an accepted answer; a refusal or a malformed answer
/// as the error.
fn parse_answer(answer: &[u8]) -> Result<u32, VoiceError> {
    match exchange::parse_answer(answer) {
        Ok(Answer::Accepted(session_id)) => Ok(session_id),
        Ok(Answer::Rejected { code, reason }) => Err(VoiceError::Rejected { code, reason }),
        Err(MalformedAnswer { len }) => Err(VoiceError::BadAnswer { len }),
    }
}

/// Tells a refused pin apart from other handshake failures.
fn handshake_error(addr: SocketAddr, source: ConnectionError) -> VoiceError {
    if is_pin_mismatch(&source) {
        VoiceError::PinMismatch { addr }
    } else {
        VoiceError::Handshake { addr, source }
    }
}

fn write_error(e: WriteError) -> VoiceError {
    match e {
        WriteError::ConnectionLost(source) => VoiceError::lost(source),
        other => VoiceError::Stream(other.to_string()),
    }
}

fn read_error(e: ReadToEndError) -> VoiceError {
    match e {
        ReadToEndError::Read(ReadError::ConnectionLost(source)) => VoiceError::lost(source),
        ReadToEndError::TooLong => VoiceError::BadAnswer {
            len: MAX_ANSWER + 1,
        },
        other => VoiceError::Stream(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each form of answer becomes its result; the framing itself is
    /// tested in `openspeak_voice::exchange`.
    #[test]
    fn answers_become_results() {
        assert_eq!(parse_answer(&[0, 0, 0, 1, 2]).unwrap(), 258);
        match parse_answer(&[3, 0, 2, b'n', b'o']) {
            Err(VoiceError::Rejected { code: 3, reason }) => assert_eq!(reason, "no"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_answer(&[0, 0, 0]),
            Err(VoiceError::BadAnswer { len: 3 })
        ));
    }
}
