//! One session's view of the server's event stream, without IO.
//!
//! The client driver feeds every event with the instant it arrived
//! ([`Observer::handle_event`]); the observer checks the sequence numbers,
//! notes which other clients' `member_joined` it saw, and measures how long
//! after each join it learned of it. It never reads the clock, so tests drive
//! it with made-up instants.
//!
//! # The event delay, and why t0 is the join's response
//!
//! For a join by client A, t0 is the instant A's `JoinChannel` call returned
//! OK, and the delay at observer B is the arrival of A's `member_joined` at B
//! minus t0. That measures how much later than the joiner the rest of the
//! server learns of the change, which is what users notice. A server that
//! broadcasts before it answers can deliver the event before t0, and t0 may
//! not even be known yet when the event arrives (A's task has not run). Then
//! the arrival is kept and the delay is computed later as
//! `max(0, arrival - t0)`; such events are counted as `early`. A second
//! histogram measures from the instant the request was sent, which is always
//! known before the event can exist and never clamps.

use std::time::Instant;

use fixedbitset::FixedBitSet;
use openspeak_shared::pb;
use openspeak_shared::pb::event::Event as Kind;

use crate::common::stats::micros_between;
use crate::sessions::registry::{DuplicateSession, Registry};

/// Event kinds, for counting.
pub const KIND_NAMES: [&str; 13] = [
    "unknown",
    "session_started",
    "user_online",
    "user_offline",
    "channel_created",
    "channel_updated",
    "channel_deleted",
    "member_joined",
    "member_left",
    "presence_changed",
    "speaking_changed",
    "kicked",
    "server_shutdown",
];

/// When pending early events are worth resolving before the end, to keep
/// memory bounded on big runs.
const PENDING_RESOLVE_AT: usize = 1024;

/// Why a stream could not become an observer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The first event was not `session_started`.
    #[error("the first event is not session_started")]
    NotSessionStarted,
    /// The server gave out a session id that another client of this run has.
    #[error("session id {session_id} was also given to client {first}")]
    DuplicateSession {
        /// The id given twice.
        session_id: u32,
        /// The client that had it first.
        first: usize,
    },
}

/// Delays measured but not yet merged into the shared histograms.
#[derive(Debug, Default)]
pub struct Delays {
    /// From the join's response (µs).
    pub from_response: Vec<u64>,
    /// From the join's request (µs).
    pub from_request: Vec<u64>,
}

/// One session's event stream, checked and measured.
#[derive(Debug)]
pub struct Observer {
    /// What it found so far.
    found: Findings,
    /// The client's session id.
    session_id: u32,
    /// The last sequence delivered, to check that they increase.
    last_seq: u64,
    /// Early events whose joiner had no t0 yet: (joiner, arrival).
    pending: Vec<(usize, Instant)>,
    /// Delays waiting to be merged.
    delays: Delays,
    /// The session's own presence went to away; the next own "online" is
    /// the client's last action.
    saw_away: bool,
    /// The server said it ends this session (`kicked`, `server_shutdown`).
    ended_by_server: Option<&'static str>,
}

/// What an observer found, for the end-of-run checks.
#[derive(Debug, Clone)]
pub struct Findings {
    /// The client's number.
    pub index: usize,
    /// Events delivered, per [`KIND_NAMES`] entry.
    pub by_kind: [u64; KIND_NAMES.len()],
    /// Events whose sequence did not increase.
    pub sequence_violations: u64,
    /// Clients whose `member_joined` into their channel this session saw.
    pub seen: FixedBitSet,
    /// `member_joined` of a client seen more than once.
    pub duplicate_joins: u64,
    /// `member_joined` of one of our clients into a channel it did not ask for.
    pub wrong_channel_joins: u64,
    /// `member_joined` events that arrived before the joiner's response.
    pub early: u64,
    /// `member_joined` seen for a join that never answered OK.
    pub seen_without_ok: u64,
}

