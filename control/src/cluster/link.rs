//! `ClusterService`: the gRPC edge of the internal link.
//!
//! One `Attach` stream per data plane. The handler checks the secret
//! (refusals are throttled and logged by [`AttachGuard`]),
//! waits for `Register`, subscribes to the broker's feed and reads the
//! hub in one step (so that the snapshot and the deltas meet exactly),
//! then runs two tasks: one turns the feed into deltas for the data plane
//! (and, should the data plane fall behind, a fresh snapshot instead of the
//! deltas it missed), the other reads its speaking and stats reports.
//! When the incoming stream ends, the data plane is detached and its
//! channels unplaced.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, Instant},
};

use openspeak_shared::{
    Reason, metadata,
    pb::cluster::{
        self as pb, ControlMessage, DataplaneMessage, Register, Snapshot,
        cluster_service_server::ClusterService, control_message::Kind,
        dataplane_message::Kind as Report,
    },
    ticket::TicketKey,
};
use subtle::ConstantTimeEq;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::{
    Attachment, Dataplane, DataplaneReport, Endpoints, MemberView, Registry, StreamQuality,
    guard::AttachGuard,
};
use crate::{
    broker::{Broker, Dispatch, Subscription},
    event::Event,
    ids::{ChannelId, SessionId},
    store::{DataplaneRecord, Store},
};

/// How long a data plane may take to send `Register`.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Deltas a data plane may have unread before its feed task waits.
const OUTBOX: usize = 1024;

pub struct ClusterApi {
    pub broker: Arc<Broker>,
    pub registry: Arc<Registry>,
    /// The current ticket key, sent in every snapshot.
    pub key: TicketKey,
    /// `cluster.secret`; `None` refuses every data plane.
    pub secret: Option<String>,
    /// Throttles and logs refused attaches.
    pub guard: AttachGuard,
    /// Random per start; in every snapshot, so that a data plane can tell a
    /// restarted control plane from a link that merely dropped.
    pub instance: String,
    /// Where each data plane's certificate is remembered.
    pub store: Arc<dyn Store>,
}

impl ClusterApi {
    /// Keeps the certificate `id` presents, and says so when it is not the
    /// one it presented before: its clients' pin changes with their next
    /// ticket, which is right after a regenerated certificate and worth a
    /// look otherwise. A store that fails is logged, not fatal: the link
    /// matters more than the record.
    fn remember(&self, id: &str, cert_sha256: &str) {
        let now = crate::authenticator::unix_now();
        let known = match self.store.dataplanes() {
            Ok(known) => known.into_iter().find(|d| d.id == id),
            Err(error) => {
                warn!(dataplane = %id, %error, "cannot read the data planes seen before");
                None
            }
        };
        if let Some(before) = &known
            && before.cert_sha256 != cert_sha256
        {
            warn!(
                dataplane = %id,
                before = %before.cert_sha256,
                now = %cert_sha256,
                "a data plane presents another certificate than before; its clients get the new \
                 pin with their next ticket (expected after its certificate was regenerated, \
                 else check that host)"
            );
        }
        let record = DataplaneRecord {
            id: id.to_owned(),
            cert_sha256: cert_sha256.to_owned(),
            first_seen: known.map_or(now, |k| k.first_seen),
            last_seen: now,
        };
        if let Err(error) = self.store.put_dataplane(&record) {
            warn!(dataplane = %id, %error, "cannot keep the data plane's certificate");
        }
    }

    /// Lets in a request with the right secret from an address that is not
    /// throttled; see [`AttachGuard`] for the throttle and the log.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let now = Instant::now();
        // Without an address (not the case over TCP) refusals still count
        // and are still logged, all under one stand-in address.
        let peer = request
            .remote_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        if let Err(ban) = self.guard.check(peer, now) {
            self.log_refusal(peer, now, "throttled after too many wrong secrets");
            let secs = ban.until.saturating_duration_since(now).as_secs() + 1;
            return Err(Reason::RateLimited.status(format!(
                "too many wrong cluster secrets from this address; try again in {secs} s"
            )));
        }
        let Some(secret) = &self.secret else {
            // Not the peer's fault: logged, not counted against it.
            self.log_refusal(peer, now, "this control plane has no cluster.secret");
            return Err(Reason::Unauthorized.status(
                "this control plane has no cluster.secret: set cluster.secret on both planes",
            ));
        };
        let presented = request
            .metadata()
            .get(metadata::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(presented.as_bytes().ct_eq(secret.as_bytes())) {
            return Ok(());
        }
        self.log_refusal(peer, now, "wrong or missing cluster secret");
        if let Some(ban) = self.guard.record_failure(peer, now) {
            warn!(
                %peer,
                ban_secs = ban.until.saturating_duration_since(now).as_secs(),
                "too many wrong cluster secrets; the address is refused for a while"
            );
        }
        Err(Reason::Unauthorized.status(
            "wrong or missing cluster secret: use `authorization: Bearer <cluster.secret>`",
        ))
    }

