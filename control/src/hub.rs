//! The control plane's core: sessions, their channels and presence, and
//! the events every change produces.
//!
//! `Hub` does no IO and never reads the clock: every input that depends on
//! time takes `now`. Each operation checks its rules, changes the state and
//! queues the events that describe the change, in order; the caller drains
//! them with [`Hub::drain_events`] before releasing its lock, so the order
//! of events is the order of changes. Permission checks (admin or not) are
//! the caller's; the hub only knows that admins bypass passwords and
//! capacity.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant, SystemTime},
};

use crate::{
    channels::{ChannelError, ChannelPatch, ChannelRecord, ChannelTree, NewChannel},
    event::{ChannelView, Event, KickCause, Status, User},
    ids::{ChannelId, SessionId},
    limits::{self, Echo, LimitError},
    tokens::TokenInfo,
};

/// An empty temporary channel is deleted this long after it became temporary.
pub const TEMPORARY_CHANNEL_GRACE: Duration = Duration::from_secs(60);

/// One live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    /// The token that opened it: only that token may act for it.
    pub token_id: String,
    /// Admins bypass channel passwords and capacity.
    pub admin: bool,
    /// The session ends when its token does.
    pub token_expires_at: Option<SystemTime>,
    last_activity: Instant,
}

/// A change to a session's presence; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct PresencePatch {
    pub status: Option<Status>,
    pub status_text: Option<String>,
    pub self_mute: Option<bool>,
    pub self_deaf: Option<bool>,
}

/// Why a hub operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("no live session {0} belongs to this token")]
    SessionRequired(SessionId),
    #[error("no session has id {0}")]
    UserNotFound(SessionId),
    #[error("the session is in no channel")]
    NotInChannel,
    #[error("channel {} is full", Echo(.0))]
    ChannelFull(String),
    #[error("wrong password for channel {}", Echo(.0))]
    WrongPassword(String),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Invalid(#[from] LimitError),
    #[error(
        "this token already has {0} sessions open, as many as one member token may have \
         (auth.max_sessions_per_token); end one first"
    )]
    TooManySessions(u32),
}

/// Cloning is how `Broker` tries a change before saving it.
#[derive(Debug, Clone)]
pub struct Hub {
    channels: ChannelTree,
    /// Ordered by id so listings are stable.
    sessions: BTreeMap<SessionId, Session>,
    idle_timeout: Duration,
    /// Sessions one member token may have open; 0 = no limit.
    max_sessions_per_token: u32,
    outbox: VecDeque<Event>,
}

impl Hub {
    pub fn new(channels: ChannelTree, idle_timeout: Duration) -> Self {
        Self {
            channels,
            sessions: BTreeMap::new(),
            idle_timeout,
            max_sessions_per_token: 0,
            outbox: VecDeque::new(),
        }
    }

    /// Caps the sessions one member token may have open (0: no cap), so
    /// that one token cannot fill the server with sessions. Admin tokens
    /// are not capped: they may do anything anyway.
    pub fn with_session_cap(mut self, max_sessions_per_token: u32) -> Self {
        self.max_sessions_per_token = max_sessions_per_token;
        self
    }

    /// The channel tree as records, for saving.
    pub fn channel_records(&self) -> Vec<ChannelRecord> {
        self.channels.records()
    }

    /// The events queued since the last call, oldest first.
    pub fn drain_events(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.outbox.drain(..)
    }

    // ----- getters -------------------------------------------------------

