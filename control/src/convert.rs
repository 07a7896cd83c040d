//! The one place where protobuf types meet core types.
//!
//! Core → wire conversions cannot fail. Wire → core conversions check what
//! protobuf cannot (enums set, ids present) and fail with `INVALID_REQUEST`.

use std::time::{SystemTime, UNIX_EPOCH};

use openspeak_shared::{Reason, pb};
use prost_types::Timestamp;
use tonic::Status;

use crate::{
    event::{ChannelView, Event, Status as Presence, User},
    ids::ChannelId,
    tokens::{Role, TokenInfo},
};

pub fn timestamp(time: SystemTime) -> Timestamp {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

pub fn token_info(info: &TokenInfo) -> pb::TokenInfo {
    pb::TokenInfo {
        id: info.id.clone(),
        label: info.label.clone(),
        role: role(info.role) as i32,
        expires_at: info.expires_at.map(timestamp),
        created_at: Some(timestamp(info.created_at)),
    }
}

pub fn role(role: Role) -> pb::Role {
    match role {
        Role::Admin => pb::Role::Admin,
        Role::Member => pb::Role::Member,
    }
}

/// A role from a request; unspecified or unknown values are refused.
pub fn role_from_wire(value: i32) -> Result<Role, Status> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Member) => Ok(Role::Member),
        _ => Err(Reason::InvalidRequest.status("role must be ROLE_ADMIN or ROLE_MEMBER")),
    }
}

pub fn presence_status(status: Presence) -> pb::Status {
    match status {
        Presence::Online => pb::Status::Online,
        Presence::Away => pb::Status::Away,
        Presence::Dnd => pb::Status::Dnd,
    }
}

/// A presence status from a request; unspecified or unknown values are refused.
pub fn presence_status_from_wire(value: i32) -> Result<Presence, Status> {
    match pb::Status::try_from(value) {
        Ok(pb::Status::Online) => Ok(Presence::Online),
        Ok(pb::Status::Away) => Ok(Presence::Away),
        Ok(pb::Status::Dnd) => Ok(Presence::Dnd),
        _ => Err(Reason::InvalidRequest
            .status("status must be STATUS_ONLINE, STATUS_AWAY or STATUS_DND")),
    }
}

/// A channel id where one is required: empty is `INVALID_REQUEST`.
pub fn channel_id(field: &str, id: &str) -> Result<ChannelId, Status> {
    if id.is_empty() {
        return Err(Reason::InvalidRequest.status(format!("{field} must not be empty")));
    }
    Ok(ChannelId(id.to_owned()))
}

/// A `CreateChannelRequest` as the core's `NewChannel` (the channel rules
/// check it).
pub fn new_channel(req: pb::CreateChannelRequest) -> crate::channels::NewChannel {
    crate::channels::NewChannel {
        name: req.name,
        parent: parent_id(&req.parent_id),
        description: req.description,
        max_members: req.max_members,
        password: req.password,
        temporary: req.temporary,
    }
}

/// A parent id: empty means the top level.
pub fn parent_id(id: &str) -> Option<ChannelId> {
    (!id.is_empty()).then(|| ChannelId(id.to_owned()))
}

pub fn channel(view: &ChannelView) -> pb::Channel {
    pb::Channel {
        id: view.id.to_string(),
        name: view.name.clone(),
        parent_id: view
            .parent
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        description: view.description.clone(),
        max_members: view.max_members,
        has_password: view.has_password,
        temporary: view.temporary,
        member_count: view.member_count,
    }
}

pub fn user(user: &User) -> pb::UserPresence {
    pb::UserPresence {
        session_id: user.id.0,
        display_name: user.display_name.clone(),
        status: presence_status(user.status) as i32,
        status_text: user.status_text.clone(),
        channel_id: user
            .channel
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        self_mute: user.self_mute,
        self_deaf: user.self_deaf,
        speaking: user.speaking,
        idle: user.idle,
    }
}

/// The wire form of a core event, numbered `sequence`.
pub fn event(event: &Event, sequence: u64) -> pb::Event {
    use pb::event::Event as E;
    let inner = match event {
        Event::UserOnline(u) => E::UserOnline(pb::UserOnline {
            user: Some(user(u)),
        }),
        Event::UserOffline(id) => E::UserOffline(pb::UserOffline { session_id: id.0 }),
        Event::ChannelCreated(c) => E::ChannelCreated(pb::ChannelCreated {
            channel: Some(channel(c)),
        }),
        Event::ChannelUpdated(c) => E::ChannelUpdated(pb::ChannelUpdated {
            channel: Some(channel(c)),
        }),
        Event::ChannelDeleted(id) => E::ChannelDeleted(pb::ChannelDeleted {
            channel_id: id.to_string(),
        }),
        Event::MemberJoined { session, channel } => E::MemberJoined(pb::MemberJoined {
            session_id: session.0,
            channel_id: channel.to_string(),
        }),
        Event::MemberLeft { session, channel } => E::MemberLeft(pb::MemberLeft {
            session_id: session.0,
            channel_id: channel.to_string(),
        }),
        Event::PresenceChanged(u) => E::PresenceChanged(pb::PresenceChanged {
            user: Some(user(u)),
        }),
        Event::SpeakingChanged { session, speaking } => E::SpeakingChanged(pb::SpeakingChanged {
            session_id: session.0,
            speaking: *speaking,
        }),
        Event::Kicked { reason, .. } => E::Kicked(pb::Kicked {
            reason: reason.clone(),
        }),
        Event::ServerShutdown { reason } => E::ServerShutdown(pb::ServerShutdown {
            reason: reason.clone(),
        }),
    };
    pb::Event {
        sequence,
        event: Some(inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_enums_are_invalid_requests() {
        let err = role_from_wire(pb::Role::Unspecified as i32).unwrap_err();
        assert_eq!(Reason::of(&err), Some(Reason::InvalidRequest));
        assert!(role_from_wire(99).is_err());
        assert!(presence_status_from_wire(0).is_err());
        assert_eq!(
            presence_status_from_wire(pb::Status::Dnd as i32).unwrap(),
            Presence::Dnd
        );
    }

    #[test]
    fn empty_channel_ids_are_refused_but_empty_parents_mean_top_level() {
        assert!(channel_id("channel_id", "").is_err());
        assert_eq!(parent_id(""), None);
        assert_eq!(parent_id("x"), Some(ChannelId("x".into())));
    }

    #[test]
    fn timestamps_keep_seconds_and_nanos() {
        let t = UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        assert_eq!(
            timestamp(t),
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 5
            }
        );
    }
}
