//! Voice over plain UDP (`docs/PROTOCOL.md`, "Plain-UDP transport"): for
//! networks and clients that cannot do QUIC. Each packet is sealed with
//! the session key from `OpenVoice`; the framing, sealing and replay window
//! come from `openspeak_voice::udp`, shared with the data plane, so this
//! file only sequences them over a socket.
//!
//! Unlike QUIC there is no connection to keep the path open: a client in
//! silence calls [`UdpVoiceClient::ping`] every few seconds (the data plane
//! forgets a session it has not heard from for 15 s), which also measures
//! the round-trip time.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use openspeak_voice::udp::{
    self, Control, Direction, KEY_LEN, Packet, ReplayWindow, SessionKey, UdpError,
};
use openspeak_voice::{Forwarded, VoicePacket, WireError};
use thiserror::Error;
use tokio::net::UdpSocket;

use crate::voice::local_for;

/// How long [`UdpVoiceClient::connect`] waits for the data plane's answer
/// in all, resending the ticket meanwhile (UDP may lose either).
pub const UDP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait for an answer before sending the ticket again.
const RESEND: Duration = Duration::from_millis(250);

/// The largest packet the data plane sends: a sealed forwarded datagram
/// with the largest payload.
const MAX_PACKET: usize = udp::SEALED_HEADER_LEN + udp::MAX_PLAINTEXT + udp::TAG_LEN;

