//! Many sessions at once over several HTTP/2 connections: after they all
//! connect, join, move and leave concurrently, the server's state is what
//! the clients did, and every session saw the same events in one order.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Instant,
};

use openspeak_client::{Client, PresenceUpdate, Session, TokenLifetime, pb};
use pb::event::Event as Ev;
use support::{ClientExt, Model, TestServer, is_channel_created, within};
use tokio::{
    sync::{Barrier, mpsc},
    task::JoinHandle,
};

const SESSIONS: usize = 200;
const CHANNELS: usize = 5;
const CONNECTIONS: usize = 8;
/// Member tokens the sessions share: eight sessions each, within the
/// default `auth.max_sessions_per_token`.
const TOKENS: usize = 25;
const MARKER: &str = "everyone is done";
/// A bound on the events one stream may carry in this test.
const MAX_EVENTS: usize = 1_000_000;

/// Reads a session's stream until the marker channel is announced; sends
/// each event to `tap` as well, when given. Returns the events and the
/// session, which must stay open to go on. (The test checks the sequence
/// numbers itself, across sessions, so this reads the library's session.)
async fn read_until_marker(
    mut session: Session,
    tap: Option<mpsc::UnboundedSender<pb::Event>>,
) -> (Vec<pb::Event>, Session) {
    let mut events = Vec::new();
    for _ in 0..MAX_EVENTS {
        match session.next_event().await {
            Ok(event) => {
                if let Some(tap) = &tap {
                    let _ = tap.send(event.clone());
                }
                let done = event
                    .event
                    .as_ref()
                    .is_some_and(|e| is_channel_created(e, MARKER));
                events.push(event);
                if done {
                    return (events, session);
                }
            }
            Err(error) => panic!("the stream ended before the marker: {error:?}"),
        }
    }
    panic!("no marker within {MAX_EVENTS} events")
}

/// What one simulated client did, and what it saw.
struct Outcome {
    id: u32,
    /// `None`: its session ended before the end of the test.
    stayed: Option<Stayed>,
}

struct Stayed {
    /// Where it should be at the end ("" = in no channel).
    channel: String,
    started: pb::SessionStarted,
    started_seq: u64,
    reader: JoinHandle<(Vec<pb::Event>, Session)>,
}

