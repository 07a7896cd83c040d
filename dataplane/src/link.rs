//! The data plane's half of the internal link: dials the control plane,
//! registers, and keeps the router's membership and the ticket keys in step
//! with what the control plane says, while reporting speaking and stats.
//!
//! The router never waits for the link. While the control plane is away
//! the endpoint keeps routing the sessions it knows; the link retries with
//! a capped, jittered exponential backoff and, once attached again, applies
//! the new snapshot as a whole ([`Handle::resync`]). A snapshot from the
//! same control-plane instance is authoritative (sessions it lacks ended
//! meanwhile); one from a new instance (a restart, which forgets every
//! session) leaves the sessions that still have a voice connection
//! routing until that connection ends, and the channels they are in are
//! offered back in `Register.channels` so that new members land here too.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::FutureExt;
use openspeak_shared::metadata;
use openspeak_shared::pb::cluster::{
    self as pb, ControlMessage, DataplaneMessage, Register,
    cluster_service_client::ClusterServiceClient, control_message::Kind,
    dataplane_message::Kind as Report,
};
use openspeak_shared::ticket::{TicketKey, TicketVerifier};
use rand::Rng;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status, Streaming};
use tracing::{debug, info, warn};

use crate::{ChannelKey, Handle, HandleError, Member, MemberChange, RouterEvent, SessionId};

/// How long one dial may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the control plane has to answer `Register` with a snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings on the link: a control plane whose host vanished, or a
/// network that silently stopped carrying the link (no RST, no FIN), is
/// noticed within interval + timeout, 7 s, and the link redialled, rather
/// than after TCP's own timeouts (many minutes). A ping is a few bytes on
/// one connection; the timeout leaves a busy control plane seconds to
/// answer before it counts as gone.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The most control messages applied before the link looks at its other
/// work (speaking reports, stats) again; member deltas among them go to
/// the endpoint in one round trip.
const MEMBER_BATCH: usize = 256;
/// How often `Stats` is reported.
const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// Reports that may wait to be sent; speaking changes beyond it are
/// dropped (the next change or resync corrects the picture).
const REPORT_QUEUE: usize = 1024;
/// While the control plane stays away, one warning this often; the
/// attempts in between log at debug.
const STILL_AWAY_WARNING: Duration = Duration::from_secs(30);

/// The first retry comes after this long, then twice as long each time...
const BACKOFF_START: Duration = Duration::from_millis(100);
/// ...up to this.
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Where and how the data plane attaches.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The control plane's internal address, `http://host:port`.
    pub control_addr: String,
    /// `cluster.secret`.
    pub secret: String,
    /// TLS for an `https://` control address: the authority to trust and
    /// the certificate to present (`cluster.tls_*`).
    pub tls: Option<ClientTlsConfig>,
    /// What it registers as; `channels` is filled in at each attach.
    pub register: Registration,
}

/// The fixed part of `Register`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub dataplane_id: String,
    /// `host:port` clients dial for QUIC.
    pub quic_endpoint: String,
    /// `host:port` of plain-UDP voice; empty while none is offered.
    pub udp_endpoint: String,
    /// 64 lowercase hex digits.
    pub cert_sha256: String,
    /// 0 = no limit.
    pub capacity: u32,
}

/// Where the link is, for logs, health and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Never attached yet.
    Connecting,
    /// Attached to the control-plane instance named.
    Attached { instance: String },
    /// Was attached, lost it, retrying; routing goes on.
    Away,
}

/// Why one attach attempt ended.
#[derive(Debug, Error)]
enum AttemptError {
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("the control plane refused the link: {0}")]
    Refused(Status),
    #[error("the link failed: {0}")]
    Stream(Status),
    #[error("the control plane closed the link")]
    Closed,
    #[error("no snapshot within {SNAPSHOT_TIMEOUT:?} of registering")]
    SnapshotTimeout,
    #[error("the control plane's first message was not a snapshot")]
    NoSnapshot,
    #[error("a ticket key of {0} bytes, not 32")]
    BadKey(usize),
    #[error("the control plane address `{0}` is not a valid URI")]
    Address(String),
    #[error("the voice endpoint stopped")]
    EndpointClosed,
}

impl From<HandleError> for AttemptError {
    fn from(_: HandleError) -> Self {
        AttemptError::EndpointClosed
    }
}

/// Runs the link until `shutdown` resolves or the endpoint stops.
pub struct Link {
    config: LinkConfig,
    handle: Handle,
    verifier: Arc<RwLock<TicketVerifier>>,
    events: mpsc::Receiver<RouterEvent>,
    state: watch::Sender<LinkState>,
    /// The control-plane instance of the last snapshot applied.
    instance: Option<String>,
}

