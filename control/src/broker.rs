//! Shares the [`Hub`] between the RPC handlers and fans its events out.
//!
//! One `std::sync::Mutex` guards the hub: every operation is short, never
//! awaits, and must see and change the state as one step, so an async lock
//! would only add cost. Events are numbered and published while that lock
//! is held, which is what puts every session's events in one order.
//!
//! Publishing goes through one `tokio::sync::broadcast` channel: its ring
//! buffer is every subscriber's bounded queue at once (a subscriber may fall
//! `presence.event_queue` events behind, no more), an event is converted to
//! its wire form once however many sessions there are, and a slow session
//! never blocks the others: it lags, and its stream is ended.
//!
//! Events are numbered and queued under the lock but sent by a separate
//! flusher task ([`Broker::run_flusher`]), in order, outside it, in bursts.
//! Sending wakes every waiting session; doing it under the lock would hold
//! every RPC behind thousands of wake-ups, and doing it per event would
//! wake each session and write an HTTP/2 frame per event. A session that
//! subscribes may still receive queued events its snapshot already has;
//! their numbers tell it to skip them.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use openspeak_shared::Encoded;
use tokio::sync::{Notify, broadcast};

use crate::{
    convert,
    event::{Event, User},
    hub::{Hub, HubError},
    ids::SessionId,
    session_ids::SessionIds,
    snapshot::Snapshot,
    store::{Store, StoreError},
    tokens::TokenInfo,
};

/// What goes out on the feed.
#[derive(Debug)]
pub enum Dispatch {
    /// An event, in both forms: the core one for deciding who gets it, the
    /// encoded one for sending.
    Event {
        sequence: u64,
        event: Event,
        wire: Encoded,
    },
    /// The end of the shutdown grace period: every stream ends now.
    Close,
}

pub type Subscription = broadcast::Receiver<Arc<Dispatch>>;

/// A newly started session: its id, its first event, and its feed.
pub struct Started {
    pub id: SessionId,
    pub user: User,
    /// `session_started`, numbered like the last event its snapshot includes.
    pub first: Encoded,
    /// The feed. It may still bring events up to `first`'s number (queued
    /// but not yet flushed when the session started); skip those.
    pub events: Subscription,
    /// The number of the last event `first` includes.
    pub sequence: u64,
}

/// Why a change that is saved before it is made (a channel change, or a
/// session start, which may move the session id mark) was refused or not
/// made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The change could not be saved, so it was not made.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Broker {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Dispatch>>,
    /// Wakes the flusher when `Inner::outbox` has something.
    flush: Notify,
}

struct Inner {
    hub: Hub,
    /// The hub's wire form, for `session_started`.
    snapshot: Snapshot,
    ids: SessionIds,
    /// Where the channel tree is saved.
    channels: Arc<dyn Store>,
    /// Number of the last published event.
    sequence: u64,
    /// Numbered events the flusher has yet to send, oldest first.
    outbox: Vec<Arc<Dispatch>>,
}

impl Broker {
    /// `queue` is how far one subscriber may fall behind before it is cut off.
    pub fn new(hub: Hub, ids: SessionIds, channels: Arc<dyn Store>, queue: usize) -> Self {
        let (events, _) = broadcast::channel(queue.max(1));
        Self {
            inner: Mutex::new(Inner {
                snapshot: Snapshot::new(&hub),
                hub,
                ids,
                channels,
                sequence: 0,
                outbox: Vec::new(),
            }),
            events,
            flush: Notify::new(),
        }
    }

    /// Sends queued events to the subscribers, in order, for as long as
    /// the process runs, at most once per `window`. Spawn it once.
    pub async fn run_flusher(self: Arc<Self>, window: Duration) {
        let mut burst = Vec::new();
        loop {
            self.flush.notified().await;
            std::mem::swap(&mut burst, &mut self.lock().outbox);
            for dispatch in burst.drain(..) {
                // An error only means nobody is subscribed, which is fine.
                let _ = self.events.send(dispatch);
            }
            if !window.is_zero() {
                tokio::time::sleep(window).await;
            }
        }
    }

    /// Ends every session stream now (the end of the shutdown grace period).
    pub fn close(&self) {
        self.lock().outbox.push(Arc::new(Dispatch::Close));
        self.flush.notify_one();
    }

