//! One simulated client: the tokio driver around an [`Observer`].
//!
//! A client is two tasks. The actor connects, waits for `session_started`,
//! joins its channel and sets its presence to away and back to online. The
//! reader, started as soon as the session exists, reads the event stream
//! without pause (an event read late would look slow) and hands each event
//! to the observer. The reader ends its stream, and with it the session,
//! when the run's close signal fires.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;
use openspeak_shared::pb;
use openspeak_shared::pb::channel_service_client::ChannelServiceClient;
use openspeak_shared::pb::presence_service_client::PresenceServiceClient;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tonic::Streaming;

use crate::common::credentials::ClientTokens;
use crate::common::pool::Pool;
use crate::common::stats::{micros_between, new_histogram, record_all};
use crate::common::tally::{ErrorKind, FailureLog, Failures, Step};
use crate::common::task::lock;
use crate::sessions::counters::Counters;
use crate::sessions::observer::Observer;
use crate::sessions::registry::{ReaderState, Registry};

/// Delays an observer buffers before merging them into the shared
/// histograms: large enough that the lock is rare, small enough to be cheap.
const DELAY_BATCH: usize = 256;

/// The run's histograms, merged into by every client.
#[derive(Debug)]
pub struct Histograms {
    /// Event delay from the join's response (µs).
    pub event_delay: Histogram<u64>,
    /// Event delay from the join's request (µs).
    pub event_delay_from_request: Histogram<u64>,
    /// `Connect` sent to `session_started` received (µs).
    pub connect: Histogram<u64>,
    /// `JoinChannel` round trip (µs).
    pub join: Histogram<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            event_delay: new_histogram(),
            event_delay_from_request: new_histogram(),
            connect: new_histogram(),
            join: new_histogram(),
        }
    }
}

/// How a reader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderEnd {
    /// The tool closed the stream: the session lasted the whole run.
    Closed,
    /// The stream broke or the server ended it early.
    Failed,
}

/// What every client task shares.
#[derive(Debug)]
pub struct Shared {
    /// Who is who, and the facts clients publish for each other.
    pub registry: Registry,
    /// The connections.
    pub pool: Pool,
    /// The clients' tokens.
    pub tokens: ClientTokens,
    /// Bounds the clients connecting and joining at once.
    pub ramp: Arc<Semaphore>,
    /// For the progress line, and the run's failures.
    pub counters: Arc<Counters>,
    /// Latencies.
    pub histograms: Mutex<Histograms>,
    /// The readers, to collect their observers at the end. Pushed by the
    /// actor right after spawning, so a timed-out (aborted) actor does not
    /// lose its reader.
    pub readers: Mutex<Vec<JoinHandle<(Observer, ReaderEnd)>>>,
    /// Turns true when all sessions must end.
    pub close: watch::Receiver<bool>,
}

impl Failures for Shared {
    fn failures(&self) -> &FailureLog {
        &self.counters.failures
    }
}

impl Shared {
    /// Merges an observer's buffered delays into the histograms.
    pub fn merge_delays(&self, observer: &mut Observer) {
        let delays = observer.take_delays();
        let mut h = lock(&self.histograms);
        record_all(&mut h.event_delay, &delays.from_response);
        record_all(&mut h.event_delay_from_request, &delays.from_request);
    }
}