impl Link {
    /// A link for the endpoint behind `handle`, which must still hold its
    /// event receiver ([`Handle::events`]). Returns `None` if it was taken.
    pub fn new(
        config: LinkConfig,
        handle: Handle,
        verifier: Arc<RwLock<TicketVerifier>>,
    ) -> Option<(Link, watch::Receiver<LinkState>)> {
        let events = handle.events()?;
        let (state, watcher) = watch::channel(LinkState::Connecting);
        Some((
            Link {
                config,
                handle,
                verifier,
                events,
                state,
                instance: None,
            },
            watcher,
        ))
    }

    /// Attaches, follows the control plane, and reattaches whenever the link
    /// drops, until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_CAP);
        let mut away_since: Option<tokio::time::Instant> = None;
        let mut last_warning: Option<tokio::time::Instant> = None;
        let mut attempts: u64 = 0;
        loop {
            let attempt = tokio::select! {
                () = &mut shutdown => return,
                r = self.attempt(&mut backoff) => r,
            };
            let now = tokio::time::Instant::now();
            match attempt {
                Err(AttemptError::EndpointClosed) => return,
                Ok(()) | Err(_) if matches!(*self.state.borrow(), LinkState::Attached { .. }) => {
                    let reason = match &attempt {
                        Ok(()) => "the control plane closed the link".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    warn!(%reason, "lost the control plane; voice keeps flowing for the sessions already known while the link is retried");
                    self.state.send_replace(LinkState::Away);
                    away_since = Some(now);
                    last_warning = Some(now);
                    attempts = 0;
                }
                Ok(()) => {}
                Err(e) => {
                    attempts += 1;
                    let first = last_warning.is_none();
                    if first || last_warning.is_some_and(|t| now - t >= STILL_AWAY_WARNING) {
                        let away = away_since.map(|t| (now - t).as_secs());
                        warn!(error = %e, attempts, away_secs = ?away, "cannot attach to the control plane; retrying");
                        last_warning = Some(now);
                        away_since.get_or_insert(now);
                    } else {
                        debug!(error = %e, attempts, "attach failed; retrying");
                    }
                }
            }
            let pause = backoff.next_delay(&mut rand::rng());
            let sleep = tokio::time::sleep(pause);
            tokio::pin!(sleep);
            // Router events keep coming while the link is down; drain them
            // so the endpoint's queue does not fill (the control plane
            // learns the current picture from the next attach anyway).
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = &mut sleep => break,
                    event = self.events.recv() => {
                        if event.is_none() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// One attach: dial, register, apply the snapshot, then follow deltas
    /// and send reports until the stream ends. `Ok` when the control plane
    /// ended it cleanly.
    async fn attempt(&mut self, backoff: &mut Backoff) -> Result<(), AttemptError> {
        let channel = self.dial().await?;
        let mut client = ClusterServiceClient::new(channel);
        let (reports, outbound) = mpsc::channel(REPORT_QUEUE);
        let channels = self.handle.channels().await?;
        let register = self.register_message(channels);
        reports
            .try_send(register)
            .expect("a new channel has room for Register");
        let mut request = Request::new(ReceiverStream::new(outbound));
        let bearer = format!("Bearer {}", self.config.secret)
            .parse()
            .map_err(|_| AttemptError::Refused(Status::invalid_argument("unusable secret")))?;
        request
            .metadata_mut()
            .insert(metadata::AUTHORIZATION, bearer);
        let mut inbound = client
            .attach(request)
            .await
            .map_err(AttemptError::Refused)?
            .into_inner();

        let first = tokio::time::timeout(SNAPSHOT_TIMEOUT, inbound.message())
            .await
            .map_err(|_| AttemptError::SnapshotTimeout)?
            .map_err(AttemptError::Stream)?;
        let Some(ControlMessage {
            kind: Some(Kind::Snapshot(snapshot)),
        }) = first
        else {
            return Err(match first {
                None => AttemptError::Closed,
                Some(_) => AttemptError::NoSnapshot,
            });
        };
        self.apply_snapshot(snapshot).await?;
        backoff.reset();
        self.follow(&mut inbound, &reports).await
    }

    async fn dial(&self) -> Result<Channel, AttemptError> {
        let addr = &self.config.control_addr;
        let mut endpoint =
            Endpoint::from_shared(addr.clone()).map_err(|_| AttemptError::Address(addr.clone()))?;
        if let Some(tls) = &self.config.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|_| AttemptError::Address(addr.clone()))?;
        }
        let endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        endpoint
            .connect()
            .await
            .map_err(|source| AttemptError::Connect {
                addr: addr.clone(),
                source,
            })
    }

    fn register_message(&self, channels: Vec<ChannelKey>) -> DataplaneMessage {
        let r = &self.config.register;
        DataplaneMessage {
            kind: Some(Report::Register(Register {
                dataplane_id: r.dataplane_id.clone(),
                quic_endpoint: r.quic_endpoint.clone(),
                udp_endpoint: r.udp_endpoint.clone(),
                cert_sha256: r.cert_sha256.clone(),
                capacity: r.capacity,
                channels: channels.iter().map(|c| c.as_str().to_owned()).collect(),
            })),
        }
    }

    async fn apply_snapshot(&mut self, snapshot: pb::Snapshot) -> Result<(), AttemptError> {
        let mut keys = TicketVerifier::new();
        for key in snapshot.keys {
            keys.insert(ticket_key(key)?);
        }
        *self.verifier.write().unwrap_or_else(|e| e.into_inner()) = keys;

        let restarted = self
            .instance
            .as_ref()
            .is_some_and(|known| *known != snapshot.instance);
        let members = snapshot
            .members
            .into_iter()
            .filter_map(member)
            .collect::<Vec<_>>();
        // The first attach of this process has nothing to keep; later ones
        // keep connected sessions only if the control plane restarted.
        let resynced = self
            .handle
            .resync(members, self.instance.is_none() || restarted)
            .await?;
        info!(
            instance = %snapshot.instance,
            members = resynced.members,
            removed = resynced.removed,
            kept_from_before_restart = resynced.orphaned,
            "attached to the control plane"
        );
        self.instance = Some(snapshot.instance.clone());
        self.state.send_replace(LinkState::Attached {
            instance: snapshot.instance,
        });
        Ok(())
    }

    /// Applies deltas and sends reports until the stream ends.
    async fn follow(
        &mut self,
        inbound: &mut Streaming<ControlMessage>,
        reports: &mpsc::Sender<DataplaneMessage>,
    ) -> Result<(), AttemptError> {
        let mut stats = tokio::time::interval(STATS_INTERVAL);
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = inbound.message() => {
                    match message.map_err(AttemptError::Stream)? {
                        Some(message) => {
                            if self.apply_ready(message, inbound).await? == Stream::Ended {
                                return Ok(());
                            }
                        }
                        None => return Ok(()),
                    }
                }
                event = self.events.recv() => {
                    let Some(RouterEvent::SpeakingChanged { session, speaking }) = event else {
                        return Err(AttemptError::EndpointClosed);
                    };
                    let report = DataplaneMessage {
                        kind: Some(Report::Speaking(pb::Speaking {
                            session_id: session.0,
                            speaking,
                        })),
                    };
                    if reports.try_send(report).is_err() {
                        debug!(%session, "report queue full; a speaking change was not sent");
                    }
                }
                _ = stats.tick() => {
                    let report = self.stats_report().await?;
                    let _ = reports.try_send(report);
                }
            }
        }
    }

    async fn stats_report(&self) -> Result<DataplaneMessage, AttemptError> {
        let endpoint = self.handle.stats();
        let router = self.handle.router_stats().await?;
        let streams = self
            .handle
            .session_stats()
            .await?
            .into_iter()
            .map(|(session, speaker, listener)| pb::StreamQuality {
                session_id: session.0,
                received: speaker.received,
                forwarded: speaker.forwarded,
                lost: speaker.lost,
                late: speaker.late,
                duplicate: speaker.duplicate,
                stale: speaker.stale,
                reordered: speaker.reordered,
                jitter_ms: speaker.jitter_ms as f32,
                delivered: listener.delivered,
                dropped_lag: listener.dropped_lag,
            })
            .collect();
        Ok(DataplaneMessage {
            kind: Some(Report::Stats(pb::Stats {
                sessions: u32::try_from(endpoint.connections).unwrap_or(u32::MAX),
                forwarded_total: endpoint.datagrams_out,
                dropped_total: router.dropped(),
                streams,
            })),
        })
    }

    /// Applies `first` and the messages already waiting behind it, up to
    /// [`MEMBER_BATCH`] of them. Member deltas go to the endpoint in one
    /// [`Handle::apply`] each batch: the endpoint answers between packet
    /// batches, and a round trip per delta drained a backlog of thousands
    /// at tens a second while the voice loop was busy, long enough for the
    /// control plane's feed to overflow.
    async fn apply_ready(
        &mut self,
        first: ControlMessage,
        inbound: &mut Streaming<ControlMessage>,
    ) -> Result<Stream, AttemptError> {
        let mut changes = Vec::new();
        let mut message = first;
        let mut read = 1;
        let stream = loop {
            match message.kind {
                Some(Kind::MemberUpdate(update)) => {
                    if let Some((session, member)) = update.member.and_then(member) {
                        changes.push(MemberChange::Set(session, member));
                    }
                }
                Some(Kind::MemberRemoved(removed)) => {
                    changes.push(MemberChange::Remove(SessionId(removed.session_id)));
                }
                other => {
                    // Keys and snapshots apply after the deltas before them.
                    self.flush(&mut changes).await?;
                    self.apply_other(other).await?;
                }
            }
            if read == MEMBER_BATCH {
                break Stream::Open;
            }
            // `message()` may be dropped unfinished: tonic keeps what it
            // has read of a message in the stream, not in the future.
            match inbound.message().now_or_never() {
                None => break Stream::Open,
                Some(Ok(Some(next))) => message = next,
                Some(Ok(None)) => break Stream::Ended,
                Some(Err(status)) => {
                    self.flush(&mut changes).await?;
                    return Err(AttemptError::Stream(status));
                }
            }
            read += 1;
        };
        self.flush(&mut changes).await?;
        Ok(stream)
    }

    /// Hands the endpoint the member changes gathered so far.
    async fn flush(&self, changes: &mut Vec<MemberChange>) -> Result<(), AttemptError> {
        if !changes.is_empty() {
            self.handle.apply(std::mem::take(changes)).await?;
        }
        Ok(())
    }

    /// Everything but member deltas.
    async fn apply_other(&mut self, kind: Option<Kind>) -> Result<(), AttemptError> {
        match kind {
            Some(Kind::TicketKeyAdded(added)) => {
                if let Some(key) = added.key {
                    let key = ticket_key(key)?;
                    self.verifier
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key);
                }
            }
            Some(Kind::Snapshot(snapshot)) => {
                // The control plane fell behind feeding this link and
                // starts over: the snapshot replaces every delta missed.
                warn!(
                    members = snapshot.members.len(),
                    "the control plane resent its snapshot (this data plane fell behind its feed)"
                );
                self.apply_snapshot(snapshot).await?;
            }
            Some(Kind::MemberUpdate(_) | Kind::MemberRemoved(_)) | None => {}
        }
        Ok(())
    }
}

