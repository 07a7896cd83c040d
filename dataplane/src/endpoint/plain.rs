//! The plain-UDP sessions: for each session admitted over plain UDP, its
//! key, where its client is, which of the client's packets were taken
//! (replays are refused) and the data plane's own packet counter.
//! `openspeak_voice::udp` has the wire format.
//!
//! Sans-IO: the driver hands in packets with the time and the sender's
//! address and gets back what to route, what to answer and where to send
//! it. Which transport carries a session is the session table's business
//! (`sessions.rs`); this only knows the UDP side of the sessions it holds.
//!
//! The rules, as `docs/PROTOCOL.md` tells client authors:
//! - A session has no address until its first valid SEALED packet; then
//!   the address follows the newest valid packet (a NAT rebinding, a new
//!   network), never an older one or a replay.
//! - A session that sends no valid packet for [`IDLE_TIMEOUT`] is dropped,
//!   as an idle QUIC connection is; clients ping in silences.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};

use bytes::Bytes;
use openspeak_router::{Router, RouterConfig, SendLimit, SessionId};
use openspeak_voice::udp::{
    self, Control, Direction, Packet, ReplayWindow, SealedHeader, SessionKey, UdpError,
};

use super::sessions::TicketId;

/// How long a plain-UDP session lives without a valid packet from its
/// client: the same as QUIC's idle timeout, so both transports behave
/// alike for a client that vanishes.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a packet on the UDP port was dropped; each is counted, under the
/// label of `UDP_DROP_REASONS` at its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discard {
    /// Not a packet of the format (short, unknown type, oversized).
    Malformed = 0,
    /// A sealed packet of a session this data plane has no key for.
    UnknownSession,
    /// A sealed packet that failed authentication.
    BadSeal,
    /// A counter already taken, or too old for the replay window.
    Replay,
}

/// What an opened packet asks of the driver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened<'a> {
    /// A TICKET packet with this body, for admission (which only the loop
    /// does): it is not sealed, so nothing was checked yet.
    Ticket(&'a [u8]),
    /// A voice datagram of `session`, for the router.
    Voice(SessionId, &'a [u8]),
    /// A ping of `session` with this id, from this address: answer there.
    Ping(SessionId, u64, SocketAddr),
    /// A valid packet with nothing to do (a control message a client does
    /// not send).
    Nothing,
}

/// Takes a packet read on the plain-UDP port from `from`: a TICKET is
/// handed back as it is; a SEALED packet is opened in place through its
/// session's [`Peer`] (found by `peer`); anything else is malformed.
/// Both the loop and the UDP workers read packets through this.
pub(crate) fn arrive<'a, P: AsRef<Peer>>(
    now: Instant,
    from: SocketAddr,
    packet: &'a mut [u8],
    peer: impl FnOnce(SessionId) -> Option<P>,
) -> Result<Opened<'a>, Discard> {
    let header = match udp::parse(packet) {
        Ok(Packet::Sealed(header)) => header,
        Ok(Packet::Ticket(_)) => {
            // Parsed again so that the body borrows `packet` for as long
            // as the answer does; a TICKET is rare.
            let Ok(Packet::Ticket(body)) = udp::parse(packet) else {
                unreachable!("the same bytes parse the same")
            };
            return Ok(Opened::Ticket(body));
        }
        // A client sends no rejects; anything else is not ours.
        Ok(Packet::Reject { .. }) | Err(_) => return Err(Discard::Malformed),
    };
    let peer = peer(SessionId(header.session_id)).ok_or(Discard::UnknownSession)?;
    peer.as_ref().open(now, from, header, packet)
}

/// One session's UDP side, shared by the loop and every UDP worker
/// (`shard.rs`): whichever thread the kernel hands a client's packet to
/// opens it, and whichever routes a packet for its client seals it.
///
/// Sealing touches only the key, the address and the counter: an atomic
/// and a lock-free read, no lock per forwarded packet. Opening takes the
/// `inbound` lock, but the kernel steers one client address to one socket,
/// so only one thread ever takes it for a client (two, briefly, when its
/// NAT rebinds): uncontended, and one per packet in, not per packet out.
/// Sharing it is what keeps replays out: a replay from another address,
/// steered to another worker, still meets the same window.
pub(crate) struct Peer {
    session: SessionId,
    key: SessionKey,
    /// The ticket it was admitted with.
    ticket: TicketId,
    /// Where its client is; `None` until its first valid sealed packet.
    /// Stored only when it changes (a rebinding), read for every packet
    /// sealed to it.
    addr: ArcSwapOption<SocketAddr>,
    /// The data plane's next packet counter for this session.
    sent: AtomicU64,
    inbound: Mutex<Inbound>,
}

