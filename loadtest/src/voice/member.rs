//! One client of the `voice` scenario: the tokio drivers around the pure
//! parts ([`Speaker`], [`Link`], the listener's tally).
//!
//! A client is up to three tasks:
//! - its event reader, which keeps the session's `PresenceService.Connect`
//!   stream drained for the whole run (a session lives as long as it);
//! - its listener, which judges every forwarded datagram and, for a
//!   churning client, leaves and rejoins the channel now and then;
//! - for a speaker, its speaker, which sleeps until the [`Speaker`] has
//!   something to send and sends it.
//!
//! [`set_up`] brings a client from nothing to connected voice;
//! [`run_member`] runs the listener and speaker until the run stops them.
//!
//! A client whose data plane goes away (killed, restarted, cut off) gets
//! its voice back as `docs/PROTOCOL.md`, "Reconnect", tells every client
//! to: the listener takes [`GONE_AFTER`] of silence for a lost connection,
//! asks for voice again (`OpenVoice`, then a new connection) after 100 ms,
//! doubling to 1 s, and hands the new connection to its speaker. What was
//! sent meanwhile stays owed, so the outage shows as loss.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use openspeak_shared::Reason;
use openspeak_shared::pb;
use openspeak_shared::pb::channel_service_client::ChannelServiceClient;
use openspeak_shared::pb::event::Event as Kind;
use openspeak_shared::pb::presence_service_client::PresenceServiceClient;
use openspeak_shared::pb::voice_service_client::VoiceServiceClient;
use openspeak_voice::datagram::Forwarded;
use quinn::Endpoint;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tonic::Streaming;
use tonic::transport::Channel;

use crate::common::credentials::ClientTokens;
use crate::common::pool::Pool;
use crate::common::stats::{duration_micros, micros_between};
use crate::common::tally::{ErrorKind, FailureLog, Failures, Step};
use crate::common::task::{error_chain, lock};
use crate::voice::conn::{ConnError, VoiceConn};
use crate::voice::counters::VoiceCounters;
use crate::voice::delivery::{ListenerTally, SendLog, Verdict};
use crate::voice::flags::Transport;
use crate::voice::impairment::{Direction, SEED_CHURN, SEED_IMPAIRMENT, stream_seed};
use crate::voice::layout::Layout;
use crate::voice::link::Link;
use crate::voice::plan::VoicePlan;
use crate::voice::probe::Probe;
use crate::voice::speaker::{Datagram, Speaker};
use crate::voice::timeline::LatencyBook;
use openspeak_client::udp::{UdpVoiceClient, UdpVoiceError};
use openspeak_client::voice::{VoiceClient, VoiceError, client_endpoint};
use openspeak_client::{GONE_AFTER, PING_EVERY};

/// Delays a listener buffers before merging them into the shared
/// histogram: the lock is then rare.
const DELAY_BATCH: usize = 256;

/// Bound on each control-plane call of a churn cycle.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a listener looks whether anything came from its data plane
/// and, over plain UDP, pings it: every [`PING_EVERY`], so each look is
/// also a ping's time (over QUIC the connection's own keep-alive pings).
/// Once a second: a load of thousands of clients in one process must not
/// spend its time on the watch, and [`GONE_AFTER`] of silence is still
/// noticed within a second (a real client, `openspeak_client::Call`, looks
/// four times as often).
const CHECK_EVERY: Duration = PING_EVERY;

/// The first pause between two attempts to get voice back after the
/// connection was lost; it doubles up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The longest pause between two attempts.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// A rejoined listener is owed packets from this long after its voice
/// connection was accepted: time for the data plane to apply the join it
/// learns of from the control plane, which travels apart from the QUIC
/// handshake.
const REJOIN_GUARD: Duration = Duration::from_millis(100);

/// A leaving listener stays this long (plus the simulated delays) after it
/// stops being owed packets, for those still in flight or held by the data
/// plane's jitter buffer (60 ms by default).
const LEAVE_GUARD: Duration = Duration::from_millis(250);

