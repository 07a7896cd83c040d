//! [`Call`]: a session's voice that comes back by itself when its data
//! plane goes away.
//!
//! A voice connection can die under a client without a word: the data
//! plane is killed or restarted, or the path to it breaks. Waiting for
//! QUIC's idle timeout or the plain-UDP silence limit (15 s each) would
//! lose a quarter of a minute of the call. So a call keeps the path busy:
//! a ping every [`PING_EVERY`] (over QUIC, the keep-alive the voice crate's
//! client configuration sets to the same interval), each of which the data
//! plane answers. When nothing at all has come from the data plane for
//! [`GONE_AFTER`], it is gone: the call asks the control plane for voice
//! again (`OpenVoice`, which may name another data plane, or the same one
//! restarted), connects, and goes on, retrying every second at most until
//! it succeeds.
//!
//! Only the servers end a call: the data plane closing it with code 8
//! (replaced: a newer connection of the session took over) or 9 (the
//! session ended), or the control plane refusing `OpenVoice` for a reason
//! that retrying cannot change (the session ended, or left its channel).
//! `docs/PROTOCOL.md`, "Reconnect", gives the same rules to every client.
//!
//! A call made from a [`ResumingSession`](crate::ResumingSession) follows
//! it: the session's id lives in a `watch` that the session updates when
//! it comes back under a new id after its control plane went away. The
//! call then asks for voice under the new id while the old connection
//! still carries voice (the data plane keeps routing the old id until its
//! connection ends), switches over once the new one is up, and drops the
//! old one (QUIC close code 0), so that the others hear the speaker under
//! the id the control plane now shows. For such a call "the session ended"
//! (`SESSION_REQUIRED`, close or reject code 9) is final only once the
//! resuming session has ended for good: until then it is the old id's end,
//! and the new id is coming.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openspeak_voice::{Forwarded, WireError};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::control::Client;
use crate::error::ClientError;
use crate::grant::VoiceGrant;
use crate::udp::{UdpVoiceClient, UdpVoiceError};
use crate::voice::{VoiceClient, VoiceError};

/// How often a call pings its data plane (`docs/PROTOCOL.md`, "Keepalive").
pub const PING_EVERY: Duration = openspeak_voice::quic::CLIENT_KEEP_ALIVE;

/// How long without a single packet from the data plane before a call
/// takes it for gone: three pings unanswered.
pub const GONE_AFTER: Duration = Duration::from_secs(3);

/// How often a call looks whether anything came from its data plane:
/// often enough that it notices the silence within a quarter second of
/// [`GONE_AFTER`].
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The first pause between two attempts to get voice back; it doubles up
/// to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The longest pause between two attempts: short, so that voice is back
/// within a second or so of a data plane's return.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Forwarded voice waiting for [`Call::recv`]; a call whose owner does not
/// read drops what does not fit (and counts it) rather than stall.
const QUEUE: usize = 1024;

/// Which transport a call uses to reach its data planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// QUIC datagrams (`VoiceGrant::connect`).
    Quic,
    /// Plain UDP sealed with the session key (`VoiceGrant::connect_udp`).
    Udp,
}

/// What a call needs of its session: asking for voice again. From
/// [`Session::voice_opener`](crate::Session::voice_opener) (one session id
/// for ever) or
/// [`ResumingSession::voice_opener`](crate::ResumingSession::voice_opener)
/// (the session's current id, which changes when it resumes); it does not
/// keep the session alive (dropping the session still ends it).
#[derive(Debug, Clone)]
pub struct VoiceOpener {
    pub(crate) client: Client,
    pub(crate) session: SessionRef,
}

/// Which session a [`VoiceOpener`] asks for voice for.
#[derive(Debug, Clone)]
pub(crate) enum SessionRef {
    /// A plain [`Session`](crate::Session): its id never changes.
    Fixed(u32),
    /// A resuming session's current id. Its sender is dropped when the
    /// session ends for good, which is how a call learns that no new id
    /// will come.
    Following(watch::Receiver<u32>),
}

