//! Whole-system tests: the real binaries (`openspeak-control`,
//! `openspeak-dataplane`, `openspeak-server`) as separate processes on
//! ephemeral loopback ports, driven through the client library as a real
//! client drives them: tokens, sessions, channels, `OpenVoice`, QUIC voice.
//!
//! They check what no single crate's tests can: that voice routes by the
//! membership the control plane sends over the internal link (moves and
//! deafening included), that voice outlives a control plane killed with
//! SIGKILL and a restarted one adopts it, that sessions and their calls
//! come back by themselves (new ids, same channel) when the control plane
//! is killed and restarted, that channels spread over two data planes,
//! that a call comes back by itself when its data plane is killed and
//! restarted (and so do the load generator's clients, over either
//! transport), that the one-process server works alone, and that a data
//! plane without its secret refuses to start.
//!
//! `cargo test --workspace` builds every binary first. With
//! `cargo test -p openspeak-server` alone, build them first with
//! `cargo build --workspace --bins` (or the control and data plane
//! binaries may be missing or stale).

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use openspeak_client::pb::{self, event::Event as Ev};
use openspeak_client::{
    Call, Client, GONE_AFTER, PresenceUpdate, Rejoin, ResumingSession, Session, SessionEvent,
    TokenLifetime, Transport, VoiceClient,
};
use support::{
    Control, DataplaneProcess, FRAME, Home, Process, Talker, WAIT, check_packet,
    dataplane_on_loopback, hear_all, hear_nothing, join, payload, within_for,
};
use tokio::sync::watch;

/// How long a test waits after the control plane acknowledged a change
/// (a move, a deafening) before checking its effect on voice. The data
/// plane learns of the change over the internal link, asynchronously,
/// and nothing a client can observe says when it has applied it.
const SETTLE: Duration = Duration::from_millis(250);

/// A session of a new member token (members are what most users are).
async fn member(admin: &Client, name: &str) -> Session {
    let (token, _) = admin
        .create_token(name, pb::Role::Member, TokenLifetime::Never)
        .await
        .unwrap_or_else(|e| panic!("cannot create a token for {name}: {e:?}"));
    let client = admin.with_token(&token).expect("a created token is usable");
    client
        .start_session(name)
        .await
        .unwrap_or_else(|e| panic!("{name} cannot start a session: {e:?}"))
}

/// A new channel, and members `a` and `b` in it.
async fn a_and_b_in_a_room(admin: &Client) -> (pb::Channel, Session, Session) {
    let room = admin.create_channel("Room").await.unwrap();
    let mut a = member(admin, "a").await;
    let mut b = member(admin, "b").await;
    join(&mut a, &room.id).await;
    join(&mut b, &room.id).await;
    (room, a, b)
}

/// Opens voice for `session`, checks that the grant names `expected` (a
/// data plane's QUIC endpoint and certificate) when given, and connects.
async fn open_voice(session: &Session, expected: Option<(&str, &str)>) -> VoiceClient {
    let grant = session
        .open_voice()
        .await
        .unwrap_or_else(|e| panic!("session {}: OpenVoice failed: {e:?}", session.id()));
    assert_eq!(grant.session_id, session.id());
    if let Some((quic, cert)) = expected {
        assert_eq!(grant.quic_endpoint, quic, "the grant names the data plane");
        assert_eq!(grant.cert_sha256, cert, "the grant pins its certificate");
    }
    let voice = within_for(WAIT, "the voice connection", grant.connect())
        .await
        .unwrap_or_else(|e| panic!("session {}: voice connect failed: {e:?}", session.id()));
    assert_eq!(voice.session_id(), session.id());
    voice
}