/// What every client task shares.
#[derive(Debug)]
pub struct Ctx {
    /// The settings.
    pub plan: VoicePlan,
    /// Who is where.
    pub layout: Layout,
    /// Time zero of every `sent_us` and arrival.
    pub epoch: StdInstant,
    /// Connections to the control plane.
    pub pool: Pool,
    /// The clients' tokens.
    pub tokens: ClientTokens,
    /// The run's channels, by index.
    pub channel_ids: Vec<String>,
    /// Bounds the clients setting up at once.
    pub ramp: Semaphore,
    /// For the progress line, and the run's failures.
    pub counters: Arc<VoiceCounters>,
    /// One-way delays, µs: the run's, and the `--timeline` interval's.
    pub latency: Mutex<LatencyBook>,
    /// The current `--timeline` interval's end, µs since the epoch (as the
    /// book's cut; `u64::MAX`: no timeline): a listener whose buffered
    /// delays arrived before it hands them in once a later one arrives.
    pub cut_us: AtomicU64,
    /// Each client's voice session id (0 = none yet): a forwarded packet's
    /// speaker id must be its sender's.
    pub voice_sessions: Vec<AtomicU32>,
    /// Per speaker: listeners that heard its warm-up.
    pub heard: Vec<AtomicU32>,
    /// Per channel: its clients in voice now.
    pub in_voice: Vec<AtomicU32>,
    /// Shared QUIC sockets (`--sockets`), made on first use, when the data
    /// plane's address family is known.
    pub sockets: Mutex<Vec<Endpoint>>,
    /// The event readers, to wait for at the end. Pushed by the setup task
    /// right after spawning, so an aborted setup does not lose its reader.
    pub readers: Mutex<Vec<JoinHandle<()>>>,
    /// Turns true when every session must end.
    pub close: watch::Receiver<bool>,
    /// Events all sessions received.
    pub events: AtomicU64,
    /// Packets the simulated uplink lost.
    pub uplink_dropped: AtomicU64,
    /// Packets the simulated downlink lost.
    pub downlink_dropped: AtomicU64,
    /// Datagrams quinn refused to send.
    pub send_errors: AtomicU64,
    /// Churn cycles (leave and rejoin) completed.
    pub churn_cycles: AtomicU64,
    /// Churn cycles that failed half-way; the client stays out.
    pub churn_failures: AtomicU64,
    /// Voice connections found lost while listening.
    pub voice_lost: AtomicU64,
    /// Of those, connections got back.
    pub voice_back: AtomicU64,
    /// The longest time from noticing a lost connection to having voice
    /// again, µs.
    pub longest_outage_us: AtomicU64,
    /// The first few routing errors, described, for the report's warnings:
    /// a count alone does not tell a misrouted packet from a stranger's.
    pub wrong_samples: Mutex<Vec<String>>,
}

/// Routing errors described in the report, at most.
const WRONG_SAMPLES: usize = 5;

impl Failures for Ctx {
    fn failures(&self) -> &FailureLog {
        &self.counters.failures
    }
}

impl Ctx {
    fn fail_voice(&self, step: Step, e: &ConnError) {
        self.fail(step, &ErrorKind::conn(e), &error_chain(e));
    }

    fn count(&self, failure: &Failure) {
        self.fail(failure.step, &failure.kind, &failure.message);
    }

    /// µs from the epoch to `t`.
    pub fn micros(&self, t: StdInstant) -> u64 {
        micros_between(self.epoch, t)
    }

    fn enter_voice(&self, index: u32, session: u32) {
        self.voice_sessions[index as usize].store(session, Ordering::Release);
        self.in_voice[self.layout.channel_of(index) as usize].fetch_add(1, Ordering::AcqRel);
        self.counters.voice_up.fetch_add(1, Ordering::Relaxed);
    }

    fn leave_voice(&self, index: u32) {
        self.in_voice[self.layout.channel_of(index) as usize].fetch_sub(1, Ordering::AcqRel);
        self.counters.voice_up.fetch_sub(1, Ordering::Relaxed);
    }

    /// The shared socket for client `index`, opening them all on first use.
    fn socket(&self, index: u32, target: SocketAddr) -> Result<Endpoint, VoiceError> {
        let mut sockets = lock(&self.sockets);
        if sockets.is_empty() {
            for _ in 0..self.plan.sockets {
                sockets.push(client_endpoint(target)?);
            }
        }
        Ok(sockets[index as usize % sockets.len()].clone())
    }
}

/// A client in voice, ready for the run.
#[derive(Debug)]
pub struct Member {
    /// Its index.
    pub index: u32,
    /// Its session.
    pub session_id: u32,
    /// Its voice connection.
    pub voice: VoiceConn,
    /// Its connection to the control plane.
    channel: Channel,
}

/// Brings client `index` into voice: session, join, ticket, QUIC. `None`
/// when a step failed (counted in the tally).
pub async fn set_up(index: u32, ctx: Arc<Ctx>) -> Option<Member> {
    let Ok(_permit) = ctx.ramp.acquire().await else {
        return None; // The semaphore is closed: the run is over.
    };
    let channel = ctx.pool.for_client(index as usize);
    let mut presence = PresenceServiceClient::new(channel.clone());
    let connect = ctx
        .tokens
        .for_client(index as usize)
        .request(pb::ConnectRequest {
            display_name: format!("voice-{index}"),
        });
    let mut stream = match presence.connect(connect).await {
        Ok(resp) => resp.into_inner(),
        Err(status) => {
            ctx.fail_status(Step::Connect, &status);
            return None;
        }
    };
    let session_id = match stream.message().await {
        Ok(Some(pb::Event {
            event: Some(Kind::SessionStarted(started)),
            ..
        })) => started.session_id,
        Ok(_) => {
            ctx.fail(
                Step::SessionStarted,
                &ErrorKind::protocol(),
                "the first event is not session_started",
            );
            return None;
        }
        Err(status) => {
            ctx.fail_status(Step::SessionStarted, &status);
            return None;
        }
    };
    ctx.counters.sessions_up.fetch_add(1, Ordering::Relaxed);
    ctx.counters
        .sessions_started
        .fetch_add(1, Ordering::Relaxed);
    let reader = tokio::spawn(read_events(stream, ctx.clone()));
    lock(&ctx.readers).push(reader);

    let voice = join_and_connect(index, session_id, &channel, &ctx).await?;
    ctx.enter_voice(index, voice.session_id());
    Some(Member {
        index,
        session_id,
        voice,
        channel,
    })
}

