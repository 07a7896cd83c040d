//! The data plane's side of the internal link, against a scripted control
//! plane on 127.0.0.1: what it registers, how it applies snapshots and
//! deltas, what it reports, and how it reconnects and resyncs, with real
//! QUIC voice clients checking the effect on routing.

mod support;

use std::net::SocketAddr;

use openspeak_dataplane::{Dataplane, LinkState, StartError};
use openspeak_shared::pb::cluster::{
    MemberRemoved, control_message::Kind, dataplane_message::Kind as Report,
};

use support::control::{SECRET, config, key, member, snapshot, start, update};
use support::{Answer, close_code, connect, hears_nothing, join, present, talk, within};

#[tokio::test]
async fn registers_follows_deltas_and_reports() {
    let mut h = start(SECRET).await;
    let (k, issuer) = key(11);
    let mut control = h.attach_one(k).await;
    let r = &control.register;
    assert!(r.dataplane_id.starts_with("dp-"), "{}", r.dataplane_id);
    assert_eq!(r.quic_endpoint, format!("127.0.0.1:{}", h.quic.port()));
    assert_eq!(r.cert_sha256, hex::encode(h.pin));
    assert_eq!(r.udp_endpoint, format!("127.0.0.1:{}", h.udp.port()));
    assert_ne!(h.udp.port(), h.quic.port());
    assert!(r.channels.is_empty());

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
    let (k1, issuer1) = key(1);
    let control = h.attach_one(k1.clone()).await;
    let (_a_ep, a) = join(h.quic, h.pin, &support::ticket(&issuer1, 1, 60), 1).await;
    let (_b_ep, b) = join(h.quic, h.pin, &support::ticket(&issuer1, 2, 60), 2).await;

    // The link drops; the data plane comes back by itself, offering the
    // channel it routes. The same instance no longer knows session 2.
    h.detach(control).await;
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

/// A control plane whose feed fell behind sends a fresh snapshot on the
/// same stream: it replaces the membership exactly as the first one does,
/// without the link going down. Before it, a burst of deltas far larger
/// than one batch applies in order.
#[tokio::test]
async fn a_snapshot_on_a_live_link_replaces_the_membership_and_bursts_of_deltas_apply_in_order() {
    let mut h = start(SECRET).await;
    let (k, issuer) = key(3);
    let mut control = h.attach_one(k.clone()).await;
    let (_a_ep, a) = join(h.quic, h.pin, &support::ticket(&issuer, 1, 60), 1).await;
    let (_b_ep, b) = join(h.quic, h.pin, &support::ticket(&issuer, 2, 60), 2).await;

    // Session 2 moves between c1 and c2 a thousand times, ending in c2.
    for i in 0..1_001 {
        let channel = if i % 2 == 0 { "c2" } else { "c1" };
        control.send(update(2, channel)).await;
    }
    // Session 3 comes after all of them, in c1: once it routes, the moves
    // before it have been applied.
    control.send(update(3, "c1")).await;
    control
        .report("stats that list session 3", |r| match r {
            Report::Stats(s) if s.streams.iter().any(|q| q.session_id == 3) => Some(()),
            _ => None,
        })
        .await;
    let (_c_ep, c) = join(h.quic, h.pin, &support::ticket(&issuer, 3, 60), 3).await;
    talk(&a, 1, 0..5, &[&c]).await;
    hears_nothing(&b).await;

    // The fresh snapshot lacks session 2 and 3 and brings session 5.
    control
        .send(snapshot(
            vec![k],
            vec![member(1, "c1"), member(5, "c1")],
            "one",
        ))
        .await;
    assert_eq!(close_code(&b).await, 9, "a session the snapshot lacks goes");
    assert_eq!(close_code(&c).await, 9);
    let (_d_ep, d) = join(h.quic, h.pin, &support::ticket(&issuer, 5, 60), 5).await;
    talk(&a, 1, 5..10, &[&d]).await;
    assert!(
        h.attached.try_recv().is_err(),
        "the data plane did not attach again"
    );
    assert_eq!(
        *h.state.borrow(),
        LinkState::Attached {
            instance: "one".into()
        }
    );
    drop(control);
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
