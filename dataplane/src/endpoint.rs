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
//! (see `PERF-FACTS.md`: cross-thread wake-ups cost more than they buy);
//! scale with one endpoint per core.
//!
//! The ticket exchange, on the first bidirectional stream the client opens:
//!
//! ```text
//! client → server  version (u8, = 1) | ticket_len (u16) | ticket, then FIN
//! server → client  accepted: 0 (u8) | session_id (u32), then FIN
//!                  rejected: code (u8) | reason_len (u16) | reason (UTF-8),
//!                  then FIN, and the connection is closed with error code
//!                  `code`
//! ```

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use openspeak_shared::ticket::{
    HEADER_LEN, MAX_TICKET_LEN, NONCE_LEN, TicketError, TicketVerifier,
};
use quinn_proto::{ConnectionHandle, DatagramEvent, Dir, Event, StreamEvent, StreamId, VarInt};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::udp;
use crate::{
    ChannelKey, DataplaneCert, ListenerStats, Member, MembershipError, QuicConfigError, Router,
    RouterConfig, RouterEvent, RouterStats, SessionId, SpeakerStats, server_config,
};

/// The version byte of the ticket exchange this endpoint speaks.
pub const EXCHANGE_VERSION: u8 = 1;

/// Why a connection was refused or closed; the value is both the reject
/// code on the ticket stream and the QUIC application error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RejectCode {
    /// The request or the ticket does not parse.
    Malformed = 1,
    /// The ticket's key is not one this data plane holds.
    UnknownKey = 2,
    /// The ticket failed authentication.
    Forged = 3,
    /// The ticket has expired.
    Expired = 4,
    /// The same ticket is in use by another live connection.
    InUse = 5,
    /// No complete ticket arrived within [`TICKET_TIMEOUT`].
    Timeout = 6,
    /// The request's version byte is not [`EXCHANGE_VERSION`].
    UnsupportedVersion = 7,
    /// A newer ticket for the same session took over (a reconnect).
    Replaced = 8,
    /// The control plane ended the session, or moved it off this data plane.
    Removed = 9,
}

impl RejectCode {
    fn reason(self) -> &'static str {
        match self {
            RejectCode::Malformed => "malformed ticket",
            RejectCode::UnknownKey => "unknown ticket key",
            RejectCode::Forged => "forged ticket",
            RejectCode::Expired => "expired ticket",
            RejectCode::InUse => "ticket already in use",
            RejectCode::Timeout => "no ticket within 5 s",
            RejectCode::UnsupportedVersion => "unsupported version",
            RejectCode::Replaced => "replaced",
            RejectCode::Removed => "removed",
        }
    }

    fn from_ticket_error(e: &TicketError) -> Self {
        match e {
            TicketError::UnknownKey(_) => RejectCode::UnknownKey,
            TicketError::Forged => RejectCode::Forged,
            TicketError::Expired => RejectCode::Expired,
            TicketError::Malformed(_) | TicketError::Random => RejectCode::Malformed,
        }
    }
}

/// How long a client has, from the handshake, to present its ticket.
pub const TICKET_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reject waits for the client to acknowledge the reason before
/// the connection is closed (closing at once could discard it).
const REJECT_LINGER: Duration = Duration::from_secs(1);
/// The longest request: version, length and the longest ticket.
const MAX_REQUEST: usize = 1 + 2 + MAX_TICKET_LEN;
/// Packets read per wake-up, so one busy moment cannot starve commands
/// and timers (quinn's `work_limiter` idea).
const BATCH: usize = 64;
/// The largest UDP payload read or written.
const MAX_UDP_PAYLOAD: usize = 65_535;
/// Queued router events before the router task starts dropping them.
const EVENT_QUEUE: usize = 1024;

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

/// Why a [`Handle`] call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HandleError {
    /// The endpoint has shut down.
    #[error("endpoint closed")]
    Closed,
    /// The router refused the membership.
    #[error(transparent)]
    Membership(#[from] MembershipError),
}