/// A step of getting voice that failed: counted by the caller (once per
/// outage for a client getting its voice back), and whether asking again
/// could help.
#[derive(Debug)]
struct Failure {
    step: Step,
    kind: ErrorKind,
    message: String,
    /// Asking again cannot help: the session ended or left its channel, or
    /// its token is no longer valid (`docs/PROTOCOL.md`, "Reconnect").
    last: bool,
}

impl Failure {
    fn status(step: Step, status: &tonic::Status) -> Failure {
        Failure {
            step,
            kind: ErrorKind::of(status),
            message: status.message().to_owned(),
            last: matches!(
                Reason::of(status),
                Some(Reason::SessionRequired | Reason::NotInChannel | Reason::Unauthorized)
            ),
        }
    }

    fn conn(e: ConnError) -> Failure {
        Failure {
            step: Step::VoiceConnect,
            kind: ErrorKind::conn(&e),
            message: error_chain(&e),
            // Reject code 9: the session ended since the ticket was issued.
            last: matches!(
                e,
                ConnError::Quic(VoiceError::Rejected { code: 9, .. })
                    | ConnError::Udp(UdpVoiceError::Rejected { code: 9, .. })
            ),
        }
    }

    fn named(step: Step, name: &str, message: String) -> Failure {
        Failure {
            step,
            kind: ErrorKind::named(name),
            message,
            last: false,
        }
    }
}

/// `JoinChannel` into the client's channel, then `OpenVoice` and the voice
/// connection.
async fn join_and_connect(
    index: u32,
    session_id: u32,
    channel: &Channel,
    ctx: &Ctx,
) -> Option<VoiceConn> {
    let mut channels = ChannelServiceClient::new(channel.clone());
    let join = ctx.tokens.for_client(index as usize).session_request(
        session_id,
        pb::JoinChannelRequest {
            channel_id: ctx.channel_ids[ctx.layout.channel_of(index) as usize].clone(),
            password: String::new(),
        },
    );
    bounded(ctx, Step::Join, "JoinChannel", channels.join_channel(join)).await?;
    open_and_connect(index, session_id, channel, ctx)
        .await
        .inspect_err(|failure| ctx.count(failure))
        .ok()
}

/// `OpenVoice`, then the voice connection over the run's transport.
async fn open_and_connect(
    index: u32,
    session_id: u32,
    channel: &Channel,
    ctx: &Ctx,
) -> Result<VoiceConn, Failure> {
    let mut voice = VoiceServiceClient::new(channel.clone());
    let open = ctx
        .tokens
        .for_client(index as usize)
        .session_request(session_id, pb::OpenVoiceRequest {});
    let ticket = call(Step::OpenVoice, "OpenVoice", voice.open_voice(open)).await?;
    if ctx.plan.transport == Transport::Udp {
        return connect_udp(&ticket).await;
    }
    let Some(target) = resolve(&ticket.quic_endpoint).await else {
        return Err(Failure::named(
            Step::OpenVoice,
            "bad_endpoint",
            format!("cannot resolve quic_endpoint `{}`", ticket.quic_endpoint),
        ));
    };
    let connected = if ctx.plan.sockets == 0 {
        VoiceClient::connect(target, &ticket.cert_sha256, &ticket.ticket).await
    } else {
        match ctx.socket(index, target) {
            Ok(socket) => {
                VoiceClient::connect_via(&socket, target, &ticket.cert_sha256, &ticket.ticket).await
            }
            Err(e) => Err(e),
        }
    };
    connected
        .map(VoiceConn::Quic)
        .map_err(|e| Failure::conn(e.into()))
}

/// Presents the ticket of `ticket` to the data plane's plain-UDP listener.
async fn connect_udp(ticket: &pb::OpenVoiceResponse) -> Result<VoiceConn, Failure> {
    let Some(target) = resolve(&ticket.udp_endpoint).await else {
        return Err(Failure::named(
            Step::OpenVoice,
            "bad_endpoint",
            format!(
                "cannot resolve udp_endpoint `{}` (empty: the data plane offers no plain UDP)",
                ticket.udp_endpoint
            ),
        ));
    };
    UdpVoiceClient::connect(target, &ticket.ticket, &ticket.session_key)
        .await
        .map(|v| VoiceConn::Udp(Box::new(v)))
        .map_err(|e| Failure::conn(e.into()))
}