    /// One warn line per address per interval, with the refusals left out.
    fn log_refusal(&self, peer: IpAddr, now: Instant, why: &str) {
        if let Some(line) = self.guard.log_refusal(peer, now) {
            warn!(
                %peer,
                reason = why,
                suppressed = line.suppressed,
                "refused a data plane's attach"
            );
        }
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    type AttachStream = ReceiverStream<Result<ControlMessage, Status>>;

    async fn attach(
        &self,
        request: Request<Streaming<DataplaneMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        self.authenticate(&request)?;
        let mut inbound = request.into_inner();
        let register = match tokio::time::timeout(REGISTER_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(DataplaneMessage {
                kind: Some(Report::Register(register)),
            }))) => register,
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(invalid("no Register within 10 seconds")),
            Ok(Ok(_)) => return Err(invalid("the first message must be Register")),
        };
        let endpoints = endpoints(&register)?;
        self.remember(&register.dataplane_id, &endpoints.cert_sha256);

        let (events, sequence, users) = self.broker.subscribe_with(|hub| hub.users());
        let view = MemberView::new(&users);
        let (sender, receiver) = mpsc::channel(OUTBOX);
        let snapshot = snapshot(&self.key, &view, &self.instance);
        sender
            .try_send(Ok(snapshot))
            .expect("a new channel has room for the snapshot");

        let (attachment, replaced) = self.registry.attach(Dataplane {
            id: register.dataplane_id.clone(),
            endpoints: endpoints.clone(),
            capacity: register.capacity,
            report: DataplaneReport::default(),
            sender: sender.clone(),
            feed: None,
        });
        let adopted = self.registry.adopt_channels(
            attachment,
            register.channels.iter().map(|c| ChannelId(c.clone())),
        );
        if adopted > 0 {
            info!(dataplane = %register.dataplane_id, channels = adopted, "placed the channels the data plane already routes back on it");
        }
        if replaced.is_some() {
            warn!(dataplane = %register.dataplane_id, "a data plane re-registered; replacing its old link");
        }
        info!(
            dataplane = %register.dataplane_id,
            quic = %endpoints.quic,
            udp = %endpoints.udp,
            capacity = register.capacity,
            attached = self.registry.attached(),
            "data plane attached"
        );