/// Sets `session`'s `self_deaf`, waits for its own presence to show it,
/// and then for the data plane to have heard of it too ([`SETTLE`]).
async fn set_deaf(session: &mut Session, deaf: bool) {
    session
        .update_presence(PresenceUpdate::new().self_deaf(deaf))
        .await
        .unwrap();
    let id = session.id();
    session
        .wait_for(
            |e| matches!(e, Ev::PresenceChanged(p) if p.user.as_ref().is_some_and(|u| u.session_id == id && u.self_deaf == deaf)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("session {id}: no presence_changed with self_deaf={deaf}: {e:?}"));
    tokio::time::sleep(SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_hear_a_speaker_until_one_moves_away_and_one_deafens() {
    let control = Control::start().await;
    let dataplane = DataplaneProcess::start(&control).await;
    let pin = Some((dataplane.quic.as_str(), dataplane.cert_sha256.as_str()));
    let admin = control.admin().await;
    let room = admin.create_channel("Room").await.unwrap();
    let elsewhere = admin.create_channel("Elsewhere").await.unwrap();

    let mut a = member(&admin, "a").await;
    let mut b = member(&admin, "b").await;
    let mut c = member(&admin, "c").await;
    for session in [&mut a, &mut b, &mut c] {
        join(session, &room.id).await;
    }
    let speaker = Talker::new(open_voice(&a, pin).await);
    let b_voice = open_voice(&b, pin).await;
    let c_voice = open_voice(&c, pin).await;
    let a_id = a.id();

    // Both listeners hear all 50 packets, in order, unchanged, as A's.
    tokio::join!(
        speaker.talk(50),
        hear_all(&b_voice, a_id, 0..50),
        hear_all(&c_voice, a_id, 0..50),
    );

    // B moves away: C still hears A (so A's packets are routed), B not.
    join(&mut b, &elsewhere.id).await;
    tokio::time::sleep(SETTLE).await;
    let probes = speaker.talk(10).await;
    hear_all(&c_voice, a_id, probes).await;
    hear_nothing(&b_voice, "B moved to another channel").await;

    // C deafens: nobody hears A any more.
    set_deaf(&mut c, true).await;
    speaker.talk(10).await;
    hear_nothing(&c_voice, "C is deafened").await;
    hear_nothing(&b_voice, "B is in another channel").await;

    // And hears again once undeafened: the silence was the deafening, not
    // a broken connection.
    set_deaf(&mut c, false).await;
    let again = speaker.talk(10).await;
    hear_all(&c_voice, a_id, again).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_outlives_a_killed_control_plane_and_a_restart_adopts_it() {
    let control = Control::start().await;
    let mut dataplane = DataplaneProcess::start(&control).await;
    let (quic, cert) = (dataplane.quic.clone(), dataplane.cert_sha256.clone());
    let pin = Some((quic.as_str(), cert.as_str()));
    let admin = control.admin().await;
    let (room, a, b) = a_and_b_in_a_room(&admin).await;
    let speaker = Talker::new(open_voice(&a, pin).await);
    let b_voice = open_voice(&b, pin).await;
    let (a_id, b_id) = (a.id(), b.id());
    let warm_up = speaker.talk(5).await;
    let window_start = warm_up.end;
    hear_all(&b_voice, a_id, warm_up).await;

    // SIGKILL: no goodbye on the link, no server_shutdown to anyone.
    let (status, killed) = control.kill9().await;
    assert!(!status.success(), "killed, not exited: {status:?}");
    dataplane
        .process
        .wait_for_log("lost the control plane")
        .await;
    // Their sessions died with the control plane; their voice did not.
    drop((a, b, admin));

    // A talks at 50 packets a second from now to the end of the test.
    // `sent`: one past the last sequence sent, for the window's end.
    let sent = Arc::new(AtomicU32::new(window_start));
    let (stop, mut stopped) = watch::channel(false);
    let talking = tokio::spawn({
        let sent = sent.clone();
        async move {
            let mut frames = tokio::time::interval(FRAME);
            // Bounded: the test stops it, and no test outlives a minute.
            for _ in 0..(60_000 / FRAME.as_millis()) {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = frames.tick() => {
                        let sequence = speaker.send_next();
                        sent.store(sequence + 1, Ordering::Release);
                    }
                }
            }
            speaker
        }
    });

    // For 10 s, B hears A: every packet, in order.
    let window = Duration::from_secs(10);
    let deadline = tokio::time::Instant::now() + window;
    let mut heard: Vec<u32> = Vec::new();
    while let Ok(packet) = tokio::time::timeout_at(deadline, b_voice.recv()).await {
        note_in_order(&mut heard, packet, a_id, b_id);
    }
    let window_end = sent.load(Ordering::Acquire);
    // Packets sent just before the deadline may still be on their way.
    let grace = tokio::time::Instant::now() + Duration::from_secs(1);
    while heard.last().is_none_or(|&last| last + 1 < window_end) {
        match tokio::time::timeout_at(grace, b_voice.recv()).await {
            Ok(packet) => note_in_order(&mut heard, packet, a_id, b_id),
            Err(_) => break,
        }
    }
    let expected = window_end - window_start;
    let in_window = heard
        .iter()
        .filter(|s| (window_start..window_end).contains(s))
        .count();
    // On the record, for whoever reads the test output.
    eprintln!(
        "while the control plane was down, B heard {in_window} of the {expected} packets A sent"
    );
    assert!(
        expected >= 450,
        "A sent only {expected} packets in {window:?} at 50 per second"
    );
    // Clean loopback: nothing may be lost, control plane or not.
    assert_eq!(
        in_window,
        expected as usize,
        "B heard {in_window} of the {expected} packets A sent while the control plane was \
         down\n{}",
        dataplane.process.recent()
    );

    // The control plane comes back on the same state and internal port;
    // the data plane reattaches on its own.
    let control = killed.restart().await;
    dataplane
        .process
        .wait_for_nth_log("attached to the control plane", 2)
        .await;
    let admin = control.admin().await;
    let channels = admin.list_channels().await.unwrap();
    assert!(
        channels.iter().any(|ch| ch.id == room.id),
        "channels persist across a restart: {channels:?}"
    );
    let mut d = admin.start_session("d").await.unwrap();
    assert!(
        d.id() != a_id && d.id() != b_id,
        "a session id the data plane still routes is not given again"
    );
    join(&mut d, &room.id).await;
    let d_voice = open_voice(&d, pin).await;

    // D hears A, who never stopped talking on the old connection.
    let first = within_for(WAIT, "D to hear A", d_voice.recv())
        .await
        .expect("D's voice connection stays up");
    check_packet(&first, a_id, first.sequence, d.id());
    let next = first.sequence + 1;
    hear_all(&d_voice, a_id, next..next + 25).await;

    let _ = stop.send(true);
    let speaker = within_for(WAIT, "A to stop talking", talking)
        .await
        .expect("the talking task does not panic");
    assert!(speaker.session_id() == a_id);
}

/// A resuming session of a new member token, in `channel`.
async fn resuming_member(admin: &Client, name: &str, channel: &str) -> ResumingSession {
    let (token, _) = admin
        .create_token(name, pb::Role::Member, TokenLifetime::Never)
        .await
        .unwrap_or_else(|e| panic!("cannot create a token for {name}: {e:?}"));
    let client = admin.with_token(&token).expect("a created token is usable");
    let mut session = client
        .start_resuming_session(name)
        .await
        .unwrap_or_else(|e| panic!("{name} cannot start a session: {e:?}"));
    session.join(channel, "").await.unwrap();
    openspeak_testkit::wait_joined(&mut session, channel).await;
    session
}

/// A task in which `call` sends a packet every frame, whatever happens,
/// each with `speaker`'s tagged payload, until true is sent on the
/// returned sender.
fn talk_until_stopped(
    call: Arc<Call>,
    speaker: u32,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let talking = tokio::spawn(async move {
        let mut frames = tokio::time::interval(FRAME);
        // Bounded: the test stops it, and no test outlives a minute.
        for sequence in 0..(60_000 / FRAME.as_millis() as u32) {
            tokio::select! {
                _ = stopped.changed() => break,
                _ = frames.tick() => {
                    let at = sequence * FRAME.as_millis() as u32;
                    call.send(sequence, at, payload(speaker, sequence)).unwrap();
                }
            }
        }
    });
    (stop, talking)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_their_calls_come_back_by_themselves_after_the_control_plane_is_killed() {
    let control = Control::start().await;
    let dataplane = DataplaneProcess::start(&control).await;
    let admin = control.admin().await;
    let room = admin.create_channel("Room").await.unwrap();
    let mut a = resuming_member(&admin, "a", &room.id).await;
    let mut b = resuming_member(&admin, "b", &room.id).await;
    let (old_a, old_b) = (a.id(), b.id());
    // A talks over QUIC, B listens over plain UDP: both transports follow.
    let a_call = Arc::new(
        Call::start(a.voice_opener(), Transport::Quic)
            .await
            .unwrap(),
    );
    let b_call = Call::start(b.voice_opener(), Transport::Udp).await.unwrap();

    // A talks at 50 packets a second, whatever happens, until stopped. The
    // payloads are tagged with A's first id, so that every packet can be
    // checked whole whichever id it arrives under.
    let (stop, talking) = talk_until_stopped(a_call.clone(), old_a);
    // The next packet B hears from `speaker`, while listening under
    // `listener` (any id: 0), checked whole.
    let hear = |speaker: u32, listener: u32, what: &'static str| {
        let b_call = &b_call;
        within_for(WAIT, what, async move {
            loop {
                let got = b_call.recv().await.expect("B's call goes on");
                if got.speaker == speaker && (listener == 0 || b_call.session_id() == listener) {
                    assert_eq!(got.payload, payload(old_a, got.sequence), "intact");
                    return got;
                }
            }
        })
    };
    hear(old_a, 0, "A's voice before the kill").await;

    // SIGKILL: no server_shutdown, no goodbye; the sessions' streams
    // break, and each says it is coming back.
    let killed = Instant::now();
    let (status, dead) = control.kill9().await;
    assert!(!status.success());
    for session in [&mut a, &mut b] {
        let id = session.id();
        session
            .wait_for(|e| matches!(e, SessionEvent::Reconnecting { .. }), WAIT)
            .await
            .unwrap_or_else(|e| panic!("session {id} does not notice the kill: {e:?}"));
    }
    let noticed = killed.elapsed();
    // Voice goes on meanwhile, under the old ids: a second of it (50
    // packets), during which the sessions' attempts to come back fail.
    for _ in 0..50 {
        hear(old_a, 0, "A's voice while the control plane is down").await;
    }
    let down = killed.elapsed();

    // Back on the same state, public port and internal port.
    let control = dead.restart_on_its_port().await;
    let restarted = Instant::now();
    let (resumed_a, resumed_b) = tokio::join!(a.wait_resumed(WAIT), b.wait_resumed(WAIT));
    let (resumed_a, resumed_b) = (
        resumed_a.expect("A comes back by itself"),
        resumed_b.expect("B comes back by itself"),
    );
    let sessions_back = restarted.elapsed();
    let (new_a, new_b) = (a.id(), b.id());
    assert_eq!(
        (resumed_a.previous_id, resumed_b.previous_id),
        (old_a, old_b)
    );
    assert_eq!(
        (resumed_a.session_id(), resumed_b.session_id()),
        (new_a, new_b)
    );
    for (name, new, old) in [("A", new_a, old_a), ("B", new_b, old_b)] {
        assert!(
            new != old_a && new != old_b,
            "{name}: a new id, not {old}: ids are not reused"
        );
    }
    for resumed in [&resumed_a, &resumed_b] {
        assert!(
            matches!(&resumed.channel, Rejoin::Rejoined(ch) if ch.id == room.id),
            "back in the room: {:?}",
            resumed.channel
        );
    }

    // As an admin sees it: the room is still there, with A and B under
    // their new ids.
    let admin = control.admin().await;
    let channels = admin.list_channels().await.unwrap();
    assert!(channels.iter().any(|ch| ch.id == room.id), "{channels:?}");
    let members: BTreeSet<u32> = admin
        .list_channel_members(&room.id)
        .await
        .unwrap()
        .iter()
        .map(|u| u.session_id)
        .collect();
    assert_eq!(members, BTreeSet::from([new_a, new_b]));

    // B hears A under A's new id, on B's new connection: both calls
    // followed their sessions.
    let heard = hear(new_a, new_b, "A's voice under its new id").await;
    let voice_back = restarted.elapsed();
    eprintln!(
        "the sessions noticed the kill after {noticed:?}; the control plane was down for \
         {down:?}; after the restart the sessions were back in {sessions_back:?} (attempts: A \
         {}, B {}) and B heard A (packet {}) under its new id in {voice_back:?}",
        resumed_a.attempts, resumed_b.attempts, heard.sequence
    );
    assert!(
        voice_back <= Duration::from_secs(8),
        "voice under the new ids {voice_back:?} after the restart\n{}\n{}",
        control.process.recent(),
        dataplane.process.recent()
    );
    assert_eq!(a_call.session_id(), new_a);
    assert!(a_call.switches() >= 1 && b_call.switches() >= 1);
    let _ = stop.send(true);
    talking.await.unwrap();
}

/// Checks that `packet` (as `listener` received it) is `speaker`'s, intact
/// and later than every packet in `heard`, and adds it there.
#[track_caller]
fn note_in_order(
    heard: &mut Vec<u32>,
    packet: Result<openspeak_client::Forwarded, openspeak_client::VoiceError>,
    speaker: u32,
    listener: u32,
) {
    let packet = packet
        .unwrap_or_else(|e| panic!("listener {listener}: the voice connection dropped: {e:?}"));
    check_packet(&packet, speaker, packet.sequence, listener);
    if let Some(&last) = heard.last() {
        assert!(
            packet.sequence > last,
            "listener {listener} heard packet {} after {last}: out of order",
            packet.sequence
        );
    }
    heard.push(packet.sequence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_come_back_by_themselves_when_their_data_plane_is_killed_and_restarted() {
    let control = Control::start().await;
    let mut dataplane = DataplaneProcess::start(&control).await;
    let admin = control.admin().await;
    let (_, a, b) = a_and_b_in_a_room(&admin).await;
    // One call over each transport: A talks over QUIC, B listens over UDP.
    let a_call = Arc::new(
        Call::start(a.voice_opener(), Transport::Quic)
            .await
            .unwrap(),
    );
    let b_call = Call::start(b.voice_opener(), Transport::Udp).await.unwrap();
    let a_id = a.id();

    // A talks at 50 packets a second, whatever happens, until stopped.
    let (stop, talking) = talk_until_stopped(a_call.clone(), a_id);
    // The next packet of A's that B hears, and when.
    let hear_a = |what: &'static str| {
        let b_call = &b_call;
        within_for(WAIT, what, async move {
            loop {
                let got = b_call.recv().await.expect("the call goes on");
                if got.speaker == a_id {
                    return (got, Instant::now());
                }
            }
        })
    };
    let (before, _) = hear_a("A's voice before the kill").await;

    // SIGKILL: no close to anyone. Both calls notice by the silence
    // (within GONE_AFTER) and keep asking for voice meanwhile.
    let killed = Instant::now();
    let DataplaneProcess {
        mut process, home, ..
    } = dataplane;
    assert!(!process.kill9().await.success());
    within_for(WAIT, "both calls to notice", async {
        tokio::join!(a_call.wait_connected(false), b_call.wait_connected(false))
    })
    .await;
    let noticed = killed.elapsed();
    assert!(
        noticed <= GONE_AFTER + Duration::from_secs(1),
        "noticed after {noticed:?}"
    );

    // The same data plane back (same id and certificate, new ports): voice
    // is back within 2 s of it attaching, with no help from the caller.
    dataplane = DataplaneProcess::start_in(&control, home).await;
    let attached = Instant::now();
    let (after, heard_at) = loop {
        let (got, at) = hear_a("A's voice after the restart").await;
        if got.sequence > before.sequence {
            break (got, at);
        }
    };
    let back = heard_at - attached;
    assert!(
        back <= Duration::from_secs(2),
        "voice back {back:?} after the data plane attached\n{}",
        dataplane.process.recent()
    );
    eprintln!("the calls noticed after {noticed:?}; voice was back {back:?} after the restart");
    check_packet(&after, a_id, after.sequence, b.id());
    assert!(a_call.reconnects() >= 1 && b_call.reconnects() >= 1);
    let _ = stop.send(true);
    talking.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_spread_over_two_data_planes_and_each_routes_its_own() {
    let control = Control::start().await;
    let first = DataplaneProcess::start(&control).await;
    let second = DataplaneProcess::start(&control).await;
    assert_ne!(first.id, second.id, "separate data dirs, separate ids");
    assert_ne!(first.quic, second.quic);
    let admin = control.admin().await;

    let mut pairs = Vec::new();
    for i in 0..4 {
        let channel = admin.create_channel(&format!("Room {i}")).await.unwrap();
        let mut speaker = member(&admin, &format!("speaker {i}")).await;
        let mut listener = member(&admin, &format!("listener {i}")).await;
        join(&mut speaker, &channel.id).await;
        join(&mut listener, &channel.id).await;
        pairs.push((speaker, listener));
    }

    let mut endpoints = BTreeSet::new();
    let mut voices = Vec::new();
    for (speaker, listener) in &pairs {
        let s = speaker.open_voice().await.unwrap();
        let l = listener.open_voice().await.unwrap();
        assert_eq!(
            (&s.quic_endpoint, &s.cert_sha256),
            (&l.quic_endpoint, &l.cert_sha256),
            "both members of a channel go to the same data plane"
        );
        let plane = [&first, &second]
            .into_iter()
            .find(|p| p.quic == s.quic_endpoint)
            .unwrap_or_else(|| panic!("{} is not a data plane's endpoint", s.quic_endpoint));
        assert_eq!(s.cert_sha256, plane.cert_sha256);
        endpoints.insert(s.quic_endpoint.clone());
        let talker = within_for(WAIT, "the speaker's voice", s.connect())
            .await
            .unwrap();
        let ear = within_for(WAIT, "the listener's voice", l.connect())
            .await
            .unwrap();
        voices.push((Talker::new(talker), ear));
    }
    assert_eq!(
        endpoints,
        BTreeSet::from([first.quic.clone(), second.quic.clone()]),
        "channels are placed on the least loaded data plane, so both get some"
    );

    // Every channel at once: each listener hears its own speaker only.
    futures::future::join_all(voices.iter().map(|(talker, ear)| async move {
        let speaker = talker.session_id();
        let (sent, ()) = tokio::join!(talker.talk(20), hear_all(ear, speaker, 0..20));
        assert_eq!(sent, 0..20);
        hear_nothing(ear, "every other speaker is in another channel").await;
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openspeak_server_alone_serves_voice_and_exits_zero_on_sigterm() {
    let home = Home::new();
    let mut env = dataplane_on_loopback();
    env.extend([
        ("OPENSPEAK_SERVER__HOST", "127.0.0.1".to_owned()),
        ("OPENSPEAK_SERVER__PORT", "0".to_owned()),
        ("OPENSPEAK_CLUSTER__LISTEN", "127.0.0.1:0".to_owned()),
    ]);
    let mut server = Process::spawn("openspeak-server", &home, &env);
    // The token is printed on stderr (a plain line), never logged.
    let token_line = server.wait_for_log("admin token:").await;
    assert!(
        token_line.json.is_none(),
        "not a log line: {}",
        token_line.raw
    );
    let token = token_line
        .raw
        .split("admin token:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the token follows `admin token:`: {}", token_line.raw))
        .to_owned();
    let ready = server.wait_for_log("openspeak-server ready").await;
    let (grpc, quic, udp, cert) = (
        ready.field("grpc"),
        ready.field("voice_quic"),
        ready.field("voice_udp"),
        ready.field("cert_sha256"),
    );
    assert_ne!(udp, quic, "plain UDP has a port of its own");
    assert!(
        cert.len() == 64
            && cert
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "the fingerprint is 64 lowercase hex digits: {cert}"
    );
    // `ready` comes before the in-process link is up.
    server.wait_for_log("attached to the control plane").await;

    let client = within_for(
        WAIT,
        "a connection",
        Client::connect(&format!("http://{grpc}"), &token),
    )
    .await
    .unwrap_or_else(|e| panic!("the logged token and address work: {e:?}"));
    let mut a = client.start_session("a").await.unwrap();
    let mut b = client.start_session("b").await.unwrap();
    // New sessions start in the default channel: already together.
    let lobby = |s: &Session| {
        s.started()
            .users
            .iter()
            .find(|u| u.session_id == s.id())
            .map(|u| u.channel_id.clone())
            .expect("session_started lists the session itself")
    };
    assert_eq!(lobby(&a), lobby(&b));
    let pin = Some((quic.as_str(), cert.as_str()));
    let a_voice = Talker::new(open_voice(&a, pin).await);
    let b_voice = Talker::new(open_voice(&b, pin).await);
    let (a_id, b_id) = (a.id(), b.id());
    tokio::join!(
        async {
            let sent = a_voice.talk(20).await;
            assert_eq!(sent, 0..20);
        },
        async {
            let sent = b_voice.talk(20).await;
            assert_eq!(sent, 0..20);
        },
        hear_all(&b_voice.voice, a_id, 0..20),
        hear_all(&a_voice.voice, b_id, 0..20),
    );

    // A third client over plain UDP, in the same channel: it hears A (a
    // QUIC client), and A hears it.
    let c = client.start_session("c").await.unwrap();
    let grant = c.open_voice().await.unwrap();
    assert_eq!(
        grant.udp_endpoint, udp,
        "the grant names the plain-UDP endpoint"
    );
    let c_voice = within_for(WAIT, "plain-UDP voice", grant.connect_udp())
        .await
        .unwrap_or_else(|e| panic!("plain-UDP connect failed: {e:?}"));
    assert_eq!(c_voice.session_id(), c.id());
    // The data plane knows where C is once its first ping (sent by
    // `connect_udp`) is answered.
    within_for(WAIT, "the first pong", async {
        while c_voice.rtt().is_none() {
            let _ = tokio::time::timeout(FRAME, c_voice.recv()).await;
            c_voice.ping().unwrap();
        }
    })
    .await;
    let (sent, ()) = tokio::join!(a_voice.talk(10), hear_all(&b_voice.voice, a_id, 20..30));
    for sequence in sent {
        let packet = within_for(WAIT, "A's voice over plain UDP", c_voice.recv())
            .await
            .unwrap_or_else(|e| panic!("C's plain-UDP voice failed: {e:?}"));
        check_packet(&packet, a_id, sequence, c.id());
    }
    for sequence in 0..10 {
        c_voice
            .send(sequence, sequence * 20, payload(c.id(), sequence))
            .unwrap();
    }
    hear_all(&a_voice.voice, c.id(), 0..10).await;

    // SIGTERM: sessions hear server_shutdown and hang up; exit status 0.
    server.signal(libc::SIGTERM);
    for session in [&mut a, &mut b] {
        session
            .wait_for(|e| matches!(e, Ev::ServerShutdown(_)), WAIT)
            .await
            .unwrap_or_else(|e| panic!("no server_shutdown: {e:?}\n{}", server.recent()));
    }
    drop((a, b, c, client, a_voice, b_voice, c_voice));
    let status = server.wait_exit().await;
    assert!(
        status.success(),
        "exit status {status:?} after SIGTERM\n{}",
        server.recent()
    );
    assert_eq!(
        server.count("admin token:"),
        1,
        "the admin token is printed once"
    );
    assert_eq!(
        server.count("created the first admin token"),
        1,
        "and logged without itself"
    );
    assert_eq!(server.count(&token), 1, "only the printed line has it");
}

#[tokio::test]
async fn a_data_plane_without_the_cluster_secret_refuses_to_start() {
    let home = Home::new();
    let mut env = dataplane_on_loopback();
    env.push((
        "OPENSPEAK_CLUSTER__CONTROL_ADDR",
        "http://127.0.0.1:9".to_owned(),
    ));
    let started = Instant::now();
    let mut process = Process::spawn("openspeak-dataplane", &home, &env);
    let status = process.wait_exit().await;
    assert!(
        !status.success(),
        "it must not run without a secret\n{}",
        process.output()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it fails at once, not after trying to attach ({:?})",
        started.elapsed()
    );
    assert!(
        process.output().contains("cluster.secret"),
        "the message names cluster.secret:\n{}",
        process.output()
    );
}

/// The data plane's count of datagrams forwarded to listeners.
async fn forwarded(dataplane: &DataplaneProcess) -> u64 {
    let addr = dataplane.metrics.parse().expect("a socket address");
    let reply = openspeak_testkit::http::get(addr, "/metrics").await;
    reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix("openspeak_dataplane_datagrams_forwarded_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The load generator's voice scenario while its data plane is killed and
/// restarted: each client notices the silence, asks for voice again and
/// goes on, with no help; after the outage every packet arrives again.
async fn load_generator_voice_comes_back(transport: openspeak_loadtest::Transport) {
    use openspeak_loadtest::{VoicePlan, run_voice};

    let control = Control::start().await;
    let dataplane = DataplaneProcess::start(&control).await;
    // `VoicePlan::new` takes `host:port`, what `--addr` is once parsed.
    let server = control.url.trim_start_matches("http://");
    let mut plan = VoicePlan::new(server, &control.token);
    (plan.clients, plan.channels, plan.speakers) = (6, 1, 1);
    plan.duration = Duration::from_secs(12);
    plan.timeline = Some(Duration::from_secs(1));
    plan.transport = transport;
    plan.seed = 7;
    plan.run.quiet = true;
    plan.setup_timeout = Duration::from_secs(20);
    let mut run = tokio::spawn(async move {
        let (_interrupt, never) = watch::channel(false);
        run_voice(&plan, never).await
    });

    // Voice flowing, then SIGKILL: no close to anyone.
    within_for(WAIT, "voice to flow", async {
        while forwarded(&dataplane).await < 200 {
            if run.is_finished() {
                let ended = (&mut run).await.expect("the run task");
                panic!("the run ended before voice flowed: {ended:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let DataplaneProcess {
        mut process, home, ..
    } = dataplane;
    assert!(!process.kill9().await.success());
    // The same data plane back at once (same id and certificate, new
    // ports): the clients find it when they notice the silence.
    let dataplane = DataplaneProcess::start_in(&control, home).await;

    let report = within_for(Duration::from_secs(60), "the run to end", run)
        .await
        .expect("the run task")
        .expect("the run starts");
    let table = report.table();
    let o = report.outages;
    assert_eq!(
        (o.lost, o.back),
        (6, 6),
        "every client lost voice once and got it back\n{table}"
    );
    assert!(
        o.longest_ms <= 2_000.0,
        "voice back {} ms after the loss was noticed\n{table}",
        o.longest_ms
    );
    // After the outage (3 s of silence to notice it, then the reconnect)
    // the last rows deliver every packet owed again.
    let rows = &report.timeline;
    assert!(rows.len() >= 10, "{table}");
    for row in &rows[rows.len() - 4..] {
        let c = &row.counts;
        assert!(
            c.expected > 0 && c.delivered == c.expected && c.lost == 0,
            "the row at {} s: {c:?}\n{table}\n{}",
            row.t_s,
            dataplane.process.recent()
        );
    }
    assert!(
        report.delivery.lost > 0,
        "the outage shows as loss\n{table}"
    );
    eprintln!(
        "{transport:?}: voice back {:.0} ms after the loss was noticed; {} of {} packets lost",
        o.longest_ms, report.delivery.lost, report.delivery.expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_quic_voice_comes_back_after_its_data_plane_is_killed() {
    load_generator_voice_comes_back(openspeak_loadtest::Transport::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_udp_voice_comes_back_after_its_data_plane_is_killed() {
    load_generator_voice_comes_back(openspeak_loadtest::Transport::Udp).await;
}
