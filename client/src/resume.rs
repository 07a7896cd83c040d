//! [`ResumingSession`]: a session that comes back by itself when its
//! control plane goes away, as a Mumble or TeamSpeak client does.
//!
//! A [`Session`] is one `PresenceService.Connect` stream and ends with it.
//! But the control plane may be restarted, or killed and restarted, while
//! voice goes on through the data planes; a client should then be back
//! without its user doing anything. So a resuming session owns its current
//! [`Session`] in a task of its own, passes the events on, and when the
//! stream ends because the server went away it:
//!
//! 1. tells its user ([`SessionEvent::Reconnecting`]);
//! 2. starts a new session with the same display name, after a pause of
//!    [`RESUME_FIRST_PAUSE`] doubling up to [`RESUME_MAX_PAUSE`], each
//!    jittered (half of it random) so that the clients of a restarted
//!    server do not all knock at once, until it succeeds or the
//!    resuming session is dropped;
//! 3. joins again the channel it was in (with the password it joined
//!    with), if that channel still exists, and restores its presence
//!    (status, status text, self-mute, self-deaf);
//! 4. publishes the new id (a [`Call`](crate::Call) of the session follows
//!    it there) and tells its user ([`SessionEvent::Resumed`]): a new id,
//!    since ids are never reused, and a fresh snapshot.
//!
//! Which ends are retried ([`comes_back`]): a transport error (a control
//! plane killed with SIGKILL, a broken connection), any status but the
//! two below (UNAVAILABLE, `RATE_LIMITED` for a session that fell behind,
//! ...), and a clean end of the stream (after `server_shutdown`, or a
//! server or proxy that went away). Which are not: a `kicked` event (the
//! token was revoked or expired), UNAUTHENTICATED and PERMISSION_DENIED
//! (asking again with the same token cannot help), and the caller
//! dropping the session. A failed attempt to start the new session is
//! retried too, except for those two codes and INVALID_ARGUMENT (the same
//! request would be refused again). `docs/PROTOCOL.md`, "Reconnect", gives
//! the same rules to clients in other languages.
//!
//! What the session remembers to restore comes from what it sees: its own
//! calls ([`join`](ResumingSession::join), [`leave`](ResumingSession::leave),
//! [`update_presence`](ResumingSession::update_presence)) and the events
//! about itself on its stream (an admin's move, a deleted channel that
//! moved it to the parent). The events are passed on in a bounded queue:
//! read them ([`next_event`](ResumingSession::next_event)), as with a
//! plain session; a reader that stops reading stalls the stream, and with
//! it the noticing of its end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openspeak_shared::pb;
use pb::event::Event as Ev;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Code;

use crate::call::{SessionRef, VoiceOpener};
use crate::control::Client;
use crate::error::{ClientError, within};
use crate::grant::VoiceGrant;
use crate::session::{PresenceUpdate, Session};

/// The pause before the first attempt to start a session again; it
/// doubles up to [`RESUME_MAX_PAUSE`]. Short, because a restart is quick.
pub const RESUME_FIRST_PAUSE: Duration = Duration::from_millis(100);

/// The longest pause between two attempts: a server down for long is
/// asked every 2.5 to 5 s per client, which thousands of clients can do.
pub const RESUME_MAX_PAUSE: Duration = Duration::from_secs(5);

/// Events (and notices) waiting for [`ResumingSession::next_event`].
const QUEUE: usize = 1024;

/// What a [`ResumingSession`] tells its user.
#[derive(Debug)]
pub enum SessionEvent {
    /// An event of the server, as a plain [`Session`] reads it.
    Server(pb::Event),
    /// The stream of session `session_id` ended with `cause`, an end worth
    /// coming back from; the session is being started again. Voice goes
    /// on meanwhile, under the old id.
    Reconnecting {
        /// The id that ended.
        session_id: u32,
        /// How the stream ended.
        cause: ClientError,
    },
    /// The session is back, under a new id, with a fresh snapshot.
    Resumed(Box<Resumed>),
}

