//! What the clients know about each other while the run goes on.
//!
//! One [`Slot`] per client, indexed by client number, plus a map from the
//! server's session ids to client numbers. Every field is written once (a
//! `OnceLock`) or is a plain atomic, so readers on other tasks never wait for
//! a writer; only the session-id map takes a lock, a `std` `RwLock` because
//! it is written N times and read on every `member_joined` event, and no
//! `.await` happens while it is held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

/// Where a client's event reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::FromRepr)]
#[repr(u8)]
pub enum ReaderState {
    /// No stream yet (or it never got `session_started`).
    NotStarted,
    /// Reading events.
    Running,
    /// The stream broke or ended on the server's side.
    Failed,
    /// Closed by the tool at the end of the run.
    Closed,
}

/// One client's shared facts.
#[derive(Debug, Default)]
pub struct Slot {
    /// When its `Connect` call was sent (the run's throughput starts at the
    /// first of these).
    pub connect_sent: OnceLock<Instant>,
    /// Its session id, from `session_started`.
    pub session_id: OnceLock<u32>,
    /// When `session_started` arrived.
    pub started_at: OnceLock<Instant>,
    /// `session_started.sequence`: the last event its snapshot includes. The
    /// session is owed every later event and none before.
    pub snapshot_seq: OnceLock<u64>,
    /// When its `JoinChannel` request was sent. Set before the request goes
    /// out, so it is known before anyone can see the resulting event.
    pub join_sent: OnceLock<Instant>,
    /// When its `JoinChannel` answered OK: t0 of the event delay.
    pub join_done: OnceLock<Instant>,
    /// The sequence of its `member_joined` event (0 = not seen by anyone).
    pub join_seq: AtomicU64,
    /// Both presence updates succeeded.
    pub acted: AtomicBool,
    /// The sequence of its own final `presence_changed` (back to online), as
    /// its own stream delivered it (0 = not yet). Every session must see
    /// every event up to the highest of these before the run can settle.
    pub final_seq: AtomicU64,
    /// The last sequence its stream delivered.
    pub last_seq: AtomicU64,
    /// A [`ReaderState`].
    reader: AtomicU8,
}

impl Slot {
    /// The reader's state.
    pub fn reader(&self) -> ReaderState {
        ReaderState::from_repr(self.reader.load(Ordering::Acquire))
            .unwrap_or(ReaderState::NotStarted)
    }

    /// Sets the reader's state.
    pub fn set_reader(&self, state: ReaderState) {
        self.reader.store(state as u8, Ordering::Release);
    }

    /// The sequence of its `member_joined`, if anyone saw it.
    pub fn join_seq(&self) -> Option<u64> {
        match self.join_seq.load(Ordering::Acquire) {
            0 => None,
            s => Some(s),
        }
    }
}

/// Every client's slot, and who is who.
#[derive(Debug)]
pub struct Registry {
    /// Indexed by client number.
    slots: Vec<Slot>,
    /// The channel id each client joins (client `i` → `channel_ids[i % C]`).
    channel_ids: Vec<String>,
    /// Session id → client number.
    by_session: RwLock<HashMap<u32, usize>>,
}

/// A session id came back twice: a server bug, counted by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateSession {
    /// The client that had it first.
    pub first: usize,
}

impl Registry {
    /// Slots for `clients` clients spread over `channel_ids`.
    pub fn new(clients: usize, channel_ids: Vec<String>) -> Registry {
        assert!(!channel_ids.is_empty(), "a run has at least one channel");
        Registry {
            slots: (0..clients).map(|_| Slot::default()).collect(),
            channel_ids,
            by_session: RwLock::new(HashMap::with_capacity(clients)),
        }
    }

    /// Number of clients.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Client `index`'s slot.
    pub fn slot(&self, index: usize) -> &Slot {
        &self.slots[index]
    }

    /// All slots, by client number.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The channel client `index` joins.
    pub fn channel_of(&self, index: usize) -> &str {
        &self.channel_ids[index % self.channel_ids.len()]
    }

    /// The run's channel ids.
    pub fn channel_ids(&self) -> &[String] {
        &self.channel_ids
    }

    /// Records that client `index` got session `session_id` at `now`, with
    /// snapshot sequence `snapshot_seq`.
    pub fn register(
        &self,
        index: usize,
        session_id: u32,
        snapshot_seq: u64,
        now: Instant,
    ) -> Result<(), DuplicateSession> {
        {
            let mut map = self.by_session.write().unwrap_or_else(|e| e.into_inner());
            if let Some(&first) = map.get(&session_id) {
                return Err(DuplicateSession { first });
            }
            map.insert(session_id, index);
        }
        let slot = &self.slots[index];
        let _ = slot.session_id.set(session_id);
        let _ = slot.started_at.set(now);
        let _ = slot.snapshot_seq.set(snapshot_seq);
        Ok(())
    }

    /// The client that has session `session_id`, if it is one of ours.
    pub fn client_of(&self, session_id: u32) -> Option<usize> {
        let map = self.by_session.read().unwrap_or_else(|e| e.into_inner());
        map.get(&session_id).copied()
    }

    /// Every session id of this run.
    pub fn session_ids(&self) -> Vec<u32> {
        self.slots
            .iter()
            .filter_map(|s| s.session_id.get().copied())
            .collect()
    }
}