        let feed = Feed {
            dataplane: register.dataplane_id.clone(),
            broker: self.broker.clone(),
            registry: self.registry.clone(),
            key: self.key.clone(),
            instance: self.instance.clone(),
            sender,
        };
        let feed = tokio::spawn(feed.run(events, sequence, view));
        self.registry.set_feed(attachment, feed.abort_handle());
        tokio::spawn(reports(
            inbound,
            attachment,
            register.dataplane_id,
            self.broker.clone(),
            self.registry.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

/// The whole picture for a data plane: the first message of every link,
/// and what a feed that fell behind sends instead of the events it missed.
fn snapshot(key: &TicketKey, view: &MemberView, instance: &str) -> ControlMessage {
    ControlMessage {
        kind: Some(Kind::Snapshot(Snapshot {
            keys: vec![pb::TicketKey {
                id: key.id,
                secret: key.secret.to_vec(),
            }],
            members: view.members(),
            instance: instance.to_owned(),
        })),
    }
}

/// Turns the broker's events into one data plane's deltas.
struct Feed {
    dataplane: String,
    broker: Arc<Broker>,
    registry: Arc<Registry>,
    key: TicketKey,
    instance: String,
    sender: mpsc::Sender<Result<ControlMessage, Status>>,
}

impl Feed {
    /// Sends deltas from event `after` on until the data plane goes away.
    ///
    /// A data plane that reads slowly (its link waits on a busy voice
    /// loop) makes this task wait on its queue, and the broker's queue of
    /// events behind it overflows. Ending the link then would cost far
    /// more than the lag: the data plane would be detached, and every
    /// `OpenVoice` for its channels refused, until it noticed and attached
    /// again. Instead the feed starts over within the stream: a fresh
    /// subscription and a fresh snapshot, which the data plane applies in
    /// place of the deltas it never got.
    async fn run(self, mut events: Subscription, mut after: u64, mut view: MemberView) {
        loop {
            let dispatch = match events.recv().await {
                Ok(dispatch) => dispatch,
                Err(RecvError::Lagged(missed)) => {
                    let (fresh, sequence, (users, channels)) = self.broker.subscribe_with(|hub| {
                        (
                            hub.users(),
                            hub.channel_ids().cloned().collect::<HashSet<_>>(),
                        )
                    });
                    events = fresh;
                    after = sequence;
                    view = MemberView::new(&users);
                    let live: HashSet<SessionId> = users.iter().map(|u| u.id).collect();
                    self.registry
                        .retain_live(|s| live.contains(&s), |c| channels.contains(c));
                    warn!(
                        dataplane = %self.dataplane,
                        missed,
                        members = users.len(),
                        "a data plane fell behind the event feed; sending it a fresh snapshot"
                    );
                    let snapshot = snapshot(&self.key, &view, &self.instance);
                    if self.sender.send(Ok(snapshot)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let Dispatch::Event {
                sequence, event, ..
            } = &*dispatch
            else {
                return;
            };
            if *sequence <= after {
                continue;
            }
            self.note(event);
            if let Some(message) = view.apply(event)
                && self.sender.send(Ok(message)).await.is_err()
            {
                return;
            }
        }
    }

    /// What the registry learns from an event, whatever the data plane.
    fn note(&self, event: &Event) {
        match event {
            Event::UserOffline(session) => {
                if let Some(q) = self.registry.forget_session(*session) {
                    // The call's quality, for an operator chasing "I
                    // couldn't hear X": what arrived from it, what the
                    // network lost, what it was sent.
                    info!(
                        %session,
                        received = q.received,
                        forwarded = q.forwarded,
                        lost = q.lost,
                        late = q.late + q.stale,
                        duplicate = q.duplicate,
                        reordered = q.reordered,
                        jitter_ms = q.jitter_ms,
                        delivered = q.delivered,
                        dropped_lag = q.dropped_lag,
                        "voice session ended"
                    );
                }
            }
            Event::ChannelDeleted(channel) => self.registry.unplace_channel(channel),
            _ => {}
        }
    }
}

/// Reads the data plane's reports; detaches it when its stream ends.
async fn reports(
    mut inbound: Streaming<DataplaneMessage>,
    attachment: Attachment,
    id: String,
    broker: Arc<Broker>,
    registry: Arc<Registry>,
) {
    loop {
        let report = match inbound.message().await {
            Ok(Some(DataplaneMessage { kind: Some(report) })) => report,
            Ok(Some(DataplaneMessage { kind: None })) => continue,
            Ok(None) => break,
            Err(status) => {
                debug!(dataplane = %id, %status, "data plane stream failed");
                break;
            }
        };
        match report {
            Report::Register(_) => {
                warn!(dataplane = %id, "ignoring a second Register on one stream");
            }
            Report::Speaking(s) => {
                let session = SessionId(s.session_id);
                // Only for sessions in a channel placed on this data plane:
                // a data plane speaks for the sessions it routes.
                broker.update(|hub| {
                    let placed = hub
                        .user(session)
                        .and_then(|u| u.channel.as_ref())
                        .is_some_and(|c| registry.is_placed_on(c, attachment));
                    if placed {
                        hub.set_speaking(session, s.speaking);
                    }
                });
            }
            Report::Stats(stats) => registry.note_stats(attachment, to_report(stats)),
        }
    }
    if registry.detach(attachment).is_some() {
        info!(dataplane = %id, "data plane detached; its channels are unplaced");
    }
}

/// The protobuf `Stats` in the registry's terms.
fn to_report(stats: pb::Stats) -> DataplaneReport {
    DataplaneReport {
        sessions: stats.sessions,
        forwarded_total: stats.forwarded_total,
        dropped_total: stats.dropped_total,
        streams: stats
            .streams
            .into_iter()
            .map(|q| {
                (
                    SessionId(q.session_id),
                    StreamQuality {
                        received: q.received,
                        forwarded: q.forwarded,
                        lost: q.lost,
                        late: q.late,
                        duplicate: q.duplicate,
                        stale: q.stale,
                        reordered: q.reordered,
                        jitter_ms: q.jitter_ms,
                        delivered: q.delivered,
                        dropped_lag: q.dropped_lag,
                    },
                )
            })
            .collect(),
    }
}

fn endpoints(register: &Register) -> Result<Endpoints, Status> {
    if register.dataplane_id.is_empty() {
        return Err(invalid("Register.dataplane_id is empty"));
    }
    if register.quic_endpoint.is_empty() {
        return Err(invalid("Register needs a quic_endpoint"));
    }
    let hex = &register.cert_sha256;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid(
            "Register.cert_sha256 must be 64 lowercase hex digits",
        ));
    }
    Ok(Endpoints {
        quic: register.quic_endpoint.clone(),
        udp: register.udp_endpoint.clone(),
        cert_sha256: hex.clone(),
    })
}

fn invalid(message: &str) -> Status {
    Reason::InvalidRequest.status(message)
}