impl SessionEvent {
    /// The server's event, if this is one.
    pub fn server(&self) -> Option<&Ev> {
        match self {
            SessionEvent::Server(event) => event.event.as_ref(),
            _ => None,
        }
    }
}

/// How a session came back.
#[derive(Debug)]
pub struct Resumed {
    /// The id it had before.
    pub previous_id: u32,
    /// The new session's first event: its new id and the server as it was
    /// then (before the rejoin and the presence below, whose events follow).
    pub started: pb::SessionStarted,
    /// The sequence number of `started`.
    pub started_sequence: u64,
    /// What became of the channel it was in.
    pub channel: Rejoin,
    /// The presence restored: `None` when there was nothing to restore
    /// (the new session's presence already matched), else the answer to
    /// `UpdatePresence`.
    pub presence: Option<Result<pb::UserPresence, ClientError>>,
    /// Attempts it took to start the new session (1 or more).
    pub attempts: u32,
    /// From the old stream's end to the new session being ready.
    pub outage: Duration,
}

impl Resumed {
    /// The new session id.
    pub fn session_id(&self) -> u32 {
        self.started.session_id
    }
}

/// What became of a resumed session's channel.
#[derive(Debug)]
pub enum Rejoin {
    /// It is in its channel again (the one it was in).
    Rejoined(pb::Channel),
    /// It was in no channel, and has left the default one again.
    NoChannel,
    /// Its channel no longer exists: it stays in the default channel.
    ChannelGone {
        /// The channel it was in.
        channel_id: String,
    },
    /// Joining (or, for `channel_id: None`, leaving) failed: it stays in
    /// the default channel.
    Failed {
        /// The channel it was in; `None` when it was in none.
        channel_id: Option<String>,
        /// Why.
        error: ClientError,
    },
}

/// A session that comes back by itself when its control plane goes away;
/// see the module's rules. Dropping it hangs up (and stops any attempt to
/// come back).
///
/// Its session-scoped calls carry the current id. Between
/// [`SessionEvent::Reconnecting`] and [`SessionEvent::Resumed`] that id is
/// the old one, so they fail (no connection, or `SESSION_REQUIRED` from
/// the restarted server); make them again after `Resumed`.
#[derive(Debug)]
pub struct ResumingSession {
    client: Client,
    /// The current id; the task holds the sender.
    ids: watch::Receiver<u32>,
    /// The latest snapshot, replaced at each [`SessionEvent::Resumed`]
    /// read.
    started: pb::SessionStarted,
    started_sequence: u64,
    state: Arc<Mutex<Remembered>>,
    events: mpsc::Receiver<Result<SessionEvent, ClientError>>,
    resumes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Client {
    /// Starts a session named `display_name` that comes back by itself
    /// after its control plane went away: see [`ResumingSession`]. The
    /// first start is not retried: its failure is returned as it is.
    pub async fn start_resuming_session(
        &self,
        display_name: &str,
    ) -> Result<ResumingSession, ClientError> {
        let session = self.start_session(display_name).await?;
        Ok(ResumingSession::new(session, display_name.to_owned()))
    }
}

impl ResumingSession {
    fn new(session: Session, display_name: String) -> ResumingSession {
        let client = session.client().clone();
        let started = session.started().clone();
        let started_sequence = session.started_sequence();
        let state = Arc::new(Mutex::new(Remembered::from_started(&started)));
        let (id_tx, ids) = watch::channel(session.id());
        let (tx, events) = mpsc::channel(QUEUE);
        let resumes = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(drive(Driver {
            session,
            display_name,
            state: state.clone(),
            ids: id_tx,
            out: tx,
            resumes: resumes.clone(),
        }));
        ResumingSession {
            client,
            ids,
            started,
            started_sequence,
            state,
            events,
            resumes,
            task,
        }
    }

    /// The current session id; it changes when the session resumes.
    pub fn id(&self) -> u32 {
        *self.ids.borrow()
    }