/// Runs client `index`'s actor to the end of its actions.
pub async fn run_client(index: usize, shared: Arc<Shared>) {
    let Ok(permit) = shared.ramp.clone().acquire_owned().await else {
        return; // The semaphore is closed: the run is over.
    };
    let channel = shared.pool.for_client(index);
    let mut presence = PresenceServiceClient::new(channel.clone());
    let mut channels = ChannelServiceClient::new(channel);
    let slot = shared.registry.slot(index);

    let sent = Instant::now();
    let _ = slot.connect_sent.set(sent);
    let connect = shared.tokens.for_client(index).request(pb::ConnectRequest {
        display_name: format!("load-{index}"),
    });
    let mut stream = match presence.connect(connect).await {
        Ok(resp) => resp.into_inner(),
        Err(status) => return shared.fail_status(Step::Connect, &status),
    };
    let first = match stream.message().await {
        Ok(Some(event)) => event,
        Ok(None) => {
            return shared.fail(
                Step::SessionStarted,
                &ErrorKind::stream_ended(),
                "no first event",
            );
        }
        Err(status) => return shared.fail_status(Step::SessionStarted, &status),
    };
    let now = Instant::now();
    let observer = match Observer::start(index, now, &first, &shared.registry) {
        Ok(o) => o,
        Err(e) => return shared.fail(Step::SessionStarted, &ErrorKind::protocol(), &e.to_string()),
    };
    let session_id = observer.session_id();
    record_all(
        &mut lock(&shared.histograms).connect,
        &[micros_between(sent, now)],
    );
    slot.set_reader(ReaderState::Running);
    shared.counters.sessions_up.fetch_add(1, Ordering::Relaxed);
    let reader = tokio::spawn(read_events(index, stream, observer, shared.clone()));
    lock(&shared.readers).push(reader);

    let join = shared.tokens.for_client(index).session_request(
        session_id,
        pb::JoinChannelRequest {
            channel_id: shared.registry.channel_of(index).to_owned(),
            password: String::new(),
        },
    );
    // Set before the request leaves, so no event of this join can be seen
    // before it is.
    let sent = Instant::now();
    let _ = slot.join_sent.set(sent);
    let result = channels.join_channel(join).await;
    let done = Instant::now();
    match result {
        Ok(_) => {
            let _ = slot.join_done.set(done);
            shared.counters.joined.fetch_add(1, Ordering::Relaxed);
            record_all(
                &mut lock(&shared.histograms).join,
                &[micros_between(sent, done)],
            );
        }
        Err(status) => return shared.fail_status(Step::Join, &status),
    }
    drop(permit);

    for status in [pb::Status::Away, pb::Status::Online] {
        let update = shared.tokens.for_client(index).session_request(
            session_id,
            pb::UpdatePresenceRequest {
                status: Some(status as i32),
                ..Default::default()
            },
        );
        if let Err(status) = presence.update_presence(update).await {
            return shared.fail_status(Step::Presence, &status);
        }
    }
    slot.acted.store(true, Ordering::Release);
}

/// Reads client `index`'s events until the close signal or the stream's end.
async fn read_events(
    index: usize,
    mut stream: Streaming<pb::Event>,
    mut observer: Observer,
    shared: Arc<Shared>,
) -> (Observer, ReaderEnd) {
    let mut close = shared.close.clone();
    // Made once, not per event: at millions of events a run, re-arming the
    // watch for every message cost more than decoding it.
    let closed = close.wait_for(|c| *c);
    tokio::pin!(closed);
    let end = loop {
        tokio::select! {
            biased;
            // An error means the sender is gone, which also means "close".
            _ = &mut closed => break ReaderEnd::Closed,
            next = stream.message() => {
                let now = Instant::now();
                match next {
                    Ok(Some(event)) => {
                        observer.handle_event(now, &event, &shared.registry);
                        shared.counters.events.fetch_add(1, Ordering::Relaxed);
                        if observer.buffered_delays() >= DELAY_BATCH {
                            shared.merge_delays(&mut observer);
                        }
                    }
                    Ok(None) => {
                        let kind = match observer.ended_by_server() {
                            Some(why) => ErrorKind::named(why),
                            None => ErrorKind::stream_ended(),
                        };
                        shared.fail(Step::Stream, &kind, "the server ended the stream");
                        break ReaderEnd::Failed;
                    }
                    Err(status) => {
                        shared.fail_status(Step::Stream, &status);
                        break ReaderEnd::Failed;
                    }
                }
            }
        }
    };
    // Dropping the stream resets it, which ends the session on the server.
    drop(stream);
    let slot = shared.registry.slot(index);
    slot.set_reader(match end {
        ReaderEnd::Closed => ReaderState::Closed,
        ReaderEnd::Failed => ReaderState::Failed,
    });
    shared.counters.sessions_up.fetch_sub(1, Ordering::Relaxed);
    shared.merge_delays(&mut observer);
    (observer, end)
}