    /// Runs `f` on the hub and publishes the events it produced.
    ///
    /// Channels that `f` deletes on the side (a temporary channel losing its
    /// last member) are saved on a best-effort basis: if that fails, the
    /// channel comes back at the next start and goes again a minute later.
    pub fn update<R>(&self, f: impl FnOnce(&mut Hub) -> R) -> R {
        let mut inner = self.lock();
        let result = f(&mut inner.hub);
        if self.publish(&mut inner) {
            let records = inner.hub.channel_records();
            if let Err(error) = inner.channels.save_channels(&records) {
                tracing::error!(%error, "cannot save the channel tree after a change");
            }
        }
        result
    }

    /// Runs a channel change `f` on a copy of the hub, saves the copy's
    /// channel tree, and only then makes the copy the hub: a change that
    /// cannot be saved is not made, and one that is answered is on disk.
    pub fn change_channels<R>(
        &self,
        f: impl FnOnce(&mut Hub) -> Result<R, HubError>,
    ) -> Result<R, ChangeError> {
        let mut inner = self.lock();
        let mut draft = inner.hub.clone();
        let result = f(&mut draft)?;
        inner.channels.save_channels(&draft.channel_records())?;
        inner.hub = draft;
        // `publish` refreshes the snapshot from the events, as for any change.
        self.publish(&mut inner);
        Ok(result)
    }

    /// Runs `f` on the hub without changing it.
    pub fn read<R>(&self, f: impl FnOnce(&Hub) -> R) -> R {
        f(&self.lock().hub)
    }

    /// Starts a session and subscribes it, atomically: its snapshot and its
    /// feed meet exactly, with no event lost or seen twice.
    pub fn start_session(
        &self,
        token: &TokenInfo,
        display_name: &str,
        now: Instant,
    ) -> Result<Started, ChangeError> {
        let mut inner = self.lock();
        let Inner { hub, ids, .. } = &mut *inner;
        let id = ids.allocate(|id| hub.contains(id))?;
        let user = hub.start_session(id, token, display_name, now)?;
        // Its own `user_online` goes out before it subscribes: a session
        // learns of itself from `session_started`.
        self.publish(&mut inner);
        let events = self.events.subscribe();
        let first = inner
            .snapshot
            .session_started(&inner.hub, id, inner.sequence);
        Ok(Started {
            id,
            user,
            first,
            events,
            sequence: inner.sequence,
        })
    }

    /// Subscribes to the feed and reads the hub in one step, as
    /// `start_session` does: `f` sees the hub as of the returned sequence
    /// number, and the feed may still bring events up to that number
    /// (queued but not yet flushed); skip those.
    pub fn subscribe_with<R>(&self, f: impl FnOnce(&Hub) -> R) -> (Subscription, u64, R) {
        let inner = self.lock();
        let events = self.events.subscribe();
        (events, inner.sequence, f(&inner.hub))
    }

    /// Ends a session (its stream is gone); a no-op if it already ended.
    pub fn end_session(&self, id: SessionId) -> bool {
        self.update(|hub| hub.end_session(id))
    }

    /// The periodic tick: idle marks, token expiry, stale temporary channels.
    pub fn tick(&self, now: Instant, wall: SystemTime) {
        self.update(|hub| hub.handle_timeout(now, wall));
    }