/// What a session's packets in change.
struct Inbound {
    replay: ReplayWindow,
    /// Its send limits: one allowance whichever thread reads its packets
    /// (a client sending from several addresses at once lands on several).
    limit: SendLimit,
    /// When its client was last heard (a valid packet or its ticket).
    heard: Instant,
}

impl Peer {
    fn new(now: Instant, session: SessionId, ticket: TicketId, key: &[u8; udp::KEY_LEN]) -> Peer {
        Peer {
            session,
            key: SessionKey::new(key),
            ticket,
            addr: ArcSwapOption::empty(),
            sent: AtomicU64::new(0),
            inbound: Mutex::new(Inbound {
                replay: ReplayWindow::default(),
                limit: SendLimit::default(),
                heard: now,
            }),
        }
    }

    fn inbound(&self) -> MutexGuard<'_, Inbound> {
        // Nothing panics while holding it; a poisoned lock still holds a
        // whole window.
        self.inbound.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seals `message` for this session into `out`, with a counter of its
    /// own; returns where to send it: `to` when given (answering a packet
    /// from there), else the client's address, `None` while it has none.
    pub(crate) fn seal(
        &self,
        message: &[u8],
        to: Option<SocketAddr>,
        out: &mut Vec<u8>,
    ) -> Option<SocketAddr> {
        let to = to.or_else(|| self.addr.load().as_deref().copied())?;
        let counter = self.sent.fetch_add(1, Ordering::Relaxed);
        udp::seal_into(
            &self.key,
            Direction::ToClient,
            self.session.0,
            counter,
            message,
            out,
        );
        Some(to)
    }

    /// Opens the sealed `packet` of this session (its clear `header`
    /// already parsed) that came from `from`, in place; takes its counter
    /// and follows the client to `from` when it is the newest packet yet.
    pub(crate) fn open<'a>(
        &self,
        now: Instant,
        from: SocketAddr,
        header: SealedHeader,
        packet: &'a mut [u8],
    ) -> Result<Opened<'a>, Discard> {
        let mut inbound = self.inbound();
        if !inbound.replay.check(header.counter) {
            return Err(Discard::Replay);
        }
        let plaintext = udp::open_in_place(&self.key, Direction::ToDataplane, header, packet)
            .map_err(|e| match e {
                UdpError::BadSeal => Discard::BadSeal,
                _ => Discard::Malformed,
            })?;
        if inbound.replay.take(header.counter) && self.addr.load().as_deref() != Some(&from) {
            self.addr.store(Some(Arc::new(from)));
        }
        inbound.heard = now;
        drop(inbound);
        Ok(match Control::parse(plaintext) {
            Some(Control::Ping(id)) => Opened::Ping(self.session, id, from),
            Some(_) => Opened::Nothing,
            None => Opened::Voice(self.session, plaintext),
        })
    }

    /// Takes one voice packet of `payload_len` bytes from the session's
    /// send limits (`config`'s rates); `false` when it is over them. What
    /// [`Router::handle_datagram_limited`](openspeak_router::Router::handle_datagram_limited) asks.
    pub(crate) fn admit(&self, now: Instant, payload_len: usize, config: &RouterConfig) -> bool {
        self.inbound().limit.admit(now, payload_len, config)
    }

    /// Hands `plaintext`, a voice datagram this session sent (just
    /// opened), to `router`, under the session's own send limits rather
    /// than the router's: every thread's router takes from one allowance.
    pub(crate) fn route(
        &self,
        router: &mut Router,
        config: &RouterConfig,
        now: Instant,
        plaintext: &[u8],
    ) {
        let datagram = Bytes::copy_from_slice(plaintext);
        router.handle_datagram_limited(now, self.session, datagram, |len| {
            self.admit(now, len, config)
        });
    }

    fn heard(&self) -> Instant {
        self.inbound().heard
    }
}

/// Every session's UDP side by session id, as last published: what the UDP
/// workers look sessions up in. Replaced whole on every change (admission,
/// removal, expiry: rare next to packets), so a reader holds a consistent
/// map without a lock.
pub(crate) type Directory = ArcSwap<HashMap<SessionId, Arc<Peer>>>;

/// The sessions admitted over plain UDP: the loop's own table, published
/// to a [`Directory`] for the UDP workers after each change.
#[derive(Default)]
pub(crate) struct PlainSessions {
    sessions: HashMap<SessionId, Arc<Peer>>,
    published: Arc<Directory>,
}

impl PlainSessions {
    /// The directory the UDP workers read.
    pub(crate) fn directory(&self) -> Arc<Directory> {
        Arc::clone(&self.published)
    }

    fn publish(&self) {
        self.published.store(Arc::new(self.sessions.clone()));
    }

