//! The plain-UDP side of the endpoint's loop: reading the UDP voice
//! socket, admitting tickets, and sealing what goes out. The rules live in
//! the sans-IO `plain.rs` and `sessions.rs`; this only moves bytes between
//! them, the router and the socket.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use openspeak_router::SessionId;
use openspeak_voice::udp::{self, Control};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::counters::bump;
use super::plain::{self, Discard, Opened};
use super::send_workers::PlainOut;
use super::{Carrier, VoiceEndpoint, admission, shard};
use crate::udp as socket;

/// How often idle plain-UDP sessions are looked for. Coarse on purpose:
/// a session lives 15 s without a packet, so a second more or less does
/// not matter, and one sweep a second costs nothing.
const SWEEP: Duration = Duration::from_secs(1);

impl VoiceEndpoint {
    /// Adds a plain-UDP voice listener on `addr` (`docs/PROTOCOL.md`,
    /// "Plain-UDP transport"), read by this loop alone. Must be called
    /// within a tokio runtime.
    pub fn with_plain_udp(self, addr: SocketAddr) -> io::Result<Self> {
        self.with_plain_udp_workers(addr, 1)
    }

    /// Adds a plain-UDP voice listener on `addr` served by `workers`
    /// threads (`dataplane.udp_workers`): this loop and `workers - 1` UDP
    /// workers (`shard.rs`), each with a socket of its own on the same
    /// port. 0 counts as 1; where `SO_REUSEPORT` is missing (not Unix),
    /// this loop alone. Must be called within a tokio runtime.
    pub fn with_plain_udp_workers(mut self, addr: SocketAddr, workers: usize) -> io::Result<Self> {
        let workers = if cfg!(unix) { workers.max(1) } else { 1 };
        let shared = workers > 1;
        if shared && addr.port() != 0 {
            // Sockets that share a port let any later one with the option
            // join them: a second data plane started on this port by
            // mistake would take a share of the voice instead of failing.
            // A plain bind first fails as it would with one socket.
            drop(std::net::UdpSocket::bind(addr)?);
        }
        let first = bind_plain(addr, shared)?;
        let port = first.local_addr()?;
        self.plain_socket = Some(UdpSocket::from_std(first)?);
        // The loop's count first, so the counts read in thread order.
        self.plain_read = Some(self.counters.udp_reader());
        for index in 1..workers {
            let socket = bind_plain(port, true)?;
            self.shard_sockets.push(socket.try_clone()?);
            self.spawn_shard(index, socket)?;
        }
        Ok(self)
    }

    /// Starts UDP worker `index` on `socket`.
    fn spawn_shard(&mut self, index: usize, socket: std::net::UdpSocket) -> io::Result<()> {
        let to_loop = self
            .from_shards
            .get_or_insert_with(|| mpsc::channel(shard::TO_LOOP))
            .0
            .clone();
        let parts = shard::ShardParts {
            index,
            socket,
            router_config: self.router_config.clone(),
            members: self.members(),
            directory: self.plain.directory(),
            counters: Arc::clone(&self.counters),
            read: self.counters.udp_reader(),
            events: self.events.clone(),
            to_loop,
        };
        self.shards.push(shard::spawn(parts)?);
        Ok(())
    }

    /// Threads reading plain-UDP voice: this loop and its UDP workers (0
    /// without a plain-UDP listener).
    pub fn udp_workers(&self) -> usize {
        match self.plain_socket {
            Some(_) => 1 + self.shards.len(),
            None => 0,
        }
    }

    /// Asks the kernel for `bytes` of buffer each way on every voice
    /// socket (`dataplane.socket_buffer_bytes`); what each socket got, as
    /// (receive, send): the QUIC one first, then the plain-UDP ones (this
    /// loop's, then each UDP worker's).
    pub fn set_socket_buffers(&self, bytes: usize) -> io::Result<Vec<(usize, usize)>> {
        let mut got = vec![socket::size_buffers(self.socket.as_raw_fd(), bytes)?];
        if let Some(plain) = &self.plain_socket {
            got.push(socket::size_buffers(plain.as_raw_fd(), bytes)?);
        }
        for shard in &self.shard_sockets {
            got.push(socket::size_buffers(shard.as_raw_fd(), bytes)?);
        }
        Ok(got)
    }