/// Whether the control plane's stream is still open after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Open,
    Ended,
}

fn ticket_key(key: pb::TicketKey) -> Result<TicketKey, AttemptError> {
    let len = key.secret.len();
    let secret = key
        .secret
        .try_into()
        .map_err(|_| AttemptError::BadKey(len))?;
    Ok(TicketKey { id: key.id, secret })
}

/// The router's view of a protobuf member; `None` for session 0, which no
/// control plane sends.
fn member(m: pb::Member) -> Option<(SessionId, Member)> {
    (m.session_id != 0).then(|| {
        (
            SessionId(m.session_id),
            Member {
                channel: (!m.channel_id.is_empty()).then(|| ChannelKey::from(m.channel_id)),
                muted: m.muted,
                deafened: m.deafened,
            },
        )
    })
}

/// Capped exponential backoff with "equal jitter": each delay is half the
/// current step plus a random part of the other half, so a fleet of data
/// planes that lost the same control plane does not redial in lockstep.
#[derive(Debug, Clone)]
struct Backoff {
    start: Duration,
    cap: Duration,
    step: Duration,
}

impl Backoff {
    fn new(start: Duration, cap: Duration) -> Self {
        Self {
            start,
            cap,
            step: start,
        }
    }

    fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let half = self.step / 2;
        let jitter = half.mul_f64(rng.random::<f64>());
        self.step = (self.step * 2).min(self.cap);
        half + jitter
    }

    fn reset(&mut self) {
        self.step = self.start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut rng = StdRng::seed_from_u64(7);
        let mut steps = Duration::from_millis(100);
        for _ in 0..12 {
            let d = b.next_delay(&mut rng);
            assert!(
                d >= steps / 2 && d <= steps,
                "{d:?} outside [{:?}, {steps:?}]",
                steps / 2
            );
            steps = (steps * 2).min(Duration::from_secs(5));
        }
        assert!(b.next_delay(&mut rng) >= Duration::from_millis(2500));
        b.reset();
        assert!(b.next_delay(&mut rng) <= Duration::from_millis(100));
    }

    #[test]
    fn members_convert_and_session_zero_is_skipped() {
        let m = member(pb::Member {
            session_id: 4,
            channel_id: "lobby".into(),
            muted: true,
            deafened: false,
        });
        assert_eq!(
            m,
            Some((
                SessionId(4),
                Member {
                    channel: Some(ChannelKey::from("lobby")),
                    muted: true,
                    deafened: false
                }
            ))
        );
        let none = member(pb::Member {
            session_id: 5,
            ..Default::default()
        });
        assert_eq!(none.map(|(_, m)| m.channel), Some(None));
        assert_eq!(
            member(pb::Member {
                session_id: 0,
                ..Default::default()
            }),
            None
        );
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert!(matches!(
            ticket_key(pb::TicketKey {
                id: 1,
                secret: vec![0; 31]
            }),
            Err(AttemptError::BadKey(31))
        ));
        assert_eq!(
            ticket_key(pb::TicketKey {
                id: 9,
                secret: vec![1; 32]
            })
            .unwrap()
            .id,
            9
        );
    }
}