    pub fn contains(&self, id: SessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Channels that exist, the default one included.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// The session `id` if it belongs to `token_id`.
    pub fn session_of(&self, id: SessionId, token_id: &str) -> Result<&Session, HubError> {
        self.sessions
            .get(&id)
            .filter(|s| s.token_id == token_id)
            .ok_or(HubError::SessionRequired(id))
    }

    pub fn channel(&self, id: &str) -> Result<ChannelView, HubError> {
        self.channels
            .get(id)
            .map(ChannelView::from)
            .ok_or_else(|| ChannelError::NotFound(ChannelId(id.to_owned())).into())
    }

    /// Every channel's id, parents before children.
    pub fn channel_ids(&self) -> impl Iterator<Item = &ChannelId> {
        self.channels.iter().map(|c| &c.id)
    }

    /// The presence of session `id`.
    pub fn user(&self, id: SessionId) -> Option<&User> {
        self.sessions.get(&id).map(|s| &s.user)
    }

    /// Every channel, parents before children.
    pub fn channels(&self) -> Vec<ChannelView> {
        self.channels.iter().map(ChannelView::from).collect()
    }

    /// Every online session.
    pub fn users(&self) -> Vec<User> {
        self.sessions.values().map(|s| s.user.clone()).collect()
    }

    /// The sessions in channel `id`.
    pub fn members(&self, id: &str) -> Result<Vec<User>, HubError> {
        let channel = self
            .channels
            .get(id)
            .ok_or_else(|| ChannelError::NotFound(ChannelId(id.to_owned())))?;
        Ok(channel
            .members
            .iter()
            .filter_map(|m| self.sessions.get(m))
            .map(|s| s.user.clone())
            .collect())
    }

    // ----- sessions ------------------------------------------------------

    /// Starts session `id` (fresh, from `SessionIds`) in the default channel.
    /// Others get `user_online`; the session itself gets none.
    pub fn start_session(
        &mut self,
        id: SessionId,
        token: &TokenInfo,
        display_name: &str,
        now: Instant,
    ) -> Result<User, HubError> {
        let display_name = limits::name("display_name", display_name)?;
        let cap = self.max_sessions_per_token;
        // A scan rather than a count per token: it runs once per new
        // session, and there is no second count to keep right.
        if cap > 0
            && !token.is_admin()
            && self
                .sessions
                .values()
                .filter(|s| s.token_id == token.id)
                .count()
                >= cap as usize
        {
            return Err(HubError::TooManySessions(cap));
        }
        let lobby = self.channels.default_id().clone();
        let user = User {
            id,
            display_name,
            status: Status::Online,
            status_text: String::new(),
            channel: Some(lobby.clone()),
            self_mute: false,
            self_deaf: false,
            speaking: false,
            idle: false,
        };
        self.channels.add_member(&lobby, id);
        self.sessions.insert(
            id,
            Session {
                user: user.clone(),
                token_id: token.id.clone(),
                admin: token.is_admin(),
                token_expires_at: token.expires_at,
                last_activity: now,
            },
        );
        self.outbox.push_back(Event::UserOnline(user.clone()));
        Ok(user)
    }

    /// Ends session `id` (its stream closed). Returns false if it was gone.
    pub fn end_session(&mut self, id: SessionId) -> bool {
        let Some(session) = self.sessions.remove(&id) else {
            return false;
        };
        if let Some(channel) = &session.user.channel {
            self.channels.remove_member(channel, id);
        }
        self.outbox.push_back(Event::UserOffline(id));
        if let Some(channel) = session.user.channel {
            self.delete_if_abandoned(&channel);
        }
        true
    }

    /// Ends every session of token `token_id`: each gets `kicked`, everyone
    /// `user_offline`. Returns how many ended.
    pub fn kick_token(&mut self, token_id: &str, cause: KickCause, reason: &str) -> usize {
        let ids: Vec<_> = self
            .sessions
            .values()
            .filter(|s| s.token_id == token_id)
            .map(|s| s.user.id)
            .collect();
        for &id in &ids {
            self.kick(id, cause, reason);
        }
        ids.len()
    }

    fn kick(&mut self, id: SessionId, cause: KickCause, reason: &str) {
        self.outbox.push_back(Event::Kicked {
            session: id,
            cause,
            reason: reason.to_owned(),
        });
        self.end_session(id);
    }

    /// Marks session `id` as talking or not, as its data plane reports.
    /// Returns false (and changes nothing) for an unknown session; only a
    /// change is announced.
    pub fn set_speaking(&mut self, id: SessionId, speaking: bool) -> bool {
        let Some(session) = self.sessions.get_mut(&id) else {
            return false;
        };
        if session.user.speaking != speaking {
            session.user.speaking = speaking;
            self.outbox.push_back(Event::SpeakingChanged {
                session: id,
                speaking,
            });
        }
        true
    }

    /// Notes activity of session `id`, clearing its idle mark.
    pub fn touch(&mut self, id: SessionId, now: Instant) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        session.last_activity = now;
        if session.user.idle {
            session.user.idle = false;
            self.outbox
                .push_back(Event::PresenceChanged(session.user.clone()));
        }
    }

