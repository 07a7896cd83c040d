//! The session table: which connection carries each admitted session, and
//! what happens to a session when its connection, its ticket or the
//! control plane's view of it changes.
//!
//! It is sans-IO, like the router beside it: the driver tells it what
//! happened (a ticket accepted, a connection lost, a snapshot applied) and
//! gets back which connections to close and with what code. It is generic
//! over the transport's connection key `C`, so that every transport keeps
//! its sessions by the same rules:
//!
//! - **One connection per session.** A second connection with the *same*
//!   ticket is refused ([`RejectCode::InUse`]) while the first is open: a
//!   stolen ticket cannot take over a live call. A *newer* ticket for
//!   the session (the client reconnected with a fresh one) replaces the old
//!   connection, which is closed with [`RejectCode::Replaced`]; an *older*
//!   one (a late copy of a TICKET resent before the reconnect) is refused
//!   with the same code, so it cannot take the session back. Newer is
//!   judged by expiry, to the second; within one second the last wins.
//! - **Resync.** After the link to the control plane (re)attaches, its
//!   snapshot replaces the membership. Sessions it lacks are removed and
//!   their connections closed ([`RejectCode::Removed`]), unless the control
//!   plane restarted (`keep_connected`): it forgot every session, but their
//!   voice still flows, so those with a live connection stay routed as they
//!   were ("orphans") until that connection ends.
//! - **An ended session stays ended.** Session ids are never reused, so a
//!   ticket for a session the control plane removed can only be one issued
//!   before it ended. It is refused ([`RejectCode::Removed`]) for as long
//!   as such a ticket can still be valid ([`ENDED_MEMORY`]); after that
//!   it has expired anyway.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use openspeak_router::{Member, Router, SessionId};
use openspeak_shared::ticket::{NONCE_LEN, TICKET_LIFETIME};
use openspeak_voice::RejectCode;

/// How long an ended session's tickets are refused: a ticket's lifetime,
/// plus room for the control plane's clock to run ahead of this one.
pub(crate) const ENDED_MEMORY: Duration = TICKET_LIFETIME.saturating_add(Duration::from_secs(30));

/// What tells one ticket from another, and which of two was issued later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TicketId {
    /// When it expires, in whole seconds since the Unix epoch. Every ticket
    /// lives equally long, so of two tickets of a session the one that
    /// expires later was issued later (to the second).
    pub(crate) expires: u64,
    /// Its nonce, unique per ticket sealed.
    pub(crate) nonce: [u8; NONCE_LEN],
}

/// What [`Handle::resync`](super::Handle::resync) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resynced {
    /// Members set from the snapshot.
    pub members: usize,
    /// Sessions the snapshot lacked that were dropped.
    pub removed: usize,
    /// Sessions the snapshot lacked that keep routing until their
    /// connection ends (only when `keep_connected`).
    pub orphaned: usize,
}

/// The live connection of one session.
#[derive(Debug)]
struct Live<C> {
    conn: C,
    /// The ticket it presented.
    ticket: TicketId,
}

/// Admitted sessions and their connections; see the module's rules.
#[derive(Debug)]
pub(crate) struct SessionTable<C> {
    live: HashMap<SessionId, Live<C>>,
    /// Sessions a restarted control plane no longer knows, routed as they
    /// were until their connection ends.
    orphans: HashSet<SessionId>,
    /// Sessions the control plane ended, with when they may be forgotten,
    /// oldest first (every entry is kept equally long).
    ended: VecDeque<(Instant, SessionId)>,
    /// The same sessions, to look up.
    ended_set: HashSet<SessionId>,
}

impl<C> Default for SessionTable<C> {
    fn default() -> Self {
        Self {
            live: HashMap::new(),
            orphans: HashSet::new(),
            ended: VecDeque::new(),
            ended_set: HashSet::new(),
        }
    }
}

impl<C: Copy + PartialEq> SessionTable<C> {
    /// Sessions with a live connection.
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// The connection that carries `session`'s voice, if it has one.
    pub(crate) fn conn(&self, session: SessionId) -> Option<C> {
        self.live.get(&session).map(|l| l.conn)
    }