    /// Numbers the hub's queued events and hands them to the flusher;
    /// true if channels changed.
    fn publish(&self, inner: &mut MutexGuard<'_, Inner>) -> bool {
        let Inner {
            hub,
            sequence,
            snapshot,
            outbox,
            ..
        } = &mut **inner;
        let events: Vec<Event> = hub.drain_events().collect();
        let mut channels_changed = false;
        for event in events {
            snapshot.note(hub, &event);
            channels_changed |= matches!(
                event,
                Event::ChannelCreated(_) | Event::ChannelUpdated(_) | Event::ChannelDeleted(_)
            );
            *sequence += 1;
            outbox.push(Arc::new(Dispatch::Event {
                sequence: *sequence,
                wire: Encoded::new(&convert::event(&event, *sequence)),
                event,
            }));
        }
        if !outbox.is_empty() {
            self.flush.notify_one();
        }
        channels_changed
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug, but the state it left is
        // still the best there is; carrying on beats failing every RPC.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    //! The flusher's timing in paused tokio time: the clock moves only when
    //! every task waits, so "how long after" is exact, not a guess.

    use super::*;
    use crate::{channels::ChannelTree, tokens::Role};
    use tokio::time::Instant as Clock;

    const WINDOW: Duration = Duration::from_millis(50);

    struct Fixture {
        broker: Arc<Broker>,
        token: TokenInfo,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::new(
            ChannelTree::new("Lobby", Instant::now()).unwrap(),
            Duration::from_secs(300),
        );
        let store: Arc<dyn Store> = Arc::new(crate::store::JsonStore::new(
            &dir.path().join("tokens.json"),
            &dir.path().join("channels.json"),
            &dir.path().join("session_ids"),
        ));
        let ids = SessionIds::open(store.clone()).unwrap();
        let broker = Arc::new(Broker::new(hub, ids, store, 64));
        let token = TokenInfo {
            id: "t".into(),
            label: "t".into(),
            role: Role::Member,
            created_at: SystemTime::UNIX_EPOCH,
            expires_at: None,
        };
        Fixture {
            broker,
            token,
            _dir: dir,
        }
    }

    impl Fixture {
        /// Starts a session, which publishes at least its `user_online`.
        fn connect(&self, name: &str) {
            self.broker
                .start_session(&self.token, name, Instant::now())
                .unwrap();
        }

        /// Subscribes to the feed and starts the flusher, as serving does;
        /// returns the feed and the number of the last event before it.
        fn flushing(&self) -> (Subscription, u64) {
            let (feed, from, ()) = self.broker.subscribe_with(|_| ());
            tokio::spawn(self.broker.clone().run_flusher(WINDOW));
            (feed, from)
        }
    }

    /// A dispatch's sequence number; 0 for `Close`.
    fn number(dispatch: &Dispatch) -> u64 {
        match dispatch {
            Dispatch::Event { sequence, .. } => *sequence,
            Dispatch::Close => 0,
        }
    }

    /// The next dispatch's sequence number (0 for `Close`) and when it came.
    async fn next(feed: &mut Subscription) -> (u64, Clock) {
        let dispatch = feed.recv().await.expect("the feed stays open");
        (number(&dispatch), Clock::now())
    }

    /// Every dispatch already sent, without waiting.
    fn sent(feed: &mut Subscription) -> Vec<u64> {
        std::iter::from_fn(|| feed.try_recv().ok())
            .map(|d| number(&d))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_burst_goes_at_once_and_the_next_a_window_later() {
        let f = fixture();
        let (mut feed, from) = f.flushing();
        let t0 = Clock::now();

        f.connect("a");
        let (first, at) = next(&mut feed).await;
        assert_eq!(first, from + 1);
        assert_eq!(at, t0, "an idle flusher sends without waiting");
        let mut seen = vec![first];
        seen.extend(sent(&mut feed));

        // Two more changes while the flusher rests: they go out together,
        // one window after the first burst, and in order.
        f.connect("b");
        f.connect("c");
        let (second, at) = next(&mut feed).await;
        assert_eq!(at, t0 + WINDOW, "the next burst waits out the window");
        seen.push(second);
        seen.extend(sent(&mut feed));
        let expected: Vec<u64> = (from + 1..=seen.len() as u64 + from).collect();
        assert_eq!(seen, expected, "every event once, in order");
        assert!(
            seen.len() >= 3,
            "three sessions, three user_online at least"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_flusher_does_not_wake_and_sends_at_once_again() {
        let f = fixture();
        let (mut feed, _) = f.flushing();
        f.connect("a");
        next(&mut feed).await;
        sent(&mut feed);

        // Long after the window, nothing is pending: the next change goes
        // out the moment it is made.
        tokio::time::sleep(WINDOW * 10).await;
        let t1 = Clock::now();
        f.connect("b");
        let (_, at) = next(&mut feed).await;
        assert_eq!(at, t1);
    }

    #[tokio::test(start_paused = true)]
    async fn close_follows_the_events_queued_before_it() {
        let f = fixture();
        let (mut feed, from) = f.flushing();
        f.connect("a");
        f.broker.close();
        let (first, _) = next(&mut feed).await;
        let mut seen = vec![first];
        seen.extend(sent(&mut feed));
        assert_eq!(seen.first(), Some(&(from + 1)));
        assert_eq!(seen.last(), Some(&0), "Close comes last: {seen:?}");
        assert_eq!(seen.iter().filter(|s| **s == 0).count(), 1);
    }
}