/// A control-plane call (`name`, at `step`) bounded by [`CALL_TIMEOUT`].
async fn call<T>(
    step: Step,
    name: &str,
    request: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Failure> {
    match timeout(CALL_TIMEOUT, request).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(Failure::status(step, &status)),
        Err(_) => Err(Failure::named(step, "timed_out", name.into())),
    }
}

/// [`call`], counting its failure; `None` when it failed.
async fn bounded<T>(
    ctx: &Ctx,
    step: Step,
    name: &str,
    request: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Option<T> {
    call(step, name, request)
        .await
        .inspect_err(|failure| ctx.count(failure))
        .ok()
}

/// The first address of `host:port`, bounded.
async fn resolve(hostport: &str) -> Option<SocketAddr> {
    if let Ok(addr) = hostport.parse() {
        return Some(addr);
    }
    let found = timeout(CALL_TIMEOUT, tokio::net::lookup_host(hostport)).await;
    found.ok()?.ok()?.next()
}

/// Reads a session's events until the close signal or the stream's end.
async fn read_events(mut stream: Streaming<pb::Event>, ctx: Arc<Ctx>) {
    let mut close = ctx.close.clone();
    let closed = close.wait_for(|c| *c);
    tokio::pin!(closed);
    loop {
        tokio::select! {
            biased;
            // An error means the sender is gone, which also means "close".
            _ = &mut closed => break,
            next = stream.message() => match next {
                Ok(Some(_)) => {
                    ctx.events.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None) => {
                    ctx.fail(Step::Stream, &ErrorKind::stream_ended(), "the server ended the stream");
                    break;
                }
                Err(status) => {
                    ctx.fail_status(Step::Stream, &status);
                    break;
                }
            }
        }
    }
    // Dropping the stream resets it, which ends the session on the server.
    drop(stream);
    ctx.counters.sessions_up.fetch_sub(1, Ordering::Relaxed);
}

/// The run's signals to its clients.
#[derive(Debug, Clone)]
pub struct Signals {
    /// Set once: when the measured phase starts.
    pub go: watch::Receiver<Option<StdInstant>>,
    /// Speakers stop early (an interrupt).
    pub stop_sending: watch::Receiver<bool>,
    /// Listeners stop: the drain is over.
    pub stop_listening: watch::Receiver<bool>,
}

/// What a client hands back at the end.
#[derive(Debug)]
pub struct MemberResult {
    /// Its index.
    pub index: u32,
    /// What it received.
    pub tally: ListenerTally,
    /// What it sent, when it spoke.
    pub log: Option<SendLog>,
    /// Its voice connection, to close, unless it was lost.
    pub voice: Option<VoiceConn>,
}

/// Runs a client in voice until the listeners are told to stop.
pub async fn run_member(member: Member, ctx: Arc<Ctx>, signals: Signals) -> MemberResult {
    let index = member.index;
    let seat = Seat {
        index,
        session_id: member.session_id,
        channel: member.channel,
        current: watch::Sender::new(Some(Arc::new(member.voice))),
    };
    let speaker = ctx.layout.is_speaker(index).then(|| {
        tokio::spawn(speak(
            index,
            seat.current.subscribe(),
            ctx.clone(),
            signals.go.clone(),
            signals.stop_sending.clone(),
        ))
    });
    let mut listener = Listener::new(index, &ctx);
    let mut stop = signals.stop_listening.clone();
    let end = if ctx.layout.churns(index) {
        let mut c = Churner {
            seat: &seat,
            rng: StdRng::seed_from_u64(stream_seed(
                ctx.plan.seed,
                index,
                Direction::Uplink,
                SEED_CHURN,
            )),
        };
        c.run(&mut listener, signals.go.clone(), &mut stop).await
    } else {
        listener.listen_on(&seat, Until::Stop, &mut stop).await
    };
    if !matches!(end, ListenEnd::Stopped) {
        // Lost for good: the tally keeps its window open, so the missing
        // packets count as lost. Wait for the end like the others.
        let _ = stop.wait_for(|s| *s).await;
    }
    let log = match speaker {
        Some(handle) => match handle.await {
            Ok(log) => Some(log),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        },
        None => None,
    };
    listener.merge_delays();
    // The speaker task is done, so the seat holds the last handle.
    let voice = matches!(end, ListenEnd::Stopped)
        .then(|| seat.take())
        .flatten()
        .and_then(|v| Arc::try_unwrap(v).ok());
    MemberResult {
        index,
        tally: listener.tally,
        log,
        voice,
    }
}

/// A client's place in voice: what it needs to ask for voice again, and
/// the connection in use, which its speaker follows.
struct Seat {
    /// The client.
    index: u32,
    /// Its session.
    session_id: u32,
    /// Its connection to the control plane.
    channel: Channel,
    /// The voice connection in use; `None` while there is none (lost, or
    /// between a churner's leave and rejoin).
    current: watch::Sender<Option<Arc<VoiceConn>>>,
}

impl Seat {
    fn voice(&self) -> Option<Arc<VoiceConn>> {
        self.current.borrow().clone()
    }

    /// Takes the connection out: the speaker stops sending on it.
    fn take(&self) -> Option<Arc<VoiceConn>> {
        self.current.send_replace(None)
    }

    fn install(&self, voice: VoiceConn) {
        self.current.send_replace(Some(Arc::new(voice)));
    }

    /// Gets voice back after the connection was lost: `OpenVoice` and a
    /// new connection, again and again with a growing pause, until one
    /// works (`true`), the control plane says asking again cannot help
    /// (counted), or the run stops. The session stays in its channel all
    /// along, so the listener stays owed what its channel sends.
    async fn recover(&self, ctx: &Ctx, stop: &mut watch::Receiver<bool>) -> bool {
        let lost_at = Instant::now();
        drop(self.take());
        ctx.voice_lost.fetch_add(1, Ordering::Relaxed);
        ctx.counters.voice_up.fetch_sub(1, Ordering::Relaxed);
        let mut pause = FIRST_RETRY_PAUSE;
        // Bounded by the run, which always ends with `stop`.
        loop {
            let attempt = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return false,
                attempt = open_and_connect(self.index, self.session_id, &self.channel, ctx) => attempt,
            };
            match attempt {
                Ok(voice) => {
                    ctx.voice_sessions[self.index as usize]
                        .store(voice.session_id(), Ordering::Release);
                    self.install(voice);
                    ctx.counters.voice_up.fetch_add(1, Ordering::Relaxed);
                    ctx.voice_back.fetch_add(1, Ordering::Relaxed);
                    ctx.longest_outage_us
                        .fetch_max(duration_micros(lost_at.elapsed()), Ordering::Relaxed);
                    return true;
                }
                Err(failure) if failure.last => {
                    ctx.count(&failure);
                    return false;
                }
                // No data plane attached yet, the old one's address dead, a
                // fault: the next attempt may do.
                Err(_) => {}
            }
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return false,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
    }
}

/// How a stretch of listening ended.
enum ListenEnd {
    /// The run told listeners to stop.
    Stopped,
    /// Time to leave (churn).
    Leave,
    /// The measured phase started (churners wait for it to plan leaves).
    Go(StdInstant),
    /// The voice connection failed.
    Lost,
}

/// What ends a stretch of listening besides the run's stop and a lost
/// connection. A churner waits for the go before it plans any leave, so it
/// is one or the other, never both.
enum Until<'a> {
    /// Nothing else: listen until the run stops.
    Stop,
    /// Leave at this instant ([`ListenEnd::Leave`]).
    Leave(Instant),
    /// The measured phase's start, once the run sets it
    /// ([`ListenEnd::Go`]).
    Go(&'a mut watch::Receiver<Option<StdInstant>>),
}

impl Until<'_> {
    /// When to leave, if leaving ends the listening.
    fn leave_at(&self) -> Option<Instant> {
        match self {
            Until::Leave(at) => Some(*at),
            Until::Stop | Until::Go(_) => None,
        }
    }

    /// The go to wait for, if the go ends the listening.
    fn go(&mut self) -> Option<&mut watch::Receiver<Option<StdInstant>>> {
        match self {
            Until::Go(go) => Some(&mut **go),
            Until::Stop | Until::Leave(_) => None,
        }
    }
}

