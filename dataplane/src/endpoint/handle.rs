//! The [`Handle`]: how other tasks (the control link, the metrics
//! listener, tests) reach the endpoint task. Membership changes and stats
//! go as commands over a channel and are answered when the task gets to
//! them between wake-ups; counters are read straight from shared atomics.

use std::sync::{Arc, Mutex};

use openspeak_router::{
    ChannelKey, ListenerStats, Member, MembershipError, RouterEvent, RouterStats, SessionId,
    SpeakerStats,
};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use super::counters::{Counters, EndpointStats};
use super::sessions::Resynced;

/// Why a [`Handle`] call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HandleError {
    /// The endpoint has shut down.
    #[error("endpoint closed")]
    Closed,
    /// The router refused the membership.
    #[error(transparent)]
    Membership(#[from] MembershipError),
}

/// What [`Handle`]s ask of the endpoint task.
pub(super) enum Command {
    SetMember {
        session: SessionId,
        member: Member,
        reply: oneshot::Sender<Result<(), MembershipError>>,
    },
    RemoveMember {
        session: SessionId,
        reply: oneshot::Sender<bool>,
    },
    /// Many of the two above in one turn of the endpoint loop, in order.
    Apply {
        changes: Vec<MemberChange>,
        reply: oneshot::Sender<()>,
    },
    Resync {
        members: Vec<(SessionId, Member)>,
        keep_connected: bool,
        reply: oneshot::Sender<Resynced>,
    },
    Stats {
        reply: oneshot::Sender<RouterStats>,
    },
    SessionStats {
        reply: oneshot::Sender<Vec<(SessionId, SpeakerStats, ListenerStats)>>,
    },
    Channels {
        reply: oneshot::Sender<Vec<ChannelKey>>,
    },
    /// Every member and where it is.
    Members {
        reply: oneshot::Sender<Vec<(SessionId, Member)>>,
    },
    Shutdown,
}

/// One change of membership, as the control plane sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Add the session or change its place ([`Handle::set_member`]).
    Set(SessionId, Member),
    /// Forget it and close its connection ([`Handle::remove_member`]).
    Remove(SessionId),
}

/// Controls a running [`VoiceEndpoint`] from other tasks.
#[derive(Clone)]
pub struct Handle {
    pub(super) commands: mpsc::UnboundedSender<Command>,
    pub(super) counters: Arc<Counters>,
    /// Taken once by [`Handle::events`]; an mpsc has one receiver.
    pub(super) events: Arc<Mutex<Option<mpsc::Receiver<RouterEvent>>>>,
}

impl Handle {
    /// Sends the command `make` builds around a reply channel, and waits
    /// for the router task's answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, HandleError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| HandleError::Closed)?;
        answer.await.map_err(|_| HandleError::Closed)
    }

    /// Adds `session` or changes its membership; returns once the router
    /// has applied it.
    pub async fn set_member(&self, session: SessionId, member: Member) -> Result<(), HandleError> {
        Ok(self
            .ask(|reply| Command::SetMember {
                session,
                member,
                reply,
            })
            .await??)
    }

    /// Forgets `session` and closes its connection (code 9, "removed").
    /// Returns whether it was a member.
    pub async fn remove_member(&self, session: SessionId) -> Result<bool, HandleError> {
        self.ask(|reply| Command::RemoveMember { session, reply })
            .await
    }

    /// Applies `changes` in order, in one round trip: what the control
    /// link does with the deltas that arrived together, so that a backlog
    /// drains at the endpoint's pace in batches rather than one turn of a
    /// busy loop per delta. A set for session 0 is skipped.
    pub async fn apply(&self, changes: Vec<MemberChange>) -> Result<(), HandleError> {
        self.ask(|reply| Command::Apply { changes, reply }).await
    }

    /// Replaces the membership with `members`, the control plane's full
    /// view after a (re)attach. Sessions it lacks are removed and their
    /// connections closed, except, with `keep_connected`, those with a live
    /// connection: a restarted control plane has lost its sessions, but
    /// their voice still flows, so they keep routing as they were until
    /// their connection ends.
    pub async fn resync(
        &self,
        members: Vec<(SessionId, Member)>,
        keep_connected: bool,
    ) -> Result<Resynced, HandleError> {
        self.ask(|reply| Command::Resync {
            members,
            keep_connected,
            reply,
        })
        .await
    }

    /// The router's totals.
    pub async fn router_stats(&self) -> Result<RouterStats, HandleError> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// Every member's counters, as speaker and as listener.
    pub async fn session_stats(
        &self,
    ) -> Result<Vec<(SessionId, SpeakerStats, ListenerStats)>, HandleError> {
        self.ask(|reply| Command::SessionStats { reply }).await
    }

    /// Every member the router holds and its place (channel, mute,
    /// deafen), as the control plane last said.
    pub async fn members(&self) -> Result<Vec<(SessionId, Member)>, HandleError> {
        self.ask(|reply| Command::Members { reply }).await
    }

    /// The channels that have members now.
    pub async fn channels(&self) -> Result<Vec<ChannelKey>, HandleError> {
        self.ask(|reply| Command::Channels { reply }).await
    }

    /// Whether the endpoint has stopped (its router task is gone), without
    /// a round trip to it: what health checks ask.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    /// Asks the endpoint to close every connection and stop.
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }

    /// The router's events (speaking changes). The first call takes the
    /// receiver; later calls return `None`.
    pub fn events(&self) -> Option<mpsc::Receiver<RouterEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The counters as they are now.
    pub fn stats(&self) -> EndpointStats {
        self.counters.snapshot()
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}