/// The endpoint's counters, shared with every [`Handle`].
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    /// Indexed by [`RejectCode`] value; 0 is unused.
    rejected: [AtomicU64; 10],
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    /// Transmits for a session with no live connection.
    dropped_no_connection: AtomicU64,
    /// Transmits dropped because the connection's datagram send buffer was
    /// full (rather than let quinn silently drop older ones).
    dropped_send_buffer: AtomicU64,
    /// Transmits `send_datagram` refused (connection closing, too large).
    dropped_send_error: AtomicU64,
    /// Router events dropped because nobody drained [`Handle::events`].
    dropped_events: AtomicU64,
    /// Sessions with a live connection now (a gauge).
    connections: AtomicU64,
    forward_delay: DelayHistogram,
}

/// Upper bounds, in seconds, of the buckets of the forward delay: the time
/// from the kernel receiving a speaker's packet (or the router releasing it
/// from a jitter buffer) to the data plane writing the packet that carries
/// it to a listener. Finer around 1 to 3 ms, where a voice server's target
/// lies (2 ms at the 99th percentile, BENCHMARKS.md). A last, unbounded
/// bucket takes the rest.
pub const FORWARD_DELAY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.001_25, 0.001_5, 0.001_75,
    0.002, 0.002_5, 0.003, 0.005, 0.01, 0.02, 0.05,
];

/// The forward delay's histogram, updated by the endpoint task and read by
/// [`Handle::stats`].
#[derive(Debug, Default)]
struct DelayHistogram {
    /// Per bucket, not cumulative; the last is the unbounded one.
    counts: [AtomicU64; FORWARD_DELAY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl DelayHistogram {
    fn record(&self, delay: Duration) {
        let seconds = delay.as_secs_f64();
        let i = FORWARD_DELAY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(FORWARD_DELAY_BUCKETS.len());
        bump(&self.counts[i]);
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// A snapshot of the forward delay's histogram; see
/// [`FORWARD_DELAY_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardDelay {
    /// Packets per bucket (not cumulative), the unbounded bucket last.
    pub counts: [u64; FORWARD_DELAY_BUCKETS.len() + 1],
    /// The sum of the delays, in nanoseconds.
    pub sum_nanos: u64,
}

impl ForwardDelay {
    /// Packets measured.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of the endpoint's counters; see [`Handle::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Connections whose ticket was accepted.
    pub accepted: u64,
    /// Refused or closed connections, indexed by reject code (index 0
    /// unused): tickets refused (1 to 7), and live connections closed
    /// because a newer one replaced them (8) or the session was removed (9).
    pub rejected: [u64; 10],
    /// Datagrams handed to the router.
    pub datagrams_in: u64,
    /// Datagrams given to quinn to send.
    pub datagrams_out: u64,
    /// Outbound datagrams for a session with no live connection.
    pub dropped_no_connection: u64,
    /// Outbound datagrams dropped for lack of datagram send buffer.
    pub dropped_send_buffer: u64,
    /// Outbound datagrams quinn refused.
    pub dropped_send_error: u64,
    /// Router events dropped because the event receiver was full or gone.
    pub dropped_events: u64,
    /// Sessions with a live connection now.
    pub connections: u64,
    /// How long forwarded voice spent in the data plane.
    pub forward_delay: ForwardDelay,
}

/// What [`Handle`]s ask of the router task.
enum Command {
    SetMember {
        session: SessionId,
        member: Member,
        reply: oneshot::Sender<Result<(), MembershipError>>,
    },
    RemoveMember {
        session: SessionId,
        reply: oneshot::Sender<bool>,
    },
    Resync {
        members: Vec<(SessionId, Member)>,
        keep_connected: bool,
        reply: oneshot::Sender<Resynced>,
    },
    Stats {
        reply: oneshot::Sender<RouterStats>,
    },
    SessionStats {
        reply: oneshot::Sender<Vec<(SessionId, SpeakerStats, ListenerStats)>>,
    },
    Channels {
        reply: oneshot::Sender<Vec<ChannelKey>>,
    },
    Shutdown,
}

/// What [`Handle::resync`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resynced {
    /// Members set from the snapshot.
    pub members: usize,
    /// Sessions the snapshot lacked that were dropped.
    pub removed: usize,
    /// Sessions the snapshot lacked that keep routing until their
    /// connection ends (only when `keep_connected`).
    pub orphaned: usize,
}

/// The live connection of one session.
struct Live {
    conn: ConnectionHandle,
    /// The nonce of the ticket it presented: what identifies a ticket.
    nonce: [u8; NONCE_LEN],
}

/// Controls a running [`VoiceEndpoint`] from other tasks.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
    /// Taken once by [`Handle::events`]; an mpsc has one receiver.
    events: Arc<Mutex<Option<mpsc::Receiver<RouterEvent>>>>,
}

impl Handle {
    /// Sends the command `make` builds around a reply channel, and waits
    /// for the router task's answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, HandleError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| HandleError::Closed)?;
        answer.await.map_err(|_| HandleError::Closed)
    }

