//! One client of the `voice` scenario: the tokio drivers around the pure
//! parts (probe, impairment, delay line, talk pattern, tally).
//!
//! A client is up to three tasks:
//! - its event reader, which keeps the session's `PresenceService.Connect`
//!   stream drained for the whole run (a session lives as long as it);
//! - its listener, which judges every forwarded datagram and, for a
//!   churning client, leaves and rejoins the channel now and then;
//! - for a speaker, its speaker, which sends warm-up packets until the run
//!   says go, then one packet per frame while it talks.
//!
//! [`set_up`] brings a client from nothing to connected voice;
//! [`run_member`] runs the listener and speaker until the run stops them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use hdrhistogram::Histogram;
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
use tokio::time::{Instant, MissedTickBehavior, sleep_until, timeout};
use tonic::Streaming;
use tonic::transport::Channel;

use crate::client::lock;
use crate::credentials::Credentials;
use crate::delay_line::DelayLine;
use crate::delivery::{ListenerTally, SendLog, Verdict};
use crate::impairment::{Direction, Fate, Impairment, stream_seed};
use crate::layout::Layout;
use crate::plan::VoicePlan;
use crate::pool::Pool;
use crate::probe::Probe;
use crate::stats::{duration_micros, micros_between, record_all};
use crate::talk::TalkPattern;
use crate::tally::{ErrorKind, ErrorTally, Step};
use crate::voice::{VoiceClient, VoiceError, client_endpoint};
use crate::voice_progress::VoiceCounters;

/// Delays a listener buffers before merging them into the shared
/// histogram: the lock is then rare.
const DELAY_BATCH: usize = 256;

/// Bound on each control-plane call of a churn cycle.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A rejoined listener is owed packets from this long after its voice
/// connection was accepted: time for the data plane to apply the join it
/// learns of from the control plane, which travels apart from the QUIC
/// handshake.
const REJOIN_GUARD: Duration = Duration::from_millis(100);

/// A leaving listener stays this long (plus the simulated delays) after it
/// stops being owed packets, for those still in flight or held by the data
/// plane's jitter buffer (60 ms by default).
const LEAVE_GUARD: Duration = Duration::from_millis(250);

/// Random streams per client, by purpose (see [`stream_seed`]).
const SEED_IMPAIRMENT: u64 = 0;
const SEED_TALK: u64 = 1;
const SEED_CHURN: u64 = 2;
const SEED_PHASE: u64 = 3;

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
    /// The clients' token.
    pub creds: Credentials,
    /// The run's channels, by index.
    pub channel_ids: Vec<String>,
    /// Bounds the clients setting up at once.
    pub ramp: Semaphore,
    /// For the progress line.
    pub counters: Arc<VoiceCounters>,
    /// Failures.
    pub tally: Mutex<ErrorTally>,
    /// One-way delays, µs.
    pub latency: Mutex<Histogram<u64>>,
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
}