/// Why connecting, sending or receiving over plain UDP failed.
#[derive(Debug, Error)]
pub enum UdpVoiceError {
    /// The session key is not 32 bytes.
    #[error("a session key is {KEY_LEN} bytes, not {0}")]
    BadKey(usize),
    /// The ticket is longer than a TICKET packet can carry.
    #[error("ticket of {0} bytes is too long")]
    TicketTooLong(usize),
    /// No local UDP socket could be bound, or aimed at the data plane.
    #[error("cannot open a UDP socket to {addr}")]
    Bind {
        /// The data plane's address.
        addr: SocketAddr,
        /// The system's reason.
        #[source]
        source: io::Error,
    },
    /// The data plane refused the ticket (`docs/PROTOCOL.md` lists codes).
    #[error("ticket rejected with code {code}: {reason}")]
    Rejected {
        /// The reject code.
        code: u8,
        /// The data plane's reason, for people.
        reason: String,
    },
    /// No answer within [`UDP_CONNECT_TIMEOUT`].
    #[error("no answer from {addr} within {after:?}")]
    Timeout {
        /// The data plane's address.
        addr: SocketAddr,
        /// How long it waited.
        after: Duration,
    },
    /// The data plane ended this session's UDP voice (code 8: replaced,
    /// 9: removed, 0: it shut down).
    #[error("the data plane closed the session's voice with code {code}")]
    Closed {
        /// The code it gave.
        code: u8,
    },
    /// The packet to send is not a valid voice packet.
    #[error("invalid voice packet")]
    Packet(#[from] WireError),
    /// The socket failed.
    #[error("UDP socket error")]
    Io(#[from] io::Error),
}

/// One client's plain-UDP voice to a data plane, after its ticket was
/// accepted. `send` and `recv` take `&self`, so one task can talk while
/// another listens.
#[derive(Debug)]
pub struct UdpVoiceClient {
    /// Aimed at the data plane, so only its packets are read.
    socket: UdpSocket,
    key: SessionKey,
    session_id: u32,
    /// The next counter (nonce) to seal with.
    sent: AtomicU64,
    /// Which of the data plane's counters were taken.
    replay: Mutex<ReplayWindow>,
    /// Pings carry their send time, as microseconds since this.
    origin: Instant,
    /// The last round-trip time measured, in microseconds (0: none yet).
    rtt_us: AtomicU64,
    /// Received packets that were not valid: counted, never a panic.
    malformed: AtomicU64,
    /// Valid packets received from the data plane, of any kind.
    heard: AtomicU64,
}

impl UdpVoiceClient {
    /// Presents `ticket` to the data plane's plain-UDP listener at
    /// `endpoint`; `session_key` is the grant's. Once it is accepted, pings
    /// until answered, so that the data plane knows where to send voice;
    /// returns then (the round-trip time is known from then on). Both
    /// steps resend every 250 ms, within [`UDP_CONNECT_TIMEOUT`] in all.
    pub async fn connect(
        endpoint: SocketAddr,
        ticket: &[u8],
        session_key: &[u8],
    ) -> Result<Self, UdpVoiceError> {
        let key: &[u8; KEY_LEN] = session_key
            .try_into()
            .map_err(|_| UdpVoiceError::BadKey(session_key.len()))?;
        let hello = udp::encode_ticket(ticket).map_err(|e| UdpVoiceError::TicketTooLong(e.0))?;
        let socket = open_socket(endpoint)
            .await
            .map_err(|source| UdpVoiceError::Bind {
                addr: endpoint,
                source,
            })?;
        let client = Self {
            socket,
            key: SessionKey::new(key),
            session_id: 0,
            sent: AtomicU64::new(0),
            replay: Mutex::new(ReplayWindow::default()),
            origin: Instant::now(),
            rtt_us: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            heard: AtomicU64::new(0),
        };
        let deadline = Instant::now() + UDP_CONNECT_TIMEOUT;
        let session_id = until_answered(
            endpoint,
            deadline,
            || async {
                client.socket.send(&hello).await?;
                Ok(())
            },
            || client.answer(),
        )
        .await?;
        let client = Self {
            session_id,
            ..client
        };
        // Until a sealed packet of ours arrives, the data plane does not
        // know where to send voice: ping until it answers, so that voice
        // reaches this client from the moment `connect` returns.
        until_answered(
            endpoint,
            deadline,
            || async { client.ping() },
            || client.pong(),
        )
        .await?;
        Ok(client)
    }

    /// Reads until a PONG arrives (recording the round-trip time), or the
    /// data plane closes the session.
    async fn pong(&self) -> Result<(), UdpVoiceError> {
        let mut buf = vec![0; MAX_PACKET];
        loop {
            let len = self.socket.recv(&mut buf).await?;
            let Ok(plaintext) = self.open(&mut buf[..len]) else {
                self.count_malformed();
                continue;
            };
            match Control::parse(plaintext) {
                Some(Control::Pong(sent_us)) => {
                    self.note_rtt(sent_us);
                    return Ok(());
                }
                Some(Control::Closed(code)) => return Err(UdpVoiceError::Closed { code }),
                // Nothing else is sent to a session whose address the data
                // plane does not know yet.
                _ => {}
            }
        }
    }

    fn note_rtt(&self, sent_us: u64) {
        let now_us = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(0);
        self.rtt_us
            .store(now_us.saturating_sub(sent_us).max(1), Ordering::Relaxed);
    }

    /// Reads until the data plane answers the ticket: its session id, or
    /// its refusal.
    async fn answer(&self) -> Result<u32, UdpVoiceError> {
        let mut buf = vec![0; MAX_PACKET];
        loop {
            let len = self.socket.recv(&mut buf).await?;
            match udp::parse(&buf[..len]) {
                Ok(Packet::Reject { code, reason }) => {
                    return Err(UdpVoiceError::Rejected {
                        code,
                        reason: String::from_utf8_lossy(reason).into_owned(),
                    });
                }
                Ok(Packet::Sealed(_)) => match self.open(&mut buf[..len]) {
                    Ok(plaintext) => {
                        if let Some(Control::Accepted(session)) = Control::parse(plaintext) {
                            return Ok(session);
                        }
                    }
                    Err(_) => self.count_malformed(),
                },
                _ => self.count_malformed(),
            }
        }
    }

    /// The session id the data plane accepted the ticket for.
    pub fn session_id(&self) -> u32 {
        self.session_id
    }

    /// How many received packets were skipped as malformed, forged or
    /// replayed.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// Valid packets received from the data plane so far, of any kind
    /// (voice, pong, close), as read by [`recv`](Self::recv): whether the
    /// data plane is still there.
    pub fn packets_received(&self) -> u64 {
        self.heard.load(Ordering::Relaxed)
    }

    /// The round-trip time of the last ping answered, if any was.
    pub fn rtt(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// The local address of the client's socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends one voice packet, sealed. Unreliable: success means the
    /// kernel took it, not that it arrived.
    pub fn send(
        &self,
        sequence: u32,
        timestamp_ms: u32,
        payload: Bytes,
    ) -> Result<(), UdpVoiceError> {
        let datagram = VoicePacket {
            sequence,
            timestamp: timestamp_ms,
            payload,
        }
        .encode()?;
        self.send_sealed(&datagram)
    }

    /// Sends a ping. It keeps the data plane's and any NAT's state for
    /// this client alive through silences, and its answer, read by
    /// [`recv`](Self::recv), updates [`rtt`](Self::rtt).
    pub fn ping(&self) -> Result<(), UdpVoiceError> {
        let now_us = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut message = Vec::with_capacity(9);
        Control::Ping(now_us).encode(&mut message);
        self.send_sealed(&message)
    }

    fn send_sealed(&self, plaintext: &[u8]) -> Result<(), UdpVoiceError> {
        let counter = self.sent.fetch_add(1, Ordering::Relaxed);
        let mut packet =
            Vec::with_capacity(udp::SEALED_HEADER_LEN + plaintext.len() + udp::TAG_LEN);
        udp::seal_into(
            &self.key,
            Direction::ToDataplane,
            self.session_id,
            counter,
            plaintext,
            &mut packet,
        );
        self.socket.try_send(&packet)?;
        Ok(())
    }

    /// The next forwarded voice datagram. Answers to pings are taken in
    /// passing; malformed, forged and replayed packets are skipped and
    /// counted. Waits without bound: callers that need one wrap it in a
    /// timeout.
    pub async fn recv(&self) -> Result<Forwarded, UdpVoiceError> {
        let mut buf = vec![0; MAX_PACKET];
        loop {
            let len = self.socket.recv(&mut buf).await?;
            let plaintext = match self.open(&mut buf[..len]) {
                Ok(plaintext) => plaintext,
                Err(_) => {
                    self.count_malformed();
                    continue;
                }
            };
            match Control::parse(plaintext) {
                Some(Control::Pong(sent_us)) => self.note_rtt(sent_us),
                Some(Control::Closed(code)) => return Err(UdpVoiceError::Closed { code }),
                Some(_) => {}
                None => match Forwarded::parse(Bytes::copy_from_slice(plaintext)) {
                    Ok(forwarded) => return Ok(forwarded),
                    Err(_) => self.count_malformed(),
                },
            }
        }
    }

    /// Opens a sealed packet from the data plane, refusing replays.
    fn open<'a>(&self, packet: &'a mut [u8]) -> Result<&'a [u8], UdpError> {
        let Packet::Sealed(header) = udp::parse(packet)? else {
            return Err(UdpError::UnknownType(packet[0]));
        };
        let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        if !replay.check(header.counter) {
            return Err(UdpError::BadSeal);
        }
        let plaintext = udp::open_in_place(&self.key, Direction::ToClient, header, packet)?;
        replay.take(header.counter);
        self.heard.fetch_add(1, Ordering::Relaxed);
        Ok(plaintext)
    }

    fn count_malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends with `send`, waits up to [`RESEND`] for `answer`, and again,
/// until an answer comes or `deadline` passes (UDP may lose either way).
async fn until_answered<T, S, A>(
    endpoint: SocketAddr,
    deadline: Instant,
    send: impl Fn() -> S,
    answer: impl Fn() -> A,
) -> Result<T, UdpVoiceError>
where
    S: Future<Output = Result<(), UdpVoiceError>>,
    A: Future<Output = Result<T, UdpVoiceError>>,
{
    loop {
        send().await?;
        let wait = RESEND.min(deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(wait, answer()).await {
            Ok(answer) => return answer,
            Err(_) if Instant::now() >= deadline => {
                return Err(UdpVoiceError::Timeout {
                    addr: endpoint,
                    after: UDP_CONNECT_TIMEOUT,
                });
            }
            Err(_) => {}
        }
    }
}

/// A UDP socket of the family of `target` (see `voice::local_for`),
/// aimed at it.
async fn open_socket(target: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(local_for(target)).await?;
    socket.connect(target).await?;
    Ok(socket)
}