impl VoiceOpener {
    /// The id of the session voice is asked for now.
    pub fn session_id(&self) -> u32 {
        match &self.session {
            SessionRef::Fixed(id) => *id,
            SessionRef::Following(ids) => *ids.borrow(),
        }
    }

    /// Whether the session may still come back under a new id: `false`
    /// for a plain session, and for a resuming one that ended for good.
    pub(crate) fn may_resume(&self) -> bool {
        match &self.session {
            SessionRef::Fixed(_) => false,
            SessionRef::Following(ids) => ids.has_changed().is_ok(),
        }
    }

    /// Waits until the session has a new id and returns it; `None` when
    /// it never will (a plain session, or one that ended for good).
    pub(crate) async fn changed(&mut self) -> Option<u32> {
        match &mut self.session {
            SessionRef::Fixed(_) => None,
            SessionRef::Following(ids) => {
                ids.changed().await.ok()?;
                Some(*ids.borrow_and_update())
            }
        }
    }

    /// `VoiceService.OpenVoice` for the session (its current id).
    pub async fn open(&self) -> Result<VoiceGrant, ClientError> {
        let request = self
            .client
            .session_request(self.session_id(), openspeak_shared::pb::OpenVoiceRequest {});
        let response = self
            .client
            .finish(
                "VoiceService.OpenVoice",
                self.client.voice().open_voice(request),
            )
            .await?;
        VoiceGrant::from_response(response)
    }
}

/// Why a call ended for good.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallEnded {
    /// The data plane closed the session's voice: 8, a newer connection of
    /// the session took over; 9, the session ended.
    #[error("the data plane closed the session's voice with code {code}")]
    Closed {
        /// The close (or reject) code.
        code: u8,
    },
    /// The control plane refused to give voice back, for a reason that
    /// retrying cannot change.
    #[error("voice cannot come back: {reason}")]
    Refused {
        /// What the control plane said.
        reason: String,
    },
}

/// A session's voice, reconnected whenever its data plane goes away; see
/// the module's rules. `send` and `recv` take `&self`, so one task can
/// talk while another listens. Dropping the call hangs up.
#[derive(Debug)]
pub struct Call {
    shared: Arc<Shared>,
    voice: tokio::sync::Mutex<mpsc::Receiver<Forwarded>>,
    supervisor: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    /// The session id of the current connection's grant: it changes when
    /// a call of a resuming session follows it to its new id.
    session_id: AtomicU32,
    /// The connection voice goes out on; `None` while reconnecting.
    conn: Mutex<Option<Conn>>,
    /// Whether `conn` is set, for those who wait for a change.
    up: tokio::sync::watch::Sender<bool>,
    /// Why the call ended, once it has.
    ended: Mutex<Option<CallEnded>>,
    reconnects: AtomicU64,
    /// Moves to the session's new id after it resumed.
    switches: AtomicU64,
    /// Forwarded voice dropped because `recv` was not keeping up.
    overflowed: AtomicU64,
}