    pub fn update_presence(
        &mut self,
        id: SessionId,
        patch: PresencePatch,
    ) -> Result<User, HubError> {
        let status_text = patch
            .status_text
            .as_deref()
            .map(|t| limits::text("status_text", t, limits::SHORT_TEXT_MAX))
            .transpose()?;
        let session = self
            .sessions
            .get_mut(&id)
            .ok_or(HubError::SessionRequired(id))?;
        let before = session.user.clone();
        let user = &mut session.user;
        if let Some(status) = patch.status {
            user.status = status;
        }
        if let Some(text) = status_text {
            user.status_text = text;
        }
        if let Some(mute) = patch.self_mute {
            user.self_mute = mute;
        }
        if let Some(deaf) = patch.self_deaf {
            user.self_deaf = deaf;
        }
        let after = user.clone();
        if after != before {
            self.outbox.push_back(Event::PresenceChanged(after.clone()));
        }
        Ok(after)
    }

    // ----- membership ----------------------------------------------------

    /// Moves session `id` into channel `channel_id`. Members need the
    /// password and room; admins do not.
    pub fn join(
        &mut self,
        id: SessionId,
        channel_id: &str,
        password: &str,
    ) -> Result<ChannelView, HubError> {
        let session = self
            .sessions
            .get(&id)
            .ok_or(HubError::SessionRequired(id))?;
        let channel = self
            .channels
            .get(channel_id)
            .ok_or_else(|| ChannelError::NotFound(ChannelId(channel_id.to_owned())))?;
        if session.user.channel.as_ref() == Some(&channel.id) {
            return Ok(ChannelView::from(channel));
        }
        if !session.admin {
            if !channel.password_matches(password) {
                return Err(HubError::WrongPassword(channel.name.clone()));
            }
            if !channel.has_room() {
                return Err(HubError::ChannelFull(channel.name.clone()));
            }
        }
        let target = channel.id.clone();
        self.place(id, Some(target.clone()));
        self.channel(target.as_str())
    }

    /// Takes session `id` out of its channel.
    pub fn leave(&mut self, id: SessionId) -> Result<(), HubError> {
        let session = self
            .sessions
            .get(&id)
            .ok_or(HubError::SessionRequired(id))?;
        if session.user.channel.is_none() {
            return Err(HubError::NotInChannel);
        }
        self.place(id, None);
        Ok(())
    }

    /// Moves another session; ignores password and capacity.
    pub fn move_member(&mut self, id: SessionId, channel_id: &str) -> Result<(), HubError> {
        if !self.sessions.contains_key(&id) {
            return Err(HubError::UserNotFound(id));
        }
        let target = self
            .channels
            .get(channel_id)
            .ok_or_else(|| ChannelError::NotFound(ChannelId(channel_id.to_owned())))?
            .id
            .clone();
        self.place(id, Some(target));
        Ok(())
    }