    /// The address of the plain-UDP listener, if there is one.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_socket.as_ref()?.local_addr().ok()
    }

    /// Reads what the plain-UDP socket holds, up to `RecvBatch::MAX`
    /// packets in one system call, and handles each where it was read.
    pub(super) fn receive_plain(&mut self) {
        let Some(plain_socket) = &self.plain_socket else {
            return;
        };
        let mut batch = std::mem::take(&mut self.plain_recv);
        if let Some(read) = socket::read_batch(plain_socket, &mut batch) {
            self.batch_at = read.earliest;
            let c = &self.counters;
            let truncated = batch.truncated() as u64;
            if let Some(read) = &self.plain_read {
                read.add(batch.len() as u64 + truncated);
            }
            // Longer than any packet of the protocol: it cannot parse.
            c.udp_dropped[Discard::Malformed as usize].fetch_add(truncated, Ordering::Relaxed);
            for i in 0..batch.len() {
                let (packet, received) = batch.get(i);
                self.handle_plain(read.at, read.wall, received.from, packet);
            }
        }
        self.plain_recv = batch;
    }

    /// Handles `packet`, which came from `from`; it is opened in place.
    fn handle_plain(
        &mut self,
        now: Instant,
        wall: SystemTime,
        from: SocketAddr,
        packet: &mut [u8],
    ) {
        let opened = plain::arrive(now, from, packet, |s| self.plain.peer(s));
        match opened {
            Ok(Opened::Ticket(body)) => self.plain_ticket(now, wall, from, body),
            Ok(Opened::Voice(session, plaintext)) => {
                bump(&self.counters.datagrams_in);
                if let Some(peer) = self.plain.peer(session) {
                    peer.route(&mut self.router, &self.router_config, now, plaintext);
                }
            }
            Ok(Opened::Ping(session, id, from)) => {
                let mut pong = Vec::with_capacity(9);
                Control::Pong(id).encode(&mut pong);
                self.send_plain(session, &pong, Some(from));
            }
            Ok(Opened::Nothing) => {}
            Err(drop) => bump(&self.counters.udp_dropped[drop as usize]),
        }
    }

    /// Admits or refuses the ticket a TICKET packet from `from` presents;
    /// the answer goes back to `from`.
    pub(super) fn plain_ticket(
        &mut self,
        now: Instant,
        wall: SystemTime,
        from: SocketAddr,
        body: &[u8],
    ) {
        let verified = admission::verify(
            &self.verifier.read().unwrap_or_else(|e| e.into_inner()),
            body,
            wall,
        );
        let outcome = verified.and_then(|a| {
            // A repeated TICKET (its answer was lost) is answered again.
            if !self.plain.holds(a.session, &a.ticket) {
                self.admit(a.session, a.ticket, Carrier::Udp(a.session))?;
                self.plain.insert(now, a.session, a.ticket, &a.key);
                bump(&self.counters.accepted);
                self.plain_sweep = self.plain_sweep.min(now + SWEEP);
            }
            Ok(a.session)
        });
        match outcome {
            Ok(session) => {
                let mut accepted = Vec::with_capacity(5);
                Control::Accepted(session.0).encode(&mut accepted);
                self.send_plain(session, &accepted, Some(from));
            }
            Err(code) => {
                bump(&self.counters.rejected[code as usize]);
                self.send_to(&udp::encode_reject(code), from);
            }
        }
    }

    /// Seals `message` for `session` and sends it to `to`, or to the
    /// session's address; whether it went out.
    pub(super) fn send_plain(
        &mut self,
        session: SessionId,
        message: &[u8],
        to: Option<SocketAddr>,
    ) -> bool {
        let mut buf = std::mem::take(&mut self.plain_buf);
        let sent = match self.plain.seal(session, message, to, &mut buf) {
            Some(to) => self.send_to(&buf, to),
            None => false,
        };
        self.plain_buf = buf;
        sent
    }

    /// Sends the forwarded packets gathered so far, timing them with one
    /// clock read: from when their input arrived to when the kernel has
    /// them.
    pub(super) fn flush_plain(&mut self) {
        let Some(plain_socket) = &self.plain_socket else {
            return;
        };
        self.plain_out
            .send_rest(plain_socket.as_fd(), &self.counters, self.batch_at);
    }

    /// Sends the plain-UDP batch `i`, which is full.
    pub(super) fn send_plain_batch(&mut self, i: usize) {
        let Some(plain_socket) = &self.plain_socket else {
            return;
        };
        self.plain_out
            .send_full(i, plain_socket.as_fd(), &self.counters, self.batch_at);
    }

    /// Hands the plain-UDP fan-out's system calls to `count` threads of
    /// their own (`dataplane.udp_send_workers`); 0 keeps them on the
    /// loop's thread. Needs [`VoiceEndpoint::with_plain_udp`] first.
    pub fn with_send_workers(mut self, count: usize) -> io::Result<Self> {
        let Some(plain_socket) = &self.plain_socket else {
            return Err(io::Error::other("send workers need the plain UDP socket"));
        };
        self.plain_out = PlainOut::with_workers(plain_socket.as_fd(), count, &self.counters)?;
        Ok(self)
    }

    /// Threads sending plain-UDP voice besides the loop.
    pub fn send_workers(&self) -> usize {
        self.plain_out.workers()
    }

    /// Sends one packet on the plain-UDP socket; whether the kernel took it.
    fn send_to(&self, packet: &[u8], to: SocketAddr) -> bool {
        let Some(plain_socket) = &self.plain_socket else {
            return false;
        };
        match plain_socket.try_send_to(packet, to) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, %to, "plain UDP send failed");
                false
            }
        }
    }

    /// Ends `session`'s UDP side, telling its client why (`code`: a reject
    /// code, or 0 for a shutdown).
    pub(super) fn close_plain(&mut self, session: SessionId, code: u8) {
        let mut closed = Vec::with_capacity(2);
        Control::Closed(code).encode(&mut closed);
        self.send_plain(session, &closed, None);
        self.plain.remove(session);
    }

    /// Forgets the plain-UDP sessions whose clients went quiet.
    pub(super) fn expire_plain(&mut self, now: Instant) {
        let idle = self.plain.expire(now);
        for &session in &idle {
            if self
                .sessions
                .lost(session, Carrier::Udp(session), &mut self.router)
            {
                self.note_connections();
            }
        }
        self.mirror(idle);
        self.plain_sweep = now + SWEEP;
    }
}

/// A plain-UDP voice socket on `addr`, non-blocking, with receive
/// timestamps and the default buffers; with `shared`, one of several on
/// the port (`SO_REUSEPORT`), which the kernel gives each client address
/// to one of.
fn bind_plain(addr: SocketAddr, shared: bool) -> io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    #[cfg(unix)]
    if shared {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = shared;
    socket.bind(&addr.into())?;
    let plain = std::net::UdpSocket::from(socket);
    if let Err(e) = socket::enable_receive_timestamps(&plain) {
        tracing::warn!(error = %e, "no kernel receive timestamps on the plain UDP socket");
    }
    plain.set_nonblocking(true)?;
    socket::size_buffers(plain.as_raw_fd(), socket::SOCKET_BUFFER_BYTES)?;
    Ok(plain)
}
