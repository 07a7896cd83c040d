//! The QUIC driver around the [`Router`]: accepts voice connections, checks
//! their tickets, and moves datagrams between the connections and the
//! router.
//!
//! The router lives in one task and is never locked: connection tasks hand
//! it what they receive over an mpsc, and it owns the map from session to
//! connection that its output is sent on. Meant for a `current_thread`
//! runtime (see `PERF-FACTS.md`: cross-thread wake-ups cost more than they
//! buy); scale with one endpoint per core.
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

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use openspeak_shared::ticket::{
    HEADER_LEN, MAX_TICKET_LEN, NONCE_LEN, TicketError, TicketVerifier,
};
use quinn::{Connection, Endpoint, SendStream, VarInt};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

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
/// Inbound datagrams the router task takes per wake-up, so one busy
/// moment cannot starve commands and timers (quinn's `work_limiter` idea).
const BATCH: usize = 64;
/// Queued inbound datagrams before connection tasks start dropping.
const INBOUND_QUEUE: usize = 4096;
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
    /// Inbound datagrams dropped because the router task was behind.
    dropped_inbound: AtomicU64,
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
    /// Inbound datagrams dropped because the router task was behind.
    pub dropped_inbound: u64,
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
}

/// What connection tasks tell the router task.
enum Inbound {
    Datagram(SessionId, Bytes),
    /// A connection presented a valid ticket; the reply says whether it may
    /// take the session.
    Register {
        session: SessionId,
        nonce: [u8; NONCE_LEN],
        connection: Connection,
        reply: oneshot::Sender<Result<(), RejectCode>>,
    },
    /// A registered connection ended.
    Gone {
        session: SessionId,
        id: usize,
    },
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
    connection: Connection,
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
            dropped_inbound: load(&c.dropped_inbound),
            dropped_no_connection: load(&c.dropped_no_connection),
            dropped_send_buffer: load(&c.dropped_send_buffer),
            dropped_send_error: load(&c.dropped_send_error),
            dropped_events: load(&c.dropped_events),
            connections: load(&c.connections),
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
    endpoint: Endpoint,
    router: Router,
    /// Shared with the control link, which inserts and rotates keys.
    verifier: Arc<RwLock<TicketVerifier>>,
    counters: Arc<Counters>,
    commands: mpsc::UnboundedReceiver<Command>,
    inbound_tx: mpsc::Sender<Inbound>,
    inbound: mpsc::Receiver<Inbound>,
    events: mpsc::Sender<RouterEvent>,
    /// The live connection of each admitted session: where its transmits go.
    sessions: HashMap<SessionId, Live>,
    /// Sessions a restarted control plane no longer knows, routed as they
    /// were until their connection ends (see [`Handle::resync`]).
    orphans: HashSet<SessionId>,
}

impl std::fmt::Debug for VoiceEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceEndpoint")
            .field("local_addr", &self.local_addr().ok())
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
        let endpoint = Endpoint::server(server_config(cert)?, addr)?;
        let counters = Arc::new(Counters::default());
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        let handle = Handle {
            commands: commands_tx,
            counters: counters.clone(),
            events: Arc::new(Mutex::new(Some(events_rx))),
        };
        let this = VoiceEndpoint {
            endpoint,
            router: Router::new(router_config),
            verifier,
            counters,
            commands,
            inbound_tx,
            inbound,
            events,
            sessions: HashMap::new(),
            orphans: HashSet::new(),
        };
        Ok((this, handle))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Accepts connections and routes voice until [`Handle::shutdown`] is
    /// called or every handle is dropped.
    pub async fn run(mut self) {
        loop {
            let deadline = self.router.poll_timeout();
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let ctx = ConnectionCtx {
                        verifier: self.verifier.clone(),
                        counters: self.counters.clone(),
                        inbound: self.inbound_tx.clone(),
                    };
                    tokio::spawn(serve(incoming, ctx));
                }
                first = self.inbound.recv() => {
                    // `self` holds a sender, so the channel never closes.
                    let Some(first) = first else { break };
                    self.take_inbound(first);
                }
                command = self.commands.recv() => {
                    match command {
                        None | Some(Command::Shutdown) => break,
                        Some(command) => self.command(command),
                    }
                }
                () = timer => {
                    self.router.handle_timeout(Instant::now());
                }
            }
            self.drain();
        }
        self.endpoint
            .close(VarInt::from_u32(0), b"data plane shutting down");
    }

    /// Handles `first` and whatever else is queued, up to [`BATCH`], with
    /// one clock read for the batch.
    fn take_inbound(&mut self, first: Inbound) {
        let now = Instant::now();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(item) = next.take() {
            match item {
                Inbound::Datagram(session, bytes) => {
                    bump(&self.counters.datagrams_in);
                    self.router.handle_datagram(now, session, bytes);
                }
                Inbound::Register {
                    session,
                    nonce,
                    connection,
                    reply,
                } => {
                    let _ = reply.send(self.register(session, nonce, connection));
                }
                Inbound::Gone { session, id } => {
                    if self
                        .sessions
                        .get(&session)
                        .is_some_and(|live| live.connection.stable_id() == id)
                    {
                        self.sessions.remove(&session);
                        if self.orphans.remove(&session) {
                            self.router.remove_member(session);
                        }
                        self.note_connections();
                    }
                }
            }
            taken += 1;
            if taken < BATCH {
                next = self.inbound.try_recv().ok();
            }
        }
    }

    /// Decides whether `connection` may take `session`: not if another live
    /// connection holds the same ticket; a different ticket replaces the
    /// older connection.
    fn register(
        &mut self,
        session: SessionId,
        nonce: [u8; NONCE_LEN],
        connection: Connection,
    ) -> Result<(), RejectCode> {
        if let Some(old) = self.sessions.get(&session)
            && old.connection.close_reason().is_none()
        {
            if old.nonce == nonce {
                return Err(RejectCode::InUse);
            }
            close(&old.connection, RejectCode::Replaced);
            bump(&self.counters.rejected[RejectCode::Replaced as usize]);
        }
        self.sessions.insert(session, Live { connection, nonce });
        self.note_connections();
        Ok(())
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
            close(&live.connection, RejectCode::Removed);
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

    /// Sends what the router has for the network and the control plane.
    fn drain(&mut self) {
        let c = &self.counters;
        while let Some(t) = self.router.poll_transmit() {
            let Some(live) = self.sessions.get(&t.to) else {
                bump(&c.dropped_no_connection);
                continue;
            };
            // quinn would make room by dropping the oldest queued datagram
            // without telling us; drop the newest instead, and count it.
            if live.connection.datagram_send_buffer_space() < t.datagram.len() {
                bump(&c.dropped_send_buffer);
                continue;
            }
            match live.connection.send_datagram(t.datagram) {
                Ok(()) => bump(&c.datagrams_out),
                Err(_) => bump(&c.dropped_send_error),
            }
        }
        while let Some(event) = self.router.poll_event() {
            if self.events.try_send(event).is_err() {
                bump(&c.dropped_events);
            }
        }
    }
}