    /// The latest `session_started` read: the first one, or the one of the
    /// last [`SessionEvent::Resumed`] that [`next_event`](Self::next_event)
    /// returned.
    pub fn started(&self) -> &pb::SessionStarted {
        &self.started
    }

    /// The sequence number of [`started`](Self::started).
    pub fn started_sequence(&self) -> u64 {
        self.started_sequence
    }

    /// How many times the session came back.
    pub fn resumes(&self) -> u64 {
        self.resumes.load(Ordering::Relaxed)
    }

    /// The client (connection and token) the session belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The channel the session is in, as far as it knows (and would join
    /// again after a resume); `None` for none.
    pub fn channel_id(&self) -> Option<String> {
        lock(&self.state).channel.clone()
    }

    // ----- events ---------------------------------------------------------

    /// The next event or notice. Waits without bound: use
    /// [`next_event_within`](Self::next_event_within) or
    /// [`wait_for`](Self::wait_for) where a wait must end. Fails once the
    /// session has ended for good: first with why (the server's status,
    /// or [`ClientError::SessionEnded`]), then with `SessionEnded`.
    pub async fn next_event(&mut self) -> Result<SessionEvent, ClientError> {
        match self.events.recv().await {
            Some(Ok(event)) => {
                if let SessionEvent::Resumed(resumed) = &event {
                    self.started = resumed.started.clone();
                    self.started_sequence = resumed.started_sequence;
                }
                Ok(event)
            }
            Some(Err(e)) => Err(e),
            None => Err(ClientError::SessionEnded {
                session_id: self.id(),
            }),
        }
    }

    /// The next event or notice, if one comes within `limit`.
    pub async fn next_event_within(
        &mut self,
        limit: Duration,
    ) -> Result<SessionEvent, ClientError> {
        // A queue's `recv` loses nothing when given up on.
        within(limit, "the next event", self.next_event()).await?
    }

    /// Reads events and notices until one matches `matches`, for at most
    /// `limit`, and returns it; the ones before it are consumed.
    pub async fn wait_for(
        &mut self,
        mut matches: impl FnMut(&SessionEvent) -> bool,
        limit: Duration,
    ) -> Result<SessionEvent, ClientError> {
        let wait = async {
            loop {
                let event = self.next_event().await?;
                if matches(&event) {
                    return Ok(event);
                }
            }
        };
        within(limit, "a matching event", wait).await?
    }

    /// Waits, for at most `limit`, until the session has come back, and
    /// returns how; the events before it are consumed.
    pub async fn wait_resumed(&mut self, limit: Duration) -> Result<Box<Resumed>, ClientError> {
        match self
            .wait_for(|e| matches!(e, SessionEvent::Resumed(_)), limit)
            .await?
        {
            SessionEvent::Resumed(resumed) => Ok(resumed),
            other => Err(ClientError::Unexpected {
                call: "PresenceService.Connect",
                what: format!("a wait for Resumed matched {other:?}"),
            }),
        }
    }

    // ----- session-scoped calls -------------------------------------------

    /// Joins `channel_id` with `password` (see [`Session::join`]); the
    /// channel and password are joined again after a resume.
    pub async fn join(&self, channel_id: &str, password: &str) -> Result<pb::Channel, ClientError> {
        let channel = join(&self.client, self.id(), channel_id, password).await?;
        lock(&self.state).joined(channel_id, password);
        Ok(channel)
    }

    /// Leaves the current channel; after a resume, it leaves again.
    pub async fn leave(&self) -> Result<(), ClientError> {
        leave(&self.client, self.id()).await?;
        lock(&self.state).channel = None;
        Ok(())
    }

    /// Changes the fields `update` sets (see [`Session::update_presence`]);
    /// the presence is restored after a resume.
    pub async fn update_presence(
        &self,
        update: PresenceUpdate,
    ) -> Result<pb::UserPresence, ClientError> {
        let presence = update_presence(&self.client, self.id(), update).await?;
        lock(&self.state).presence = Presence::of(&presence);
        Ok(presence)
    }

