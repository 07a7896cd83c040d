//! What happened on the server, in the core's own terms.
//!
//! `Hub` emits these in the order they happen; `Broker` numbers them and
//! turns them into the wire form once for all subscribers.

use crate::{
    channels::Channel,
    ids::{ChannelId, SessionId},
};

/// A session's presence as others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: SessionId,
    pub display_name: String,
    pub status: Status,
    pub status_text: String,
    /// `None`: in no channel.
    pub channel: Option<ChannelId>,
    pub self_mute: bool,
    pub self_deaf: bool,
    pub speaking: bool,
    pub idle: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Online,
    Away,
    Dnd,
}

/// A channel as others see it (no password, a member count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelView {
    pub id: ChannelId,
    pub name: String,
    pub parent: Option<ChannelId>,
    pub description: String,
    pub max_members: u32,
    pub has_password: bool,
    pub temporary: bool,
    pub member_count: u32,
}

impl From<&Channel> for ChannelView {
    fn from(c: &Channel) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            parent: c.parent.clone(),
            description: c.description.clone(),
            max_members: c.max_members,
            has_password: c.has_password(),
            temporary: c.temporary,
            member_count: u32::try_from(c.members.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Why the server ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickCause {
    TokenRevoked,
    TokenExpired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    UserOnline(User),
    UserOffline(SessionId),
    ChannelCreated(ChannelView),
    ChannelUpdated(ChannelView),
    ChannelDeleted(ChannelId),
    MemberJoined {
        session: SessionId,
        channel: ChannelId,
    },
    MemberLeft {
        session: SessionId,
        channel: ChannelId,
    },
    PresenceChanged(User),
    SpeakingChanged {
        session: SessionId,
        speaking: bool,
    },
    /// For `session` only; its stream ends right after.
    Kicked {
        session: SessionId,
        cause: KickCause,
        reason: String,
    },
    ServerShutdown {
        reason: String,
    },
}

impl Event {
    /// The one session an event is for, when it is not for everyone.
    pub fn target(&self) -> Option<SessionId> {
        match self {
            Event::Kicked { session, .. } => Some(*session),
            _ => None,
        }
    }
}