    /// Puts a session into `target` (or none): `member_left` for the old
    /// channel, `member_joined` for the new, and the old channel deleted if
    /// it was temporary and is now empty.
    fn place(&mut self, id: SessionId, target: Option<ChannelId>) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if session.user.channel == target {
            return;
        }
        let old = std::mem::replace(&mut session.user.channel, target.clone());
        if let Some(old) = &old {
            self.channels.remove_member(old, id);
            self.outbox.push_back(Event::MemberLeft {
                session: id,
                channel: old.clone(),
            });
        }
        if let Some(new) = target {
            self.channels.add_member(&new, id);
            self.outbox.push_back(Event::MemberJoined {
                session: id,
                channel: new,
            });
        }
        if let Some(old) = old {
            self.delete_if_abandoned(&old);
        }
    }

    // ----- channels ------------------------------------------------------

    pub fn create_channel(
        &mut self,
        new: NewChannel,
        now: Instant,
    ) -> Result<ChannelView, HubError> {
        let view = ChannelView::from(self.channels.create(new, now)?);
        self.outbox.push_back(Event::ChannelCreated(view.clone()));
        Ok(view)
    }

    pub fn update_channel(
        &mut self,
        id: &str,
        patch: ChannelPatch,
        now: Instant,
    ) -> Result<ChannelView, HubError> {
        let view = ChannelView::from(self.channels.update(id, patch, now)?);
        self.outbox.push_back(Event::ChannelUpdated(view.clone()));
        Ok(view)
    }

    /// Deletes a channel and its subchannels; their members move to the
    /// deleted channel's parent (or the default channel).
    pub fn delete_channel(&mut self, id: &str) -> Result<(), HubError> {
        let channel = self
            .channels
            .get(id)
            .ok_or_else(|| ChannelError::NotFound(ChannelId(id.to_owned())))?;
        if channel.id == *self.channels.default_id() {
            return Err(ChannelError::DefaultChannel("cannot be deleted").into());
        }
        let refuge = channel
            .parent
            .clone()
            .unwrap_or_else(|| self.channels.default_id().clone());
        let doomed = self.channels.subtree(id);
        for channel in &doomed {
            let members: Vec<_> = self
                .channels
                .get(channel.as_str())
                .map_or(Vec::new(), |c| c.members.iter().copied().collect());
            for member in members {
                let Some(session) = self.sessions.get_mut(&member) else {
                    continue;
                };
                session.user.channel = Some(refuge.clone());
                self.channels.remove_member(channel, member);
                self.channels.add_member(&refuge, member);
                self.outbox.push_back(Event::MemberLeft {
                    session: member,
                    channel: channel.clone(),
                });
                self.outbox.push_back(Event::MemberJoined {
                    session: member,
                    channel: refuge.clone(),
                });
            }
        }
        for removed in self.channels.remove_subtree(id)? {
            self.outbox.push_back(Event::ChannelDeleted(removed.id));
        }
        Ok(())
    }

    /// A temporary channel goes when its last member leaves.
    fn delete_if_abandoned(&mut self, id: &ChannelId) {
        let abandoned = self
            .channels
            .get(id.as_str())
            .is_some_and(|c| c.temporary && c.members.is_empty());
        if abandoned {
            // Cannot fail: the channel exists and is not the default one
            // (which can never be temporary).
            let _ = self.delete_channel(id.as_str());
        }
    }

    // ----- time ----------------------------------------------------------

    /// Advances time: marks idle sessions, ends sessions whose token
    /// expired (`wall` is the wall clock, which token expiry is kept in),
    /// and deletes temporary channels nobody joined within a minute.
    pub fn handle_timeout(&mut self, now: Instant, wall: SystemTime) {
        let mut expired = Vec::new();
        for session in self.sessions.values_mut() {
            if session.token_expires_at.is_some_and(|at| wall >= at) {
                expired.push(session.user.id);
                continue;
            }
            let quiet = now.saturating_duration_since(session.last_activity);
            if !session.user.idle && quiet >= self.idle_timeout {
                session.user.idle = true;
                self.outbox
                    .push_back(Event::PresenceChanged(session.user.clone()));
            }
        }
        for id in expired {
            self.kick(id, KickCause::TokenExpired, "your token expired");
        }

        let stale: Vec<_> = self
            .channels
            .iter()
            .filter(|c| {
                c.temporary
                    && c.members.is_empty()
                    && now.saturating_duration_since(c.temporary_since) >= TEMPORARY_CHANNEL_GRACE
            })
            .map(|c| c.id.clone())
            .collect();
        for id in stale {
            // A parent deleted earlier in this loop took its children along.
            if self.channels.get(id.as_str()).is_some() {
                let _ = self.delete_channel(id.as_str());
            }
        }
    }

    /// Tells every session the server is going away.
    pub fn shutdown(&mut self, reason: &str) {
        self.outbox.push_back(Event::ServerShutdown {
            reason: reason.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::Role;

    const IDLE: Duration = Duration::from_secs(300);

    struct Fixture {
        hub: Hub,
        t0: Instant,
        member: TokenInfo,
        admin: TokenInfo,
    }

    fn token(id: &str, role: Role) -> TokenInfo {
        TokenInfo {
            id: id.into(),
            label: id.into(),
            role,
            created_at: SystemTime::UNIX_EPOCH,
            expires_at: None,
        }
    }

    fn fixture() -> Fixture {
        let t0 = Instant::now();
        Fixture {
            hub: Hub::new(ChannelTree::new("Lobby", t0).unwrap(), IDLE),
            t0,
            member: token("m", Role::Member),
            admin: token("a", Role::Admin),
        }
    }

    impl Fixture {
        fn start(&mut self, id: u32, admin: bool) -> SessionId {
            let token = if admin { &self.admin } else { &self.member };
            let id = SessionId(id);
            self.hub
                .start_session(id, &token.clone(), &format!("user{id}"), self.t0)
                .unwrap();
            id
        }

        fn channel(&mut self, name: &str, f: impl FnOnce(&mut NewChannel)) -> ChannelId {
            let mut new = NewChannel {
                name: name.into(),
                ..NewChannel::default()
            };
            f(&mut new);
            self.hub.create_channel(new, self.t0).unwrap().id
        }

        fn events(&mut self) -> Vec<Event> {
            self.hub.drain_events().collect()
        }
    }

    fn lobby() -> ChannelId {
        ChannelId::default_channel()
    }

    #[test]
    fn a_new_session_starts_in_the_default_channel_and_is_announced() {
        let mut f = fixture();
        let id = f.start(7, false);
        let user = f.hub.users().pop().unwrap();
        assert_eq!(user.channel, Some(lobby()));
        assert_eq!(f.events(), vec![Event::UserOnline(user)]);
        assert_eq!(f.hub.members(lobby().as_str()).unwrap()[0].id, id);
    }

    #[test]
    fn a_member_token_may_have_only_so_many_sessions_and_an_admin_token_any() {
        let mut f = fixture();
        f.hub = f.hub.with_session_cap(2);
        let (first, _) = (f.start(1, false), f.start(2, false));
        let third = f
            .hub
            .start_session(SessionId(3), &f.member.clone(), "user3", f.t0);
        assert_eq!(third, Err(HubError::TooManySessions(2)));
        assert!(!f.hub.contains(SessionId(3)), "nothing of it was kept");

        // Another member token has places of its own; admins have no cap.
        let other = token("m2", Role::Member);
        f.hub
            .start_session(SessionId(4), &other, "user4", f.t0)
            .unwrap();
        for id in 5..10 {
            f.start(id, true);
        }

        // A session that ends frees its place.
        assert!(f.hub.end_session(first));
        f.start(3, false);
    }

    #[test]
    fn speaking_is_announced_only_when_it_changes() {
        let mut f = fixture();
        let id = f.start(3, false);
        f.events();
        assert!(f.hub.set_speaking(id, true));
        assert!(f.hub.set_speaking(id, true));
        assert!(f.hub.user(id).unwrap().speaking);
        assert!(f.hub.set_speaking(id, false));
        assert_eq!(
            f.events(),
            vec![
                Event::SpeakingChanged {
                    session: id,
                    speaking: true
                },
                Event::SpeakingChanged {
                    session: id,
                    speaking: false
                },
            ]
        );
        assert!(!f.hub.set_speaking(SessionId(99), true));
        assert!(f.events().is_empty());
    }

    #[test]
    fn a_move_sends_member_left_then_member_joined() {
        let mut f = fixture();
        let id = f.start(1, false);
        let games = f.channel("Games", |_| {});
        f.events();
        let view = f.hub.join(id, games.as_str(), "").unwrap();
        assert_eq!(view.member_count, 1);
        assert_eq!(
            f.events(),
            vec![
                Event::MemberLeft {
                    session: id,
                    channel: lobby()
                },
                Event::MemberJoined {
                    session: id,
                    channel: games.clone()
                },
            ]
        );
        // Joining the channel one is in changes nothing.
        f.hub.join(id, games.as_str(), "").unwrap();
        assert!(f.events().is_empty());
    }

    #[test]
    fn members_need_password_and_room_but_admins_do_not() {
        let mut f = fixture();
        let member = f.start(1, false);
        let other = f.start(2, false);
        let admin = f.start(3, true);
        let locked = f.channel("Locked", |c| c.password = "pw".into());
        let solo = f.channel("Solo", |c| c.max_members = 1);

        assert_eq!(
            f.hub.join(member, locked.as_str(), "nope"),
            Err(HubError::WrongPassword("Locked".into()))
        );
        assert!(f.hub.join(member, locked.as_str(), "pw").is_ok());
        assert!(f.hub.join(admin, locked.as_str(), "").is_ok());

        assert!(f.hub.join(other, solo.as_str(), "").is_ok());
        assert_eq!(
            f.hub.join(member, solo.as_str(), ""),
            Err(HubError::ChannelFull("Solo".into()))
        );
        assert!(f.hub.join(admin, solo.as_str(), "").is_ok());
        // MoveMember bypasses both as well.
        assert!(f.hub.move_member(member, solo.as_str()).is_ok());
        assert_eq!(f.hub.channel(solo.as_str()).unwrap().member_count, 3);
    }

    #[test]
    fn leaving_puts_the_session_in_no_channel() {
        let mut f = fixture();
        let id = f.start(1, false);
        f.events();
        f.hub.leave(id).unwrap();
        assert_eq!(f.hub.users()[0].channel, None);
        assert_eq!(
            f.events(),
            vec![Event::MemberLeft {
                session: id,
                channel: lobby()
            }]
        );
        assert_eq!(f.hub.leave(id), Err(HubError::NotInChannel));
    }

    #[test]
    fn ending_a_session_sends_only_user_offline() {
        let mut f = fixture();
        let id = f.start(1, false);
        f.events();
        assert!(f.hub.end_session(id));
        assert_eq!(f.events(), vec![Event::UserOffline(id)]);
        assert!(f.hub.members(lobby().as_str()).unwrap().is_empty());
        assert!(!f.hub.end_session(id));
    }

    #[test]
    fn sessions_belong_to_their_token() {
        let mut f = fixture();
        let id = f.start(1, false);
        assert!(f.hub.session_of(id, "m").is_ok());
        assert_eq!(
            f.hub.session_of(id, "a").unwrap_err(),
            HubError::SessionRequired(id)
        );
        assert!(f.hub.session_of(SessionId(99), "m").is_err());
    }

    #[test]
    fn a_temporary_channel_goes_with_its_last_member() {
        let mut f = fixture();
        let a = f.start(1, false);
        let b = f.start(2, false);
        let temp = f.channel("Temp", |c| c.temporary = true);
        f.hub.join(a, temp.as_str(), "").unwrap();
        f.hub.join(b, temp.as_str(), "").unwrap();
        f.hub.join(a, lobby().as_str(), "").unwrap();
        assert!(f.hub.channel(temp.as_str()).is_ok());
        f.events();
        // The last member's session ends: the channel goes after user_offline.
        f.hub.end_session(b);
        assert_eq!(
            f.events(),
            vec![Event::UserOffline(b), Event::ChannelDeleted(temp.clone())]
        );
    }

    #[test]
    fn an_unjoined_temporary_channel_goes_after_a_minute() {
        let mut f = fixture();
        let temp = f.channel("Temp", |c| c.temporary = true);
        let wall = SystemTime::now();
        f.events();
        f.hub.handle_timeout(f.t0 + Duration::from_secs(59), wall);
        assert!(f.events().is_empty());
        f.hub.handle_timeout(f.t0 + Duration::from_secs(60), wall);
        assert_eq!(f.events(), vec![Event::ChannelDeleted(temp)]);
    }

    #[test]
    fn deleting_a_channel_moves_members_to_its_parent_and_takes_subchannels() {
        let mut f = fixture();
        let a = f.start(1, false);
        let b = f.start(2, false);
        let top = f.channel("Top", |_| {});
        let mid = f.channel("Mid", |c| c.parent = Some(top.clone()));
        let low = f.channel("Low", |c| c.parent = Some(mid.clone()));
        f.hub.join(a, mid.as_str(), "").unwrap();
        f.hub.join(b, low.as_str(), "").unwrap();
        f.events();

        f.hub.delete_channel(mid.as_str()).unwrap();
        assert_eq!(
            f.events(),
            vec![
                Event::MemberLeft {
                    session: a,
                    channel: mid.clone()
                },
                Event::MemberJoined {
                    session: a,
                    channel: top.clone()
                },
                Event::MemberLeft {
                    session: b,
                    channel: low.clone()
                },
                Event::MemberJoined {
                    session: b,
                    channel: top.clone()
                },
                Event::ChannelDeleted(low),
                Event::ChannelDeleted(mid),
            ]
        );
        assert_eq!(f.hub.channel(top.as_str()).unwrap().member_count, 2);
        // A top-level channel's members go to the default channel.
        f.hub.delete_channel(top.as_str()).unwrap();
        assert_eq!(f.hub.members(lobby().as_str()).unwrap().len(), 2);
        assert!(matches!(
            f.hub.delete_channel(lobby().as_str()),
            Err(HubError::Channel(ChannelError::DefaultChannel(_)))
        ));
    }

    #[test]
    fn idle_is_set_after_the_timeout_and_cleared_by_activity() {
        let mut f = fixture();
        let id = f.start(1, false);
        let wall = SystemTime::now();
        f.events();
        f.hub
            .handle_timeout(f.t0 + IDLE - Duration::from_secs(1), wall);
        assert!(f.events().is_empty());
        f.hub.handle_timeout(f.t0 + IDLE, wall);
        let events = f.events();
        assert!(matches!(&events[..], [Event::PresenceChanged(u)] if u.idle));
        // Still idle: no repeated event.
        f.hub.handle_timeout(f.t0 + IDLE * 2, wall);
        assert!(f.events().is_empty());
        f.hub.touch(id, f.t0 + IDLE * 2);
        let events = f.events();
        assert!(matches!(&events[..], [Event::PresenceChanged(u)] if !u.idle));
    }

    #[test]
    fn presence_updates_change_only_given_fields_and_announce_real_changes() {
        let mut f = fixture();
        let id = f.start(1, false);
        f.events();
        let user = f
            .hub
            .update_presence(
                id,
                PresencePatch {
                    status: Some(Status::Away),
                    status_text: Some("  brb ".into()),
                    ..PresencePatch::default()
                },
            )
            .unwrap();
        assert_eq!(user.status, Status::Away);
        assert_eq!(user.status_text, "brb");
        assert!(!user.self_mute);
        assert_eq!(f.events(), vec![Event::PresenceChanged(user.clone())]);
        // The same values again: nothing to announce.
        f.hub
            .update_presence(
                id,
                PresencePatch {
                    status: Some(Status::Away),
                    ..PresencePatch::default()
                },
            )
            .unwrap();
        assert!(f.events().is_empty());
        assert!(matches!(
            f.hub.update_presence(
                id,
                PresencePatch {
                    status_text: Some("x".repeat(129)),
                    ..PresencePatch::default()
                }
            ),
            Err(HubError::Invalid(_))
        ));
    }

    #[test]
    fn revoking_a_token_kicks_its_sessions_only() {
        let mut f = fixture();
        let mine = f.start(1, false);
        let admin = f.start(2, true);
        f.events();
        let ended = f
            .hub
            .kick_token("m", KickCause::TokenRevoked, "token revoked");
        assert_eq!(ended, 1);
        assert_eq!(
            f.events(),
            vec![
                Event::Kicked {
                    session: mine,
                    cause: KickCause::TokenRevoked,
                    reason: "token revoked".into()
                },
                Event::UserOffline(mine),
            ]
        );
        assert!(f.hub.contains(admin));
    }

    #[test]
    fn sessions_end_when_their_token_expires() {
        let mut f = fixture();
        let wall = SystemTime::now();
        let mut short = token("short", Role::Member);
        short.expires_at = Some(wall + Duration::from_secs(10));
        let id = SessionId(5);
        f.hub.start_session(id, &short, "brief", f.t0).unwrap();
        f.events();
        f.hub.handle_timeout(f.t0, wall + Duration::from_secs(9));
        assert!(f.events().is_empty());
        f.hub.handle_timeout(f.t0, wall + Duration::from_secs(10));
        assert!(matches!(
            &f.events()[..],
            [
                Event::Kicked {
                    cause: KickCause::TokenExpired,
                    ..
                },
                Event::UserOffline(_)
            ]
        ));
        assert!(!f.hub.contains(id));
    }

    #[test]
    fn move_member_of_an_unknown_session_is_user_not_found() {
        let mut f = fixture();
        assert_eq!(
            f.hub.move_member(SessionId(42), lobby().as_str()),
            Err(HubError::UserNotFound(SessionId(42)))
        );
    }
}
