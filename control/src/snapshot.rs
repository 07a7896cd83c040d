//! The wire form of the whole server, kept ready for new sessions.
//!
//! Every new session gets `session_started`: every channel and every online
//! user. Building that from the hub would convert and encode N users under
//! the broker's lock for every connect, O(N²) for N sessions arriving. This
//! keeps each user's and channel's encoding, refreshed only for what each
//! event touched, so a snapshot is N small copies.

use std::collections::{BTreeMap, HashMap};

use bytes::{BufMut, Bytes, BytesMut};
use openspeak_shared::Encoded;
use prost::{
    Message,
    encoding::{WireType, encode_key, encode_varint, encoded_len_varint},
};

use crate::{
    convert,
    event::Event,
    hub::Hub,
    ids::{ChannelId, SessionId},
};

/// Field numbers of the messages assembled here (see presence.proto).
mod field {
    pub const EVENT_SEQUENCE: u32 = 100;
    pub const EVENT_SESSION_STARTED: u32 = 1;
    pub const STARTED_SESSION_ID: u32 = 1;
    pub const STARTED_CHANNELS: u32 = 2;
    pub const STARTED_USERS: u32 = 3;
}

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Encoded `UserPresence` of every session, in id order, with the
    /// channel it was in (a move changes two channels' member counts).
    users: BTreeMap<SessionId, (Bytes, Option<ChannelId>)>,
    /// Encoded `Channel` of every channel.
    channels: HashMap<ChannelId, Bytes>,
}

impl Snapshot {
    pub fn new(hub: &Hub) -> Self {
        let mut snapshot = Self::default();
        for user in hub.users() {
            snapshot.refresh_user(hub, user.id);
        }
        for id in hub.channel_ids() {
            snapshot.refresh_channel(hub, id);
        }
        snapshot
    }

    /// Brings up to date what `event` touched, from the hub as it is now.
    pub fn note(&mut self, hub: &Hub, event: &Event) {
        match event {
            Event::UserOnline(user) | Event::PresenceChanged(user) => {
                self.refresh_user(hub, user.id)
            }
            Event::UserOffline(session)
            | Event::SpeakingChanged { session, .. }
            | Event::Kicked { session, .. } => self.refresh_user(hub, *session),
            Event::MemberJoined { session, .. } | Event::MemberLeft { session, .. } => {
                self.refresh_user(hub, *session)
            }
            Event::ChannelCreated(c) | Event::ChannelUpdated(c) => self.refresh_channel(hub, &c.id),
            Event::ChannelDeleted(id) => self.refresh_channel(hub, id),
            Event::ServerShutdown { .. } => {}
        }
    }

    /// `session_started` for `session`, numbered `sequence`: the same bytes
    /// prost would write for the equivalent `pb::Event`.
    pub fn session_started(&self, hub: &Hub, session: SessionId, sequence: u64) -> Encoded {
        let channels: Vec<&Bytes> = hub
            .channel_ids()
            .filter_map(|id| self.channels.get(id))
            .collect();
        let users = self.users.values().map(|(bytes, _)| bytes);

        let mut started_len =
            key_len(field::STARTED_SESSION_ID) + encoded_len_varint(session.0.into());
        started_len += channels
            .iter()
            .map(|c| embedded_len(field::STARTED_CHANNELS, c))
            .sum::<usize>();
        started_len += users
            .clone()
            .map(|u| embedded_len(field::STARTED_USERS, u))
            .sum::<usize>();

        // proto3 leaves out fields at their default, as prost does.
        let sequence_len = if sequence == 0 {
            0
        } else {
            key_len(field::EVENT_SEQUENCE) + encoded_len_varint(sequence)
        };
        let total = sequence_len
            + key_len(field::EVENT_SESSION_STARTED)
            + encoded_len_varint(started_len as u64)
            + started_len;
        let mut buf = BytesMut::with_capacity(total);
        encode_key(
            field::EVENT_SESSION_STARTED,
            WireType::LengthDelimited,
            &mut buf,
        );
        encode_varint(started_len as u64, &mut buf);
        encode_key(field::STARTED_SESSION_ID, WireType::Varint, &mut buf);
        encode_varint(session.0.into(), &mut buf);
        for channel in channels {
            put_embedded(field::STARTED_CHANNELS, channel, &mut buf);
        }
        for user in users {
            put_embedded(field::STARTED_USERS, user, &mut buf);
        }
        // Fields in tag order, as prost writes them.
        if sequence != 0 {
            encode_key(field::EVENT_SEQUENCE, WireType::Varint, &mut buf);
            encode_varint(sequence, &mut buf);
        }
        debug_assert_eq!(buf.len(), total);
        Encoded::from_bytes(buf.freeze())
    }

