//! The QUIC driver around the [`Router`]: accepts voice connections, checks
//! their tickets, and moves datagrams between the connections and the
//! router.
//!
//! One task owns the UDP socket, `quinn-proto`'s sans-IO endpoint, every
//! connection and the router, and drives them all from one loop; nothing
//! is locked and no task is woken per packet. A wake-up reads every packet
//! the socket holds, routes the voice among them, and only then writes
//! what that produced, so a listener hearing two speakers at once gets
//! both datagrams in one QUIC packet. The high-level `quinn` crate would
//! spawn a task per connection and wake it for every forwarded datagram,
//! which at 49 listeners per speaker packet cost about as much as the
//! sends themselves (`BENCHMARKS.md`). Meant for a `current_thread` runtime
//! (`docs/PERFORMANCE.md`: cross-thread wake-ups cost more than they buy);
//! scale with one endpoint per core.
//!
//! Around the loop: `admission.rs` (where each connection is in the ticket
//! exchange), `sessions.rs` (which connection carries each session, and
//! the rules for replacing, removing and resyncing them: sans-IO, tested
//! without sockets), `counters.rs` (what `/metrics` reads) and `handle.rs`
//! (how other tasks reach this one). The exchange's framing and reject
//! codes are `openspeak_voice::exchange`, shared with clients.

mod admission;
mod counters;
mod handle;
mod plain;
mod plain_driver;
mod quic_out;
mod send_workers;
mod sessions;
mod shard;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use openspeak_router::{
    ListenerStats, Member, Router, RouterConfig, RouterEvent, SessionId, SpeakerStats,
};
use openspeak_shared::ticket::TicketVerifier;
use openspeak_voice::exchange::{encode_accept, encode_reject};
use openspeak_voice::{QuicConfigError, RejectCode, server_config};
use quinn_proto::{ConnectionHandle, DatagramEvent, Dir, Event, StreamEvent, VarInt};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use self::admission::{REJECT_LINGER, Request, Stage, read_request};
use self::counters::{Counters, bump};
pub use self::counters::{EndpointStats, FORWARD_DELAY_BUCKETS, ForwardDelay, UDP_DROP_REASONS};
use self::handle::Command;
pub use self::handle::{Handle, HandleError, MemberChange};
use self::plain::PlainSessions;
use self::quic_out::{Offered, VoiceOut};
use self::send_workers::PlainOut;
pub use self::sessions::Resynced;
use self::sessions::SessionTable;
use self::shard::{ShardCommand, ShardLink, ToLoop};
use crate::DataplaneCert;
use crate::udp;

/// The largest UDP payload written.
const MAX_UDP_PAYLOAD: usize = 65_535;

/// How many QUIC connections not yet admitted (handshaking, waiting for a
/// ticket, or refused and draining) the endpoint holds before it asks new
/// ones to prove their address first (a QUIC Retry). A Retry costs the
/// data plane no state and a client one round trip, and keeps a flood of
/// Initials from spoofed addresses from costing memory or being answered
/// with more bytes than it sent.
pub const RETRY_ABOVE: usize = 64;

/// The most QUIC connections not yet admitted: beyond it new ones are
/// refused at once (CONNECTION_REFUSED) until some are admitted or gone.
/// Each holds tens of KiB of handshake state for at most the ticket
/// timeout, so this bounds that memory; honest clients get in within
/// milliseconds, so it is only reached by a flood or a stampede, whose
/// clients retry.
pub const MAX_UNADMITTED: usize = 1024;
/// Queued router events before the router task starts dropping them.
const EVENT_QUEUE: usize = 1024;
/// The most [`Handle`] commands handled in one turn of the loop.
const COMMANDS_PER_TURN: usize = 64;

