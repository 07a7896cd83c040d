//! The plain-UDP workers: extra threads, each with its own socket on the
//! voice port, its own copy of the router and nothing else, so that
//! plain-UDP voice is routed, sealed and sent on every core.
//!
//! The sockets share the port through `SO_REUSEPORT`: the kernel gives
//! each client address to one of them (by a hash of the addresses), so a
//! speaker's packets all reach one thread, which runs its jitter buffer
//! and sends its whole fan-out. Nothing per packet crosses threads in a
//! channel whose members are all on plain UDP; that is what lets the
//! workers scale, where handing packets between threads cost more than
//! sending them (`docs/PERFORMANCE.md` on wake-ups across threads;
//! BENCHMARKS.md, "Send workers and capacity").
//!
//! What a worker shares with the loop (`mod.rs`, which is worker 0):
//! - the sessions' UDP sides, read from the [`Directory`] the loop
//!   publishes; a sealed packet is opened and an outgoing one sealed
//!   through the session's [`Peer`](super::plain::Peer) whichever thread
//!   has it, so one replay window, one address and one send allowance
//!   serve every worker;
//! - the membership: the loop sends each worker every change it applies
//!   to its own router, in the order it applied them;
//! - the counters, and the queue of speaking events.
//!
//! What goes to the loop, in one message per drain: TICKET packets
//! (admission and the session table live there), and datagrams for
//! listeners that are not on plain UDP (QUIC connections live there).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use arc_swap::Cache;
use bytes::Bytes;
use openspeak_router::{
    ListenerStats, Member, Router, RouterConfig, RouterEvent, RouterStats, SessionId, SpeakerStats,
};
use openspeak_voice::udp::Control;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::counters::{Counters, ReadCount, bump};
use super::handle::MemberChange;
use super::plain::{self, Directory, Discard, Opened, Peer};
use super::send_workers::PlainOut;
use crate::udp as socket;

/// Messages from the workers to the loop that may wait before it is
/// dropped and counted: one a drain each, so a loop this far behind is
/// already losing voice.
pub(super) const TO_LOOP: usize = 1024;

/// What the loop tells a worker.
pub(super) enum ShardCommand {
    /// Membership changes, as the loop applied them to its router.
    Members(Vec<MemberChange>),
    /// The whole membership, after a resync: what it lacks goes.
    Replace(Vec<(SessionId, Member)>),
    Stats(oneshot::Sender<RouterStats>),
    SessionStats(oneshot::Sender<Vec<(SessionId, SpeakerStats, ListenerStats)>>),
}

/// What a worker hands the loop.
pub(super) enum ToLoop {
    /// The body of a TICKET packet read at `at` (`wall` on the wall clock)
    /// from `from`.
    Ticket {
        from: SocketAddr,
        body: Vec<u8>,
        at: Instant,
        wall: SystemTime,
    },
    /// Routed datagrams for listeners the worker cannot reach, whose input
    /// arrived at `since`.
    Relay {
        since: Instant,
        datagrams: Vec<(SessionId, Bytes)>,
    },
}

/// The loop's side of one worker.
pub(super) struct ShardLink {
    pub(super) commands: mpsc::UnboundedSender<ShardCommand>,
    /// Resolves when the worker's thread is done with its socket.
    pub(super) done: oneshot::Receiver<()>,
}

/// What a worker thread needs from the loop when it starts.
pub(super) struct ShardParts {
    pub(super) index: usize,
    pub(super) socket: std::net::UdpSocket,
    pub(super) router_config: RouterConfig,
    pub(super) members: Vec<(SessionId, Member)>,
    pub(super) directory: Arc<Directory>,
    pub(super) counters: Arc<Counters>,
    /// This worker's count of packets read.
    pub(super) read: Arc<ReadCount>,
    pub(super) events: mpsc::Sender<RouterEvent>,
    pub(super) to_loop: mpsc::Sender<ToLoop>,
}

/// Starts a worker on a thread of its own, with a `current_thread` runtime
/// like the loop's.
pub(super) fn spawn(parts: ShardParts) -> io::Result<ShardLink> {
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (done_tx, done) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("udp-worker-{}", parts.index))
        .spawn(move || {
            runtime.block_on(async move {
                match Shard::new(parts, commands) {
                    Ok(shard) => shard.run().await,
                    Err(e) => tracing::error!(error = %e, "plain UDP worker could not start"),
                }
            });
            let _ = done_tx.send(());
        })?;
    Ok(ShardLink {
        commands: commands_tx,
        done,
    })
}

/// One worker: a socket, a router, and the scratch space to move packets.
struct Shard {
    socket: UdpSocket,
    recv: socket::RecvBatch,
    router: Router,
    /// The router's configuration, for the send limits kept per session
    /// (`Peer::admit`).
    config: RouterConfig,
    directory: Cache<Arc<Directory>, Arc<HashMap<SessionId, Arc<Peer>>>>,
    counters: Arc<Counters>,
    read: Arc<ReadCount>,
    events: mpsc::Sender<RouterEvent>,
    to_loop: mpsc::Sender<ToLoop>,
    commands: mpsc::UnboundedReceiver<ShardCommand>,
    out: PlainOut,
    seal_buf: Vec<u8>,
    /// Datagrams of this drain for the loop to deliver.
    relay: Vec<(SessionId, Bytes)>,
    /// When the input being handled arrived; see the loop's `batch_at`.
    batch_at: Instant,
}