    /// Asks for voice in the current channel, under the current id.
    pub async fn open_voice(&self) -> Result<VoiceGrant, ClientError> {
        self.voice_opener().open().await
    }

    /// What a [`Call`](crate::Call) needs to ask for this session's voice,
    /// under whichever id it has: the call follows the session to its new
    /// id after a resume.
    pub fn voice_opener(&self) -> VoiceOpener {
        let mut ids = self.ids.clone();
        // Seen: the call's first grant is for the id current now, so only
        // a later change is one to follow.
        ids.borrow_and_update();
        VoiceOpener {
            client: self.client.clone(),
            session: SessionRef::Following(ids),
        }
    }
}

impl Drop for ResumingSession {
    fn drop(&mut self) {
        // Hangs up the current stream and stops any attempt to come back.
        self.task.abort();
    }
}

// ----- what is remembered ----------------------------------------------------

/// What a session restores after it resumed.
#[derive(Debug, Clone, Default, PartialEq)]
struct Remembered {
    /// The channel it is in; `None` for none.
    channel: Option<String>,
    /// The channel last joined with [`ResumingSession::join`] and the
    /// password given: a channel it was moved into by an admin is joined
    /// again without one.
    joined_with: Option<(String, String)>,
    presence: Presence,
}

/// The parts of a presence its owner sets.
#[derive(Debug, Clone, Default, PartialEq)]
struct Presence {
    status: i32,
    status_text: String,
    self_mute: bool,
    self_deaf: bool,
}

impl Presence {
    fn of(user: &pb::UserPresence) -> Presence {
        Presence {
            status: user.status,
            status_text: user.status_text.clone(),
            self_mute: user.self_mute,
            self_deaf: user.self_deaf,
        }
    }

    /// The update that turns `now` into `self`, if one is needed. A status
    /// the protocol does not know (or unspecified) is left alone.
    fn update_from(&self, now: &Presence) -> Option<PresenceUpdate> {
        let mut update = PresenceUpdate::new();
        let mut any = false;
        if self.status != now.status
            && let Ok(status) = pb::Status::try_from(self.status)
            && status != pb::Status::Unspecified
        {
            update = update.status(status);
            any = true;
        }
        if self.status_text != now.status_text {
            update = update.status_text(self.status_text.clone());
            any = true;
        }
        if self.self_mute != now.self_mute {
            update = update.self_mute(self.self_mute);
            any = true;
        }
        if self.self_deaf != now.self_deaf {
            update = update.self_deaf(self.self_deaf);
            any = true;
        }
        any.then_some(update)
    }
}

/// The session's own entry in a snapshot.
fn own(started: &pb::SessionStarted) -> Option<&pb::UserPresence> {
    started
        .users
        .iter()
        .find(|u| u.session_id == started.session_id)
}

impl Remembered {
    fn from_started(started: &pb::SessionStarted) -> Remembered {
        let me = own(started);
        Remembered {
            channel: me.map(|u| u.channel_id.clone()).filter(|c| !c.is_empty()),
            joined_with: None,
            presence: me.map(Presence::of).unwrap_or_default(),
        }
    }

    /// After a successful `JoinChannel`.
    fn joined(&mut self, channel_id: &str, password: &str) {
        self.channel = Some(channel_id.to_owned());
        self.joined_with = Some((channel_id.to_owned(), password.to_owned()));
    }

    /// Follows an event of session `me`'s stream.
    fn observe(&mut self, me: u32, event: &Ev) {
        match event {
            Ev::MemberJoined(m) if m.session_id == me => {
                self.channel = Some(m.channel_id.clone());
            }
            Ev::MemberLeft(m)
                if m.session_id == me && self.channel.as_deref() == Some(&m.channel_id) =>
            {
                self.channel = None;
            }
            Ev::PresenceChanged(p) => {
                if let Some(user) = p.user.as_ref().filter(|u| u.session_id == me) {
                    self.presence = Presence::of(user);
                }
            }
            _ => {}
        }
    }