    /// Adds `session` or changes its membership; returns once the router
    /// has applied it.
    pub async fn set_member(&self, session: SessionId, member: Member) -> Result<(), HandleError> {
        Ok(self
            .ask(|reply| Command::SetMember {
                session,
                member,
                reply,
            })
            .await??)
    }

    /// Forgets `session` and closes its connection (code 9, "removed").
    /// Returns whether it was a member.
    pub async fn remove_member(&self, session: SessionId) -> Result<bool, HandleError> {
        self.ask(|reply| Command::RemoveMember { session, reply })
            .await
    }

    /// Replaces the membership with `members`, the control plane's full
    /// view after a (re)attach. Sessions it lacks are removed and their
    /// connections closed, except, with `keep_connected`, those with a live
    /// connection: a restarted control plane has lost its sessions, but
    /// their voice still flows, so they keep routing as they were until
    /// their connection ends.
    pub async fn resync(
        &self,
        members: Vec<(SessionId, Member)>,
        keep_connected: bool,
    ) -> Result<Resynced, HandleError> {
        self.ask(|reply| Command::Resync {
            members,
            keep_connected,
            reply,
        })
        .await
    }

    /// The router's totals.
    pub async fn router_stats(&self) -> Result<RouterStats, HandleError> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// Every member's counters, as speaker and as listener.
    pub async fn session_stats(
        &self,
    ) -> Result<Vec<(SessionId, SpeakerStats, ListenerStats)>, HandleError> {
        self.ask(|reply| Command::SessionStats { reply }).await
    }

    /// The channels that have members now.
    pub async fn channels(&self) -> Result<Vec<ChannelKey>, HandleError> {
        self.ask(|reply| Command::Channels { reply }).await
    }

    /// Whether the endpoint has stopped (its router task is gone), without
    /// a round trip to it: what health checks ask.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    /// Asks the endpoint to close every connection and stop.
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }

    /// The router's events (speaking changes). The first call takes the
    /// receiver; later calls return `None`.
    pub fn events(&self) -> Option<mpsc::Receiver<RouterEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The counters as they are now.
    pub fn stats(&self) -> EndpointStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EndpointStats {
            accepted: load(&c.accepted),
            rejected: std::array::from_fn(|i| load(&c.rejected[i])),
            datagrams_in: load(&c.datagrams_in),
            datagrams_out: load(&c.datagrams_out),
            dropped_no_connection: load(&c.dropped_no_connection),
            dropped_send_buffer: load(&c.dropped_send_buffer),
            dropped_send_error: load(&c.dropped_send_error),
            dropped_events: load(&c.dropped_events),
            connections: load(&c.connections),
            forward_delay: ForwardDelay {
                counts: std::array::from_fn(|i| load(&c.forward_delay.counts[i])),
                sum_nanos: load(&c.forward_delay.sum_nanos),
            },
        }
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
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
    /// The live connection of each admitted session: where its transmits go.
    sessions: HashMap<SessionId, Live>,
    /// Sessions a restarted control plane no longer knows, routed as they
    /// were until their connection ends (see [`Handle::resync`]).
    orphans: HashSet<SessionId>,
    /// When the input being handled now arrived: the earliest kernel
    /// receive time of this wake-up's packets (or the read, where the
    /// kernel gives none), or when the timer fired. Forward delays count
    /// from it.
    batch_at: Instant,
    /// Scratch space quinn writes outgoing packets into.
    send_buf: Vec<u8>,
    recv_buf: Box<[u8]>,
}

