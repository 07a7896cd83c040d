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
//!   stolen ticket cannot take over a live call. A *different* ticket for
//!   the session (the client reconnected with a fresh one) replaces the old
//!   connection, which is closed with [`RejectCode::Replaced`].
//! - **Resync.** After the link to the control plane (re)attaches, its
//!   snapshot replaces the membership. Sessions it lacks are removed and
//!   their connections closed ([`RejectCode::Removed`]), unless the control
//!   plane restarted (`keep_connected`): it forgot every session, but their
//!   voice still flows, so those with a live connection stay routed as they
//!   were ("orphans") until that connection ends.

use std::collections::{HashMap, HashSet};

use openspeak_router::{Member, Router, SessionId};
use openspeak_shared::ticket::NONCE_LEN;
use openspeak_voice::RejectCode;

/// What tells one ticket from another: its nonce, unique per ticket sealed.
pub(crate) type TicketId = [u8; NONCE_LEN];

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
}

impl<C> Default for SessionTable<C> {
    fn default() -> Self {
        Self {
            live: HashMap::new(),
            orphans: HashSet::new(),
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
    /// the same ticket is live on another open connection.
    pub(crate) fn admit(
        &mut self,
        session: SessionId,
        ticket: TicketId,
        conn: C,
        is_open: impl Fn(C) -> bool,
    ) -> Result<Option<C>, RejectCode> {
        let replaced = match self.live.get(&session) {
            Some(old) if is_open(old.conn) => {
                if old.ticket == ticket {
                    return Err(RejectCode::InUse);
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
    pub(crate) fn remove(&mut self, session: SessionId, router: &mut Router) -> (bool, Option<C>) {
        self.orphans.remove(&session);
        let was_member = router.remove_member(session).is_some();
        (was_member, self.live.remove(&session).map(|l| l.conn))
    }

    /// Replaces the router's membership with `members`, the control
    /// plane's full view; see the module's rules. Returns what it did and
    /// the connections to close with [`RejectCode::Removed`].
    pub(crate) fn resync(
        &mut self,
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
                close.extend(self.remove(session, router).1);
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
}

#[cfg(test)]
mod tests {
    use openspeak_router::{ChannelKey, RouterConfig};

    use super::*;

    /// A connection key: a number, open unless listed as closed.
    type Conn = u32;

    const A: SessionId = SessionId(1);
    const B: SessionId = SessionId(2);
    const T1: TicketId = [1; NONCE_LEN];
    const T2: TicketId = [2; NONCE_LEN];

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
        assert_eq!(table.admit(A, T1, 10, open), Ok(None));
        assert_eq!(table.conn(A), Some(10));
        assert_eq!(table.len(), 1);
        assert_eq!(table.conn(B), None);
    }

    #[test]
    fn the_same_ticket_is_refused_while_its_connection_is_open() {
        let mut table = SessionTable::default();
        table.admit(A, T1, 10, open).unwrap();
        assert_eq!(table.admit(A, T1, 11, open), Err(RejectCode::InUse));
        assert_eq!(table.conn(A), Some(10));
        // Once the first connection is closed, the ticket may come back
        // (the client lost its connection and retries within the ticket's
        // lifetime).
        assert_eq!(table.admit(A, T1, 11, |c| c != 10), Ok(None));
        assert_eq!(table.conn(A), Some(11));
    }

    #[test]
    fn a_new_ticket_replaces_the_old_connection() {
        let mut table = SessionTable::default();
        let mut router = router_with(&[A]);
        table.admit(A, T1, 10, open).unwrap();
        assert_eq!(table.admit(A, T2, 11, open), Ok(Some(10)));
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
    fn removal_closes_the_connection() {
        let mut table = SessionTable::default();
        let mut router = router_with(&[A, B]);
        table.admit(A, T1, 10, open).unwrap();
        assert_eq!(table.remove(A, &mut router), (true, Some(10)));
        assert_eq!(table.remove(B, &mut router), (true, None));
        assert_eq!(table.remove(B, &mut router), (false, None));
        assert!(sessions(&router).is_empty());
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn an_authoritative_resync_removes_what_it_lacks() {
        let mut table = SessionTable::default();
        let mut router = router_with(&[A, B]);
        table.admit(A, T1, 10, open).unwrap();
        let (done, close) = table.resync(&mut router, vec![(B, member("c2"))], false);
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
        table.admit(A, T1, 10, open).unwrap();
        // B has no connection: nothing keeps it.
        let (done, close) = table.resync(&mut router, vec![], true);
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
        table.admit(A, T1, 10, open).unwrap();
        table.resync(&mut router, vec![], true);
        let (done, _) = table.resync(&mut router, vec![(A, member("c1"))], false);
        assert_eq!(done.members, 1);
        // Its connection's end leaves it routed: the control plane owns it.
        assert!(table.lost(A, 10, &mut router));
        assert_eq!(sessions(&router), [A]);
    }
}
