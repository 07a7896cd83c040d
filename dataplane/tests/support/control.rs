//! A scripted control plane for the data plane's socket tests: it accepts
//! `Attach` streams (counting refusals), hands each to the test, and the
//! test plays the control plane's side by hand. Also a `Dataplane` bound
//! and serving against it, with the addresses and state a test needs.

use std::net::SocketAddr;

use openspeak_dataplane::{Dataplane, LinkState};
use openspeak_shared::Config;
use openspeak_shared::pb::cluster::{
    ControlMessage, DataplaneMessage, Member, MemberUpdate, Register, Snapshot, TicketKey,
    cluster_service_server::{ClusterService, ClusterServiceServer},
    control_message::Kind,
    dataplane_message::Kind as Report,
};
use openspeak_shared::ticket::{self, TicketIssuer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming, transport::server::TcpIncoming};

use super::within;

/// The cluster secret the fake control plane accepts.
pub const SECRET: &str = "socket-test-secret";

/// One `Attach` the fake control plane accepted.
pub struct Attached {
    pub register: Register,
    pub reports: Streaming<DataplaneMessage>,
    /// Dropping it ends the stream: the control plane "goes away".
    pub to_dataplane: mpsc::Sender<Result<ControlMessage, Status>>,
}

impl Attached {
    pub async fn send(&self, kind: Kind) {
        self.to_dataplane
            .send(Ok(ControlMessage { kind: Some(kind) }))
            .await
            .unwrap();
    }

    /// The next report that `pick` accepts, skipping the others.
    pub async fn report<T>(&mut self, what: &str, mut pick: impl FnMut(Report) -> Option<T>) -> T {
        within(what, async {
            loop {
                let message = self.reports.message().await.unwrap().expect("stream open");
                if let Some(found) = message.kind.and_then(&mut pick) {
                    return found;
                }
            }
        })
        .await
    }
}

/// A control plane that hands every accepted `Attach` to the test, and
/// counts refused ones.
struct FakeControl {
    attached: mpsc::UnboundedSender<Attached>,
    refused: mpsc::UnboundedSender<()>,
}

#[tonic::async_trait]
impl ClusterService for FakeControl {
    type AttachStream = ReceiverStream<Result<ControlMessage, Status>>;

    async fn attach(
        &self,
        request: Request<Streaming<DataplaneMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let bearer = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if bearer.as_deref() != Some(&format!("Bearer {SECRET}")) {
            let _ = self.refused.send(());
            return Err(Status::unauthenticated("wrong secret"));
        }
        let mut reports = request.into_inner();
        let Some(DataplaneMessage {
            kind: Some(Report::Register(register)),
        }) = reports.message().await?
        else {
            return Err(Status::invalid_argument("Register first"));
        };
        let (to_dataplane, rx) = mpsc::channel(64);
        let _ = self.attached.send(Attached {
            register,
            reports,
            to_dataplane,
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

pub struct Harness {
    pub attached: mpsc::UnboundedReceiver<Attached>,
    pub refused: mpsc::UnboundedReceiver<()>,
    pub quic: SocketAddr,
    /// The plain-UDP listener.
    pub udp: SocketAddr,
    pub pin: [u8; 32],
    /// Where `/metrics` is served.
    pub metrics: SocketAddr,
    pub state: watch::Receiver<LinkState>,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn next_attach(&mut self) -> Attached {
        within("the data plane attaches", self.attached.recv())
            .await
            .unwrap()
    }

    pub async fn attached_to(&mut self, instance: &str) {
        within(
            "the link reports the snapshot applied",
            self.state
                .wait_for(|s| matches!(s, LinkState::Attached { instance: i } if i == instance)),
        )
        .await
        .unwrap();
    }

    /// Takes the next attach and answers it as control plane instance
    /// "one" with `key` and sessions 1 and 2 in `c1`; waits until the data
    /// plane has applied them. The returned `Attached` is the control
    /// plane's side of the link: dropping it ends the link.
    pub async fn attach_one(&mut self, key: TicketKey) -> Attached {
        let control = self.next_attach().await;
        control
            .send(snapshot(
                vec![key],
                vec![member(1, "c1"), member(2, "c1")],
                "one",
            ))
            .await;
        self.attached_to("one").await;
        control
    }

    /// Ends the link from the control plane's side (`control` is dropped)
    /// and waits until the data plane notices.
    pub async fn detach(&mut self, control: Attached) {
        drop(control);
        within(
            "the link notices",
            self.state.wait_for(|s| *s == LinkState::Away),
        )
        .await
        .unwrap();
    }
}

pub fn config(dir: &std::path::Path, control: SocketAddr, secret: Option<&str>) -> Config {
    let mut config = Config::default();
    config.storage.data_dir = dir.to_owned();
    config.cluster.control_addr = format!("http://{control}");
    config.cluster.secret = secret.map(str::to_owned);
    config.dataplane.host = "127.0.0.1".into();
    config.dataplane.quic_port = 0;
    config.dataplane.udp_port = 0;
    config.dataplane.metrics_listen = "127.0.0.1:0".into();
    config
}

/// A fake control plane and a data plane dialling it with `secret`.
pub async fn start(secret: &str) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = listener.local_addr().unwrap();
    let (attached_tx, attached) = mpsc::unbounded_channel();
    let (refused_tx, refused) = mpsc::unbounded_channel();
    let fake = FakeControl {
        attached: attached_tx,
        refused: refused_tx,
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ClusterServiceServer::new(fake))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    let dataplane = Dataplane::bind(&config(dir.path(), control, Some(secret)))
        .await
        .unwrap();
    let quic = dataplane.quic_addr();
    let udp = dataplane.udp_addr();
    let metrics = dataplane.metrics_addr().expect("metrics are on");
    let pin: [u8; 32] = hex::decode(dataplane.cert_sha256())
        .unwrap()
        .try_into()
        .unwrap();
    let state = dataplane.link_state();
    let (stop, _) = openspeak_testkit::spawn_serving(|shutdown| dataplane.serve(shutdown));
    Harness {
        attached,
        refused,
        quic,
        udp,
        pin,
        metrics,
        state,
        _stop: stop,
        _dir: dir,
    }
}

pub fn key(id: u32) -> (TicketKey, TicketIssuer) {
    let key = ticket::TicketKey::generate(id).unwrap();
    (
        TicketKey {
            id,
            secret: key.secret.to_vec(),
        },
        TicketIssuer::new(key),
    )
}

pub fn member(session_id: u32, channel: &str) -> Member {
    Member {
        session_id,
        channel_id: channel.into(),
        muted: false,
        deafened: false,
    }
}

/// A `MemberUpdate` putting `session_id` in `channel`.
pub fn update(session_id: u32, channel: &str) -> Kind {
    Kind::MemberUpdate(MemberUpdate {
        member: Some(member(session_id, channel)),
    })
}

pub fn snapshot(keys: Vec<TicketKey>, members: Vec<Member>, instance: &str) -> Kind {
    Kind::Snapshot(Snapshot {
        keys,
        members,
        instance: instance.into(),
    })
}