/// One client: connect, join a channel, move to another, then maybe leave,
/// get moved by an admin, or hang up. Its events are read once it is done:
/// the library's session takes calls and reads events through one handle,
/// and the server queues events meanwhile.
async fn run_client(
    i: usize,
    client: Client,
    admin: Client,
    channels: Arc<Vec<String>>,
    barrier: Arc<Barrier>,
) -> Outcome {
    barrier.wait().await;
    let session = client
        .start_session(&format!("user {i}"))
        .await
        .expect("Connect");
    let first = &channels[i % CHANNELS];
    let second = &channels[(i + 1) % CHANNELS];
    let third = &channels[(i + 3) % CHANNELS];

    session.join(first, "").await.expect("JoinChannel");
    session
        .join(second, "")
        .await
        .expect("JoinChannel (a move)");
    if i.is_multiple_of(3) {
        session
            .update_presence(
                PresenceUpdate::new()
                    .status(pb::Status::Away)
                    .status_text(format!("away {i}"))
                    .self_mute(true),
            )
            .await
            .expect("UpdatePresence");
    }
    let mut channel = second.clone();
    if i.is_multiple_of(4) {
        session.leave().await.expect("LeaveChannel");
        channel.clear();
    } else if i % 5 == 1 {
        admin
            .move_member(session.id(), third)
            .await
            .expect("MoveMember");
        channel = third.clone();
    }
    let id = session.id();
    if i % 10 == 3 {
        // Hang up: the stream goes, and with it the session.
        drop(session);
        return Outcome { id, stayed: None };
    }
    Outcome {
        id,
        stayed: Some(Stayed {
            channel,
            started: session.started().clone(),
            started_seq: session.started_sequence(),
            reader: tokio::spawn(read_until_marker(session, None)),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_sessions_at_once_leave_a_consistent_state() {
    let t0 = Instant::now();
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let mut channels = Vec::new();
    for c in 0..CHANNELS {
        channels.push(admin.create_channel(&format!("Room {c}")).await.unwrap().id);
    }
    let channels = Arc::new(channels);
    let mut tokens = Vec::new();
    for t in 0..TOKENS {
        tokens.push(
            admin
                .create_token(
                    &format!("crowd {t}"),
                    pb::Role::Member,
                    TokenLifetime::ServerDefault,
                )
                .await
                .unwrap()
                .0,
        );
    }
    // One admin client per connection; the crowd's clients share them.
    let mut connections: Vec<Client> = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(server.admin().await);
    }

    // The observer sees everything from before the first client on.
    let observer = admin.start_session("observer").await.expect("Connect");
    let (observer_id, observer_seq) = (observer.id(), observer.started_sequence());
    let observer_started = observer.started().clone();
    let lobby = observer_started.channels[0].id.clone();
    let (tap, mut tapped) = mpsc::unbounded_channel();
    let observer_reader = tokio::spawn(read_until_marker(observer, Some(tap)));

    let barrier = Arc::new(Barrier::new(SESSIONS));
    let clients: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let admin = connections[i % CONNECTIONS].clone();
            let client = admin.with_token(&tokens[i % TOKENS]).unwrap();
            tokio::spawn(run_client(
                i,
                client,
                admin,
                channels.clone(),
                barrier.clone(),
            ))
        })
        .collect();
    // Meanwhile an admin edits the channels the crowd moves through.
    let editor = {
        let admin = server.raw(&server.admin_token).await;
        let channels = channels.clone();
        tokio::spawn(async move {
            for round in 0..20 {
                let channel = &channels[round % CHANNELS];
                admin
                    .update_channel(pb::UpdateChannelRequest {
                        channel_id: channel.clone(),
                        description: Some(format!("round {round}")),
                        ..Default::default()
                    })
                    .await
                    .expect("UpdateChannel");
            }
        })
    };
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.push(
            within("a client to finish its moves", client)
                .await
                .expect("a client task does not panic"),
        );
    }
    within("the editor", editor)
        .await
        .expect("the editor does not panic");
    let acted = t0.elapsed();

    // Sessions that hung up are gone once the observer has seen them go.
    let mut gone: BTreeSet<u32> = outcomes
        .iter()
        .filter(|o| o.stayed.is_none())
        .map(|o| o.id)
        .collect();
    assert_eq!(gone.len(), SESSIONS / 10);
    within("user_offline of every hung-up session", async {
        while !gone.is_empty() {
            let event = tapped.recv().await.expect("the observer is reading");
            if let Some(Ev::UserOffline(u)) = event.event {
                gone.remove(&u.session_id);
            }
        }
    })
    .await;

    admin.create_channel(MARKER).await.unwrap();
    let (observed, _observer_stream) = within("the observer to see the marker", observer_reader)
        .await
        .expect("the observer's reader does not panic");
    // Every session that stayed sees the marker too; its stream stays open.
    let mut logs: Vec<(u32, u64, pb::SessionStarted, Vec<pb::Event>)> =
        vec![(observer_id, observer_seq, observer_started, observed)];
    let mut open_streams = Vec::new();
    let mut expected: BTreeMap<u32, String> = BTreeMap::new();
    expected.insert(observer_id, lobby.clone());
    for outcome in outcomes {
        if let Some(stayed) = outcome.stayed {
            let (events, stream) = within("a session to see the marker", stayed.reader)
                .await
                .expect("a reader does not panic");
            open_streams.push(stream);
            expected.insert(outcome.id, stayed.channel.clone());
            logs.push((outcome.id, stayed.started_seq, stayed.started, events));
        }
    }

    // The final state is what the clients did.
    let online: BTreeMap<u32, String> = admin
        .list_online()
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.session_id, u.channel_id))
        .collect();
    assert_eq!(online, expected, "ListOnline");
    let listed = admin.list_channels().await.unwrap();
    for channel in std::iter::once(&lobby).chain(channels.iter()) {
        let want: Vec<u32> = expected
            .iter()
            .filter(|(_, at)| *at == channel)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            admin.member_ids(channel).await,
            want,
            "members of {channel}"
        );
        let count = listed
            .iter()
            .find(|c| c.id == *channel)
            .unwrap()
            .member_count;
        assert_eq!(count as usize, want.len(), "member_count of {channel}");
    }

    // Every session that stayed saw the same numbered events, without a
    // gap, and can rebuild the final state from its snapshot and them.
    let server = Model::from_server(&admin).await;
    let mut reference: BTreeMap<u64, pb::Event> = BTreeMap::new();
    for (_, _, _, events) in &logs {
        for event in events {
            reference
                .entry(event.sequence)
                .or_insert_with(|| event.clone());
        }
    }
    let marker_seq = *reference.keys().next_back().unwrap();
    let total_events: usize = logs.iter().map(|l| l.3.len()).sum();
    for (id, started_seq, started, events) in &logs {
        let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "session {id}: sequence numbers strictly increase"
        );
        assert!(seqs.first().is_none_or(|&s| s > *started_seq));
        assert_eq!(
            seqs.last(),
            Some(&marker_seq),
            "session {id} ends at the marker"
        );
        let due: Vec<u64> = reference
            .range(started_seq + 1..=marker_seq)
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(
            seqs, due,
            "session {id} saw every event after its session_started"
        );
        for event in events {
            assert_eq!(
                &reference[&event.sequence], event,
                "session {id}: event {} is the same for everyone",
                event.sequence
            );
        }
        let mut model = Model::from_started(started);
        for event in events {
            model.apply(event.event.as_ref().unwrap());
        }
        assert_eq!(model, server, "session {id} rebuilds the server's state");
    }
    drop(open_streams);
    eprintln!(
        "{} sessions acted in {acted:?}; {} events, {total_events} deliveries checked in {:?}",
        SESSIONS,
        reference.len(),
        t0.elapsed()
    );
}
