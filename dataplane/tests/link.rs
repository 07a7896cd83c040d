//! The data plane's side of the internal link, against a scripted control
//! plane on 127.0.0.1: what it registers, how it applies snapshots and
//! deltas, what it reports, and how it reconnects and resyncs, with real
//! QUIC voice clients checking the effect on routing.

mod support;

use std::net::SocketAddr;

use openspeak_dataplane::{Dataplane, LinkState, StartError};
use openspeak_shared::Config;
use openspeak_shared::pb::cluster::{
    ControlMessage, DataplaneMessage, Member, MemberRemoved, Register, Snapshot, TicketKey,
    cluster_service_server::{ClusterService, ClusterServiceServer},
    control_message::Kind,
    dataplane_message::Kind as Report,
};
use openspeak_shared::ticket::{self, TicketIssuer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming, transport::server::TcpIncoming};

use support::{Answer, close_code, connect, hears_nothing, join, present, talk, within};

const SECRET: &str = "link-test-secret";

/// One `Attach` the fake control plane accepted.
struct Attached {
    register: Register,
    reports: Streaming<DataplaneMessage>,
    /// Dropping it ends the stream: the control plane "goes away".
    to_dataplane: mpsc::Sender<Result<ControlMessage, Status>>,
}

impl Attached {
    async fn send(&self, kind: Kind) {
        self.to_dataplane
            .send(Ok(ControlMessage { kind: Some(kind) }))
            .await
            .unwrap();
    }