impl Ctx {
    /// Counts a failure.
    pub fn fail(&self, step: Step, kind: &ErrorKind, message: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.tally).record(step, kind, message);
    }

    fn fail_status(&self, step: Step, status: &tonic::Status) {
        self.fail(step, &ErrorKind::of(status), status.message());
    }

    fn fail_voice(&self, step: Step, e: &VoiceError) {
        self.fail(step, &ErrorKind::voice(e), &describe_voice(e));
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

/// The error and its causes on one line.
fn describe_voice(e: &VoiceError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A client in voice, ready for the run.
#[derive(Debug)]
pub struct Member {
    /// Its index.
    pub index: u32,
    /// Its session.
    pub session_id: u32,
    /// Its voice connection.
    pub voice: VoiceClient,
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
    let connect = ctx.creds.request(pb::ConnectRequest {
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

/// `JoinChannel` into the client's channel, then `OpenVoice` and the QUIC
/// connection.
async fn join_and_connect(
    index: u32,
    session_id: u32,
    channel: &Channel,
    ctx: &Ctx,
) -> Option<VoiceClient> {
    let mut channels = ChannelServiceClient::new(channel.clone());
    let join = ctx.creds.session_request(
        session_id,
        pb::JoinChannelRequest {
            channel_id: ctx.channel_ids[ctx.layout.channel_of(index) as usize].clone(),
            password: String::new(),
        },
    );
    match timeout(CALL_TIMEOUT, channels.join_channel(join)).await {
        Ok(Ok(_)) => {}
        Ok(Err(status)) => {
            ctx.fail_status(Step::Join, &status);
            return None;
        }
        Err(_) => {
            ctx.fail(Step::Join, &ErrorKind::named("timed_out"), "JoinChannel");
            return None;
        }
    }
    let mut voice = VoiceServiceClient::new(channel.clone());
    let open = ctx
        .creds
        .session_request(session_id, pb::OpenVoiceRequest {});
    let ticket = match timeout(CALL_TIMEOUT, voice.open_voice(open)).await {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(status)) => {
            ctx.fail_status(Step::OpenVoice, &status);
            return None;
        }
        Err(_) => {
            ctx.fail(Step::OpenVoice, &ErrorKind::named("timed_out"), "OpenVoice");
            return None;
        }
    };
    let Some(target) = resolve(&ticket.quic_endpoint).await else {
        ctx.fail(
            Step::OpenVoice,
            &ErrorKind::named("bad_endpoint"),
            &format!("cannot resolve quic_endpoint `{}`", ticket.quic_endpoint),
        );
        return None;
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
    match connected {
        Ok(v) => Some(v),
        Err(e) => {
            ctx.fail_voice(Step::VoiceConnect, &e);
            None
        }
    }
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
    pub voice: Option<VoiceClient>,
}

/// Runs a client in voice until the listeners are told to stop.
pub async fn run_member(member: Member, ctx: Arc<Ctx>, signals: Signals) -> MemberResult {
    let index = member.index;
    let voice = Arc::new(member.voice);
    let speaker = ctx.layout.is_speaker(index).then(|| {
        tokio::spawn(speak(
            index,
            voice.clone(),
            ctx.clone(),
            signals.go.clone(),
            signals.stop_sending.clone(),
        ))
    });
    let mut listener = Listener::new(index, &ctx);
    let mut stop = signals.stop_listening.clone();
    let voice = if ctx.layout.churns(index) {
        let mut c = Churner {
            index,
            session_id: member.session_id,
            channel: member.channel,
            rng: StdRng::seed_from_u64(stream_seed(
                ctx.plan.seed,
                index,
                Direction::Uplink,
                SEED_CHURN,
            )),
        };
        c.run(voice, &mut listener, signals.go.clone(), &mut stop)
            .await
    } else {
        match listener.listen(&voice, None, None, &mut stop).await {
            ListenEnd::Stopped => Some(voice),
            _ => {
                // Lost: the tally keeps its window open, so the missing
                // packets count as lost. Wait for the end like the others.
                let _ = stop.wait_for(|s| *s).await;
                None
            }
        }
    };
    let log = match speaker {
        Some(handle) => match handle.await {
            Ok(log) => Some(log),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        },
        None => None,
    };
    listener.merge_delays();
    MemberResult {
        index,
        tally: listener.tally,
        log,
        // The speaker task is done, so this is the last handle.
        voice: voice.and_then(|v| Arc::try_unwrap(v).ok()),
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

/// A datagram the simulated downlink holds back.
struct Held {
    /// When it "arrives".
    due: StdInstant,
    /// The datagram.
    forwarded: Forwarded,
}

/// One client's listening side.
struct Listener {
    /// Shared state.
    ctx: Arc<Ctx>,
    /// Everything it received.
    tally: ListenerTally,
    /// The simulated downlink.
    downlink: Impairment,
    /// Whether the downlink does anything (else skip it).
    downlink_clean: bool,
    /// Datagrams the downlink is holding.
    held: DelayLine<Held>,
    /// One-way delays not yet merged into the shared histogram.
    delays: Vec<u64>,
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
        let spec = plan.link(Direction::Downlink);
        Listener {
            ctx: ctx.clone(),
            tally,
            downlink_clean: spec.is_clean(),
            downlink: Impairment::new(
                spec,
                stream_seed(plan.seed, index, Direction::Downlink, SEED_IMPAIRMENT),
            ),
            held: DelayLine::default(),
            delays: Vec::with_capacity(DELAY_BATCH),
        }
    }

    /// Listens on `voice` until told to stop, until `leave_at`, until `go`
    /// (when given) is set, or until the connection fails.
    async fn listen(
        &mut self,
        voice: &VoiceClient,
        leave_at: Option<Instant>,
        mut go: Option<&mut watch::Receiver<Option<StdInstant>>>,
        stop: &mut watch::Receiver<bool>,
    ) -> ListenEnd {
        // To read the flag in a handler while `stop` is borrowed by its arm.
        let stopping = stop.clone();
        loop {
            let due = self.held.next_due();
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => {
                    self.flush();
                    return ListenEnd::Stopped;
                }
                () = sleep_until_opt(leave_at) => {
                    self.flush();
                    return ListenEnd::Leave;
                }
                at = wait_go(go.as_deref_mut()) => return ListenEnd::Go(at),
                () = sleep_until_opt(due.map(Instant::from_std)) => {
                    let now = StdInstant::now();
                    while let Some(h) = self.held.pop_due(now) {
                        self.judge(&h.forwarded, h.due);
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
        if self.downlink_clean {
            return self.judge(&forwarded, now);
        }
        match self.downlink.fate() {
            Fate::Lost => {
                self.ctx.downlink_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Fate::Pass { delay, duplicate } => {
                let copies = 1 + usize::from(duplicate);
                if delay.is_zero() {
                    for _ in 0..copies {
                        self.judge(&forwarded, now);
                    }
                } else {
                    for _ in 0..copies {
                        self.held.push(
                            now + delay,
                            Held {
                                due: now + delay,
                                forwarded: forwarded.clone(),
                            },
                        );
                    }
                }
            }
        }
    }

    /// Judges whatever the downlink still holds as if it had waited: each
    /// arrives at its due time. Called when listening ends.
    fn flush(&mut self) {
        let mut held = Vec::new();
        while let Some(h) = self
            .held
            .pop_due(StdInstant::now() + Duration::from_secs(3_600))
        {
            held.push(h);
        }
        for h in held {
            self.judge(&h.forwarded, h.due);
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
        match self
            .tally
            .on_probe(ctx.micros(arrival), &probe, speaker_matches)
        {
            Verdict::Delivered { delay_us, .. } => {
                ctx.counters.delivered.fetch_add(1, Ordering::Relaxed);
                self.delays.push(delay_us);
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

    /// Moves the buffered delays into the shared histogram.
    fn merge_delays(&mut self) {
        if !self.delays.is_empty() {
            record_all(&mut lock(&self.ctx.latency), &self.delays);
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
struct Churner {
    /// The client.
    index: u32,
    /// Its session.
    session_id: u32,
    /// Its connection to the control plane.
    channel: Channel,
    /// When to leave.
    rng: StdRng,
}

impl Churner {
    /// Listens, leaving and rejoining about every `--churn-every-ms` while
    /// the send phase lasts; returns the voice connection to close.
    async fn run(
        &mut self,
        mut voice: Arc<VoiceClient>,
        listener: &mut Listener,
        mut go: watch::Receiver<Option<StdInstant>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Arc<VoiceClient>> {
        let ctx = listener.ctx.clone();
        let every = ctx.plan.churn_every.unwrap_or(Duration::from_secs(3));
        // Until the run says go there are no leaves to plan.
        let send_end = match listener.listen(&voice, None, Some(&mut go), stop).await {
            ListenEnd::Go(at) => Instant::from_std(at) + ctx.plan.duration,
            ListenEnd::Stopped => return Some(voice),
            ListenEnd::Leave | ListenEnd::Lost => {
                let _ = stop.wait_for(|s| *s).await;
                return None;
            }
        };
        // Bounded: each pass waits at least half a period (>= 250 ms) and
        // the send phase is finite; past its end no leave is planned.
        loop {
            let leave_at = Instant::now() + every.mul_f64(self.rng.random_range(0.5..1.5));
            let leave_at = (leave_at < send_end).then_some(leave_at);
            match listener.listen(&voice, leave_at, None, stop).await {
                ListenEnd::Stopped => return Some(voice),
                ListenEnd::Go(_) | ListenEnd::Lost => {
                    let _ = stop.wait_for(|s| *s).await;
                    return None;
                }
                ListenEnd::Leave => {}
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
                .listen(&voice, Some(Instant::now() + margin), None, stop)
                .await
            {
                ListenEnd::Leave => {}
                ListenEnd::Stopped => return Some(voice),
                ListenEnd::Go(_) | ListenEnd::Lost => {
                    let _ = stop.wait_for(|s| *s).await;
                    return None;
                }
            }
            ctx.leave_voice(self.index);
            if let Ok(v) = Arc::try_unwrap(voice) {
                v.close().await;
            }
            match self.rejoin(&ctx).await {
                Some(v) => {
                    ctx.enter_voice(self.index, v.session_id());
                    listener
                        .tally
                        .open_window(ctx.micros(StdInstant::now() + REJOIN_GUARD));
                    ctx.churn_cycles.fetch_add(1, Ordering::Relaxed);
                    voice = Arc::new(v);
                }
                None => {
                    ctx.churn_failures.fetch_add(1, Ordering::Relaxed);
                    let _ = stop.wait_for(|s| *s).await;
                    return None;
                }
            }
        }
    }

    /// `LeaveChannel`, then join, `OpenVoice` and connect again.
    async fn rejoin(&self, ctx: &Ctx) -> Option<VoiceClient> {
        let mut channels = ChannelServiceClient::new(self.channel.clone());
        let leave = ctx
            .creds
            .session_request(self.session_id, pb::LeaveChannelRequest {});
        match timeout(CALL_TIMEOUT, channels.leave_channel(leave)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => {
                ctx.fail_status(Step::Leave, &status);
                return None;
            }
            Err(_) => {
                ctx.fail(Step::Leave, &ErrorKind::named("timed_out"), "LeaveChannel");
                return None;
            }
        }
        join_and_connect(self.index, self.session_id, &self.channel, ctx).await
    }
}

/// A packet the simulated uplink is holding.
struct Outgoing {
    /// Voice-level sequence.
    sequence: u32,
    /// Voice-level timestamp, ms.
    timestamp_ms: u32,
    /// The probe payload.
    payload: Bytes,
}

/// One speaker: warm-up packets until go, then the measured phase; returns
/// what it sent.
async fn speak(
    index: u32,
    voice: Arc<VoiceClient>,
    ctx: Arc<Ctx>,
    mut go: watch::Receiver<Option<StdInstant>>,
    mut stop: watch::Receiver<bool>,
) -> SendLog {
    let plan = &ctx.plan;
    let frame = plan.frame();
    let keep_times = ctx.layout.churn;
    let empty = || {
        if keep_times {
            SendLog::Times(Vec::new())
        } else {
            SendLog::Count(0)
        }
    };
    // Voice-level sequence: one count over warm-up and measured packets,
    // because the data plane reads a gap as a loss and may wait for it.
    let mut sequence: u32 = 0;

    // Warm-up: a packet per frame until go. Bounded by the run, which
    // always sets go or stop.
    let mut tick = tokio::time::interval(frame);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut warm_seq = 0u32;
    let start = loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return empty(),
            at = wait_go(Some(&mut go)) => break at,
            _ = tick.tick() => {
                let now = StdInstant::now();
                let sent_us = ctx.micros(now);
                let probe = Probe { sender: index, sequence: warm_seq, sent_us, warmup: true };
                warm_seq = warm_seq.wrapping_add(1);
                let Ok(payload) = probe.encode(plan.payload_bytes) else {
                    return empty(); // validated sizes always encode
                };
                if !send(&ctx, &voice, sequence, timestamp_ms(sent_us), payload) {
                    return empty();
                }
                sequence = sequence.wrapping_add(1);
            }
        }
    };

    // Measured phase. Each speaker starts at its own seeded offset within
    // the first frame: real speakers' clocks are not aligned, and aligned
    // ones would hit the data plane with every speaker's packet, and so
    // every listener's copy, in one instant each frame, which measures
    // queueing behind that burst rather than the path through the server.
    let phase = frame.mul_f64(
        (stream_seed(plan.seed, index, Direction::Uplink, SEED_PHASE) >> 11) as f64
            / (1u64 << 53) as f64,
    );
    let first = Instant::from_std(start) + phase;
    let end = first + plan.duration;
    let mut tick = tokio::time::interval_at(first, frame);
    // Behind schedule (an overloaded machine), skip frames rather than
    // burst: the count of what was sent stays exact either way.
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut talk = match plan.talk {
        Some(t) => TalkPattern::spurts(
            t.spurt,
            t.silence,
            frame,
            stream_seed(plan.seed, index, Direction::Uplink, SEED_TALK),
        ),
        None => TalkPattern::continuous(),
    };
    let spec = plan.link(Direction::Uplink);
    let uplink_clean = spec.is_clean();
    let mut uplink = Impairment::new(
        spec,
        stream_seed(plan.seed, index, Direction::Uplink, SEED_IMPAIRMENT),
    );
    let mut held: DelayLine<Outgoing> = DelayLine::default();
    let mut log = empty();
    let mut measured: u32 = 0;
    let channel = ctx.layout.channel_of(index) as usize;
    let mut alive = true;
    while alive {
        let due = held.next_due();
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            () = sleep_until_opt(due.map(Instant::from_std)) => {
                let now = StdInstant::now();
                while alive && let Some(p) = held.pop_due(now) {
                    alive = send(&ctx, &voice, p.sequence, p.timestamp_ms, p.payload);
                }
            }
            at = tick.tick() => {
                if at >= end {
                    break;
                }
                if !talk.next_frame() {
                    continue;
                }
                let now = StdInstant::now();
                let sent_us = ctx.micros(now);
                let probe = Probe { sender: index, sequence: measured, sent_us, warmup: false };
                let Ok(payload) = probe.encode(plan.payload_bytes) else {
                    break; // validated sizes always encode
                };
                measured += 1;
                match &mut log {
                    SendLog::Count(n) => *n += 1,
                    SendLog::Times(t) => t.push(sent_us),
                }
                ctx.counters.sent.fetch_add(1, Ordering::Relaxed);
                let listeners = ctx.in_voice[channel].load(Ordering::Acquire).saturating_sub(1);
                ctx.counters.owed.fetch_add(u64::from(listeners), Ordering::Relaxed);
                let ts = timestamp_ms(sent_us);
                let seq = sequence;
                // A packet the network loses was still numbered.
                sequence = sequence.wrapping_add(1);
                if uplink_clean {
                    alive = send(&ctx, &voice, seq, ts, payload);
                    continue;
                }
                match uplink.fate() {
                    Fate::Lost => {
                        ctx.uplink_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Fate::Pass { delay, duplicate } => {
                        let copies = 1 + usize::from(duplicate);
                        for _ in 0..copies {
                            if delay.is_zero() {
                                alive = alive && send(&ctx, &voice, seq, ts, payload.clone());
                            } else {
                                held.push(now + delay, Outgoing {
                                    sequence: seq,
                                    timestamp_ms: ts,
                                    payload: payload.clone(),
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    // What the simulated network still holds goes out at its time, or at
    // once after a stop (an interrupt): every logged packet is sent, so
    // none counts as lost for want of sending. Bounded by the longest
    // simulated delay.
    while alive && let Some(due) = held.next_due() {
        if !*stop.borrow() {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => {}
                () = sleep_until(Instant::from_std(due)) => {}
            }
        }
        // At least the earliest leaves, so each pass makes progress.
        let now = StdInstant::now().max(due);
        while alive && let Some(p) = held.pop_due(now) {
            alive = send(&ctx, &voice, p.sequence, p.timestamp_ms, p.payload);
        }
    }
    log
}

/// The voice timestamp of a packet sent at `sent_us`: a steady millisecond
/// clock, wrapping as the protocol allows.
fn timestamp_ms(sent_us: u64) -> u32 {
    (sent_us / 1_000) as u32
}

/// Sends one datagram; `false` when the connection is gone (counted), so
/// the speaker stops.
fn send(ctx: &Ctx, voice: &VoiceClient, sequence: u32, ts: u32, payload: Bytes) -> bool {
    match voice.send(sequence, ts, payload) {
        Ok(()) => true,
        Err(e @ VoiceError::ConnectionLost { .. }) => {
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