fn close(connection: &Connection, code: RejectCode) {
    connection.close(VarInt::from(code as u8), code.reason().as_bytes());
}

/// What a connection task needs from the endpoint.
struct ConnectionCtx {
    verifier: Arc<RwLock<TicketVerifier>>,
    counters: Arc<Counters>,
    inbound: mpsc::Sender<Inbound>,
}

/// One connection: handshake, ticket exchange, then its datagrams to the
/// router until it ends.
async fn serve(incoming: quinn::Incoming, ctx: ConnectionCtx) {
    let Ok(connection) = incoming.await else {
        return;
    };
    let Some(session) = admit(&connection, &ctx).await else {
        return;
    };
    while let Ok(datagram) = connection.read_datagram().await {
        if ctx
            .inbound
            .try_send(Inbound::Datagram(session, datagram))
            .is_err()
        {
            bump(&ctx.counters.dropped_inbound);
        }
    }
    let _ = ctx
        .inbound
        .send(Inbound::Gone {
            session,
            id: connection.stable_id(),
        })
        .await;
}

/// Runs the ticket exchange; returns the admitted session, or `None` once
/// the connection is rejected or lost.
async fn admit(connection: &Connection, ctx: &ConnectionCtx) -> Option<SessionId> {
    let request = async {
        let (send, mut recv) = connection.accept_bi().await.ok()?;
        let read = recv.read_to_end(MAX_REQUEST).await;
        Some((send, read))
    };
    let (send, read) = match tokio::time::timeout(TICKET_TIMEOUT, request).await {
        Err(_) => {
            bump(&ctx.counters.rejected[RejectCode::Timeout as usize]);
            close(connection, RejectCode::Timeout);
            return None;
        }
        Ok(None) => return None,
        Ok(Some(r)) => r,
    };
    let request = match read {
        Ok(bytes) => bytes,
        Err(quinn::ReadToEndError::TooLong) => {
            reject(connection, send, RejectCode::Malformed, ctx).await;
            return None;
        }
        Err(quinn::ReadToEndError::Read(_)) => return None,
    };
    let ticket = match parse_request(&request) {
        Ok(ticket) => ticket,
        Err(code) => {
            reject(connection, send, code, ctx).await;
            return None;
        }
    };
    let verified = ctx
        .verifier
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .verify(ticket, SystemTime::now());
    let verified = match verified {
        Ok(t) => t,
        Err(e) => {
            reject(connection, send, RejectCode::from_ticket_error(&e), ctx).await;
            return None;
        }
    };
    let session = SessionId(verified.session_id);
    // A verified ticket is at least `MIN_TICKET_LEN` long, so this holds.
    let nonce: [u8; NONCE_LEN] = ticket
        .get(HEADER_LEN..HEADER_LEN + NONCE_LEN)?
        .try_into()
        .ok()?;
    let (reply, answer) = oneshot::channel();
    ctx.inbound
        .send(Inbound::Register {
            session,
            nonce,
            connection: connection.clone(),
            reply,
        })
        .await
        .ok()?;
    if let Err(code) = answer.await.ok()? {
        reject(connection, send, code, ctx).await;
        return None;
    }
    let mut send = send;
    let mut accepted = [0u8; 5];
    accepted[1..].copy_from_slice(&session.0.to_be_bytes());
    send.write_all(&accepted).await.ok()?;
    send.finish().ok()?;
    bump(&ctx.counters.accepted);
    Some(session)
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

/// Writes the reject on the ticket stream, gives the client a moment to
/// acknowledge it, then closes the connection with the same code.
async fn reject(
    connection: &Connection,
    mut send: SendStream,
    code: RejectCode,
    ctx: &ConnectionCtx,
) {
    bump(&ctx.counters.rejected[code as usize]);
    let reason = code.reason().as_bytes();
    let mut message = Vec::with_capacity(3 + reason.len());
    message.push(code as u8);
    // Reasons are fixed, short strings.
    message.extend_from_slice(&(reason.len() as u16).to_be_bytes());
    message.extend_from_slice(reason);
    if send.write_all(&message).await.is_ok() && send.finish().is_ok() {
        let _ = tokio::time::timeout(REJECT_LINGER, send.stopped()).await;
    }
    close(connection, code);
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