    /// Gives `session` to `conn`, which presented `ticket`. `is_open` tells
    /// whether a connection is still open. On success returns the
    /// connection this one replaced, which the driver closes with
    /// [`RejectCode::Replaced`]; refuses with [`RejectCode::InUse`] when
    /// the same ticket is live on another open connection, with
    /// [`RejectCode::Replaced`] when the live connection's ticket was
    /// issued later (to the second), and with [`RejectCode::Removed`] when
    /// the session has ended.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        session: SessionId,
        ticket: TicketId,
        conn: C,
        is_open: impl Fn(C) -> bool,
    ) -> Result<Option<C>, RejectCode> {
        self.forget_ended(now);
        if self.ended_set.contains(&session) {
            return Err(RejectCode::Removed);
        }
        let replaced = match self.live.get(&session) {
            Some(old) if is_open(old.conn) => {
                if old.ticket == ticket {
                    return Err(RejectCode::InUse);
                }
                // An older ticket is a stale copy (a TICKET resent before
                // the client reconnected, arriving late): it must not take
                // the session back from the connection that replaced it.
                if ticket.expires < old.ticket.expires {
                    return Err(RejectCode::Replaced);
                }
                Some(old.conn)
            }
            _ => None,
        };
        self.live.insert(session, Live { conn, ticket });
        Ok(replaced)
    }

    /// `conn`, which carried `session`, is gone. Forgets the pair unless a
    /// newer connection took the session over; an orphan leaves the router
    /// with it, since no control plane will ever remove it. Returns whether
    /// the session lost its connection.
    pub(crate) fn lost(&mut self, session: SessionId, conn: C, router: &mut Router) -> bool {
        if self.conn(session) != Some(conn) {
            return false;
        }
        self.live.remove(&session);
        if self.orphans.remove(&session) {
            router.remove_member(session);
        }
        true
    }

    /// Forgets `session` on the control plane's word: out of the router,
    /// and its connection (returned) to be closed with
    /// [`RejectCode::Removed`]. The first value says whether it was a
    /// member.
    pub(crate) fn remove(
        &mut self,
        now: Instant,
        session: SessionId,
        router: &mut Router,
    ) -> (bool, Option<C>) {
        self.forget_ended(now);
        if self.ended_set.insert(session) {
            self.ended.push_back((now + ENDED_MEMORY, session));
        }
        self.orphans.remove(&session);
        let was_member = router.remove_member(session).is_some();
        (was_member, self.live.remove(&session).map(|l| l.conn))
    }

    /// Replaces the router's membership with `members`, the control
    /// plane's full view; see the module's rules. Returns what it did and
    /// the connections to close with [`RejectCode::Removed`].
    pub(crate) fn resync(
        &mut self,
        now: Instant,
        router: &mut Router,
        members: Vec<(SessionId, Member)>,
        keep_connected: bool,
    ) -> (Resynced, Vec<C>) {
        let listed: HashSet<SessionId> = members.iter().map(|(s, _)| *s).collect();
        let mut done = Resynced::default();
        let mut close = Vec::new();
        for session in router.sessions().collect::<Vec<_>>() {
            if listed.contains(&session) {
                continue;
            }
            if keep_connected && self.live.contains_key(&session) {
                self.orphans.insert(session);
                done.orphaned += 1;
            } else {
                close.extend(self.remove(now, session, router).1);
                done.removed += 1;
            }
        }
        for (session, member) in members {
            self.orphans.remove(&session);
            if router.set_member(session, member).is_ok() {
                done.members += 1;
            }
        }
        (done, close)
    }

    /// Drops the ended sessions whose tickets have all expired by `now`.
    fn forget_ended(&mut self, now: Instant) {
        while let Some(&(until, session)) = self.ended.front() {
            if until > now {
                break;
            }
            self.ended.pop_front();
            self.ended_set.remove(&session);
        }
    }
}

#[cfg(test)]
mod tests {
    use openspeak_router::{ChannelKey, RouterConfig};

    use super::*;

    /// A connection key: a number, open unless listed as closed.
    type Conn = u32;