    /// The password to join `channel_id` again with.
    fn password_for(&self, channel_id: &str) -> &str {
        match &self.joined_with {
            Some((joined, password)) if joined == channel_id => password,
            _ => "",
        }
    }
}

// ----- which ends come back, and when ------------------------------------------

/// Whether a session whose stream ended with `end` comes back; `kicked`:
/// whether a `kicked` event came before the end.
pub(crate) fn comes_back(kicked: bool, end: &ClientError) -> bool {
    if kicked {
        // Ended on purpose: the token was revoked or expired.
        return false;
    }
    match end {
        // The same token would be refused again.
        ClientError::Status { status, .. } => !matches!(
            status.code(),
            Code::Unauthenticated | Code::PermissionDenied
        ),
        // A clean end (after `server_shutdown`, or a server or proxy that
        // went away), a broken connection, a wait that ran out.
        _ => true,
    }
}

/// Whether a failed attempt to start the session again is worth another.
pub(crate) fn worth_retrying(error: &ClientError) -> bool {
    match error {
        ClientError::Status { status, .. } => !matches!(
            status.code(),
            Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument
        ),
        ClientError::InvalidToken | ClientError::InvalidAddress { .. } => false,
        // No connection yet (the server is still down), a timeout, an odd
        // answer: the server may be back at the next attempt.
        _ => true,
    }
}

/// Capped exponential backoff with "equal jitter": each pause is half its
/// step plus a random part of the other half, and the step doubles from
/// [`RESUME_FIRST_PAUSE`] up to [`RESUME_MAX_PAUSE`].
#[derive(Debug)]
pub(crate) struct Backoff {
    step: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            step: RESUME_FIRST_PAUSE,
        }
    }

    /// The next pause, `jitter` (in `[0, 1]`) picking where in the upper
    /// half of the step it falls.
    pub(crate) fn next_pause(&mut self, jitter: f64) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(RESUME_MAX_PAUSE);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        step / 2 + (step / 2).mul_f64(jitter)
    }
}

// ----- the task ------------------------------------------------------------------

/// The session's task: its current session, and where things go.
struct Driver {
    session: Session,
    display_name: String,
    state: Arc<Mutex<Remembered>>,
    /// The current id, for the handle and for calls; dropped (with the
    /// task) when the session ends for good, which calls take as "no new
    /// id will come".
    ids: watch::Sender<u32>,
    out: mpsc::Sender<Result<SessionEvent, ClientError>>,
    resumes: Arc<AtomicU64>,
}