/// One client's listening side.
struct Listener {
    /// Shared state.
    ctx: Arc<Ctx>,
    /// Everything it received.
    tally: ListenerTally,
    /// The simulated downlink.
    downlink: Link<Forwarded>,
    /// What the downlink lets through at once for one datagram, emptied
    /// after each: kept so that a received packet allocates nothing.
    arrived: Vec<Forwarded>,
    /// One-way delays not yet merged into the shared histograms, each with
    /// its arrival (µs since the epoch).
    delays: Vec<(u64, u64)>,
}

impl Listener {
    fn new(index: u32, ctx: &Arc<Ctx>) -> Self {
        let plan = &ctx.plan;
        let mut tally = ListenerTally::new(
            index,
            ctx.layout,
            duration_micros(plan.playout),
            plan.seq_limit(),
        );
        // Owed everything from the start: measured packets exist only once
        // the run says go, after every client is in voice.
        tally.open_window(0);
        Listener {
            ctx: ctx.clone(),
            tally,
            downlink: Link::new(
                plan.link(Direction::Downlink),
                stream_seed(plan.seed, index, Direction::Downlink, SEED_IMPAIRMENT),
            ),
            arrived: Vec::new(),
            delays: Vec::with_capacity(DELAY_BATCH),
        }
    }