    /// Whether `session` has a UDP side.
    pub(crate) fn contains(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// Whether `session` holds `ticket` already (a client repeating its
    /// TICKET because the answer was lost).
    pub(crate) fn holds(&self, session: SessionId, ticket: &TicketId) -> bool {
        self.sessions
            .get(&session)
            .is_some_and(|p| p.ticket == *ticket)
    }

    /// Gives `session` a UDP side with `key`, replacing any it had.
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        session: SessionId,
        ticket: TicketId,
        key: &[u8; udp::KEY_LEN],
    ) {
        let peer = Peer::new(now, session, ticket, key);
        self.sessions.insert(session, Arc::new(peer));
        self.publish();
    }

    /// Seals `message` for `session` into `out`; see [`Peer::seal`].
    /// `None` also when the session is unknown.
    pub(crate) fn seal(
        &self,
        session: SessionId,
        message: &[u8],
        to: Option<SocketAddr>,
        out: &mut Vec<u8>,
    ) -> Option<SocketAddr> {
        self.sessions.get(&session)?.seal(message, to, out)
    }

    /// `session`'s UDP side, to open its packets with ([`Peer::open`]).
    pub(crate) fn peer(&self, session: SessionId) -> Option<&Arc<Peer>> {
        self.sessions.get(&session)
    }

    /// Forgets `session`'s UDP side; returns its address, if it had one,
    /// to tell the client why.
    pub(crate) fn remove(&mut self, session: SessionId) -> Option<SocketAddr> {
        let peer = self.sessions.remove(&session)?;
        self.publish();
        peer.addr.load().as_deref().copied()
    }