impl Call {
    /// Gets voice for the session `opener` belongs to and connects to it
    /// over `transport`. This first attempt's failure is returned as it is;
    /// later ones are retried (see the module's rules).
    pub async fn start(opener: VoiceOpener, transport: Transport) -> Result<Call, ClientError> {
        let grant = opener.open().await?;
        let conn = Conn::connect(&grant, transport).await?;
        let shared = Arc::new(Shared {
            session_id: AtomicU32::new(grant.session_id),
            conn: Mutex::new(Some(conn.clone())),
            up: tokio::sync::watch::Sender::new(true),
            ended: Mutex::new(None),
            reconnects: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let supervisor = tokio::spawn(supervise(opener, transport, shared.clone(), tx, conn));
        Ok(Call {
            shared,
            voice: tokio::sync::Mutex::new(rx),
            supervisor,
        })
    }

    /// The session id voice goes out under now; forwarded voice names
    /// speakers by such ids. It changes when a call of a
    /// [`ResumingSession`](crate::ResumingSession) follows it to a new id.
    pub fn session_id(&self) -> u32 {
        self.shared.session_id.load(Ordering::Relaxed)
    }

    /// How many times voice came back after its data plane went away.
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// How many times the call moved its voice to its session's new id,
    /// after the session resumed (always 0 for a plain session's call).
    pub fn switches(&self) -> u64 {
        self.shared.switches.load(Ordering::Relaxed)
    }

    /// Forwarded voice dropped because [`recv`](Self::recv) was not called
    /// often enough.
    pub fn overflowed(&self) -> u64 {
        self.shared.overflowed.load(Ordering::Relaxed)
    }

    /// Whether a connection is up now (not reconnecting, not ended).
    pub fn connected(&self) -> bool {
        *self.shared.up.borrow()
    }

    /// Waits until [`connected`](Self::connected) is `up`. Waits without
    /// bound: callers that need one wrap it in a timeout.
    pub async fn wait_connected(&self, up: bool) {
        let mut state = self.shared.up.subscribe();
        // The sender lives in `self.shared`, so the wait cannot fail.
        let _ = state.wait_for(|now| *now == up).await;
    }

    /// Sends one voice packet: `Ok(true)` when it went out on the current
    /// connection, `Ok(false)` when it was dropped because there is none
    /// (the call is reconnecting or has ended) or it just broke. An invalid
    /// packet (an empty or too long payload) is an error.
    pub fn send(
        &self,
        sequence: u32,
        timestamp_ms: u32,
        payload: Bytes,
    ) -> Result<bool, WireError> {
        let Some(conn) = lock(&self.shared.conn).clone() else {
            return Ok(false);
        };
        conn.send(sequence, timestamp_ms, payload)
    }

    /// The next forwarded voice datagram, waiting through reconnections.
    /// Fails only once the call has ended for good. Waits without bound:
    /// callers that need one wrap it in a timeout.
    pub async fn recv(&self) -> Result<Forwarded, CallEnded> {
        match self.voice.lock().await.recv().await {
            Some(forwarded) => Ok(forwarded),
            None => Err(lock(&self.shared.ended)
                .clone()
                .unwrap_or(CallEnded::Refused {
                    reason: "the call's task stopped".into(),
                })),
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

/// One connection to a data plane, of either transport.
#[derive(Debug, Clone)]
enum Conn {
    Quic(Arc<VoiceClient>),
    Udp(Arc<UdpVoiceClient>),
}

/// How a connection ended.
enum Lost {
    /// Closed by the data plane with this code.
    Closed(u8),
    /// Nothing from the data plane for [`GONE_AFTER`], or the path broke.
    Gone,
    /// The call was dropped: nobody listens any more.
    HungUp,
    /// The session resumed under a new id: a connection under it, or why
    /// there will be none.
    Switched(Result<Conn, CallEnded>),
}

/// Why an attempt to get voice back failed.
enum Attempt {
    /// Worth another try after a pause.
    Again,
    /// The call is over.
    Final(CallEnded),
}

impl Conn {
    async fn connect(grant: &VoiceGrant, transport: Transport) -> Result<Conn, ClientError> {
        Ok(match transport {
            Transport::Quic => Conn::Quic(Arc::new(grant.connect().await?)),
            Transport::Udp => Conn::Udp(Arc::new(grant.connect_udp().await?)),
        })
    }

    fn send(&self, sequence: u32, timestamp_ms: u32, payload: Bytes) -> Result<bool, WireError> {
        let sent = match self {
            Conn::Quic(c) => match c.send(sequence, timestamp_ms, payload) {
                Err(VoiceError::Packet(e)) => return Err(e),
                other => other.is_ok(),
            },
            Conn::Udp(c) => match c.send(sequence, timestamp_ms, payload) {
                Err(UdpVoiceError::Packet(e)) => return Err(e),
                other => other.is_ok(),
            },
        };
        Ok(sent)
    }

    /// The next forwarded datagram, or how the connection ended.
    async fn recv(&self) -> Result<Forwarded, Lost> {
        match self {
            Conn::Quic(c) => c.recv().await.map_err(|e| match e {
                VoiceError::ConnectionLost {
                    code: Some(code), ..
                } => u8::try_from(code).map_or(Lost::Gone, Lost::Closed),
                _ => Lost::Gone,
            }),
            Conn::Udp(c) => c.recv().await.map_err(|e| match e {
                UdpVoiceError::Closed { code } => Lost::Closed(code),
                _ => Lost::Gone,
            }),
        }
    }

    /// The session id the data plane accepted this connection for.
    fn session_id(&self) -> u32 {
        match self {
            Conn::Quic(c) => c.session_id(),
            Conn::Udp(c) => c.session_id(),
        }
    }

    /// Packets received from the data plane so far, of any kind.
    fn heard(&self) -> u64 {
        match self {
            Conn::Quic(c) => c.packets_received(),
            Conn::Udp(c) => c.packets_received(),
        }
    }

    /// Asks the data plane for an answer. Over QUIC the connection's
    /// keep-alive does this on its own.
    fn ping(&self) {
        if let Conn::Udp(c) = self {
            // A failed send shows up as silence, which is what is watched.
            let _ = c.ping();
        }
    }
}

/// The call's task: serves each connection until it is lost, then gets
/// voice back, until the call ends or is dropped.
async fn supervise(
    mut opener: VoiceOpener,
    transport: Transport,
    shared: Arc<Shared>,
    voice: mpsc::Sender<Forwarded>,
    first: Conn,
) {
    let mut conn = first;
    loop {
        let lost = {
            // Made afresh for each connection: it resolves only after a
            // change of id that happens while this connection is served.
            let switch = follow(&mut opener, conn.session_id(), transport);
            serve(&conn, &voice, &shared, switch).await
        };
        match lost {
            Lost::HungUp => return,
            Lost::Switched(Ok(new)) => {
                // Make before break: the new connection is up, so voice
                // moves to it now; the old one closes (code 0) as its last
                // handle goes, and the data plane stops routing the old id.
                install(&shared, &new);
                shared.switches.fetch_add(1, Ordering::Relaxed);
                conn = new;
                continue;
            }
            Lost::Switched(Err(why)) => {
                *lock(&shared.conn) = None;
                shared.up.send_replace(false);
                return end(&shared, why);
            }
            Lost::Closed(code @ 8) => return end_down(&shared, CallEnded::Closed { code }),
            // The session ended; for a call that follows a resuming session
            // only the old id did, unless the session ended for good.
            Lost::Closed(code @ 9) if !opener.may_resume() => {
                return end_down(&shared, CallEnded::Closed { code });
            }
            // 0: that data plane shuts down; others: a connection that
            // broke. Both: voice again, perhaps elsewhere.
            Lost::Closed(_) | Lost::Gone => {}
        }
        *lock(&shared.conn) = None;
        shared.up.send_replace(false);
        let mut pause = FIRST_RETRY_PAUSE;
        conn = loop {
            match reconnect(&opener, transport).await {
                Ok(conn) => break conn,
                Err(Attempt::Final(why)) => return end(&shared, why),
                Err(Attempt::Again) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
            }
        };
        install(&shared, &conn);
        shared.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// Makes `conn` the call's connection.
fn install(shared: &Shared, conn: &Conn) {
    shared
        .session_id
        .store(conn.session_id(), Ordering::Relaxed);
    *lock(&shared.conn) = Some(conn.clone());
    shared.up.send_replace(true);
}

/// Resolves once the session the call follows has come back under a new
/// id and a connection under that id is up (retrying as a lost connection
/// does), or the call cannot go on; never for a plain session's call.
async fn follow(
    opener: &mut VoiceOpener,
    current: u32,
    transport: Transport,
) -> Result<Conn, CallEnded> {
    loop {
        match opener.changed().await {
            // A reconnection after a lost connection may already have
            // used the new id: nothing to switch then.
            Some(id) if id == current => continue,
            Some(_) => break,
            // No new id will come; the call ends, if it does, by what its
            // connection says.
            None => return std::future::pending().await,
        }
    }
    let mut pause = FIRST_RETRY_PAUSE;
    loop {
        // Each attempt asks under the id current then, so a session that
        // resumed twice meanwhile is followed to its latest id.
        match reconnect(opener, transport).await {
            Ok(conn) => return Ok(conn),
            Err(Attempt::Final(why)) => return Err(why),
            Err(Attempt::Again) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
        }
    }
}

/// Passes `conn`'s voice on and watches that the data plane answers,
/// until the connection is lost or `switch` has a new one.
async fn serve(
    conn: &Conn,
    voice: &mpsc::Sender<Forwarded>,
    shared: &Shared,
    switch: impl Future<Output = Result<Conn, CallEnded>>,
) -> Lost {
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = conn.heard();
    let mut heard_at = Instant::now();
    let mut pinged_at = Instant::now();
    let mut switch = std::pin::pin!(switch);
    loop {
        tokio::select! {
            got = conn.recv() => match got {
                Ok(forwarded) => match voice.try_send(forwarded) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        shared.overflowed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return Lost::HungUp,
                },
                Err(lost) => return lost,
            },
            switched = &mut switch => return Lost::Switched(switched),
            _ = ticks.tick() => {
                if voice.is_closed() {
                    return Lost::HungUp;
                }
                let now = conn.heard();
                if now != heard {
                    (heard, heard_at) = (now, Instant::now());
                } else if heard_at.elapsed() >= GONE_AFTER {
                    return Lost::Gone;
                }
                if pinged_at.elapsed() >= PING_EVERY {
                    conn.ping();
                    pinged_at = Instant::now();
                }
            }
        }
    }
}

/// One attempt to get voice back: a new grant, then a new connection.
async fn reconnect(opener: &VoiceOpener, transport: Transport) -> Result<Conn, Attempt> {
    let grant = opener.open().await.map_err(|e| match e.reason() {
        // The session is gone, but a resuming session is coming back
        // under a new id: ask again (under it, once it is there).
        Some("SESSION_REQUIRED") if opener.may_resume() => Attempt::Again,
        // The session is gone, or no longer in a channel, or the token no
        // longer valid: asking again cannot help.
        Some(reason @ ("SESSION_REQUIRED" | "NOT_IN_CHANNEL" | "UNAUTHORIZED")) => {
            Attempt::Final(CallEnded::Refused {
                reason: format!("{reason}: {}", e.message().unwrap_or_default()),
            })
        }
        // No data plane yet, a fault, a broken connection: try again.
        _ => Attempt::Again,
    })?;
    Conn::connect(&grant, transport).await.map_err(|e| {
        let code = match &e {
            ClientError::Voice(VoiceError::Rejected { code, .. })
            | ClientError::UdpVoice(UdpVoiceError::Rejected { code, .. }) => Some(*code),
            _ => None,
        };
        match code {
            // The session ended since the grant was issued (for a resuming
            // one, perhaps only its old id did).
            Some(9) if !opener.may_resume() => Attempt::Final(CallEnded::Closed { code: 9 }),
            _ => Attempt::Again,
        }
    })
}

/// Ends the call after its connection went down.
fn end_down(shared: &Shared, why: CallEnded) {
    *lock(&shared.conn) = None;
    shared.up.send_replace(false);
    end(shared, why);
}

fn end(shared: &Shared, why: CallEnded) {
    *lock(&shared.ended) = Some(why);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