    /// [`listen`](Self::listen) on the seat's connection, getting voice
    /// back each time it is lost; [`ListenEnd::Lost`] only when it cannot
    /// be got back.
    async fn listen_on(
        &mut self,
        seat: &Seat,
        mut until: Until<'_>,
        stop: &mut watch::Receiver<bool>,
    ) -> ListenEnd {
        // Bounded by the run: each pass ends in the run's stop, or after
        // a connection that lasted at least until its silence was noticed.
        loop {
            let Some(voice) = seat.voice() else {
                return ListenEnd::Lost;
            };
            match self.listen(&voice, &mut until, stop).await {
                ListenEnd::Lost => {
                    drop(voice);
                    if !seat.recover(&self.ctx, stop).await {
                        return ListenEnd::Lost;
                    }
                }
                end => return end,
            }
        }
    }

    /// Listens on `voice` until told to stop, until what `until` says, or
    /// until the connection fails or falls silent for [`GONE_AFTER`].
    async fn listen(
        &mut self,
        voice: &VoiceConn,
        until: &mut Until<'_>,
        stop: &mut watch::Receiver<bool>,
    ) -> ListenEnd {
        // To read the flag in a handler while `stop` is borrowed by its arm.
        let stopping = stop.clone();
        // Made once for the stretch, not once per datagram received: each
        // would register with the timer or the run's shared watch, and
        // unregister, for every packet.
        let stopped = stop.wait_for(|s| *s);
        let leave = sleep_until_opt(until.leave_at());
        let go = wait_go(until.go());
        tokio::pin!(stopped, leave, go);
        let mut checks = tokio::time::interval_at(Instant::now() + CHECK_EVERY, CHECK_EVERY);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut heard, mut heard_at) = (voice.heard(), Instant::now());
        loop {
            let due = self.downlink.next_due();
            tokio::select! {
                biased;
                _ = &mut stopped => {
                    self.flush();
                    return ListenEnd::Stopped;
                }
                _ = checks.tick() => {
                    let now = voice.heard();
                    if now != heard {
                        (heard, heard_at) = (now, Instant::now());
                    } else if heard_at.elapsed() >= GONE_AFTER {
                        if !*stopping.borrow() {
                            self.ctx.fail(
                                Step::VoiceRecv,
                                &ErrorKind::named("voice:gone"),
                                &format!("nothing from the data plane for {GONE_AFTER:?}"),
                            );
                        }
                        self.flush();
                        return ListenEnd::Lost;
                    }
                    // Each check is a ping's time (`CHECK_EVERY`); a lost
                    // ping is made good by the next one.
                    let _ = voice.keepalive();
                }
                () = &mut leave => {
                    self.flush();
                    return ListenEnd::Leave;
                }
                at = &mut go => return ListenEnd::Go(at),
                () = sleep_until_opt(due.map(Instant::from_std)) => {
                    let now = StdInstant::now();
                    while let Some((forwarded, arrival)) = self.downlink.pop_due(now) {
                        self.judge(&forwarded, arrival);
                    }
                }
                received = voice.recv() => match received {
                    Ok(forwarded) => self.on_datagram(forwarded),
                    Err(e) => {
                        if !*stopping.borrow() {
                            self.ctx.fail_voice(Step::VoiceRecv, &e);
                        }
                        self.flush();
                        return ListenEnd::Lost;
                    }
                }
            }
        }
    }

    /// A datagram from the data plane: through the simulated downlink, then
    /// judged.
    fn on_datagram(&mut self, forwarded: Forwarded) {
        let now = StdInstant::now();
        // Warm-up packets prove a path works: the simulated network does
        // not touch them, and they are not part of the measured traffic.
        if Probe::is_warmup(&forwarded.payload) {
            return self.judge(&forwarded, now);
        }
        self.ctx.counters.received.fetch_add(1, Ordering::Relaxed);
        // Taken out while `judge` borrows the listener, then put back.
        let mut arrived = std::mem::take(&mut self.arrived);
        if !self.downlink.send(now, forwarded, &mut arrived) {
            self.ctx.downlink_dropped.fetch_add(1, Ordering::Relaxed);
        }
        for forwarded in arrived.drain(..) {
            self.judge(&forwarded, now);
        }
        self.arrived = arrived;
    }

    /// Judges whatever the downlink still holds as if it had waited: each
    /// arrives at its due time. Called when listening ends.
    fn flush(&mut self) {
        for (forwarded, arrival) in self.downlink.drain() {
            self.judge(&forwarded, arrival);
        }
    }

    /// Hands one datagram that arrived at `arrival` to the tally.
    fn judge(&mut self, forwarded: &Forwarded, arrival: StdInstant) {
        let ctx = &self.ctx;
        if forwarded.payload.len() != ctx.plan.payload_bytes {
            self.tally.on_malformed();
            return;
        }
        let Ok(probe) = Probe::decode(&forwarded.payload) else {
            self.tally.on_malformed();
            return;
        };
        let speaker_matches = match ctx.voice_sessions.get(probe.sender as usize) {
            Some(id) => match id.load(Ordering::Acquire) {
                0 => true, // Not known (yet): the layout check still applies.
                id => id == forwarded.speaker,
            },
            None => true, // Not a client: the tally calls it wrong.
        };
        let arrival_us = ctx.micros(arrival);
        let verdict = self.tally.on_probe(arrival_us, &probe, speaker_matches);
        if let Verdict::Wrong = verdict {
            self.note_wrong(&probe, forwarded.speaker);
        }
        match verdict {
            Verdict::Delivered { delay_us, .. } => {
                ctx.counters.delivered.fetch_add(1, Ordering::Relaxed);
                // The buffer's delays belong to an interval that just
                // ended: hand them in before its row is taken.
                let cut = ctx.cut_us.load(Ordering::Relaxed);
                if arrival_us >= cut && self.delays.first().is_some_and(|&(a, _)| a < cut) {
                    self.merge_delays();
                }
                self.delays.push((arrival_us, delay_us));
                if self.delays.len() >= DELAY_BATCH {
                    self.merge_delays();
                }
            }
            Verdict::Warmup { first: true } => {
                if let Some(h) = ctx.heard.get(probe.sender as usize) {
                    h.fetch_add(1, Ordering::AcqRel);
                }
            }
            _ => {}
        }
    }

    /// Describes a routing error for the report, while there are few.
    fn note_wrong(&self, probe: &Probe, speaker: u32) {
        let ctx = &self.ctx;
        let mut samples = lock(&ctx.wrong_samples);
        if samples.len() >= WRONG_SAMPLES {
            return;
        }
        let layout = &ctx.layout;
        let me = self.tally.index();
        let session = |i: u32| {
            ctx.voice_sessions
                .get(i as usize)
                .map_or(0, |s| s.load(Ordering::Acquire))
        };
        let sender = if probe.sender < layout.clients {
            format!(
                "client {} (channel {}, {}voice session {})",
                probe.sender,
                layout.channel_of(probe.sender),
                if layout.is_speaker(probe.sender) {
                    "speaker, "
                } else {
                    ""
                },
                session(probe.sender),
            )
        } else {
            format!("client {}, which this run does not have", probe.sender)
        };
        samples.push(format!(
            "routing error: client {me} (channel {}, voice session {}) got {} \
             packet {} of {sender} from speaker id {speaker}",
            layout.channel_of(me),
            session(me),
            if probe.warmup { "warm-up" } else { "measured" },
            probe.sequence,
        ));
    }

    /// Moves the buffered delays into the shared histogram.
    fn merge_delays(&mut self) {
        if !self.delays.is_empty() {
            lock(&self.ctx.latency).record(&self.delays);
            self.delays.clear();
        }
    }
}