/// Why [`VoiceEndpoint::bind`] failed.
#[derive(Debug, Error)]
pub enum BindError {
    /// The certificate could not be made into a QUIC server config.
    #[error("quic config: {0}")]
    Config(#[from] QuicConfigError),
    /// The UDP socket could not be bound.
    #[error("bind: {0}")]
    Io(#[from] io::Error),
}

/// A QUIC voice listener and the router it feeds. Run it with
/// [`VoiceEndpoint::run`]; control it with the [`Handle`] from `bind`.
pub struct VoiceEndpoint {
    socket: UdpSocket,
    /// quinn's sans-IO endpoint: connection ids, handshakes, stateless
    /// replies.
    quic: quinn_proto::Endpoint,
    server_config: Arc<quinn_proto::ServerConfig>,
    conns: HashMap<ConnectionHandle, Conn>,
    /// When each connection next needs [`VoiceEndpoint::on_timers`], in
    /// order; mirrors `Conn::timer`.
    timers: BTreeSet<(Instant, ConnectionHandle)>,
    /// Connections with work to do (input to read, output to write).
    dirty: Vec<ConnectionHandle>,
    router: Router,
    /// Shared with the control link, which inserts and rotates keys.
    verifier: Arc<RwLock<TicketVerifier>>,
    counters: Arc<Counters>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<RouterEvent>,
    /// What carries each admitted session: where its transmits go.
    sessions: SessionTable<Carrier>,
    /// The plain-UDP voice socket, when there is one.
    plain_socket: Option<UdpSocket>,
    /// The UDP side of the sessions it carries.
    plain: PlainSessions,
    /// When idle plain-UDP sessions are next looked for.
    plain_sweep: Instant,
    /// Scratch space plain-UDP packets are sealed into.
    plain_buf: Vec<u8>,
    /// Sealed plain-UDP packets gathered during a drain of the router, to
    /// go out in as few system calls as possible, from this thread or the
    /// send workers'.
    plain_out: PlainOut,
    /// When the input being handled now arrived: the earliest kernel
    /// receive time of this wake-up's packets (or the read, where the
    /// kernel gives none), or when the timer fired. Forward delays count
    /// from it.
    batch_at: Instant,
    /// Scratch space quinn writes outgoing packets into.
    send_buf: Vec<u8>,
    /// The QUIC packets of this turn, for every connection: they go to the
    /// kernel together (`sendmmsg`) at the end of the turn, or as each 64
    /// fill a batch.
    quic_out: udp::SendBatch,
    /// When the voice in each of `quic_out`'s packets arrived, for the
    /// forward delay, which ends when the kernel has the packet.
    quic_voice: Vec<Instant>,
    /// Where the QUIC socket's packets are read into. One read per
    /// wake-up, of at most `RecvBatch::MAX` packets, so one busy moment
    /// cannot starve commands and timers (quinn's `work_limiter` idea).
    quic_recv: udp::RecvBatch,
    /// The same for the plain-UDP socket.
    plain_recv: udp::RecvBatch,
    /// This loop's count of plain-UDP packets read, once it has the socket.
    plain_read: Option<Arc<counters::ReadCount>>,
    /// QUIC connections never admitted and not yet forgotten.
    unadmitted: usize,
    /// See [`RETRY_ABOVE`] and [`MAX_UNADMITTED`].
    limits: AdmissionLimits,
    /// What the plain-UDP workers' routers are made with.
    router_config: RouterConfig,
    /// The plain-UDP workers beside this loop (`shard.rs`); empty with one
    /// socket.
    shards: Vec<ShardLink>,
    /// Their sockets (duplicated descriptors), for sizing buffers.
    shard_sockets: Vec<std::net::UdpSocket>,
    /// What the workers hand this loop, and the sender each gets a clone of.
    from_shards: Option<(mpsc::Sender<ToLoop>, mpsc::Receiver<ToLoop>)>,
}

/// When new QUIC connections must prove their address, and when they are
/// refused; see [`RETRY_ABOVE`] and [`MAX_UNADMITTED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Unadmitted connections beyond which new ones get a Retry.
    pub retry_above: usize,
    /// Unadmitted connections beyond which new ones are refused.
    pub max_unadmitted: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            retry_above: RETRY_ABOVE,
            max_unadmitted: MAX_UNADMITTED,
        }
    }
}

/// What carries a session's voice: a QUIC connection, or plain UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    Quic(ConnectionHandle),
    Udp(SessionId),
}

/// One QUIC connection and where it is in the ticket exchange.
struct Conn {
    quic: quinn_proto::Connection,
    stage: Stage,
    /// The instant this connection is filed under in `timers`.
    timer: Option<Instant>,
    /// Whether it is in `dirty` already.
    dirty: bool,
    /// Forwarded voice not yet sent: in quinn's datagram queue, or waiting
    /// in front of it while congestion control holds the listener back.
    voice: VoiceOut,
    /// Counted in `VoiceEndpoint::unadmitted`: never admitted yet.
    unadmitted: bool,
}