    fn refresh_user(&mut self, hub: &Hub, id: SessionId) {
        let old = match hub.user(id) {
            Some(user) => {
                let bytes = convert::user(user).encode_to_vec().into();
                self.users.insert(id, (bytes, user.channel.clone()))
            }
            None => self.users.remove(&id),
        };
        let old_channel = old.and_then(|(_, channel)| channel);
        let new_channel = hub.user(id).and_then(|u| u.channel.clone());
        if old_channel != new_channel {
            for channel in [old_channel, new_channel].into_iter().flatten() {
                self.refresh_channel(hub, &channel);
            }
        }
    }

    fn refresh_channel(&mut self, hub: &Hub, id: &ChannelId) {
        match hub.channel(id.as_str()) {
            Ok(view) => {
                self.channels
                    .insert(id.clone(), convert::channel(&view).encode_to_vec().into());
            }
            Err(_) => {
                self.channels.remove(id);
            }
        }
    }
}

fn key_len(tag: u32) -> usize {
    prost::encoding::key_len(tag)
}

fn embedded_len(tag: u32, bytes: &[u8]) -> usize {
    key_len(tag) + encoded_len_varint(bytes.len() as u64) + bytes.len()
}

fn put_embedded(tag: u32, bytes: &[u8], buf: &mut BytesMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime};

    use openspeak_shared::pb;

    use super::*;
    use crate::{
        channels::{ChannelTree, NewChannel},
        tokens::{Role, TokenInfo},
    };

    fn token() -> TokenInfo {
        TokenInfo {
            id: "t".into(),
            label: "t".into(),
            role: Role::Admin,
            created_at: SystemTime::UNIX_EPOCH,
            expires_at: None,
        }
    }

    /// What the snapshot must equal: the hub converted the slow way.
    fn expected(hub: &Hub, session: SessionId, sequence: u64) -> pb::Event {
        pb::Event {
            sequence,
            event: Some(pb::event::Event::SessionStarted(pb::SessionStarted {
                session_id: session.0,
                channels: hub.channels().iter().map(convert::channel).collect(),
                users: hub.users().iter().map(convert::user).collect(),
            })),
        }
    }

    fn check(snapshot: &Snapshot, hub: &Hub, session: SessionId, sequence: u64) {
        let encoded = snapshot.session_started(hub, session, sequence);
        let decoded = pb::Event::decode(encoded.as_bytes()).unwrap();
        assert_eq!(decoded, expected(hub, session, sequence));
        assert_eq!(
            encoded.as_bytes(),
            expected(hub, session, sequence).encode_to_vec()
        );
    }

    #[test]
    fn follows_every_kind_of_change() {
        let now = Instant::now();
        let mut hub = Hub::new(
            ChannelTree::new("Lobby", now).unwrap(),
            Duration::from_secs(60),
        );
        let mut snapshot = Snapshot::new(&hub);
        let apply = |hub: &mut Hub, snapshot: &mut Snapshot| {
            let events: Vec<_> = hub.drain_events().collect();
            for event in &events {
                snapshot.note(hub, event);
            }
        };
        check(&snapshot, &hub, SessionId(1), 0);

        let a = SessionId(1);
        let b = SessionId(2);
        hub.start_session(a, &token(), "alice", now).unwrap();
        hub.start_session(b, &token(), "bob", now).unwrap();
        let games = hub
            .create_channel(
                NewChannel {
                    name: "Games".into(),
                    ..NewChannel::default()
                },
                now,
            )
            .unwrap()
            .id;
        apply(&mut hub, &mut snapshot);
        check(&snapshot, &hub, SessionId(3), 5);

        hub.join(a, games.as_str(), "").unwrap();
        hub.update_presence(
            b,
            crate::hub::PresencePatch {
                self_mute: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
        apply(&mut hub, &mut snapshot);
        check(&snapshot, &hub, SessionId(3), 9);

        hub.delete_channel(games.as_str()).unwrap();
        hub.end_session(b);
        apply(&mut hub, &mut snapshot);
        check(&snapshot, &hub, SessionId(3), 300);
    }
}