/// Sleeps until `at`; forever when `None`.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The go instant, once set; never when there is no receiver or its
/// sender is gone.
async fn wait_go(go: Option<&mut watch::Receiver<Option<StdInstant>>>) -> StdInstant {
    if let Some(go) = go
        && let Ok(at) = go.wait_for(Option::is_some).await
        && let Some(at) = *at
    {
        return at;
    }
    std::future::pending().await
}

/// A listener that leaves and rejoins its channel during the send phase.
struct Churner<'a> {
    /// The client and its voice.
    seat: &'a Seat,
    /// When to leave.
    rng: StdRng,
}

impl Churner<'_> {
    /// Listens, leaving and rejoining about every `--churn-every-ms` while
    /// the send phase lasts, until the run stops it
    /// ([`ListenEnd::Stopped`]) or its voice is lost for good.
    async fn run(
        &mut self,
        listener: &mut Listener,
        mut go: watch::Receiver<Option<StdInstant>>,
        stop: &mut watch::Receiver<bool>,
    ) -> ListenEnd {
        let ctx = listener.ctx.clone();
        let every = ctx.plan.churn_every.unwrap_or(Duration::from_secs(3));
        // Until the run says go there are no leaves to plan.
        let send_end = match listener
            .listen_on(self.seat, Until::Go(&mut go), stop)
            .await
        {
            ListenEnd::Go(at) => Instant::from_std(at) + ctx.plan.duration,
            end => return end,
        };
        // Bounded: each pass waits at least half a period (>= 250 ms) and
        // the send phase is finite; past its end no leave is planned.
        loop {
            let leave_at = Instant::now() + every.mul_f64(self.rng.random_range(0.5..1.5));
            let until = if leave_at < send_end {
                Until::Leave(leave_at)
            } else {
                Until::Stop
            };
            match listener.listen_on(self.seat, until, stop).await {
                ListenEnd::Leave => {}
                ListenEnd::Go(_) => return ListenEnd::Lost,
                end => return end,
            }
            // Owed nothing sent from now on; the packets sent until now are
            // still owed, so stay for those in flight (the simulated delays,
            // the data plane's jitter buffer) before really leaving. Closing
            // the window ahead of the arrivals keeps each verdict final.
            listener.tally.close_window(ctx.micros(StdInstant::now()));
            let margin = LEAVE_GUARD
                + ctx.plan.link(Direction::Uplink).max_delay()
                + ctx.plan.link(Direction::Downlink).max_delay();
            match listener
                .listen_on(self.seat, Until::Leave(Instant::now() + margin), stop)
                .await
            {
                ListenEnd::Leave => {}
                ListenEnd::Go(_) => return ListenEnd::Lost,
                end => return end,
            }
            ctx.leave_voice(self.seat.index);
            if let Some(v) = self.seat.take().and_then(|v| Arc::try_unwrap(v).ok()) {
                v.close().await;
            }
            match self.rejoin(&ctx).await {
                Some(v) => {
                    ctx.enter_voice(self.seat.index, v.session_id());
                    self.seat.install(v);
                    listener
                        .tally
                        .open_window(ctx.micros(StdInstant::now() + REJOIN_GUARD));
                    ctx.churn_cycles.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    ctx.churn_failures.fetch_add(1, Ordering::Relaxed);
                    return ListenEnd::Lost;
                }
            }
        }
    }

    /// `LeaveChannel`, then join, `OpenVoice` and connect again.
    async fn rejoin(&self, ctx: &Ctx) -> Option<VoiceConn> {
        let Seat {
            index,
            session_id,
            channel,
            ..
        } = self.seat;
        let mut channels = ChannelServiceClient::new(channel.clone());
        let leave = ctx
            .tokens
            .for_client(*index as usize)
            .session_request(*session_id, pb::LeaveChannelRequest {});
        bounded(
            ctx,
            Step::Leave,
            "LeaveChannel",
            channels.leave_channel(leave),
        )
        .await?;
        join_and_connect(*index, *session_id, channel, ctx).await
    }
}

