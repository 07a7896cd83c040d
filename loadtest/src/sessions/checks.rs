//! The end-of-run check: did every session see every other session's join?
//!
//! A session is owed the `member_joined` of a join exactly when the join's
//! event comes after the session's snapshot (`session_started.sequence`):
//! joins before it are in the snapshot instead. The join's sequence is known
//! when anyone saw the event (the joiner sees its own). When nobody did, the
//! sequence is unknown, and the session is counted as owed only when its
//! `session_started` had arrived before the join was even sent, which is
//! certain to be before the server handled it; so the check never blames the
//! server for what it could not have sent.
//!
//! Only sessions whose stream lasted until the tool closed it are judged.

use std::time::Instant;

use fixedbitset::FixedBitSet;

/// One observing session, as the check needs it.
#[derive(Debug, Clone, Copy)]
pub struct Watcher<'a> {
    /// Its client number.
    pub index: usize,
    /// `session_started.sequence`.
    pub snapshot_seq: u64,
    /// When `session_started` arrived.
    pub started_at: Instant,
    /// The joins it saw.
    pub seen: &'a FixedBitSet,
}

/// One joining client, as the check needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Join {
    /// `JoinChannel` answered OK.
    pub ok: bool,
    /// Its event's sequence, if anyone saw it.
    pub seq: Option<u64>,
    /// When the request was sent.
    pub sent: Option<Instant>,
}

/// How many owed events were missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Missing {
    /// Events owed, over all judged sessions.
    pub expected: u64,
    /// Of those, not delivered.
    pub missing: u64,
    /// Judged sessions that missed at least one.
    pub sessions_missing: u64,
}

/// Whether `watcher` is owed the event of `join` by client `joiner`.
pub fn owed(watcher: &Watcher<'_>, joiner: usize, join: &Join) -> bool {
    if joiner == watcher.index || !join.ok {
        return false;
    }
    match (join.seq, join.sent) {
        (Some(seq), _) => seq > watcher.snapshot_seq,
        (None, Some(sent)) => watcher.started_at < sent,
        (None, None) => false,
    }
}

/// Counts the owed `member_joined` events the watchers did not get.
pub fn missing_joins(watchers: &[Watcher<'_>], joins: &[Join]) -> Missing {
    let mut out = Missing::default();
    for w in watchers {
        let mut missed = 0;
        for (joiner, join) in joins.iter().enumerate() {
            if owed(w, joiner, join) {
                out.expected += 1;
                if !w.seen.contains(joiner) {
                    missed += 1;
                }
            }
        }
        out.missing += missed;
        out.sessions_missing += u64::from(missed > 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn joins_after_the_snapshot_are_owed() {
        let t = Instant::now();
        let seen = FixedBitSet::with_capacity(4);
        let w = Watcher {
            index: 0,
            snapshot_seq: 10,
            started_at: t,
            seen: &seen,
        };
        let at = |seq| Join {
            ok: true,
            seq: Some(seq),
            sent: Some(t),
        };
        assert!(owed(&w, 1, &at(11)));
        assert!(!owed(&w, 1, &at(10)), "in the snapshot");
        assert!(!owed(&w, 0, &at(11)), "own join");
        assert!(
            !owed(
                &w,
                1,
                &Join {
                    ok: false,
                    ..at(11)
                }
            ),
            "failed join"
        );
        let unseen = |sent| Join {
            ok: true,
            seq: None,
            sent: Some(sent),
        };
        assert!(owed(&w, 1, &unseen(t + Duration::from_millis(1))));
        assert!(!owed(&w, 1, &unseen(t)), "maybe handled before the session");
    }

    #[test]
    fn missing_counts_per_watcher() {
        let t = Instant::now();
        let mut all = FixedBitSet::with_capacity(3);
        all.insert(1);
        all.insert(2);
        let mut some = FixedBitSet::with_capacity(3);
        some.insert(0);
        let joins = [
            Join {
                ok: true,
                seq: Some(5),
                sent: Some(t),
            },
            Join {
                ok: true,
                seq: Some(6),
                sent: Some(t),
            },
            Join {
                ok: true,
                seq: Some(7),
                sent: Some(t),
            },
        ];
        let watchers = [
            Watcher {
                index: 0,
                snapshot_seq: 1,
                started_at: t,
                seen: &all,
            },
            // Started after client 0's join: owed only 2's (1's is missing).
            Watcher {
                index: 1,
                snapshot_seq: 5,
                started_at: t,
                seen: &some,
            },
        ];
        let m = missing_joins(&watchers, &joins);
        assert_eq!(
            m,
            Missing {
                expected: 3,
                missing: 1,
                sessions_missing: 1
            }
        );
    }
}