impl std::fmt::Debug for VoiceEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceEndpoint")
            .field("local_addr", &self.local_addr().ok())
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl VoiceEndpoint {
    /// Binds the voice listener on `addr` with `cert` as its identity.
    /// Must be called within a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        cert: &DataplaneCert,
        router_config: RouterConfig,
        verifier: Arc<RwLock<TicketVerifier>>,
    ) -> Result<(VoiceEndpoint, Handle), BindError> {
        let server_config = Arc::new(server_config(cert.certified_key())?);
        let socket = std::net::UdpSocket::bind(addr)?;
        // The stamps only make the forward delay exact; voice flows without.
        if let Err(e) = udp::enable_receive_timestamps(&socket) {
            tracing::warn!(error = %e, "no kernel receive timestamps: forward delays will start at the read");
        }
        socket.set_nonblocking(true)?;
        udp::size_buffers(socket.as_raw_fd(), udp::SOCKET_BUFFER_BYTES)?;
        let socket = UdpSocket::from_std(socket)?;
        // Path MTU discovery is off: voice packets are a few hundred bytes
        // at most, and probing needs the don't-fragment bit this plain
        // socket does not set. QUIC's 1,200-byte minimum is plenty.
        let quic = quinn_proto::Endpoint::new(
            Arc::new(quinn_proto::EndpointConfig::default()),
            Some(server_config.clone()),
            false,
            None,
        );
        let counters = Arc::new(Counters::default());
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        let handle = Handle {
            commands: commands_tx,
            counters: counters.clone(),
            events: Arc::new(Mutex::new(Some(events_rx))),
        };
        let this = VoiceEndpoint {
            socket,
            quic,
            server_config,
            conns: HashMap::new(),
            timers: BTreeSet::new(),
            dirty: Vec::new(),
            router: Router::new(router_config.clone()),
            verifier,
            counters,
            commands,
            events,
            sessions: SessionTable::default(),
            plain_socket: None,
            plain: PlainSessions::default(),
            plain_sweep: Instant::now(),
            plain_buf: Vec::with_capacity(MAX_UDP_PAYLOAD),
            plain_out: PlainOut::inline(),
            batch_at: Instant::now(),
            send_buf: Vec::with_capacity(MAX_UDP_PAYLOAD),
            quic_out: udp::SendBatch::default(),
            quic_voice: Vec::new(),
            quic_recv: udp::RecvBatch::new(),
            plain_recv: udp::RecvBatch::new(),
            plain_read: None,
            unadmitted: 0,
            limits: AdmissionLimits::default(),
            router_config,
            shards: Vec::new(),
            shard_sockets: Vec::new(),
            from_shards: None,
        };
        Ok((this, handle))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Other limits on connections not yet admitted than the defaults
    /// (for tests, which reach them with a handful of connections).
    pub fn with_admission_limits(mut self, limits: AdmissionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Accepts connections and routes voice until [`Handle::shutdown`] is
    /// called or every handle is dropped.
    pub async fn run(mut self) {
        let mut alarm = Alarm::new();
        loop {
            alarm.set(self.next_wake());
            tokio::select! {
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        tracing::error!(error = %e, "voice socket failed");
                        break;
                    }
                    self.receive();
                }
                ready = plain_readable(self.plain_socket.as_ref()) => {
                    if let Err(e) = ready {
                        tracing::error!(error = %e, "plain UDP voice socket failed");
                        break;
                    }
                    self.receive_plain();
                }
                command = self.commands.recv() => {
                    if !self.commands_ready(command) {
                        break;
                    }
                }
                message = from_shards(self.from_shards.as_mut()) => self.shard_messages(message),
                () = alarm.fired() => self.on_timers(Instant::now()),
            }
            self.flush(Instant::now());
        }
        self.close_all();
        // The workers stop when their command channels close; their
        // sockets are closed once they have.
        for shard in std::mem::take(&mut self.shards) {
            drop(shard.commands);
            let _ = shard.done.await;
        }
    }

    /// The earliest instant a connection, the router or the plain-UDP
    /// sessions need the time.
    fn next_wake(&self) -> Option<Instant> {
        let conns = self.timers.first().map(|(t, _)| *t);
        let plain = (self.plain.len() > 0).then_some(self.plain_sweep);
        [conns, self.router.poll_timeout(), plain]
            .into_iter()
            .flatten()
            .min()
    }

    /// Reads what the socket holds, up to `RecvBatch::MAX` packets in one
    /// system call, with one read of each clock for the batch.
    fn receive(&mut self) {
        let mut batch = std::mem::take(&mut self.quic_recv);
        if let Some(read) = udp::read_batch(&self.socket, &mut batch) {
            // A QUIC peer sends at most the payload quinn announces, which
            // fits a slot; a longer packet breaks the protocol, so it goes
            // unread like any other undecodable one.
            let now = read.at;
            self.batch_at = read.earliest;
            for i in 0..batch.len() {
                let (packet, received) = batch.get(i);
                // quinn keeps what it is given, so it gets its own copy.
                let data = BytesMut::from(&packet[..]);
                self.send_buf.clear();
                match self
                    .quic
                    .handle(now, received.from, None, None, data, &mut self.send_buf)
                {
                    Some(DatagramEvent::ConnectionEvent(ch, event)) => {
                        if let Some(conn) = self.conns.get_mut(&ch) {
                            conn.quic.handle_event(event);
                            mark(&mut self.dirty, ch, conn);
                        }
                    }
                    Some(DatagramEvent::NewConnection(incoming)) => self.accept(now, incoming),
                    Some(DatagramEvent::Response(transmit)) => {
                        udp::send(&self.socket, &transmit, &self.send_buf);
                    }
                    None => {}
                }
            }
        }
        self.quic_recv = batch;
    }

    fn accept(&mut self, now: Instant, incoming: quinn_proto::Incoming) {
        self.send_buf.clear();
        if self.unadmitted >= self.limits.max_unadmitted {
            bump(&self.counters.handshakes_refused);
            let transmit = self.quic.refuse(incoming, &mut self.send_buf);
            udp::send(&self.socket, &transmit, &self.send_buf);
            return;
        }
        if self.unadmitted >= self.limits.retry_above && !incoming.remote_address_validated() {
            // Not validated means a Retry is allowed (quinn guarantees it).
            if let Ok(transmit) = self.quic.retry(incoming, &mut self.send_buf) {
                bump(&self.counters.handshakes_retried);
                udp::send(&self.socket, &transmit, &self.send_buf);
            }
            return;
        }
        match self.quic.accept(
            incoming,
            now,
            &mut self.send_buf,
            Some(self.server_config.clone()),
        ) {
            Ok((ch, quic)) => {
                let mut conn = Conn {
                    quic,
                    stage: Stage::new(now),
                    timer: None,
                    dirty: false,
                    voice: VoiceOut::default(),
                    unadmitted: true,
                };
                self.unadmitted += 1;
                mark(&mut self.dirty, ch, &mut conn);
                self.conns.insert(ch, conn);
            }
            Err(e) => {
                if let Some(transmit) = e.response {
                    udp::send(&self.socket, &transmit, &self.send_buf);
                }
            }
        }
    }

    /// Works every dirty connection and the router until neither has
    /// anything left: inbound first, so the datagrams of one wake-up are
    /// routed together, then the router's output, then the packets out.
    fn flush(&mut self, now: Instant) {
        // Each round either empties `dirty` or moves router output into it;
        // the bound only guards against a bug turning this into a spin.
        for _ in 0..8 {
            while let Some(ch) = self.dirty.pop() {
                self.drive(ch, now);
            }
            self.drain_router();
            if self.dirty.is_empty() {
                break;
            }
        }
        self.send_quic();
    }

    /// Hands the QUIC packets gathered this turn to the kernel.
    fn send_quic(&mut self) {
        send_quic_batch(
            &self.socket,
            &mut self.quic_out,
            &mut self.quic_voice,
            &self.counters,
        );
    }

    /// Handles everything one connection has for us, then sends what it
    /// has for the network and files its next timer.
    fn drive(&mut self, ch: ConnectionHandle, now: Instant) {
        let Some(polled) = self.poll_conn(ch, now) else {
            return;
        };
        if let Some(request) = polled.request {
            self.answer(ch, now, request);
        }
        if polled.lost {
            self.gone(ch);
        }
        self.transmit(ch, now);
        if polled.drained {
            self.forget(ch);
        } else {
            self.refile(ch);
        }
    }

    /// Takes a connection's endpoint events (passing them to quinn's
    /// endpoint) and its application events: the ticket request, voice for
    /// the router, the end of a reject, loss.
    fn poll_conn(&mut self, ch: ConnectionHandle, now: Instant) -> Option<Polled> {
        let conn = self.conns.get_mut(&ch)?;
        conn.dirty = false;
        let mut polled = Polled::default();
        while let Some(event) = conn.quic.poll_endpoint_events() {
            polled.drained |= event.is_drained();
            if let Some(back) = self.quic.handle_event(ch, event) {
                conn.quic.handle_event(back);
            }
        }
        while let Some(event) = conn.quic.poll() {
            match event {
                Event::Connected => conn.stage.connected(now),
                Event::ConnectionLost { .. } => polled.lost = true,
                Event::Stream(StreamEvent::Opened { dir: Dir::Bi })
                | Event::Stream(StreamEvent::Readable { .. })
                    if polled.request.is_none() =>
                {
                    polled.request = read_request(&mut conn.quic, &mut conn.stage);
                }
                Event::Stream(StreamEvent::Finished { id })
                | Event::Stream(StreamEvent::Stopped { id, .. }) => {
                    if let Some(code) = conn.stage.reject_delivered(id) {
                        close_conn(conn, now, code);
                    }
                }
                Event::DatagramReceived => {
                    while let Some(datagram) = conn.quic.datagrams().recv() {
                        if let Stage::Admitted(session) = conn.stage {
                            bump(&self.counters.datagrams_in);
                            self.router.handle_datagram(now, session, datagram);
                        }
                    }
                }
                _ => {}
            }
        }
        Some(polled)
    }

    /// Writes every packet the connection has ready, timing the voice in
    /// them, and moves voice that waits into quinn as it makes room.
    fn transmit(&mut self, ch: ConnectionHandle, now: Instant) {
        // Each round sends what quinn may and then refills it; it stops
        // when nothing moved, so a bound of rounds is only a guard (each
        // moves up to `QUIC_BACKLOG` of voice).
        for _ in 0..64 {
            self.write_packets(ch, now);
            let Some(conn) = self.conns.get_mut(&ch) else {
                return;
            };
            let counters = &self.counters;
            let moved = conn.voice.refill(&mut conn.quic, |lost| match lost {
                Offered::Full => bump(&counters.dropped_send_buffer),
                _ => bump(&counters.dropped_send_error),
            });
            if moved == 0 {
                break;
            }
            self.counters
                .datagrams_out
                .fetch_add(moved as u64, Ordering::Relaxed);
        }
    }

    /// Writes every packet the connection has ready now.
    fn write_packets(&mut self, ch: ConnectionHandle, now: Instant) {
        let Some(conn) = self.conns.get_mut(&ch) else {
            return;
        };
        let mut sent = false;
        loop {
            self.send_buf.clear();
            let Some(transmit) = conn.quic.poll_transmit(now, 1, &mut self.send_buf) else {
                break;
            };
            // One datagram per call: no segments unless quinn changes.
            let contents = &self.send_buf[..transmit.size];
            let segment = transmit.segment_size.unwrap_or(transmit.size).max(1);
            for packet in contents.chunks(segment) {
                if let Some(since) = conn.voice.since {
                    self.quic_voice.push(since);
                }
                if self.quic_out.push(packet, transmit.destination) {
                    send_quic_batch(
                        &self.socket,
                        &mut self.quic_out,
                        &mut self.quic_voice,
                        &self.counters,
                    );
                }
            }
            sent = true;
        }
        // Congestion control may hold datagrams back; then they keep
        // their start time.
        if sent {
            conn.voice.since = None;
        }
    }

    /// Files the connection under its next deadline: quinn's or the ticket
    /// exchange's, whichever is first.
    fn refile(&mut self, ch: ConnectionHandle) {
        let Some(conn) = self.conns.get_mut(&ch) else {
            return;
        };
        let next = match (conn.quic.poll_timeout(), conn.stage.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if next != conn.timer {
            if let Some(at) = conn.timer {
                self.timers.remove(&(at, ch));
            }
            if let Some(at) = next {
                self.timers.insert((at, ch));
            }
            conn.timer = next;
        }
    }

    /// Drops a connection quinn has finished with.
    fn forget(&mut self, ch: ConnectionHandle) {
        let Some(conn) = self.conns.remove(&ch) else {
            return;
        };
        if let Some(at) = conn.timer {
            self.timers.remove(&(at, ch));
        }
        if conn.unadmitted {
            self.unadmitted -= 1;
        }
        self.counters
            .dropped_no_connection
            .fetch_add(conn.voice.waiting() as u64, Ordering::Relaxed);
    }

    /// Lets every connection whose time has come handle it.
    fn on_timers(&mut self, now: Instant) {
        self.batch_at = now;
        while let Some(&(at, ch)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(conn) = self.conns.get_mut(&ch) else {
                continue;
            };
            conn.timer = None;
            conn.quic.handle_timeout(now);
            if let Some(code) = conn.stage.expired(now) {
                // A reject that lingered was counted when it was decided.
                if matches!(conn.stage, Stage::Admitting { .. }) {
                    bump(&self.counters.rejected[code as usize]);
                }
                close_conn(conn, now, code);
            }
            mark(&mut self.dirty, ch, conn);
        }
        if self.router.poll_timeout().is_some_and(|t| t <= now) {
            self.router.handle_timeout(now);
        }
        if self.plain.len() > 0 && self.plain_sweep <= now {
            self.expire_plain(now);
        }
    }

    /// Admits or refuses the connection that sent `request` (its complete
    /// ticket request, or why it could not be read).
    fn answer(&mut self, ch: ConnectionHandle, now: Instant, request: Request) {
        let (stream, outcome) = match request {
            Request::Complete { stream, bytes } => (stream, self.check(ch, &bytes)),
            Request::TooLong { stream } => (stream, Err(RejectCode::Malformed)),
        };
        let Some(conn) = self.conns.get_mut(&ch) else {
            return;
        };
        let mut send_stream = conn.quic.send_stream(stream);
        match outcome {
            Ok(session) => {
                let accepted = encode_accept(session.0);
                // A fresh stream's window takes five bytes.
                if send_stream.write(&accepted) == Ok(accepted.len()) {
                    let _ = send_stream.finish();
                }
                conn.stage = Stage::Admitted(session);
                if std::mem::take(&mut conn.unadmitted) {
                    self.unadmitted -= 1;
                }
                bump(&self.counters.accepted);
            }
            Err(code) => {
                bump(&self.counters.rejected[code as usize]);
                let message = encode_reject(code);
                if send_stream.write(&message) == Ok(message.len()) && send_stream.finish().is_ok()
                {
                    conn.stage = Stage::Rejecting {
                        code,
                        stream,
                        linger: now + REJECT_LINGER,
                    };
                } else {
                    close_conn(conn, now, code);
                }
            }
        }
    }

    /// Verifies a request's ticket and gives its session to `ch`; a
    /// connection the session had before is closed as replaced.
    fn check(&mut self, ch: ConnectionHandle, request: &[u8]) -> Result<SessionId, RejectCode> {
        let admitted = admission::verify(
            &self.verifier.read().unwrap_or_else(|e| e.into_inner()),
            request,
            SystemTime::now(),
        )?;
        self.admit(admitted.session, admitted.ticket, Carrier::Quic(ch))?;
        Ok(admitted.session)
    }

    /// Gives `session` to `carrier`, closing what carried it before; see
    /// the session table's rules.
    fn admit(
        &mut self,
        session: SessionId,
        ticket: sessions::TicketId,
        carrier: Carrier,
    ) -> Result<(), RejectCode> {
        let (conns, plain) = (&self.conns, &self.plain);
        let is_open = |c| match c {
            Carrier::Quic(ch) => conns.get(&ch).is_some_and(|conn| !conn.quic.is_closed()),
            Carrier::Udp(s) => plain.contains(s),
        };
        let now = Instant::now();
        if let Some(old) = self
            .sessions
            .admit(now, session, ticket, carrier, is_open)?
        {
            self.close_carrier(old, RejectCode::Replaced);
            bump(&self.counters.rejected[RejectCode::Replaced as usize]);
        }
        self.note_connections();
        Ok(())
    }

    /// Closes a carrier the session table let go, with `code`.
    fn close_carrier(&mut self, carrier: Carrier, code: RejectCode) {
        match carrier {
            Carrier::Quic(ch) => {
                if let Some(conn) = self.conns.get_mut(&ch) {
                    close_conn(conn, Instant::now(), code);
                    mark(&mut self.dirty, ch, conn);
                }
            }
            Carrier::Udp(session) => self.close_plain(session, code as u8),
        }
    }

    /// The connection `ch` was lost: its session, if it still holds one,
    /// has no connection now.
    fn gone(&mut self, ch: ConnectionHandle) {
        let Some(Stage::Admitted(session)) = self.conns.get(&ch).map(|c| &c.stage) else {
            return;
        };
        let session = *session;
        if self
            .sessions
            .lost(session, Carrier::Quic(ch), &mut self.router)
        {
            self.note_connections();
        }
        self.mirror([session]);
    }

    fn note_connections(&self) {
        self.counters
            .connections
            .store(self.sessions.len() as u64, Ordering::Relaxed);
    }

    /// See [`Handle::resync`].
    fn resync(&mut self, members: Vec<(SessionId, Member)>, keep_connected: bool) -> Resynced {
        let (done, close) =
            self.sessions
                .resync(Instant::now(), &mut self.router, members, keep_connected);
        for carrier in close {
            self.close_removed(carrier);
        }
        if !self.shards.is_empty() {
            let members = self.members();
            for shard in &self.shards {
                let _ = shard.commands.send(ShardCommand::Replace(members.clone()));
            }
        }
        done
    }

    /// Every member, as the router has it.
    fn members(&self) -> Vec<(SessionId, Member)> {
        let router = &self.router;
        router
            .sessions()
            .filter_map(|s| Some((s, router.member(s)?.clone())))
            .collect()
    }

    /// Tells the plain-UDP workers what the router now has for `sessions`,
    /// just changed, so that their copies route as this one does.
    fn mirror(&self, sessions: impl IntoIterator<Item = SessionId>) {
        if self.shards.is_empty() {
            return;
        }
        let changes: Vec<MemberChange> = sessions
            .into_iter()
            .map(|s| match self.router.member(s) {
                Some(member) => MemberChange::Set(s, member.clone()),
                None => MemberChange::Remove(s),
            })
            .collect();
        if changes.is_empty() {
            return;
        }
        for shard in &self.shards {
            let _ = shard.commands.send(ShardCommand::Members(changes.clone()));
        }
    }

    /// Forgets `session` and closes its connection; whether it was a member.
    fn remove(&mut self, session: SessionId) -> bool {
        let (was_member, conn) = self
            .sessions
            .remove(Instant::now(), session, &mut self.router);
        if let Some(carrier) = conn {
            self.close_removed(carrier);
        }
        was_member
    }

    /// Closes the carrier of a session the control plane removed.
    fn close_removed(&mut self, carrier: Carrier) {
        self.close_carrier(carrier, RejectCode::Removed);
        bump(&self.counters.rejected[RejectCode::Removed as usize]);
        self.note_connections();
    }

    /// Handles `first` and what is queued behind it, up to
    /// [`COMMANDS_PER_TURN`] in all: each is cheap, and a saturated socket
    /// wins most turns of the select, so one command a turn would leave
    /// the link and the metrics waiting behind whole packet batches.
    /// False when the endpoint is to stop.
    fn commands_ready(&mut self, first: Option<Command>) -> bool {
        let mut next = first;
        for _ in 0..COMMANDS_PER_TURN {
            match next {
                None | Some(Command::Shutdown) => return false,
                Some(command) => self.command(command),
            }
            // Empty, or every handle gone: the next `recv` tells which.
            let Ok(command) = self.commands.try_recv() else {
                break;
            };
            next = Some(command);
        }
        true
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::SetMember {
                session,
                member,
                reply,
            } => {
                let _ = reply.send(self.router.set_member(session, member));
                self.mirror([session]);
            }
            Command::RemoveMember { session, reply } => {
                let _ = reply.send(self.remove(session));
                self.mirror([session]);
            }
            Command::Apply { changes, reply } => {
                let mut touched = Vec::with_capacity(changes.len());
                for change in changes {
                    match change {
                        MemberChange::Set(session, member) => {
                            // Session 0 is the one refusal, and no control
                            // plane sends it.
                            let _ = self.router.set_member(session, member);
                            touched.push(session);
                        }
                        MemberChange::Remove(session) => {
                            self.remove(session);
                            touched.push(session);
                        }
                    }
                }
                self.mirror(touched);
                let _ = reply.send(());
            }
            Command::Resync {
                members,
                keep_connected,
                reply,
            } => {
                let _ = reply.send(self.resync(members, keep_connected));
            }
            Command::Stats { reply } => {
                let mut total = self.router.stats();
                let asks = self.ask_shards(ShardCommand::Stats);
                if asks.is_empty() {
                    let _ = reply.send(total);
                    return;
                }
                // The workers answer between their own wake-ups; this loop
                // goes on meanwhile.
                tokio::spawn(async move {
                    for ask in asks {
                        if let Ok(theirs) = ask.await {
                            total.merge(&theirs);
                        }
                    }
                    let _ = reply.send(total);
                });
            }
            Command::SessionStats { reply } => {
                let mine: Vec<_> = self.router.session_stats().collect();
                let asks = self.ask_shards(ShardCommand::SessionStats);
                if asks.is_empty() {
                    let _ = reply.send(mine);
                    return;
                }
                tokio::spawn(async move {
                    let mut all: HashMap<SessionId, (SpeakerStats, ListenerStats)> =
                        mine.into_iter().map(|(s, a, b)| (s, (a, b))).collect();
                    for ask in asks {
                        for (session, speaker, listener) in ask.await.unwrap_or_default() {
                            let entry = all.entry(session).or_default();
                            entry.0.merge(&speaker);
                            entry.1.merge(&listener);
                        }
                    }
                    let merged = all.into_iter().map(|(s, (a, b))| (s, a, b)).collect();
                    let _ = reply.send(merged);
                });
            }
            Command::Channels { reply } => {
                let _ = reply.send(self.router.channels().cloned().collect());
            }
            Command::Members { reply } => {
                let _ = reply.send(self.members());
            }
            Command::Shutdown => {}
        }
    }

    /// Queues the router's datagrams on their listeners' connections, and
    /// passes its events on.
    fn drain_router(&mut self) {
        while let Some(t) = self.router.poll_transmit() {
            self.deliver(t.to, t.datagram);
        }
        self.flush_plain();
        while let Some(event) = self.router.poll_event() {
            if self.events.try_send(event).is_err() {
                bump(&self.counters.dropped_events);
            }
        }
    }

    /// Queues one routed datagram for `to`: on its QUIC connection, or
    /// sealed in the plain-UDP batch.
    fn deliver(&mut self, to: SessionId, datagram: Bytes) {
        let ch = match self.sessions.conn(to) {
            Some(Carrier::Quic(ch)) => ch,
            Some(Carrier::Udp(session)) => {
                match self
                    .plain
                    .seal(session, &datagram, None, &mut self.plain_buf)
                {
                    Some(to) => {
                        if let Some(full) = self.plain_out.push(&self.plain_buf, to) {
                            self.send_plain_batch(full);
                        }
                    }
                    None => bump(&self.counters.dropped_no_connection),
                }
                return;
            }
            None => {
                bump(&self.counters.dropped_no_connection);
                return;
            }
        };
        let Some(conn) = self.conns.get_mut(&ch) else {
            bump(&self.counters.dropped_no_connection);
            return;
        };
        let offered =
            conn.voice
                .offer(&mut conn.quic, self.batch_at, datagram, &self.router_config);
        match offered {
            Offered::Queued => {
                bump(&self.counters.datagrams_out);
                mark(&mut self.dirty, ch, conn);
            }
            // It moves on when quinn sends, which its acknowledgements or
            // timers make happen.
            Offered::Waiting { dropped } => {
                self.counters
                    .dropped_lag
                    .fetch_add(dropped, Ordering::Relaxed);
            }
            Offered::Full => bump(&self.counters.dropped_send_buffer),
            Offered::Refused => bump(&self.counters.dropped_send_error),
        }
    }

    /// Asks every plain-UDP worker for something; the answers to await.
    fn ask_shards<T>(
        &self,
        make: impl Fn(oneshot::Sender<T>) -> ShardCommand,
    ) -> Vec<oneshot::Receiver<T>> {
        self.shards
            .iter()
            .filter_map(|shard| {
                let (reply, answer) = oneshot::channel();
                shard.commands.send(make(reply)).ok().map(|()| answer)
            })
            .collect()
    }

    /// Handles `first` of the workers' messages and what is queued behind
    /// it, up to [`COMMANDS_PER_TURN`] in all, as for commands.
    fn shard_messages(&mut self, first: Option<ToLoop>) {
        let mut next = first;
        for _ in 0..COMMANDS_PER_TURN {
            let Some(message) = next.take() else {
                return;
            };
            match message {
                ToLoop::Ticket {
                    from,
                    body,
                    at,
                    wall,
                } => self.plain_ticket(at, wall, from, &body),
                ToLoop::Relay { since, datagrams } => {
                    self.batch_at = since;
                    for (to, datagram) in datagrams {
                        self.deliver(to, datagram);
                    }
                    self.flush_plain();
                }
            }
            next = self
                .from_shards
                .as_mut()
                .and_then(|(_, rx)| rx.try_recv().ok());
        }
    }

    /// Closes every connection and sends the closes.
    fn close_all(&mut self) {
        let now = Instant::now();
        let handles: Vec<ConnectionHandle> = self.conns.keys().copied().collect();
        for ch in handles {
            if let Some(conn) = self.conns.get_mut(&ch) {
                conn.quic.close(
                    now,
                    VarInt::from_u32(0),
                    Bytes::from_static(b"data plane shutting down"),
                );
                mark(&mut self.dirty, ch, conn);
            }
        }
        while let Some(ch) = self.dirty.pop() {
            self.drive(ch, now);
        }
        self.send_quic();
        for session in self.plain.sessions() {
            self.close_plain(session, 0);
        }
    }
}