/// One speaker: warm-up packets until go, then the measured phase; returns
/// what it sent. The decisions are [`Speaker`]'s; this sleeps, sends and
/// counts.
async fn speak(
    index: u32,
    mut voice: watch::Receiver<Option<Arc<VoiceConn>>>,
    ctx: Arc<Ctx>,
    mut go: watch::Receiver<Option<StdInstant>>,
    mut stop: watch::Receiver<bool>,
) -> SendLog {
    // Churn needs each send time to know what a listener was owed, the
    // timeline to sort the packets into its intervals.
    let mut speaker = Speaker::new(
        index,
        &ctx.plan,
        ctx.layout.churn || ctx.plan.timeline.is_some(),
        ctx.epoch,
        StdInstant::now(),
    );
    let channel = ctx.layout.channel_of(index) as usize;
    // The connection in use: the listener replaces it when it gets voice
    // back after losing it; `None` meanwhile, and what is made then is
    // lost on the way (and owed, so counted so by the listeners).
    let mut conn = voice.borrow_and_update().clone();
    let mut warming = true;
    // Made once, not once per packet: each would register with the run's
    // shared watch, and unregister, at every step.
    let stopped = stop.wait_for(|s| *s);
    let started = wait_go(Some(&mut go));
    tokio::pin!(stopped, started);
    // Bounded: the run always sets go or stop, and after go the speaker
    // ends with the send phase and the longest simulated delay.
    while let Some(wake) = speaker.next_wake() {
        tokio::select! {
            biased;
            _ = &mut stopped => {
                if let Some(c) = &conn {
                    let _ = speaker.stop().into_iter().all(|d| send(&ctx, c, d));
                }
                break;
            }
            // Polled until it resolves, never after.
            at = &mut started, if warming => {
                warming = false;
                speaker.start(at);
                continue;
            }
            () = sleep_until(Instant::from_std(wake)) => {}
        }
        let step = speaker.poll(StdInstant::now());
        if step.made > 0 {
            ctx.counters.sent.fetch_add(step.made, Ordering::Relaxed);
            let listeners = ctx.in_voice[channel]
                .load(Ordering::Acquire)
                .saturating_sub(1);
            ctx.counters
                .owed
                .fetch_add(step.made * u64::from(listeners), Ordering::Relaxed);
        }
        ctx.uplink_dropped.fetch_add(step.lost, Ordering::Relaxed);
        if voice.has_changed().unwrap_or(false) {
            conn = voice.borrow_and_update().clone();
        }
        if let Some(c) = &conn
            && !step.send.into_iter().all(|d| send(&ctx, c, d))
        {
            // Gone: nothing more on it until the listener has a new one.
            conn = None;
        }
    }
    speaker.into_log()
}

/// Sends one datagram; `false` when the connection is gone (counted), so
/// the speaker stops using it.
fn send(ctx: &Ctx, voice: &VoiceConn, d: Datagram) -> bool {
    match voice.send(d.sequence, d.timestamp_ms, d.payload) {
        Ok(()) => true,
        Err(e @ ConnError::Quic(VoiceError::ConnectionLost { .. })) => {
            ctx.fail_voice(Step::VoiceSend, &e);
            false
        }
        Err(e) => {
            ctx.send_errors.fetch_add(1, Ordering::Relaxed);
            ctx.fail_voice(Step::VoiceSend, &e);
            true
        }
    }
}