impl Observer {
    /// Starts observing from the stream's first event, which must be
    /// `session_started`, and registers the session.
    pub fn start(
        index: usize,
        now: Instant,
        first: &pb::Event,
        registry: &Registry,
    ) -> Result<Observer, StartError> {
        let Some(Kind::SessionStarted(started)) = &first.event else {
            return Err(StartError::NotSessionStarted);
        };
        registry
            .register(index, started.session_id, first.sequence, now)
            .map_err(|DuplicateSession { first }| StartError::DuplicateSession {
                session_id: started.session_id,
                first,
            })?;
        let mut by_kind = [0; KIND_NAMES.len()];
        by_kind[1] = 1;
        registry
            .slot(index)
            .last_seq
            .store(first.sequence, std::sync::atomic::Ordering::Release);
        Ok(Observer {
            found: Findings {
                index,
                by_kind,
                sequence_violations: 0,
                seen: FixedBitSet::with_capacity(registry.len()),
                duplicate_joins: 0,
                wrong_channel_joins: 0,
                early: 0,
                seen_without_ok: 0,
            },
            session_id: started.session_id,
            last_seq: first.sequence,
            pending: Vec::new(),
            delays: Delays::default(),
            saw_away: false,
            ended_by_server: None,
        })
    }

    /// The session's id.
    pub fn session_id(&self) -> u32 {
        self.session_id
    }