/// The next message of the plain-UDP workers, if there are any.
async fn from_shards(
    channel: Option<&mut (mpsc::Sender<ToLoop>, mpsc::Receiver<ToLoop>)>,
) -> Option<ToLoop> {
    match channel {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the plain-UDP socket, if there is one, is readable.
async fn plain_readable(socket: Option<&UdpSocket>) -> io::Result<()> {
    match socket {
        Some(socket) => socket.readable().await,
        None => std::future::pending().await,
    }
}

/// Sends the QUIC packets in `batch` on `socket` and times the voice among
/// them (`voice` holds when each voice packet's input arrived). A full
/// socket buffer drops what is left, as the network would: QUIC recovers
/// what matters, and late voice is worthless.
fn send_quic_batch(
    socket: &UdpSocket,
    batch: &mut udp::SendBatch,
    voice: &mut Vec<Instant>,
    counters: &Counters,
) {
    if batch.len() == 0 {
        return;
    }
    let flushed = batch.flush(socket.as_fd());
    if flushed.refused > 0 {
        tracing::trace!(
            refused = flushed.refused,
            "QUIC packets not sent: socket buffer full"
        );
    }
    let now = Instant::now();
    for since in voice.drain(..) {
        counters
            .forward_delay
            .record(now.saturating_duration_since(since));
    }
}

/// Adds `ch` to the dirty list once.
fn mark(dirty: &mut Vec<ConnectionHandle>, ch: ConnectionHandle, conn: &mut Conn) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(ch);
    }
}