    /// The next report that `pick` accepts, skipping the others.
    async fn report<T>(&mut self, what: &str, mut pick: impl FnMut(Report) -> Option<T>) -> T {
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

struct Harness {
    attached: mpsc::UnboundedReceiver<Attached>,
    refused: mpsc::UnboundedReceiver<()>,
    quic: SocketAddr,
    pin: [u8; 32],
    state: watch::Receiver<LinkState>,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn next_attach(&mut self) -> Attached {
        within("the data plane attaches", self.attached.recv())
            .await
            .unwrap()
    }

    async fn attached_to(&mut self, instance: &str) {
        within(
            "the link reports the snapshot applied",
            self.state
                .wait_for(|s| matches!(s, LinkState::Attached { instance: i } if i == instance)),
        )
        .await
        .unwrap();
    }
}

fn config(dir: &std::path::Path, control: SocketAddr, secret: Option<&str>) -> Config {
    let mut config = Config::default();
    config.storage.data_dir = dir.to_owned();
    config.cluster.control_addr = format!("http://{control}");
    config.cluster.secret = secret.map(str::to_owned);
    config.dataplane.host = "127.0.0.1".into();
    config.dataplane.quic_port = 0;
    config.dataplane.metrics_listen = "127.0.0.1:0".into();
    config
}

/// A fake control plane and a data plane dialling it with `secret`.
async fn start(secret: &str) -> Harness {
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
    let pin: [u8; 32] = hex::decode(dataplane.cert_sha256())
        .unwrap()
        .try_into()
        .unwrap();
    let state = dataplane.link_state();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(dataplane.serve(async {
        let _ = stopped.await;
    }));
    Harness {
        attached,
        refused,
        quic,
        pin,
        state,
        _stop: stop,
        _dir: dir,
    }
}

fn key(id: u32) -> (TicketKey, TicketIssuer) {
    let key = ticket::TicketKey::generate(id).unwrap();
    (
        TicketKey {
            id,
            secret: key.secret.to_vec(),
        },
        TicketIssuer::new(key),
    )
}

fn member(session_id: u32, channel: &str) -> Member {
    Member {
        session_id,
        channel_id: channel.into(),
        muted: false,
        deafened: false,
    }
}

fn snapshot(keys: Vec<TicketKey>, members: Vec<Member>, instance: &str) -> Kind {
    Kind::Snapshot(Snapshot {
        keys,
        members,
        instance: instance.into(),
    })
}

#[tokio::test]
async fn registers_follows_deltas_and_reports() {
    let mut h = start(SECRET).await;
    let mut control = h.next_attach().await;
    let r = &control.register;
    assert!(r.dataplane_id.starts_with("dp-"), "{}", r.dataplane_id);
    assert_eq!(r.quic_endpoint, format!("127.0.0.1:{}", h.quic.port()));
    assert_eq!(r.cert_sha256, hex::encode(h.pin));
    assert_eq!(r.udp_endpoint, "", "no plain-UDP transport is offered yet");
    assert!(r.channels.is_empty());

    let (k, issuer) = key(11);
    control
        .send(snapshot(
            vec![k],
            vec![member(1, "c1"), member(2, "c1")],
            "one",
        ))
        .await;
    h.attached_to("one").await;

    let (_a_ep, a) = join(h.quic, h.pin, &support::ticket(&issuer, 1, 60), 1).await;
    let (_b_ep, b) = join(h.quic, h.pin, &support::ticket(&issuer, 2, 60), 2).await;
    talk(&a, 1, 0..10, &[&b]).await;
    let speaking = control
        .report("a speaking report", |r| match r {
            Report::Speaking(s) => Some(s),
            _ => None,
        })
        .await;
    assert_eq!((speaking.session_id, speaking.speaking), (1, true));

    // The control plane ends B's session: its connection is closed as
    // removed, and the next stats count one voice session.
    control
        .send(Kind::MemberRemoved(MemberRemoved { session_id: 2 }))
        .await;
    assert_eq!(close_code(&b).await, 9);
    let stats = control
        .report("stats with one session", |r| match r {
            Report::Stats(s) if s.sessions == 1 => Some(s),
            _ => None,
        })
        .await;
    assert_eq!(stats.forwarded_total, 10);
    let a_quality = stats
        .streams
        .iter()
        .find(|q| q.session_id == 1)
        .expect("A's stream quality is reported");
    assert_eq!((a_quality.received, a_quality.forwarded), (10, 10));
    assert_eq!(a_quality.lost + a_quality.duplicate + a_quality.late, 0);
    assert!(stats.streams.iter().all(|q| q.session_id != 2), "B is gone");
}

#[tokio::test]
async fn reconnects_and_resyncs_by_control_plane_instance() {
    let mut h = start(SECRET).await;
    let control = h.next_attach().await;
    let (k1, issuer1) = key(1);
    control
        .send(snapshot(
            vec![k1.clone()],
            vec![member(1, "c1"), member(2, "c1")],
            "one",
        ))
        .await;
    h.attached_to("one").await;
    let (_a_ep, a) = join(h.quic, h.pin, &support::ticket(&issuer1, 1, 60), 1).await;
    let (_b_ep, b) = join(h.quic, h.pin, &support::ticket(&issuer1, 2, 60), 2).await;

    // The link drops; the data plane comes back by itself, offering the
    // channel it routes. The same instance no longer knows session 2.
    drop(control);
    within(
        "the link notices",
        h.state.wait_for(|s| *s == LinkState::Away),
    )
    .await
    .unwrap();
    talk(&a, 1, 0..5, &[&b]).await;
    let control = h.next_attach().await;
    assert_eq!(control.register.channels, ["c1"]);
    control
        .send(snapshot(vec![k1], vec![member(1, "c1")], "one"))
        .await;
    assert_eq!(
        close_code(&b).await,
        9,
        "a session that ended meanwhile goes"
    );

    // A restarted control plane (new instance, new key) knows nothing of
    // session 1, which is still connected: it keeps routing, and a new
    // session in its channel hears it.
    drop(control);
    let control = h.next_attach().await;
    assert_eq!(control.register.channels, ["c1"]);
    let (k2, issuer2) = key(2);
    control
        .send(snapshot(vec![k2], vec![member(5, "c1")], "two"))
        .await;
    h.attached_to("two").await;
    let (_d_ep, d) = join(h.quic, h.pin, &support::ticket(&issuer2, 5, 60), 5).await;
    talk(&a, 1, 5..15, &[&d]).await;

    // The snapshot's keys are the whole set: the old key is gone.
    let (_x_ep, x) = connect(h.quic, h.pin).await;
    assert_eq!(
        present(&x, &support::ticket(&issuer1, 7, 60)).await,
        Answer::Rejected(2, "unknown ticket key".into(), 2)
    );
    hears_nothing(&a).await;
}

#[tokio::test]
async fn a_refusing_control_plane_is_retried_with_backoff() {
    let mut h = start("not-the-secret").await;
    for attempt in 1..=3 {
        within(&format!("refused attempt {attempt}"), h.refused.recv())
            .await
            .unwrap();
    }
    assert_eq!(*h.state.borrow(), LinkState::Connecting);
    assert!(h.attached.try_recv().is_err());
}

#[tokio::test]
async fn a_data_plane_without_a_secret_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let control: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let error = Dataplane::bind(&config(dir.path(), control, None))
        .await
        .unwrap_err();
    assert!(matches!(error, StartError::NoSecret), "{error}");
    assert!(error.to_string().contains("cluster.secret"), "{error}");
}

#[tokio::test]
async fn a_configured_certificate_is_used_instead_of_a_generated_one() {
    let made = tempfile::tempdir().unwrap();
    let cert = openspeak_dataplane::DataplaneCert::load_or_generate(made.path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let control: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut config = config(dir.path(), control, Some(SECRET));
    config.dataplane.tls_cert = Some(made.path().join(openspeak_dataplane::CERT_FILE));
    config.dataplane.tls_key = Some(made.path().join(openspeak_dataplane::KEY_FILE));
    let dataplane = Dataplane::bind(&config).await.unwrap();
    assert_eq!(dataplane.cert_sha256(), cert.fingerprint());
    assert!(
        !dir.path().join(openspeak_dataplane::CERT_FILE).exists(),
        "nothing generated in the data directory"
    );
}
