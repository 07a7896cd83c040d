//! Faults on the internal link between a real control plane and a real
//! data plane (both in this process, on 127.0.0.1): the link runs through
//! a proxy that can cut it, delay it or silence it. Whatever happens to
//! membership while the link is down or slow, once it heals the data plane
//! routes by exactly the control plane's view: no session, channel, mute
//! or deafen diverges. A silent link (nothing closed) is noticed within
//! seconds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use openspeak_client::{Client, PresenceUpdate, Session};
use openspeak_control::ControlPlane;
use openspeak_dataplane::{ChannelKey, Handle, LinkState, SessionId};
use openspeak_testkit::{
    WAIT, random_secret, serve_attached_dataplane, spawn_serving, test_config, within,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// What the proxy does to the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Passes bytes through.
    None,
    /// Closes every connection and refuses new ones.
    Cut,
    /// Holds every chunk of bytes this long before passing it on.
    Delay(Duration),
    /// Passes nothing and closes nothing, like a host that vanished.
    Silent,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`, doing what `fault`
/// says, switched at any time.
async fn proxy(upstream: SocketAddr, fault: watch::Receiver<Fault>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            if *fault.borrow() == Fault::Cut {
                continue; // dropped: the dial fails at once
            }
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let (client_r, client_w) = client.into_split();
            let (server_r, server_w) = server.into_split();
            tokio::spawn(pipe(client_r, server_w, fault.clone()));
            tokio::spawn(pipe(server_r, client_w, fault.clone()));
        }
    });
    addr
}

/// Copies one direction until either side closes or the link is cut.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            _ = fault.wait_for(|f| *f == Fault::Cut) => return,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = match *fault.borrow() {
            Fault::Cut => return,
            Fault::Silent => continue,
            Fault::Delay(d) => d,
            Fault::None => Duration::ZERO,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

struct Planes {
    admin: Client,
    handle: Handle,
    state: watch::Receiver<LinkState>,
    fault: watch::Sender<Fault>,
    _dirs: (TempDir, TempDir),
    _stops: (oneshot::Sender<()>, oneshot::Sender<()>),
}

async fn start() -> Planes {
    let control_dir = tempfile::tempdir().unwrap();
    let admin_token = random_secret("admin");
    let secret = random_secret("cluster");
    let mut config = test_config(control_dir.path(), Some(&admin_token));
    config.cluster.secret = Some(secret.clone());
    let control = ControlPlane::bind(config).await.unwrap();
    let url = format!("http://{}", control.local_addr());
    let (fault, faults) = watch::channel(Fault::None);
    let via = proxy(control.cluster_addr(), faults).await;
    let (stop_control, _) = spawn_serving(|shutdown| control.serve(shutdown));

    let dataplane_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dataplane_dir.path(), None);
    config.cluster.secret = Some(secret);
    config.cluster.control_addr = format!("http://{via}");
    let dataplane = serve_attached_dataplane(config).await;
    let admin = within("the admin", Client::connect(&url, &admin_token))
        .await
        .unwrap();
    Planes {
        admin,
        handle: dataplane.handle,
        state: dataplane.state,
        fault,
        _dirs: (control_dir, dataplane_dir),
        _stops: (stop_control, dataplane.stop),
    }
}

/// Where a session is and whether it is muted or deafened.
type View = BTreeMap<u32, (Option<ChannelKey>, bool, bool)>;

/// A view of `(session, channel, muted, deafened)`. A session in no
/// channel and one the data plane does not hold route the same (not at
/// all), so both views leave such sessions out.
fn view(sessions: impl IntoIterator<Item = (u32, Option<ChannelKey>, bool, bool)>) -> View {
    sessions
        .into_iter()
        .filter(|(_, channel, ..)| channel.is_some())
        .map(|(session, channel, muted, deafened)| (session, (channel, muted, deafened)))
        .collect()
}

/// The control plane's view, from `ListOnline`.
async fn control_view(admin: &Client) -> View {
    let online = admin.list_online().await.unwrap();
    view(online.into_iter().map(|u| {
        let channel = (!u.channel_id.is_empty()).then(|| ChannelKey::from(u.channel_id.as_str()));
        (u.session_id, channel, u.self_mute, u.self_deaf)
    }))
}

/// The data plane's view, from its router.
async fn dataplane_view(handle: &Handle) -> View {
    let members = handle.members().await.unwrap();
    view(
        members
            .into_iter()
            .map(|(SessionId(s), m)| (s, m.channel, m.muted, m.deafened)),
    )
}

/// Waits (bounded) until both views agree; returns the agreed view.
async fn converged(planes: &Planes, when: &str) -> View {
    let mut last = (View::new(), View::new());
    let agreed = tokio::time::timeout(WAIT, async {
        loop {
            let control = control_view(&planes.admin).await;
            let data = dataplane_view(&planes.handle).await;
            if control == data {
                return control;
            }
            last = (control, data);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    agreed.unwrap_or_else(|_| {
        panic!(
            "{when}: the data plane's membership never matched the control plane's\n\
             control:    {:?}\ndata plane: {:?}",
            last.0, last.1
        )
    })
}

/// Ends the fault, waits (bounded) for the data plane to attach again by
/// itself, then for both views to agree; returns the agreed view.
async fn heal(planes: &mut Planes, when: &str) -> View {
    planes.fault.send_replace(Fault::None);
    within(
        "the data plane to reattach",
        planes
            .state
            .wait_for(|s| matches!(s, LinkState::Attached { .. })),
    )
    .await
    .unwrap();
    converged(planes, when).await
}

async fn join(session: &Session, channel: &str) {
    session.join(channel, "").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_converges_after_the_link_is_cut_and_after_it_is_slow() {
    let mut planes = start().await;
    let admin = planes.admin.clone();
    let red = admin.create_channel("Red").await.unwrap();
    let blue = admin.create_channel("Blue").await.unwrap();
    let mut sessions = Vec::new();
    for i in 0..6 {
        let session = admin.start_session(&format!("user{i}")).await.unwrap();
        join(&session, if i % 2 == 0 { &red.id } else { &blue.id }).await;
        sessions.push(session);
    }
    let first = converged(&planes, "before any fault").await;
    assert_eq!(first.len(), 6);

    // Cut: the data plane notices and keeps routing what it knows.
    planes.fault.send_replace(Fault::Cut);
    within(
        "the data plane to notice the cut",
        planes.state.wait_for(|s| *s == LinkState::Away),
    )
    .await
    .unwrap();
    // Meanwhile: a move, a leave, a deafen and a mute, an end, a newcomer.
    join(&sessions[0], &blue.id).await;
    sessions[1].leave().await.unwrap();
    sessions[2]
        .update_presence(PresenceUpdate::new().self_deaf(true).self_mute(true))
        .await
        .unwrap();
    let ended = sessions.remove(3);
    drop(ended);
    let newcomer = admin.start_session("newcomer").await.unwrap();
    join(&newcomer, &red.id).await;

    // Healed: the data plane reattaches on its own and catches up.
    let healed = heal(&mut planes, "after the cut healed").await;
    assert_ne!(healed, first, "the changes made while cut are there");
    assert!(!healed.contains_key(&sessions[1].id()), "left its channel");

    // Slow: 200 ms on every chunk both ways; changes go through late but
    // in order.
    planes
        .fault
        .send_replace(Fault::Delay(Duration::from_millis(200)));
    join(&sessions[0], &red.id).await;
    join(&sessions[1], &blue.id).await;
    sessions[2]
        .update_presence(PresenceUpdate::new().self_deaf(false))
        .await
        .unwrap();
    drop(newcomer);
    let slow = converged(&planes, "over the slow link").await;
    planes.fault.send_replace(Fault::None);
    assert_eq!(slow.len(), 5, "{slow:?}");
    assert!(
        matches!(planes.state.borrow().clone(), LinkState::Attached { .. }),
        "a slow link is not a lost one"
    );
}

/// A control plane that goes silent without closing anything (its host
/// vanished) is noticed by the link's keep-alive pings within seconds,
/// and the link comes back by itself once the network does.
#[tokio::test]
async fn a_silent_link_is_noticed_within_seconds() {
    let mut planes = start().await;
    let admin = planes.admin.clone();
    let red = admin.create_channel("Red").await.unwrap();
    let session = admin.start_session("user").await.unwrap();
    join(&session, &red.id).await;
    converged(&planes, "before the fault").await;

    planes.fault.send_replace(Fault::Silent);
    let silent_at = std::time::Instant::now();
    // A ping every 2 s, 5 s to answer: 7 s at most, and some slack.
    openspeak_testkit::within_for(
        Duration::from_secs(9),
        "the data plane to notice the silence",
        planes.state.wait_for(|s| *s == LinkState::Away),
    )
    .await
    .unwrap();
    let noticed = silent_at.elapsed();
    eprintln!("the silent link was noticed after {noticed:?}");
    assert!(
        noticed >= Duration::from_secs(2),
        "noticed by the pings, not by a closed connection: {noticed:?}"
    );

    // Meanwhile a move; after the network heals, the new link catches up.
    let blue = admin.create_channel("Blue").await.unwrap();
    join(&session, &blue.id).await;
    let healed = heal(&mut planes, "after the silence").await;
    assert_eq!(healed.len(), 1);
}