fn close_conn(conn: &mut Conn, now: Instant, code: RejectCode) {
    conn.quic.close(
        now,
        VarInt::from(code as u8),
        Bytes::from_static(code.reason().as_bytes()),
    );
    conn.stage = Stage::Closed;
}

/// A loop's one timer, re-armed only when the next deadline changes (or it
/// has fired), rather than rebuilt each turn.
struct Alarm {
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The deadline it is armed for, `None` once it has fired.
    armed: Option<Option<Instant>>,
}

impl Alarm {
    fn new() -> Alarm {
        Alarm {
            timer: Box::pin(tokio::time::sleep_until(far_future().into())),
            armed: None,
        }
    }

    /// Arms it for `wake` (`None`: never), unless it is armed for that.
    fn set(&mut self, wake: Option<Instant>) {
        if self.armed != Some(wake) {
            let at = wake.unwrap_or_else(far_future);
            self.timer.as_mut().reset(at.into());
            self.armed = Some(wake);
        }
    }

    /// Resolves when the deadline comes.
    async fn fired(&mut self) {
        self.timer.as_mut().await;
        self.armed = None;
    }
}

/// Far enough ahead to mean "never" for a timer.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// What [`VoiceEndpoint::poll_conn`] found for the driver to act on.
#[derive(Default)]
struct Polled {
    /// quinn is done with the connection; it can go.
    drained: bool,
    /// The connection was lost (timed out, closed by the peer).
    lost: bool,
    request: Option<Request>,
}
