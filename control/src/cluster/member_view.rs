//! What one data plane knows of the sessions, kept in step with the feed.
//!
//! Core events do not all carry a whole session (`MemberJoined` names only
//! the session and the channel), but a data plane is sent whole members, so
//! each attached data plane's link keeps this small copy and sends a member
//! every time one of its routing-relevant fields changes.

use std::collections::HashMap;

use openspeak_shared::pb::cluster::{
    ControlMessage, Member, MemberRemoved, MemberUpdate, control_message::Kind,
};

use crate::{
    event::{Event, User},
    ids::SessionId,
};

#[derive(Debug, Default)]
pub struct MemberView {
    members: HashMap<SessionId, Member>,
}

impl MemberView {
    pub fn new(users: &[User]) -> Self {
        Self {
            members: users.iter().map(|u| (u.id, member(u))).collect(),
        }
    }

    /// Every member, ordered by session id.
    pub fn members(&self) -> Vec<Member> {
        let mut members: Vec<_> = self.members.values().cloned().collect();
        members.sort_by_key(|m| m.session_id);
        members
    }

    /// Applies `event`; returns the delta for the data plane, if the
    /// event changed anything it routes by.
    pub fn apply(&mut self, event: &Event) -> Option<ControlMessage> {
        match event {
            Event::UserOnline(user) | Event::PresenceChanged(user) => {
                self.put(user.id, member(user))
            }
            Event::MemberJoined { session, channel } => {
                let mut m = self.members.get(session)?.clone();
                m.channel_id = channel.0.clone();
                self.put(*session, m)
            }
            Event::MemberLeft { session, channel } => {
                let mut m = self.members.get(session)?.clone();
                if m.channel_id != channel.0 {
                    return None;
                }
                m.channel_id.clear();
                self.put(*session, m)
            }
            Event::UserOffline(session) | Event::Kicked { session, .. } => {
                self.members.remove(session)?;
                Some(message(Kind::MemberRemoved(MemberRemoved {
                    session_id: session.0,
                })))
            }
            Event::SpeakingChanged { .. }
            | Event::ChannelCreated(_)
            | Event::ChannelUpdated(_)
            | Event::ChannelDeleted(_)
            | Event::ServerShutdown { .. } => None,
        }
    }

    fn put(&mut self, id: SessionId, new: Member) -> Option<ControlMessage> {
        if self.members.get(&id) == Some(&new) {
            return None;
        }
        self.members.insert(id, new.clone());
        Some(message(Kind::MemberUpdate(MemberUpdate {
            member: Some(new),
        })))
    }
}

fn member(user: &User) -> Member {
    Member {
        session_id: user.id.0,
        channel_id: user
            .channel
            .as_ref()
            .map(|c| c.0.clone())
            .unwrap_or_default(),
        muted: user.self_mute,
        deafened: user.self_deaf,
    }
}

fn message(kind: Kind) -> ControlMessage {
    ControlMessage { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event::Status, ids::ChannelId};

    fn user(id: u32, channel: &str) -> User {
        User {
            id: SessionId(id),
            display_name: format!("user{id}"),
            status: Status::Online,
            status_text: String::new(),
            channel: Some(ChannelId(channel.into())),
            self_mute: false,
            self_deaf: false,
            speaking: false,
            idle: false,
        }
    }

    fn update(kind: Option<ControlMessage>) -> Member {
        match kind.and_then(|m| m.kind) {
            Some(Kind::MemberUpdate(u)) => u.member.unwrap(),
            other => panic!("expected a member update, got {other:?}"),
        }
    }

    #[test]
    fn a_move_and_a_mute_become_whole_members() {
        let mut view = MemberView::new(&[user(1, "lobby")]);
        let left = update(view.apply(&Event::MemberLeft {
            session: SessionId(1),
            channel: ChannelId("lobby".into()),
        }));
        assert_eq!(left.channel_id, "");
        let joined = update(view.apply(&Event::MemberJoined {
            session: SessionId(1),
            channel: ChannelId("games".into()),
        }));
        assert_eq!(joined.channel_id, "games");
        let mut muted = user(1, "games");
        muted.self_mute = true;
        let m = update(view.apply(&Event::PresenceChanged(muted.clone())));
        assert!(m.muted && !m.deafened);
        // A presence change that routing does not care about sends nothing.
        muted.status_text = "brb".into();
        assert_eq!(view.apply(&Event::PresenceChanged(muted)), None);
    }

    #[test]
    fn a_kick_then_offline_removes_once() {
        let mut view = MemberView::new(&[user(1, "lobby")]);
        let removed = view.apply(&Event::Kicked {
            session: SessionId(1),
            cause: crate::event::KickCause::TokenRevoked,
            reason: String::new(),
        });
        assert!(matches!(
            removed.and_then(|m| m.kind),
            Some(Kind::MemberRemoved(MemberRemoved { session_id: 1 }))
        ));
        assert_eq!(view.apply(&Event::UserOffline(SessionId(1))), None);
        assert!(view.members().is_empty());
    }
}