    /// The sessions idle at `now`, forgotten.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<SessionId> {
        let idle: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.heard()) >= IDLE_TIMEOUT)
            .map(|(s, _)| *s)
            .collect();
        for session in &idle {
            self.sessions.remove(session);
        }
        if !idle.is_empty() {
            self.publish();
        }
        idle
    }

    /// Every session with a UDP side.
    pub(crate) fn sessions(&self) -> Vec<SessionId> {
        self.sessions.keys().copied().collect()
    }

    /// Sessions with a UDP side.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use openspeak_voice::udp::Packet;

    use super::*;

    const KEY: [u8; udp::KEY_LEN] = [9; udp::KEY_LEN];
    const S: SessionId = SessionId(5);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn ticket(nonce: u8) -> TicketId {
        TicketId {
            expires: 1_000,
            nonce: [nonce; 12],
        }
    }

    /// What a client with `KEY` sends as packet `counter`.
    fn client_packet(counter: u64, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        udp::seal_into(
            &SessionKey::new(&KEY),
            Direction::ToDataplane,
            S.0,
            counter,
            plaintext,
            &mut out,
        );
        out
    }

    fn deliver<'a>(
        table: &mut PlainSessions,
        now: Instant,
        from: SocketAddr,
        packet: &'a mut [u8],
    ) -> Result<Opened<'a>, Discard> {
        arrive(now, from, packet, |s| table.peer(s))
    }

    fn table(now: Instant) -> PlainSessions {
        let mut table = PlainSessions::default();
        table.insert(now, S, ticket(1), &KEY);
        table
    }

    #[test]
    fn the_address_comes_from_the_first_valid_packet_and_follows_the_newest() {
        let t0 = Instant::now();
        let mut table = table(t0);
        let mut out = Vec::new();
        // No address yet: nothing can be sent unasked.
        assert_eq!(table.seal(S, b"\x02x", None, &mut out), None);

        let voice = b"\x01\0\0\0\x01\0\0\0\x02\xaa";
        let mut p0 = client_packet(0, voice);
        assert_eq!(
            deliver(&mut table, t0, addr(1000), &mut p0),
            Ok(Opened::Voice(S, &voice[..]))
        );
        assert_eq!(table.seal(S, b"\x02x", None, &mut out), Some(addr(1000)));

        // The NAT rebinds: a newer packet from a new port moves the session.
        let mut p2 = client_packet(2, voice);
        deliver(&mut table, t0, addr(2000), &mut p2).unwrap();
        assert_eq!(table.seal(S, b"\x02x", None, &mut out), Some(addr(2000)));

        // A late packet from the old port is taken but does not move it back.
        let mut p1 = client_packet(1, voice);
        deliver(&mut table, t0, addr(1000), &mut p1).unwrap();
        assert_eq!(table.seal(S, b"\x02x", None, &mut out), Some(addr(2000)));
    }

    #[test]
    fn replays_forgeries_and_strangers_are_dropped_without_moving_anything() {
        let t0 = Instant::now();
        let mut table = table(t0);
        let packet = client_packet(7, b"\x10\0\0\0\0\0\0\0\x01");
        let mut first = packet.clone();
        assert_eq!(
            deliver(&mut table, t0, addr(1000), &mut first),
            Ok(Opened::Ping(S, 1, addr(1000)))
        );
        // The same packet again, even from elsewhere: a replay.
        let mut again = packet.clone();
        assert_eq!(
            deliver(&mut table, t0, addr(3000), &mut again),
            Err(Discard::Replay)
        );
        // A forged newer packet (wrong key): refused, and the window is
        // untouched, so the real packet with that counter still goes.
        let mut forged = Vec::new();
        udp::seal_into(
            &SessionKey::new(&[8; udp::KEY_LEN]),
            Direction::ToDataplane,
            S.0,
            8,
            b"\x01\0\0\0\x01\0\0\0\x02\xaa",
            &mut forged,
        );
        assert_eq!(
            deliver(&mut table, t0, addr(3000), &mut forged),
            Err(Discard::BadSeal)
        );
        let mut real = client_packet(8, b"\x01\0\0\0\x01\0\0\0\x02\xaa");
        assert!(deliver(&mut table, t0, addr(1000), &mut real).is_ok());
        let mut out = Vec::new();
        assert_eq!(table.seal(S, b"\x02x", None, &mut out), Some(addr(1000)));

        let mut stranger = Vec::new();
        udp::seal_into(
            &SessionKey::new(&KEY),
            Direction::ToDataplane,
            99,
            0,
            b"\x10\0\0\0\0\0\0\0\x01",
            &mut stranger,
        );
        assert_eq!(
            deliver(&mut table, t0, addr(1000), &mut stranger),
            Err(Discard::UnknownSession)
        );
    }

    #[test]
    fn each_sealed_answer_takes_a_new_counter() {
        let t0 = Instant::now();
        let table = table(t0);
        let mut out = Vec::new();
        let key = SessionKey::new(&KEY);
        for expected in 0..3u64 {
            table.seal(S, b"\x11\0\0\0\0\0\0\0\x01", Some(addr(1)), &mut out);
            let Ok(Packet::Sealed(header)) = udp::parse(&out) else {
                panic!()
            };
            assert_eq!(header.counter, expected);
            assert!(udp::open_in_place(&key, Direction::ToClient, header, &mut out).is_ok());
        }
    }

    #[test]
    fn the_published_directory_shares_each_sessions_window_address_and_counter() {
        let t0 = Instant::now();
        let mut table = table(t0);
        let directory = table.directory();
        let published = directory.load();
        let peer = published.get(&S).expect("published on insert");

        // A worker opens packet 0 from one address...
        let mut p0 = client_packet(0, b"\x10\0\0\0\0\0\0\0\x01");
        let Ok(Packet::Sealed(header)) = udp::parse(&p0) else {
            panic!()
        };
        assert!(peer.open(t0, addr(1000), header, &mut p0).is_ok());
        // ...so the loop refuses it from another as a replay, and both
        // send to the address the worker learned.
        let mut again = client_packet(0, b"\x10\0\0\0\0\0\0\0\x01");
        assert_eq!(
            deliver(&mut table, t0, addr(2000), &mut again),
            Err(Discard::Replay)
        );
        let mut out = Vec::new();
        assert_eq!(table.seal(S, b"\x02x", None, &mut out), Some(addr(1000)));
        assert_eq!(peer.seal(b"\x02x", None, &mut out), Some(addr(1000)));
        // One counter for both: the next seal, wherever, is number 2.
        table.seal(S, b"\x02x", None, &mut out);
        let Ok(Packet::Sealed(header)) = udp::parse(&out) else {
            panic!()
        };
        assert_eq!(header.counter, 2);

        // Removal is published: the worker's next look-up finds nothing.
        table.remove(S);
        assert!(directory.load().get(&S).is_none());
        table.insert(t0, S, ticket(2), &KEY);
        assert!(directory.load().get(&S).is_some());
        assert_eq!(table.expire(t0 + IDLE_TIMEOUT), [S]);
        assert!(directory.load().is_empty(), "expiry is published too");
    }

    #[test]
    fn idle_sessions_expire() {
        let t0 = Instant::now();
        let mut table = table(t0);
        let mut ping = client_packet(0, b"\x10\0\0\0\0\0\0\0\x01");
        deliver(&mut table, t0 + Duration::from_secs(10), addr(1), &mut ping).unwrap();
        assert!(table.expire(t0 + IDLE_TIMEOUT).is_empty());
        assert_eq!(
            table.expire(t0 + Duration::from_secs(10) + IDLE_TIMEOUT),
            [S]
        );
        assert!(!table.contains(S));
        assert_eq!(table.len(), 0);
    }
}