impl Shard {
    fn new(
        parts: ShardParts,
        commands: mpsc::UnboundedReceiver<ShardCommand>,
    ) -> io::Result<Shard> {
        let mut router = Router::new(parts.router_config.clone());
        for (session, member) in parts.members {
            let _ = router.set_member(session, member);
        }
        Ok(Shard {
            socket: UdpSocket::from_std(parts.socket)?,
            recv: socket::RecvBatch::new(),
            router,
            config: parts.router_config,
            directory: Cache::new(parts.directory),
            counters: parts.counters,
            read: parts.read,
            events: parts.events,
            to_loop: parts.to_loop,
            commands,
            out: PlainOut::inline(),
            seal_buf: Vec::with_capacity(super::MAX_UDP_PAYLOAD),
            relay: Vec::new(),
            batch_at: Instant::now(),
        })
    }

    async fn run(mut self) {
        let mut alarm = super::Alarm::new();
        loop {
            alarm.set(self.router.poll_timeout());
            tokio::select! {
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        tracing::error!(error = %e, "plain UDP worker socket failed");
                        break;
                    }
                    self.receive();
                }
                command = self.commands.recv() => {
                    let Some(command) = command else { break };
                    self.command(command);
                    // Whatever else is queued: membership bursts come
                    // together, and each is cheap.
                    for _ in 0..super::COMMANDS_PER_TURN {
                        let Ok(command) = self.commands.try_recv() else { break };
                        self.command(command);
                    }
                }
                () = alarm.fired() => {
                    let now = Instant::now();
                    self.batch_at = now;
                    self.router.handle_timeout(now);
                }
            }
            self.drain();
        }
    }

    fn command(&mut self, command: ShardCommand) {
        match command {
            ShardCommand::Members(changes) => {
                for change in changes {
                    match change {
                        MemberChange::Set(session, member) => {
                            let _ = self.router.set_member(session, member);
                        }
                        MemberChange::Remove(session) => {
                            self.router.remove_member(session);
                        }
                    }
                }
            }
            ShardCommand::Replace(members) => {
                let keep: HashMap<SessionId, Member> = members.into_iter().collect();
                let gone: Vec<SessionId> = self
                    .router
                    .sessions()
                    .filter(|s| !keep.contains_key(s))
                    .collect();
                for session in gone {
                    self.router.remove_member(session);
                }
                for (session, member) in keep {
                    let _ = self.router.set_member(session, member);
                }
            }
            ShardCommand::Stats(reply) => {
                let _ = reply.send(self.router.stats());
            }
            ShardCommand::SessionStats(reply) => {
                let _ = reply.send(self.router.session_stats().collect());
            }
        }
    }

    /// Reads what the socket holds, up to `RecvBatch::MAX` packets in one
    /// system call, and handles each in place.
    fn receive(&mut self) {
        let Some(read) = socket::read_batch(&self.socket, &mut self.recv) else {
            return;
        };
        self.batch_at = read.earliest;
        let c = &self.counters;
        let truncated = self.recv.truncated() as u64;
        self.read.add(self.recv.len() as u64 + truncated);
        c.udp_dropped[Discard::Malformed as usize].fetch_add(truncated, Ordering::Relaxed);
        let directory = self.directory.load();
        for i in 0..self.recv.len() {
            let (packet, received) = self.recv.get(i);
            let from = received.from;
            let opened = plain::arrive(read.at, from, packet, |s| directory.get(&s));
            match opened {
                Ok(Opened::Ticket(body)) => {
                    let ticket = ToLoop::Ticket {
                        from,
                        body: body.to_vec(),
                        at: read.at,
                        wall: read.wall,
                    };
                    if self.to_loop.try_send(ticket).is_err() {
                        bump(&self.counters.dropped_send_error);
                    }
                }
                Ok(Opened::Voice(session, plaintext)) => {
                    bump(&self.counters.datagrams_in);
                    if let Some(peer) = directory.get(&session) {
                        peer.route(&mut self.router, &self.config, read.at, plaintext);
                    }
                }
                Ok(Opened::Ping(session, id, from)) => {
                    let mut pong = Vec::with_capacity(9);
                    Control::Pong(id).encode(&mut pong);
                    if let Some(peer) = directory.get(&session)
                        && let Some(to) = peer.seal(&pong, Some(from), &mut self.seal_buf)
                    {
                        let _ = self.socket.try_send_to(&self.seal_buf, to);
                    }
                }
                Ok(Opened::Nothing) => {}
                Err(drop) => bump(&self.counters.udp_dropped[drop as usize]),
            }
        }
    }

    /// Seals and sends the router's datagrams to their listeners on plain
    /// UDP, hands the rest to the loop, and passes the events on.
    fn drain(&mut self) {
        let directory = self.directory.load();
        let fd = self.socket.as_fd();
        while let Some(t) = self.router.poll_transmit() {
            let Some(peer) = directory.get(&t.to) else {
                self.relay.push((t.to, t.datagram));
                continue;
            };
            match peer.seal(&t.datagram, None, &mut self.seal_buf) {
                Some(to) => {
                    if let Some(full) = self.out.push(&self.seal_buf, to) {
                        self.out.send_full(full, fd, &self.counters, self.batch_at);
                    }
                }
                None => bump(&self.counters.dropped_no_connection),
            }
        }
        self.out.send_rest(fd, &self.counters, self.batch_at);
        if !self.relay.is_empty() {
            let datagrams = std::mem::take(&mut self.relay);
            let count = datagrams.len() as u64;
            let relay = ToLoop::Relay {
                since: self.batch_at,
                datagrams,
            };
            if self.to_loop.try_send(relay).is_err() {
                self.counters
                    .dropped_send_error
                    .fetch_add(count, Ordering::Relaxed);
            }
        }
        while let Some(event) = self.router.poll_event() {
            if self.events.try_send(event).is_err() {
                bump(&self.counters.dropped_events);
            }
        }
    }
}