    const A: SessionId = SessionId(1);
    const B: SessionId = SessionId(2);
    const T1: TicketId = TicketId {
        expires: 1_000,
        nonce: [1; NONCE_LEN],
    };
    /// Issued a minute after T1.
    const T2: TicketId = TicketId {
        expires: 1_060,
        nonce: [2; NONCE_LEN],
    };

    fn member(channel: &str) -> Member {
        Member {
            channel: Some(ChannelKey::from(channel)),
            ..Member::default()
        }
    }

    fn open(_: Conn) -> bool {
        true
    }

    fn router_with(members: &[SessionId]) -> Router {
        let mut router = Router::new(RouterConfig::default());
        for &s in members {
            router.set_member(s, member("c1")).unwrap();
        }
        router
    }

    fn sessions(router: &Router) -> Vec<SessionId> {
        let mut s: Vec<_> = router.sessions().collect();
        s.sort_by_key(|s| s.0);
        s
    }

    #[test]
    fn a_session_takes_one_connection() {
        let mut table = SessionTable::default();
        assert_eq!(table.admit(Instant::now(), A, T1, 10, open), Ok(None));
        assert_eq!(table.conn(A), Some(10));
        assert_eq!(table.len(), 1);
        assert_eq!(table.conn(B), None);
    }

    #[test]
    fn the_same_ticket_is_refused_while_its_connection_is_open() {
        let mut table = SessionTable::default();
        table.admit(Instant::now(), A, T1, 10, open).unwrap();
        assert_eq!(
            table.admit(Instant::now(), A, T1, 11, open),
            Err(RejectCode::InUse)
        );
        assert_eq!(table.conn(A), Some(10));
        // Once the first connection is closed, the ticket may come back
        // (the client lost its connection and retries within the ticket's
        // lifetime).
        assert_eq!(
            table.admit(Instant::now(), A, T1, 11, |c| c != 10),
            Ok(None)
        );
        assert_eq!(table.conn(A), Some(11));
    }

    #[test]
    fn a_new_ticket_replaces_the_old_connection() {
        let mut table = SessionTable::default();
        let mut router = router_with(&[A]);
        table.admit(Instant::now(), A, T1, 10, open).unwrap();
        assert_eq!(table.admit(Instant::now(), A, T2, 11, open), Ok(Some(10)));
        assert_eq!(table.conn(A), Some(11));
        // The replaced connection's end does not take the session along.
        assert!(!table.lost(A, 10, &mut router));
        assert_eq!(table.conn(A), Some(11));
        assert!(table.lost(A, 11, &mut router));
        assert_eq!(table.conn(A), None);
        // A member whose connection ended is still a member: the control
        // plane decides when it leaves.
        assert_eq!(sessions(&router), [A]);
    }

    #[test]
    fn an_older_ticket_cannot_take_the_session_back() {
        let mut table = SessionTable::default();
        table.admit(Instant::now(), A, T1, 10, open).unwrap();
        assert_eq!(table.admit(Instant::now(), A, T2, 11, open), Ok(Some(10)));
        // T1 again, on a third connection: refused, and T2's stays.
        assert_eq!(
            table.admit(Instant::now(), A, T1, 12, open),
            Err(RejectCode::Replaced)
        );
        assert_eq!(table.conn(A), Some(11));
        // Of two tickets issued in the same second, the last presented
        // wins: nothing tells them apart in time.
        let t3 = TicketId {
            nonce: [3; NONCE_LEN],
            ..T2
        };
        assert_eq!(table.admit(Instant::now(), A, t3, 13, open), Ok(Some(11)));
        assert_eq!(table.conn(A), Some(13));
        // Once the newer connection is closed, an older ticket that is
        // still valid may carry the session again.
        assert_eq!(
            table.admit(Instant::now(), A, T1, 14, |c| c != 13),
            Ok(None)
        );
        assert_eq!(table.conn(A), Some(14));
    }