/// Passes the current session's events on; when its stream ends, comes
/// back if it should, else passes the end on and stops. Stops too when the
/// handle is dropped (it aborts the task, and its queue closes).
async fn drive(mut d: Driver) {
    loop {
        let mut kicked = false;
        let end = loop {
            match d.session.next_event().await {
                Ok(event) => {
                    let mut shutdown = false;
                    if let Some(ev) = &event.event {
                        kicked |= matches!(ev, Ev::Kicked(_));
                        shutdown = matches!(ev, Ev::ServerShutdown(_));
                        lock(&d.state).observe(d.session.id(), ev);
                    }
                    if d.out.send(Ok(SessionEvent::Server(event))).await.is_err() {
                        return;
                    }
                    if shutdown {
                        // "Close the stream and reconnect later": hanging
                        // up now lets the server drain without waiting out
                        // its grace period for this session.
                        break ClientError::SessionEnded {
                            session_id: d.session.id(),
                        };
                    }
                }
                Err(end) => break end,
            }
        };
        let lost_at = Instant::now();
        let previous_id = d.session.id();
        if !comes_back(kicked, &end) {
            return finish(d.ids, d.out, end).await;
        }
        let notice = SessionEvent::Reconnecting {
            session_id: previous_id,
            cause: end,
        };
        if d.out.send(Ok(notice)).await.is_err() {
            return;
        }
        let (session, attempts) = match start_again(&d).await {
            Ok(started) => started,
            Err(e) => return finish(d.ids, d.out, e).await,
        };
        let resumed = restore(&session, &d.state, previous_id, attempts, lost_at).await;
        d.session = session;
        // Published only now that the channel is joined again, so that a
        // call's `OpenVoice` under the new id finds it in its channel.
        d.ids.send_replace(d.session.id());
        d.resumes.fetch_add(1, Ordering::Relaxed);
        if d.out
            .send(Ok(SessionEvent::Resumed(Box::new(resumed))))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The session ended for good with `why`: calls learn first (the id's
/// sender goes, even if nobody reads the queue), then the reader.
async fn finish(
    ids: watch::Sender<u32>,
    out: mpsc::Sender<Result<SessionEvent, ClientError>>,
    why: ClientError,
) {
    drop(ids);
    let _ = out.send(Err(why)).await;
}

/// Starts a session with the same name, after the backoff's pause, until
/// one starts or an attempt fails for good. Unbounded in attempts, but it
/// ends when the handle is dropped (the task is aborted, or at the latest
/// its queue is closed at the next attempt).
async fn start_again(d: &Driver) -> Result<(Session, u32), ClientError> {
    let client = d.session.client();
    let mut backoff = Backoff::new();
    let mut attempts = 0u32;
    loop {
        tokio::time::sleep(backoff.next_pause(rand::random::<f64>())).await;
        if d.out.is_closed() {
            return Err(ClientError::SessionEnded {
                session_id: d.session.id(),
            });
        }
        attempts = attempts.saturating_add(1);
        match client.start_session(&d.display_name).await {
            Ok(session) => return Ok((session, attempts)),
            Err(e) if worth_retrying(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Puts the new `session` where the old one was: its channel, its
/// presence. Afterwards `state` is what the new session is.
async fn restore(
    session: &Session,
    state: &Mutex<Remembered>,
    previous_id: u32,
    attempts: u32,
    lost_at: Instant,
) -> Resumed {
    let wanted = lock(state).clone();
    let started = session.started();
    let mut now = Remembered::from_started(started);
    let (client, id) = (session.client(), session.id());

    let channel = match &wanted.channel {
        Some(channel_id) if now.channel.as_deref() == Some(channel_id) => {
            // Already there: the default channel.
            match started.channels.iter().find(|c| &c.id == channel_id) {
                Some(channel) => Rejoin::Rejoined(channel.clone()),
                None => Rejoin::ChannelGone {
                    channel_id: channel_id.clone(),
                },
            }
        }
        Some(channel_id) if !started.channels.iter().any(|c| &c.id == channel_id) => {
            Rejoin::ChannelGone {
                channel_id: channel_id.clone(),
            }
        }
        Some(channel_id) => {
            let password = wanted.password_for(channel_id);
            match join(client, id, channel_id, password).await {
                Ok(channel) => {
                    now.joined(channel_id, password);
                    Rejoin::Rejoined(channel)
                }
                Err(error) => Rejoin::Failed {
                    channel_id: Some(channel_id.clone()),
                    error,
                },
            }
        }
        None => match leave(client, id).await {
            Ok(()) => {
                now.channel = None;
                Rejoin::NoChannel
            }
            Err(error) => Rejoin::Failed {
                channel_id: None,
                error,
            },
        },
    };
    if let (Rejoin::Rejoined(_), Some(joined)) = (&channel, &wanted.joined_with) {
        // Keep the password for the next time, when it is the same channel.
        if now.channel.as_deref() == Some(joined.0.as_str()) {
            now.joined_with = Some(joined.clone());
        }
    }

    let presence = match wanted.presence.update_from(&now.presence) {
        None => None,
        Some(update) => {
            let answer = update_presence(client, id, update).await;
            if let Ok(user) = &answer {
                now.presence = Presence::of(user);
            }
            Some(answer)
        }
    };
    *lock(state) = now;
    Resumed {
        previous_id,
        started: started.clone(),
        started_sequence: session.started_sequence(),
        channel,
        presence,
        attempts,
        outage: lost_at.elapsed(),
    }
}

// ----- session-scoped calls by id ----------------------------------------------

async fn join(
    client: &Client,
    session: u32,
    channel_id: &str,
    password: &str,
) -> Result<pb::Channel, ClientError> {
    let call = "ChannelService.JoinChannel";
    let request = client.session_request(
        session,
        pb::JoinChannelRequest {
            channel_id: channel_id.to_owned(),
            password: password.to_owned(),
        },
    );
    let response = client
        .finish(call, client.channels().join_channel(request))
        .await?;
    response
        .channel
        .ok_or_else(|| crate::control::missing(call, "channel"))
}

async fn leave(client: &Client, session: u32) -> Result<(), ClientError> {
    let call = "ChannelService.LeaveChannel";
    let request = client.session_request(session, pb::LeaveChannelRequest {});
    client
        .finish(call, client.channels().leave_channel(request))
        .await
        .map(drop)
}

async fn update_presence(
    client: &Client,
    session: u32,
    update: PresenceUpdate,
) -> Result<pb::UserPresence, ClientError> {
    let call = "PresenceService.UpdatePresence";
    let request = client.session_request(session, update.into_request());
    client
        .finish(call, client.presence().update_presence(request))
        .await
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openspeak_shared::Reason;

    fn status(code: Code) -> ClientError {
        ClientError::status("PresenceService.Connect", tonic::Status::new(code, "test"))
    }

    #[test]
    fn ends_of_a_server_that_went_away_come_back() {
        let clean = ClientError::SessionEnded { session_id: 7 };
        assert!(
            comes_back(false, &clean),
            "server_shutdown, then a clean end"
        );
        // SIGKILL: the connection breaks; tonic reports it as UNAVAILABLE
        // or UNKNOWN, depending on where the read was.
        assert!(comes_back(false, &status(Code::Unavailable)));
        assert!(comes_back(false, &status(Code::Unknown)));
        assert!(comes_back(false, &status(Code::Internal)));
        let lagged = ClientError::status(
            "PresenceService.Connect",
            Reason::RateLimited.status("fell behind"),
        );
        assert!(comes_back(false, &lagged), "a fresh snapshot is the cure");
        let timeout = ClientError::Timeout {
            what: "x",
            after: Duration::from_secs(1),
        };
        assert!(comes_back(false, &timeout));
    }

    #[test]
    fn ends_on_purpose_do_not_come_back() {
        assert!(!comes_back(true, &status(Code::Unauthenticated)));
        assert!(!comes_back(
            true,
            &ClientError::SessionEnded { session_id: 7 }
        ));
        assert!(
            !comes_back(true, &status(Code::Unavailable)),
            "kicked first"
        );
        assert!(!comes_back(false, &status(Code::Unauthenticated)));
        assert!(!comes_back(false, &status(Code::PermissionDenied)));
    }

    #[test]
    fn attempts_are_retried_unless_the_same_request_would_be_refused() {
        assert!(worth_retrying(&status(Code::Unavailable)));
        assert!(worth_retrying(&status(Code::ResourceExhausted)));
        assert!(worth_retrying(&ClientError::Timeout {
            what: "session_started",
            after: Duration::from_secs(10),
        }));
        assert!(!worth_retrying(&status(Code::Unauthenticated)));
        assert!(!worth_retrying(&status(Code::PermissionDenied)));
        assert!(!worth_retrying(&status(Code::InvalidArgument)));
        assert!(!worth_retrying(&ClientError::InvalidToken));
    }

    #[test]
    fn the_backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let steps: Vec<Duration> = {
            let mut b = Backoff::new();
            (0..9).map(|_| b.next_pause(1.0)).collect()
        };
        let ms = |v: u64| Duration::from_millis(v);
        assert_eq!(
            steps,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000].map(ms)
        );
        let mut b = Backoff::new();
        assert_eq!(b.next_pause(0.0), ms(50), "half the step at the least");
        assert_eq!(b.next_pause(0.5), ms(150));
        for jitter in [-1.0, 2.0, f64::NAN, f64::INFINITY] {
            let pause = Backoff::new().next_pause(jitter);
            assert!((ms(50)..=ms(100)).contains(&pause), "{jitter}: {pause:?}");
        }
        let mut b = Backoff::new();
        for _ in 0..100 {
            let pause = b.next_pause(rand::random::<f64>());
            assert!(pause <= RESUME_MAX_PAUSE);
        }
        assert!(b.next_pause(0.0) >= RESUME_MAX_PAUSE / 2);
    }

    fn user(id: u32, channel: &str) -> pb::UserPresence {
        pb::UserPresence {
            session_id: id,
            display_name: "a".into(),
            status: pb::Status::Online as i32,
            channel_id: channel.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_session_remembers_its_channel_and_presence_from_its_events() {
        let started = pb::SessionStarted {
            session_id: 7,
            channels: vec![],
            users: vec![user(3, "lobby"), user(7, "lobby")],
        };
        let mut r = Remembered::from_started(&started);
        assert_eq!(r.channel.as_deref(), Some("lobby"));
        r.joined("room", "pw");
        assert_eq!(r.password_for("room"), "pw");
        // Someone else's moves change nothing.
        r.observe(
            3,
            &Ev::MemberJoined(pb::MemberJoined {
                session_id: 7,
                channel_id: "x".into(),
            }),
        );
        r.observe(
            7,
            &Ev::MemberJoined(pb::MemberJoined {
                session_id: 3,
                channel_id: "x".into(),
            }),
        );
        assert_eq!(r.channel.as_deref(), Some("room"));
        // An admin moves it: no password for that channel.
        r.observe(
            7,
            &Ev::MemberLeft(pb::MemberLeft {
                session_id: 7,
                channel_id: "room".into(),
            }),
        );
        assert_eq!(r.channel, None);
        r.observe(
            7,
            &Ev::MemberJoined(pb::MemberJoined {
                session_id: 7,
                channel_id: "other".into(),
            }),
        );
        assert_eq!(r.channel.as_deref(), Some("other"));
        assert_eq!(r.password_for("other"), "");
        // A late `member_left` of a channel it is no longer in is ignored.
        r.observe(
            7,
            &Ev::MemberLeft(pb::MemberLeft {
                session_id: 7,
                channel_id: "room".into(),
            }),
        );
        assert_eq!(r.channel.as_deref(), Some("other"));

        let mut deaf = user(7, "other");
        deaf.self_deaf = true;
        deaf.status_text = "afk".into();
        r.observe(
            7,
            &Ev::PresenceChanged(pb::PresenceChanged {
                user: Some(deaf.clone()),
            }),
        );
        assert_eq!(r.presence, Presence::of(&deaf));
    }

    #[test]
    fn only_what_differs_is_restored() {
        let fresh = Presence::of(&user(9, "lobby"));
        assert_eq!(fresh.update_from(&fresh), None);
        let wanted = Presence {
            status: pb::Status::Away as i32,
            status_text: "brb".into(),
            self_mute: true,
            self_deaf: false,
        };
        let request = wanted
            .update_from(&fresh)
            .expect("something to restore")
            .into_request();
        assert_eq!(request.status, Some(pb::Status::Away as i32));
        assert_eq!(request.status_text.as_deref(), Some("brb"));
        assert_eq!(request.self_mute, Some(true));
        assert_eq!(request.self_deaf, None, "already as wanted");
        // A status this client cannot name is not sent back.
        let odd = Presence {
            status: 99,
            ..fresh.clone()
        };
        assert_eq!(odd.update_from(&fresh), None);
    }
}