/// One QUIC connection and where it is in the ticket exchange.
struct Conn {
    quic: quinn_proto::Connection,
    stage: Stage,
    /// The instant this connection is filed under in `timers`.
    timer: Option<Instant>,
    /// Whether it is in `dirty` already.
    dirty: bool,
    /// Since when forwarded voice has been waiting in its datagram queue.
    voice_since: Option<Instant>,
}

/// The ticket exchange of one connection.
enum Stage {
    /// Handshaking or reading the request; refused with
    /// [`RejectCode::Timeout`] at `deadline`.
    Admitting {
        deadline: Instant,
        stream: Option<StreamId>,
        request: Vec<u8>,
    },
    /// Refused: the reason is on its way; the connection is closed with
    /// `code` once the client has it, or at `linger`.
    Rejecting {
        code: RejectCode,
        stream: StreamId,
        linger: Instant,
    },
    /// Voice flows.
    Admitted(SessionId),
    /// Closed by us; waiting for quinn to drain it.
    Closed,
}

impl Stage {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Stage::Admitting { deadline, .. } => Some(*deadline),
            Stage::Rejecting { linger, .. } => Some(*linger),
            Stage::Admitted(_) | Stage::Closed => None,
        }
    }
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
        let server_config = Arc::new(server_config(cert)?);
        let socket = std::net::UdpSocket::bind(addr)?;
        // The stamps only make the forward delay exact; voice flows without.
        if let Err(e) = udp::enable_receive_timestamps(&socket) {
            tracing::warn!(error = %e, "no kernel receive timestamps: forward delays will start at the read");
        }
        socket.set_nonblocking(true)?;
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
            router: Router::new(router_config),
            verifier,
            counters,
            commands,
            events,
            sessions: HashMap::new(),
            orphans: HashSet::new(),
            batch_at: Instant::now(),
            send_buf: Vec::with_capacity(MAX_UDP_PAYLOAD),
            recv_buf: vec![0; MAX_UDP_PAYLOAD].into_boxed_slice(),
        };
        Ok((this, handle))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Accepts connections and routes voice until [`Handle::shutdown`] is
    /// called or every handle is dropped.
    pub async fn run(mut self) {
        // One timer, re-armed only when the next deadline changes (or it
        // has fired), rather than rebuilt each turn.
        let timer = tokio::time::sleep_until(far_future().into());
        tokio::pin!(timer);
        let mut armed: Option<Option<Instant>> = None;
        loop {
            let wake = self.next_wake();
            if armed != Some(wake) {
                timer.as_mut().reset(wake.unwrap_or_else(far_future).into());
                armed = Some(wake);
            }
            tokio::select! {
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        tracing::error!(error = %e, "voice socket failed");
                        break;
                    }
                    self.receive();
                }
                command = self.commands.recv() => {
                    match command {
                        None | Some(Command::Shutdown) => break,
                        Some(command) => self.command(command),
                    }
                }
                () = &mut timer => {
                    armed = None;
                    self.on_timers(Instant::now());
                }
            }
            self.flush(Instant::now());
        }
        self.close_all();
    }

    /// The earliest instant a connection or the router needs the time.
    fn next_wake(&self) -> Option<Instant> {
        let conns = self.timers.first().map(|(t, _)| *t);
        match (conns, self.router.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Reads what the socket holds, up to [`BATCH`] packets, with one read
    /// of each clock for the batch.
    fn receive(&mut self) {
        let now = Instant::now();
        let wall = SystemTime::now();
        self.batch_at = now;
        for _ in 0..BATCH {
            let udp::Received { len, from, arrived } =
                match udp::try_recv(&self.socket, &mut self.recv_buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    // ICMP errors from earlier sends (e.g. port unreachable)
                    // surface here on some systems; they concern one peer.
                    Err(e) => {
                        tracing::debug!(error = %e, "voice socket receive error");
                        continue;
                    }
                };
            // Forward delays count from the earliest arrival in the batch:
            // what waited in the socket's queue waited in the data plane.
            if let Some(waited) = arrived.and_then(|t| wall.duration_since(t).ok()) {
                self.batch_at = self.batch_at.min(now.checked_sub(waited).unwrap_or(now));
            }
            let data = BytesMut::from(&self.recv_buf[..len]);
            self.send_buf.clear();
            match self
                .quic
                .handle(now, from, None, None, data, &mut self.send_buf)
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

    fn accept(&mut self, now: Instant, incoming: quinn_proto::Incoming) {
        self.send_buf.clear();
        match self.quic.accept(
            incoming,
            now,
            &mut self.send_buf,
            Some(self.server_config.clone()),
        ) {
            Ok((ch, quic)) => {
                let mut conn = Conn {
                    quic,
                    stage: Stage::Admitting {
                        deadline: now + TICKET_TIMEOUT,
                        stream: None,
                        request: Vec::new(),
                    },
                    timer: None,
                    dirty: false,
                    voice_since: None,
                };
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
                Event::Connected => {
                    // The client's time for its ticket runs from the
                    // handshake, as documented.
                    if let Stage::Admitting { deadline, .. } = &mut conn.stage {
                        *deadline = now + TICKET_TIMEOUT;
                    }
                }
                Event::ConnectionLost { .. } => polled.lost = true,
                Event::Stream(StreamEvent::Opened { dir: Dir::Bi })
                | Event::Stream(StreamEvent::Readable { .. })
                    if polled.request.is_none() =>
                {
                    polled.request = read_request(conn);
                }
                Event::Stream(StreamEvent::Finished { id })
                | Event::Stream(StreamEvent::Stopped { id, .. }) => {
                    if let Stage::Rejecting { code, stream, .. } = conn.stage
                        && stream == id
                    {
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
    /// them.
    fn transmit(&mut self, ch: ConnectionHandle, now: Instant) {
        let Some(conn) = self.conns.get_mut(&ch) else {
            return;
        };
        let mut sent = false;
        loop {
            self.send_buf.clear();
            let Some(transmit) = conn.quic.poll_transmit(now, 1, &mut self.send_buf) else {
                break;
            };
            udp::send(&self.socket, &transmit, &self.send_buf);
            if let Some(since) = conn.voice_since {
                self.counters.forward_delay.record(since.elapsed());
            }
            sent = true;
        }
        // Congestion control may hold datagrams back; then they keep
        // their start time.
        if sent {
            conn.voice_since = None;
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
        if let Some(conn) = self.conns.remove(&ch)
            && let Some(at) = conn.timer
        {
            self.timers.remove(&(at, ch));
        }
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
            match conn.stage {
                Stage::Admitting { deadline, .. } if deadline <= now => {
                    bump(&self.counters.rejected[RejectCode::Timeout as usize]);
                    close_conn(conn, now, RejectCode::Timeout);
                }
                Stage::Rejecting { code, linger, .. } if linger <= now => {
                    close_conn(conn, now, code);
                }
                _ => {}
            }
            mark(&mut self.dirty, ch, conn);
        }
        if self.router.poll_timeout().is_some_and(|t| t <= now) {
            self.router.handle_timeout(now);
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
                let mut accepted = [0u8; 5];
                accepted[1..].copy_from_slice(&session.0.to_be_bytes());
                // A fresh stream's window takes five bytes.
                if send_stream.write(&accepted) == Ok(accepted.len()) {
                    let _ = send_stream.finish();
                }
                conn.stage = Stage::Admitted(session);
                bump(&self.counters.accepted);
            }
            Err(code) => {
                bump(&self.counters.rejected[code as usize]);
                let message = reject_message(code);
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

    /// Verifies a request's ticket and registers its session on `ch`.
    fn check(&mut self, ch: ConnectionHandle, request: &[u8]) -> Result<SessionId, RejectCode> {
        let ticket = parse_request(request)?;
        let verified = self
            .verifier
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .verify(ticket, SystemTime::now())
            .map_err(|e| RejectCode::from_ticket_error(&e))?;
        let session = SessionId(verified.session_id);
        // A verified ticket is at least `MIN_TICKET_LEN` long, so this holds.
        let nonce: [u8; NONCE_LEN] = ticket
            .get(HEADER_LEN..HEADER_LEN + NONCE_LEN)
            .and_then(|n| n.try_into().ok())
            .ok_or(RejectCode::Malformed)?;
        self.register(session, nonce, ch)?;
        Ok(session)
    }

    /// Decides whether connection `ch` may take `session`: not if another
    /// live connection holds the same ticket; a different ticket replaces
    /// the older connection.
    fn register(
        &mut self,
        session: SessionId,
        nonce: [u8; NONCE_LEN],
        ch: ConnectionHandle,
    ) -> Result<(), RejectCode> {
        if let Some(old) = self.sessions.get(&session)
            && let Some(conn) = self.conns.get_mut(&old.conn)
            && !conn.quic.is_closed()
        {
            if old.nonce == nonce {
                return Err(RejectCode::InUse);
            }
            close_conn(conn, Instant::now(), RejectCode::Replaced);
            mark(&mut self.dirty, old.conn, conn);
            bump(&self.counters.rejected[RejectCode::Replaced as usize]);
        }
        self.sessions.insert(session, Live { conn: ch, nonce });
        self.note_connections();
        Ok(())
    }

    /// The connection `ch` was lost: its session, if it still holds one,
    /// has no connection now.
    fn gone(&mut self, ch: ConnectionHandle) {
        let Some(Stage::Admitted(session)) = self.conns.get(&ch).map(|c| &c.stage) else {
            return;
        };
        let session = *session;
        if self.sessions.get(&session).is_some_and(|l| l.conn == ch) {
            self.sessions.remove(&session);
            if self.orphans.remove(&session) {
                self.router.remove_member(session);
            }
            self.note_connections();
        }
    }

    fn note_connections(&self) {
        self.counters
            .connections
            .store(self.sessions.len() as u64, Ordering::Relaxed);
    }

    /// See [`Handle::resync`].
    fn resync(&mut self, members: Vec<(SessionId, Member)>, keep_connected: bool) -> Resynced {
        let listed: HashSet<SessionId> = members.iter().map(|(s, _)| *s).collect();
        let mut done = Resynced::default();
        for session in self.router.sessions().collect::<Vec<_>>() {
            if listed.contains(&session) {
                continue;
            }
            if keep_connected && self.sessions.contains_key(&session) {
                self.orphans.insert(session);
                done.orphaned += 1;
            } else {
                self.remove(session);
                done.removed += 1;
            }
        }
        for (session, member) in members {
            self.orphans.remove(&session);
            if self.router.set_member(session, member).is_ok() {
                done.members += 1;
            }
        }
        done
    }

    /// Forgets `session` and closes its connection; whether it was a member.
    fn remove(&mut self, session: SessionId) -> bool {
        self.orphans.remove(&session);
        let was = self.router.remove_member(session).is_some();
        if let Some(live) = self.sessions.remove(&session) {
            if let Some(conn) = self.conns.get_mut(&live.conn) {
                close_conn(conn, Instant::now(), RejectCode::Removed);
                mark(&mut self.dirty, live.conn, conn);
            }
            bump(&self.counters.rejected[RejectCode::Removed as usize]);
            self.note_connections();
        }
        was
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::SetMember {
                session,
                member,
                reply,
            } => {
                let _ = reply.send(self.router.set_member(session, member));
            }
            Command::RemoveMember { session, reply } => {
                let _ = reply.send(self.remove(session));
            }
            Command::Resync {
                members,
                keep_connected,
                reply,
            } => {
                let _ = reply.send(self.resync(members, keep_connected));
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.router.stats());
            }
            Command::SessionStats { reply } => {
                let _ = reply.send(self.router.session_stats().collect());
            }
            Command::Channels { reply } => {
                let _ = reply.send(self.router.channels().cloned().collect());
            }
            Command::Shutdown => {}
        }
    }

    /// Queues the router's datagrams on their listeners' connections, and
    /// passes its events on.
    fn drain_router(&mut self) {
        let c = &self.counters;
        while let Some(t) = self.router.poll_transmit() {
            let Some(live) = self.sessions.get(&t.to) else {
                bump(&c.dropped_no_connection);
                continue;
            };
            let Some(conn) = self.conns.get_mut(&live.conn) else {
                bump(&c.dropped_no_connection);
                continue;
            };
            let mut datagrams = conn.quic.datagrams();
            // quinn would make room by dropping the oldest queued datagram
            // without telling us; drop the newest instead, and count it.
            if datagrams.send_buffer_space() < t.datagram.len() {
                bump(&c.dropped_send_buffer);
                continue;
            }
            match datagrams.send(t.datagram, false) {
                Ok(()) => {
                    bump(&c.datagrams_out);
                    conn.voice_since.get_or_insert(self.batch_at);
                    mark(&mut self.dirty, live.conn, conn);
                }
                Err(_) => bump(&c.dropped_send_error),
            }
        }
        while let Some(event) = self.router.poll_event() {
            if self.events.try_send(event).is_err() {
                bump(&c.dropped_events);
            }
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

/// A ticket request read off its stream.
enum Request {
    Complete { stream: StreamId, bytes: Vec<u8> },
    TooLong { stream: StreamId },
}

/// Reads the client's first bidirectional stream; the request once the
/// client has finished it (or sent more than a request can hold).
fn read_request(conn: &mut Conn) -> Option<Request> {
    let Stage::Admitting {
        stream, request, ..
    } = &mut conn.stage
    else {
        return None;
    };
    let id = match *stream {
        Some(id) => id,
        None => {
            let id = conn.quic.streams().accept(Dir::Bi)?;
            *stream = Some(id);
            id
        }
    };
    let mut recv = conn.quic.recv_stream(id);
    let mut chunks = recv.read(true).ok()?;
    let mut finished = false;
    loop {
        match chunks.next(MAX_REQUEST + 1 - request.len().min(MAX_REQUEST)) {
            Ok(Some(chunk)) => {
                request.extend_from_slice(&chunk.bytes);
                if request.len() > MAX_REQUEST {
                    break;
                }
            }
            Ok(None) => {
                finished = true;
                break;
            }
            // Blocked (more to come) or reset (the timeout will end it).
            Err(_) => break,
        }
    }
    let _ = chunks.finalize();
    if request.len() > MAX_REQUEST {
        Some(Request::TooLong { stream: id })
    } else if finished {
        Some(Request::Complete {
            stream: id,
            bytes: std::mem::take(request),
        })
    } else {
        None
    }
}

/// The reject on the ticket stream: code, reason length, reason.
fn reject_message(code: RejectCode) -> Vec<u8> {
    let reason = code.reason().as_bytes();
    let mut message = Vec::with_capacity(3 + reason.len());
    message.push(code as u8);
    // Reasons are fixed, short strings.
    message.extend_from_slice(&(reason.len() as u16).to_be_bytes());
    message.extend_from_slice(reason);
    message
}

/// The ticket inside a request, or why the request is refused.
fn parse_request(request: &[u8]) -> Result<&[u8], RejectCode> {
    match request {
        [] => Err(RejectCode::Malformed),
        [version, ..] if *version != EXCHANGE_VERSION => Err(RejectCode::UnsupportedVersion),
        [_, hi, lo, ticket @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == ticket.len() => {
            Ok(ticket)
        }
        _ => Err(RejectCode::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(parse_request(&[]), Err(RejectCode::Malformed));
        assert_eq!(
            parse_request(&[2, 0, 0]),
            Err(RejectCode::UnsupportedVersion)
        );
        assert_eq!(parse_request(&[1, 0]), Err(RejectCode::Malformed));
        assert_eq!(parse_request(&[1, 0, 2, 9]), Err(RejectCode::Malformed));
        assert_eq!(parse_request(&[1, 0, 1, 9]), Ok(&[9u8][..]));
    }
}