    /// Takes in one event that arrived at `now`.
    pub fn handle_event(&mut self, now: Instant, event: &pb::Event, registry: &Registry) {
        use std::sync::atomic::Ordering;

        if event.sequence <= self.last_seq {
            self.found.sequence_violations += 1;
        }
        self.last_seq = self.last_seq.max(event.sequence);
        let slot = registry.slot(self.found.index);
        slot.last_seq.store(self.last_seq, Ordering::Release);

        let kind = event.event.as_ref();
        self.found.by_kind[kind_index(kind)] += 1;
        match kind {
            Some(Kind::MemberJoined(joined)) => {
                self.on_member_joined(now, event.sequence, joined, registry)
            }
            Some(Kind::PresenceChanged(pb::PresenceChanged { user: Some(user) }))
                if user.session_id == self.session_id =>
            {
                if user.status == pb::Status::Away as i32 {
                    self.saw_away = true;
                } else if user.status == pb::Status::Online as i32 && self.saw_away {
                    let _ = slot.final_seq.compare_exchange(
                        0,
                        event.sequence,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
            }
            Some(Kind::Kicked(_)) => self.ended_by_server = Some("kicked"),
            Some(Kind::ServerShutdown(_)) => self.ended_by_server = Some("server_shutdown"),
            _ => {}
        }
        if self.pending.len() >= PENDING_RESOLVE_AT {
            self.resolve_pending(registry, false);
        }
    }

    fn on_member_joined(
        &mut self,
        now: Instant,
        sequence: u64,
        joined: &pb::MemberJoined,
        registry: &Registry,
    ) {
        use std::sync::atomic::Ordering;

        // Sessions of other runs or people are none of our business.
        let Some(joiner) = registry.client_of(joined.session_id) else {
            return;
        };
        if joined.channel_id != registry.channel_of(joiner) {
            self.found.wrong_channel_joins += 1;
            return;
        }
        let slot = registry.slot(joiner);
        let _ = slot
            .join_seq
            .compare_exchange(0, sequence, Ordering::AcqRel, Ordering::Acquire);
        if joiner == self.found.index {
            // Our own join tells nothing about propagation to others.
            return;
        }
        if self.found.seen.put(joiner) {
            self.found.duplicate_joins += 1;
            return;
        }
        if let Some(&sent) = slot.join_sent.get() {
            self.delays.from_request.push(micros_between(sent, now));
        }
        match slot.join_done.get() {
            Some(&t0) => self.record_from_response(now, t0),
            None => self.pending.push((joiner, now)),
        }
    }

    fn record_from_response(&mut self, arrival: Instant, t0: Instant) {
        if arrival < t0 {
            self.found.early += 1;
        }
        self.delays.from_response.push(micros_between(t0, arrival));
    }

    /// Computes the delays of early events whose t0 is now known. With
    /// `last`, no t0 will come any more: the rest are joins that never
    /// answered OK.
    pub fn resolve_pending(&mut self, registry: &Registry, last: bool) {
        let pending = std::mem::take(&mut self.pending);
        for (joiner, arrival) in pending {
            match registry.slot(joiner).join_done.get() {
                Some(&t0) => self.record_from_response(arrival, t0),
                None if last => self.found.seen_without_ok += 1,
                None => self.pending.push((joiner, arrival)),
            }
        }
    }

    /// Delays measured so far and not yet taken.
    pub fn buffered_delays(&self) -> usize {
        self.delays.from_request.len() + self.delays.from_response.len()
    }

    /// Takes the measured delays, for the shared histograms.
    pub fn take_delays(&mut self) -> Delays {
        std::mem::take(&mut self.delays)
    }

    /// Whether the server said it ends the session, and how.
    pub fn ended_by_server(&self) -> Option<&'static str> {
        self.ended_by_server
    }

    /// What it found, once the stream is done.
    pub fn into_findings(self) -> Findings {
        self.found
    }
}

fn kind_index(kind: Option<&Kind>) -> usize {
    match kind {
        None => 0,
        Some(Kind::SessionStarted(_)) => 1,
        Some(Kind::UserOnline(_)) => 2,
        Some(Kind::UserOffline(_)) => 3,
        Some(Kind::ChannelCreated(_)) => 4,
        Some(Kind::ChannelUpdated(_)) => 5,
        Some(Kind::ChannelDeleted(_)) => 6,
        Some(Kind::MemberJoined(_)) => 7,
        Some(Kind::MemberLeft(_)) => 8,
        Some(Kind::PresenceChanged(_)) => 9,
        Some(Kind::SpeakingChanged(_)) => 10,
        Some(Kind::Kicked(_)) => 11,
        Some(Kind::ServerShutdown(_)) => 12,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;

    fn started(seq: u64, session_id: u32) -> pb::Event {
        pb::Event {
            sequence: seq,
            event: Some(Kind::SessionStarted(pb::SessionStarted {
                session_id,
                channels: vec![],
                users: vec![],
            })),
        }
    }

    fn joined(seq: u64, session_id: u32, channel: &str) -> pb::Event {
        pb::Event {
            sequence: seq,
            event: Some(Kind::MemberJoined(pb::MemberJoined {
                session_id,
                channel_id: channel.into(),
            })),
        }
    }

    fn presence(seq: u64, session_id: u32, status: pb::Status) -> pb::Event {
        pb::Event {
            sequence: seq,
            event: Some(Kind::PresenceChanged(pb::PresenceChanged {
                user: Some(pb::UserPresence {
                    session_id,
                    status: status as i32,
                    ..Default::default()
                }),
            })),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Two clients, two channels: client 0 → "a", client 1 → "b".
    fn two() -> (Registry, Instant, Observer, Observer) {
        let reg = Registry::new(2, vec!["a".into(), "b".into()]);
        let t = Instant::now();
        let o0 = Observer::start(0, t, &started(10, 100), &reg).unwrap();
        let o1 = Observer::start(1, t, &started(11, 101), &reg).unwrap();
        (reg, t, o0, o1)
    }

    #[test]
    fn first_event_must_be_session_started() {
        let reg = Registry::new(1, vec!["a".into()]);
        let err = Observer::start(0, Instant::now(), &joined(1, 5, "a"), &reg).unwrap_err();
        assert_eq!(err, StartError::NotSessionStarted);
    }

    #[test]
    fn a_session_id_given_twice_is_caught() {
        let reg = Registry::new(2, vec!["a".into()]);
        let t = Instant::now();
        Observer::start(0, t, &started(1, 7), &reg).unwrap();
        let err = Observer::start(1, t, &started(2, 7), &reg).unwrap_err();
        assert_eq!(
            err,
            StartError::DuplicateSession {
                session_id: 7,
                first: 0
            }
        );
    }

    #[test]
    fn delay_runs_from_the_joiners_response() {
        let (reg, t, mut o0, _o1) = two();
        let s1 = reg.slot(1);
        s1.join_sent.set(t + ms(1)).unwrap();
        s1.join_done.set(t + ms(3)).unwrap();
        o0.handle_event(t + ms(8), &joined(12, 101, "b"), &reg);
        let d = o0.take_delays();
        assert_eq!(d.from_response, vec![5_000]);
        assert_eq!(d.from_request, vec![7_000]);
        assert_eq!(s1.join_seq(), Some(12));
        let f = o0.into_findings();
        assert!(f.seen.contains(1));
        assert_eq!(f.early, 0);
    }

    #[test]
    fn an_event_before_t0_is_kept_and_clamped_to_zero() {
        let (reg, t, mut o0, _o1) = two();
        let s1 = reg.slot(1);
        s1.join_sent.set(t + ms(1)).unwrap();
        o0.handle_event(t + ms(2), &joined(12, 101, "b"), &reg);
        assert!(o0.take_delays().from_response.is_empty(), "t0 unknown yet");
        s1.join_done.set(t + ms(4)).unwrap();
        o0.resolve_pending(&reg, true);
        assert_eq!(o0.take_delays().from_response, vec![0]);
        assert_eq!(o0.into_findings().early, 1);
    }

    #[test]
    fn an_event_for_a_join_that_failed_is_counted_at_the_end() {
        let (reg, t, mut o0, _o1) = two();
        reg.slot(1).join_sent.set(t).unwrap();
        o0.handle_event(t + ms(2), &joined(12, 101, "b"), &reg);
        o0.resolve_pending(&reg, false);
        o0.resolve_pending(&reg, true);
        assert_eq!(o0.into_findings().seen_without_ok, 1);
    }

    #[test]
    fn own_joins_duplicates_wrong_channels_and_strangers() {
        let (reg, t, mut o0, _o1) = two();
        reg.slot(1).join_sent.set(t).unwrap();
        reg.slot(1).join_done.set(t).unwrap();
        o0.handle_event(t, &joined(12, 100, "a"), &reg); // own
        o0.handle_event(t, &joined(13, 101, "b"), &reg);
        o0.handle_event(t, &joined(14, 101, "b"), &reg); // again
        o0.handle_event(t, &joined(15, 101, "a"), &reg); // wrong channel
        o0.handle_event(t, &joined(16, 999, "a"), &reg); // not ours
        assert_eq!(reg.slot(0).join_seq(), Some(12));
        assert_eq!(o0.take_delays().from_response.len(), 1);
        let f = o0.into_findings();
        assert!(!f.seen.contains(0));
        assert!(f.seen.contains(1));
        assert_eq!(f.duplicate_joins, 1);
        assert_eq!(f.wrong_channel_joins, 1);
        assert_eq!(f.by_kind.iter().sum::<u64>(), 6);
        assert_eq!(f.by_kind[7], 5);
    }

    #[test]
    fn sequences_must_strictly_increase() {
        let (reg, t, mut o0, _o1) = two();
        for seq in [11, 12, 12, 15, 14, 16] {
            o0.handle_event(t, &presence(seq, 101, pb::Status::Away), &reg);
        }
        assert_eq!(reg.slot(0).last_seq.load(Ordering::Acquire), 16);
        assert_eq!(o0.into_findings().sequence_violations, 2);
    }

    #[test]
    fn the_final_presence_is_online_after_away() {
        let (reg, t, mut o0, _o1) = two();
        let slot = reg.slot(0);
        o0.handle_event(t, &presence(11, 100, pb::Status::Online), &reg);
        assert_eq!(slot.final_seq.load(Ordering::Acquire), 0);
        o0.handle_event(t, &presence(12, 101, pb::Status::Away), &reg);
        o0.handle_event(t, &presence(13, 101, pb::Status::Online), &reg);
        assert_eq!(slot.final_seq.load(Ordering::Acquire), 0, "another session");
        o0.handle_event(t, &presence(14, 100, pb::Status::Away), &reg);
        o0.handle_event(t, &presence(15, 100, pb::Status::Online), &reg);
        assert_eq!(slot.final_seq.load(Ordering::Acquire), 15);
    }

    #[test]
    fn client_set_counts_bits() {
        let mut s = FixedBitSet::with_capacity(130);
        assert!(!s.put(0));
        assert!(!s.put(129));
        assert!(s.put(129));
        assert!(s.contains(129) && s.contains(0) && !s.contains(64));
        assert!(!s.contains(1000));
    }
}