    #[test]
    fn removal_closes_the_connection() {
        let mut table = SessionTable::default();
        let mut router = router_with(&[A, B]);
        table.admit(Instant::now(), A, T1, 10, open).unwrap();
        assert_eq!(
            table.remove(Instant::now(), A, &mut router),
            (true, Some(10))
        );
        assert_eq!(table.remove(Instant::now(), B, &mut router), (true, None));
        assert_eq!(table.remove(Instant::now(), B, &mut router), (false, None));
        assert!(sessions(&router).is_empty());
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn an_ended_sessions_tickets_are_refused_until_they_have_expired() {
        let mut table = SessionTable::default();
        let mut router = router_with(&[A]);
        let t0 = Instant::now();
        table.admit(t0, A, T1, 10, open).unwrap();
        table.remove(t0, A, &mut router);
        // A ticket issued before the end, presented at once or just
        // before it can no longer be valid: refused as removed.
        for at in [t0, t0 + ENDED_MEMORY - Duration::from_millis(1)] {
            assert_eq!(
                table.admit(at, A, T2, 11, open),
                Err(RejectCode::Removed),
                "{:?} after the end",
                at - t0
            );
        }
        assert_eq!(table.len(), 0);
        // Other sessions are not affected.
        assert_eq!(table.admit(t0, B, T1, 12, open), Ok(None));
        // Past every such ticket's lifetime the session is forgotten (a
        // ticket for it is refused as expired before it gets here).
        assert_eq!(table.admit(t0 + ENDED_MEMORY, A, T2, 11, open), Ok(None));
        assert!(ENDED_MEMORY >= TICKET_LIFETIME);
    }

    #[test]
    fn sessions_a_resync_removes_have_ended_but_orphans_have_not() {
        let mut table = SessionTable::default();
        let mut router = router_with(&[A, B]);
        let t0 = Instant::now();
        table.admit(t0, A, T1, 10, open).unwrap();
        // A restarted control plane: B (no connection) goes, A is orphaned.
        table.resync(t0, &mut router, vec![], true);
        assert_eq!(table.admit(t0, B, T2, 11, open), Err(RejectCode::Removed));
        assert!(table.lost(A, 10, &mut router));
        assert_eq!(table.admit(t0, A, T2, 12, open), Ok(None));
    }

    #[test]
    fn an_authoritative_resync_removes_what_it_lacks() {
        let mut table = SessionTable::default();
        let mut router = router_with(&[A, B]);
        table.admit(Instant::now(), A, T1, 10, open).unwrap();
        let (done, close) =
            table.resync(Instant::now(), &mut router, vec![(B, member("c2"))], false);
        assert_eq!(
            done,
            Resynced {
                members: 1,
                removed: 1,
                orphaned: 0
            }
        );
        assert_eq!(close, [10]);
        assert_eq!(sessions(&router), [B]);
        assert_eq!(router.member(B), Some(&member("c2")));
    }

    #[test]
    fn after_a_restart_connected_sessions_stay_until_their_connection_ends() {
        let mut table = SessionTable::default();
        let mut router = router_with(&[A, B]);
        table.admit(Instant::now(), A, T1, 10, open).unwrap();
        // B has no connection: nothing keeps it.
        let (done, close) = table.resync(Instant::now(), &mut router, vec![], true);
        assert_eq!(
            done,
            Resynced {
                members: 0,
                removed: 1,
                orphaned: 1
            }
        );
        assert!(close.is_empty());
        assert_eq!(sessions(&router), [A]);
        // The orphan's connection ends: nobody else would remove it.
        assert!(table.lost(A, 10, &mut router));
        assert!(sessions(&router).is_empty());
    }

    #[test]
    fn an_orphan_the_control_plane_learns_again_is_a_member_again() {
        let mut table = SessionTable::default();
        let mut router = router_with(&[A]);
        table.admit(Instant::now(), A, T1, 10, open).unwrap();
        table.resync(Instant::now(), &mut router, vec![], true);
        let (done, _) = table.resync(Instant::now(), &mut router, vec![(A, member("c1"))], false);
        assert_eq!(done.members, 1);
        // Its connection's end leaves it routed: the control plane owns it.
        assert!(table.lost(A, 10, &mut router));
        assert_eq!(sessions(&router), [A]);
    }
}
