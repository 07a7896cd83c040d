//! The channel tree: names, nesting, capacity, passwords, membership.
//!
//! Pure data with its rules; sessions and events live in `Hub`, which is
//! the only caller. Every channel but the default one hangs under a parent
//! or at the top level; the default channel is always at the top level and
//! cannot be deleted or moved.
//!
//! **Size.** Every new session gets the whole tree in `session_started`,
//! one gRPC message, which clients refuse past 4 MiB: a tree that grew past
//! that would keep everyone out for good. So the tree holds at most
//! [`MAX_CHANNELS`] channels, whose encoding takes at most
//! [`TREE_BUDGET`] bytes (see [`wire_bound`]); the rest of the message is
//! left for the sessions.

use std::{
    collections::{BTreeSet, HashMap},
    time::Instant,
};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    ids::{ChannelId, SessionId},
    limits::{self, Echo, LimitError},
};

/// Most channels in the tree, the default one included.
pub const MAX_CHANNELS: usize = 1000;

/// Most bytes the tree may take in `session_started`, as [`wire_bound`]
/// counts them: room for [`MAX_CHANNELS`] channels with the longest ASCII
/// names and descriptions (about 1.15 KB each), and about 2.7 MiB of the
/// 4 MiB message left for the sessions (over 3,000 with the longest names
/// and status texts in four-byte characters, far more in practice).
pub const TREE_BUDGET: usize = 1_280 * 1024;

/// One channel.
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: ChannelId,
    pub name: String,
    /// `None`: top level.
    pub parent: Option<ChannelId>,
    pub description: String,
    /// 0 = no limit.
    pub max_members: u32,
    password: Option<PasswordHash>,
    pub temporary: bool,
    /// Since when the channel has been temporary: an empty temporary
    /// channel is deleted 60 s after this.
    pub temporary_since: Instant,
    /// Ordered so listings come out the same every time.
    pub members: BTreeSet<SessionId>,
    /// In creation order.
    children: Vec<ChannelId>,
}

impl Channel {
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Whether `password` opens this channel (always, without a password).
    pub fn password_matches(&self, password: &str) -> bool {
        self.password.as_ref().is_none_or(|p| p.matches(password))
    }

    /// Whether one more member fits.
    pub fn has_room(&self) -> bool {
        self.max_members == 0 || self.members.len() < self.max_members as usize
    }
}

/// A channel password, salted and hashed: the server never keeps it.
#[derive(Debug, Clone)]
struct PasswordHash {
    salt: [u8; 16],
    hash: [u8; 32],
}

impl PasswordHash {
    fn new(password: &str) -> Self {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        Self {
            salt,
            hash: Self::digest(&salt, password),
        }
    }

    fn digest(salt: &[u8; 16], password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(salt);
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    fn matches(&self, password: &str) -> bool {
        Self::digest(&self.salt, password).ct_eq(&self.hash).into()
    }

    fn to_record(&self) -> StoredPassword {
        StoredPassword {
            salt: hex::encode(self.salt),
            sha256: hex::encode(self.hash),
        }
    }

    fn from_record(record: &StoredPassword) -> Option<Self> {
        Some(Self {
            salt: hex::decode(&record.salt).ok()?.try_into().ok()?,
            hash: hex::decode(&record.sha256).ok()?.try_into().ok()?,
        })
    }
}

/// A channel as it is kept across restarts: everything but its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub max_members: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<StoredPassword>,
    #[serde(default)]
    pub temporary: bool,
}

/// A channel password at rest: salt and salted SHA-256, both hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPassword {
    pub salt: String,
    pub sha256: String,
}

/// What a new channel is made of, as a client asked for it (unvalidated).
#[derive(Debug, Clone, Default)]
pub struct NewChannel {
    pub name: String,
    pub parent: Option<ChannelId>,
    pub description: String,
    pub max_members: u32,
    /// Empty: no password.
    pub password: String,
    pub temporary: bool,
}

/// A change to a channel; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct ChannelPatch {
    pub name: Option<String>,
    /// `Some(None)`: move to the top level.
    pub parent: Option<Option<ChannelId>>,
    pub description: Option<String>,
    pub max_members: Option<u32>,
    /// `Some("")`: remove the password.
    pub password: Option<String>,
    pub temporary: Option<bool>,
}

/// Why a channel operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    // Ids come from requests as they are: quoted through `Echo`, which caps them.
    #[error("no channel has id {}", Echo(.0.as_str()))]
    NotFound(ChannelId),
    #[error("no parent channel has id {}", Echo(.0.as_str()))]
    ParentNotFound(ChannelId),
    #[error(transparent)]
    Invalid(#[from] LimitError),
    #[error("a sibling channel is already named {}", Echo(.0))]
    NameTaken(String),
    #[error("the default channel {0}")]
    DefaultChannel(&'static str),
    #[error("a channel cannot move below itself")]
    Cycle,
    #[error("the server has {MAX_CHANNELS} channels, the most it keeps; delete one first")]
    TooManyChannels,
    #[error(
        "the channels' names and descriptions have reached the server's total of \
         {TREE_BUDGET} bytes; shorten or delete some first"
    )]
    TreeTooLarge,
    #[error("stored channel {} is unusable: {problem}", Echo(.id))]
    Corrupt { id: String, problem: String },
}

/// Every channel, as a tree.
#[derive(Debug, Clone)]
pub struct ChannelTree {
    channels: HashMap<ChannelId, Channel>,
    /// Top-level channels in creation order, the default one first.
    roots: Vec<ChannelId>,
    default: ChannelId,
}

impl ChannelTree {
    /// A tree holding only the default channel, named `default_name`.
    pub fn new(default_name: &str, now: Instant) -> Result<Self, ChannelError> {
        let name = limits::name("channels.default", default_name)?;
        let id = ChannelId::default_channel();
        let lobby = Channel {
            id: id.clone(),
            name,
            parent: None,
            description: String::new(),
            max_members: 0,
            password: None,
            temporary: false,
            temporary_since: now,
            members: BTreeSet::new(),
            children: Vec::new(),
        };
        Ok(Self {
            channels: HashMap::from([(id.clone(), lobby)]),
            roots: vec![id.clone()],
            default: id,
        })
    }

    /// The tree as it was saved by [`ChannelTree::records`]. The default
    /// channel is named `default_name` whatever the records say, so the
    /// configuration decides its name at every start.
    pub fn restore(
        default_name: &str,
        records: Vec<ChannelRecord>,
        now: Instant,
    ) -> Result<Self, ChannelError> {
        let mut tree = Self::new(default_name, now)?;
        for record in records {
            let corrupt = |problem: &str| ChannelError::Corrupt {
                id: record.id.clone(),
                problem: problem.to_owned(),
            };
            let password = match &record.password {
                Some(p) => Some(
                    PasswordHash::from_record(p)
                        .ok_or_else(|| corrupt("malformed password hash"))?,
                ),
                None => None,
            };
            if record.id == tree.default.as_str() {
                let lobby = tree.channels.get_mut(&tree.default).expect("always there");
                lobby.description = record.description;
                lobby.max_members = record.max_members;
                lobby.password = password;
                continue;
            }
            let id = ChannelId(record.id.clone());
            if record.id.is_empty() || tree.channels.contains_key(&id) {
                return Err(corrupt("empty or repeated id"));
            }
            let parent = record.parent.map(ChannelId);
            // Records come parents first, so a missing parent is corruption.
            if parent
                .as_ref()
                .is_some_and(|p| !tree.channels.contains_key(p))
            {
                return Err(corrupt("its parent comes later or not at all"));
            }
            let name =
                limits::stored_name("name", &record.name).map_err(|e| corrupt(&e.to_string()))?;
            tree.check_name_free(parent.as_ref(), &name, None)?;
            tree.insert(Channel {
                id,
                name,
                parent,
                description: record.description,
                max_members: record.max_members,
                password,
                temporary: record.temporary,
                // A restored temporary channel gets its minute again.
                temporary_since: now,
                members: BTreeSet::new(),
                children: Vec::new(),
            });
        }
        Ok(tree)
    }

    /// Every channel as a record, parents first, for [`ChannelTree::restore`].
    pub fn records(&self) -> Vec<ChannelRecord> {
        self.iter()
            .map(|c| ChannelRecord {
                id: c.id.to_string(),
                name: c.name.clone(),
                parent: c.parent.as_ref().map(ToString::to_string),
                description: c.description.clone(),
                max_members: c.max_members,
                password: c.password.as_ref().map(PasswordHash::to_record),
                temporary: c.temporary,
            })
            .collect()
    }

    pub fn default_id(&self) -> &ChannelId {
        &self.default
    }

    pub fn get(&self, id: &str) -> Option<&Channel> {
        self.channels.get(id)
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Every channel, parents before their children, siblings in creation order.
    pub fn iter(&self) -> impl Iterator<Item = &Channel> {
        let mut order = Vec::with_capacity(self.channels.len());
        let mut stack: Vec<&ChannelId> = self.roots.iter().rev().collect();
        while let Some(id) = stack.pop() {
            let channel = &self.channels[id];
            order.push(channel);
            stack.extend(channel.children.iter().rev());
        }
        order.into_iter()
    }

    /// The channel and everything below it, parents first.
    pub fn subtree(&self, id: &str) -> Vec<ChannelId> {
        let mut out = Vec::new();
        let Some(root) = self.channels.get(id) else {
            return out;
        };
        let mut stack = vec![&root.id];
        while let Some(id) = stack.pop() {
            out.push(id.clone());
            stack.extend(self.channels[id].children.iter().rev());
        }
        out
    }

    pub fn create(&mut self, new: NewChannel, now: Instant) -> Result<&Channel, ChannelError> {
        let name = limits::name("name", &new.name)?;
        let description = limits::text("description", &new.description, limits::DESCRIPTION_MAX)?;
        limits::check_length("password", &new.password, limits::SHORT_TEXT_MAX)?;
        if let Some(parent) = &new.parent
            && !self.channels.contains_key(parent)
        {
            return Err(ChannelError::ParentNotFound(parent.clone()));
        }
        self.check_name_free(new.parent.as_ref(), &name, None)?;
        if self.channels.len() >= MAX_CHANNELS {
            return Err(ChannelError::TooManyChannels);
        }
        let id = self.fresh_id();
        let added = wire_bound(id.as_str(), &name, new.parent.as_ref(), &description);
        if self.wire_total() + added > TREE_BUDGET {
            return Err(ChannelError::TreeTooLarge);
        }

        Ok(self.insert(Channel {
            id,
            name,
            parent: new.parent,
            description,
            max_members: new.max_members,
            password: (!new.password.is_empty()).then(|| PasswordHash::new(&new.password)),
            temporary: new.temporary,
            temporary_since: now,
            members: BTreeSet::new(),
            children: Vec::new(),
        }))
    }

    /// Adds a checked channel under its parent.
    fn insert(&mut self, channel: Channel) -> &Channel {
        let id = channel.id.clone();
        self.siblings_mut(channel.parent.as_ref()).push(id.clone());
        self.channels.insert(id.clone(), channel);
        &self.channels[&id]
    }

    pub fn update(
        &mut self,
        id: &str,
        patch: ChannelPatch,
        now: Instant,
    ) -> Result<&Channel, ChannelError> {
        let current = self
            .channels
            .get(id)
            .ok_or_else(|| ChannelError::NotFound(ChannelId(id.to_owned())))?;
        let id = current.id.clone();
        let is_default = id == self.default;

        // Validate everything before changing anything.
        let name = patch
            .name
            .as_deref()
            .map(|n| limits::name("name", n))
            .transpose()?;
        let description = patch
            .description
            .as_deref()
            .map(|d| limits::text("description", d, limits::DESCRIPTION_MAX))
            .transpose()?;
        if let Some(password) = &patch.password {
            limits::check_length("password", password, limits::SHORT_TEXT_MAX)?;
        }
        let new_parent = match patch.parent {
            Some(parent) if parent != current.parent => {
                if is_default {
                    return Err(ChannelError::DefaultChannel("must stay at the top level"));
                }
                if let Some(p) = &parent {
                    if !self.channels.contains_key(p) {
                        return Err(ChannelError::ParentNotFound(p.clone()));
                    }
                    if self.subtree(id.as_str()).contains(p) {
                        return Err(ChannelError::Cycle);
                    }
                }
                Some(parent)
            }
            _ => None,
        };
        if is_default && patch.temporary == Some(true) {
            return Err(ChannelError::DefaultChannel("cannot be temporary"));
        }
        let target_parent = new_parent.clone().unwrap_or_else(|| current.parent.clone());
        let target_name = name.clone().unwrap_or_else(|| current.name.clone());
        if name.is_some() || new_parent.is_some() {
            self.check_name_free(target_parent.as_ref(), &target_name, Some(&id))?;
        }
        let target_description = description.as_deref().unwrap_or(&current.description);
        let before = channel_bound(current);
        let after = wire_bound(
            id.as_str(),
            &target_name,
            target_parent.as_ref(),
            target_description,
        );
        // Only growth is refused: a tree restored over the budget (from an
        // earlier version) may still be shrunk.
        if after > before && self.wire_total() - before + after > TREE_BUDGET {
            return Err(ChannelError::TreeTooLarge);
        }

        if let Some(parent) = new_parent {
            let old_parent = current.parent.clone();
            self.siblings_mut(old_parent.as_ref()).retain(|c| *c != id);
            self.siblings_mut(parent.as_ref()).push(id.clone());
        }
        let channel = self.channels.get_mut(&id).expect("checked above");
        channel.parent = target_parent;
        channel.name = target_name;
        if let Some(description) = description {
            channel.description = description;
        }
        if let Some(max) = patch.max_members {
            channel.max_members = max;
        }
        if let Some(password) = patch.password {
            channel.password = (!password.is_empty()).then(|| PasswordHash::new(&password));
        }
        if let Some(temporary) = patch.temporary {
            if temporary && !channel.temporary {
                channel.temporary_since = now;
            }
            channel.temporary = temporary;
        }
        Ok(channel)
    }

    /// Removes the channel and everything below it; returns the removed
    /// channels, children before parents. Members must have been moved out.
    pub fn remove_subtree(&mut self, id: &str) -> Result<Vec<Channel>, ChannelError> {
        if id == self.default.as_str() {
            return Err(ChannelError::DefaultChannel("cannot be deleted"));
        }
        let ids = self.subtree(id);
        let Some(first) = ids.first() else {
            return Err(ChannelError::NotFound(ChannelId(id.to_owned())));
        };
        let parent = self.channels[first].parent.clone();
        let first = first.clone();
        self.siblings_mut(parent.as_ref()).retain(|c| *c != first);
        Ok(ids
            .iter()
            .rev()
            .filter_map(|id| self.channels.remove(id))
            .collect())
    }

    pub fn add_member(&mut self, id: &ChannelId, session: SessionId) {
        if let Some(channel) = self.channels.get_mut(id) {
            channel.members.insert(session);
        }
    }

    pub fn remove_member(&mut self, id: &ChannelId, session: SessionId) {
        if let Some(channel) = self.channels.get_mut(id) {
            channel.members.remove(&session);
        }
    }

    fn siblings_mut(&mut self, parent: Option<&ChannelId>) -> &mut Vec<ChannelId> {
        match parent {
            Some(p) => &mut self.channels.get_mut(p).expect("parent exists").children,
            None => &mut self.roots,
        }
    }

    fn check_name_free(
        &self,
        parent: Option<&ChannelId>,
        name: &str,
        except: Option<&ChannelId>,
    ) -> Result<(), ChannelError> {
        let siblings = match parent {
            Some(p) => &self.channels[p].children,
            None => &self.roots,
        };
        // Compared by key: names that differ only in case or in
        // compatibility forms (fullwidth letters) look alike to a person.
        let wanted = limits::name_key(name);
        let taken = siblings
            .iter()
            .filter(|id| Some(*id) != except)
            .any(|id| limits::name_key(&self.channels[id].name) == wanted);
        if taken {
            return Err(ChannelError::NameTaken(name.to_owned()));
        }
        Ok(())
    }

    /// What the whole tree takes in `session_started`, at most.
    fn wire_total(&self) -> usize {
        self.channels.values().map(channel_bound).sum()
    }

    fn fresh_id(&self) -> ChannelId {
        loop {
            let mut bytes = [0u8; 8];
            rand::rng().fill_bytes(&mut bytes);
            let id = ChannelId(hex::encode(bytes));
            if !self.channels.contains_key(&id) {
                return id;
            }
        }
    }
}

/// An upper bound on the bytes a channel with these texts takes in
/// `session_started` (a `Channel` message embedded in it), whatever its
/// numbers and flags; proto3 leaves out empty fields, so it is often less.
pub fn wire_bound(id: &str, name: &str, parent: Option<&ChannelId>, description: &str) -> usize {
    // A string field: its key, its length (a varint: 3 bytes hold up to
    // 2 MiB, far more than any limit here), its bytes.
    let text = |s: &str| 1 + 3 + s.len();
    // max_members and member_count (key and a varint of up to 5 bytes),
    // has_password and temporary (key and 1 byte), and the embedding in
    // session_started (key and length).
    const FIXED: usize = 6 + 6 + 2 + 2 + 1 + 3;
    FIXED + text(id) + text(name) + text(parent.map_or("", ChannelId::as_str)) + text(description)
}

fn channel_bound(c: &Channel) -> usize {
    wire_bound(c.id.as_str(), &c.name, c.parent.as_ref(), &c.description)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (ChannelTree, Instant) {
        let now = Instant::now();
        (ChannelTree::new("Lobby", now).unwrap(), now)
    }

    fn new(name: &str, parent: Option<&ChannelId>) -> NewChannel {
        NewChannel {
            name: name.into(),
            parent: parent.cloned(),
            ..NewChannel::default()
        }
    }

    #[test]
    fn the_default_channel_exists_and_stays() {
        let (mut tree, now) = tree();
        let lobby = tree.default_id().clone();
        assert_eq!(tree.get(lobby.as_str()).unwrap().name, "Lobby");
        assert_eq!(
            tree.remove_subtree(lobby.as_str()).unwrap_err(),
            ChannelError::DefaultChannel("cannot be deleted")
        );
        let other = tree.create(new("Other", None), now).unwrap().id.clone();
        let moved = ChannelPatch {
            parent: Some(Some(other)),
            ..ChannelPatch::default()
        };
        assert!(matches!(
            tree.update(lobby.as_str(), moved, now),
            Err(ChannelError::DefaultChannel(_))
        ));
    }

    #[test]
    fn names_are_unique_among_siblings_ignoring_case() {
        let (mut tree, now) = tree();
        let games = tree.create(new("Games", None), now).unwrap().id.clone();
        assert_eq!(
            tree.create(new(" games ", None), now).unwrap_err(),
            ChannelError::NameTaken("games".into())
        );
        // The default channel is a top-level sibling too.
        assert!(tree.create(new("LOBBY", None), now).is_err());
        // The same name under another parent is fine.
        assert!(tree.create(new("Games", Some(&games)), now).is_ok());
    }

    #[test]
    fn names_that_normalise_alike_collide() {
        let (mut tree, now) = tree();
        // Fullwidth "Lobby" is the default channel's name.
        assert_eq!(
            tree.create(new("Ｌｏｂｂｙ", None), now).unwrap_err(),
            ChannelError::NameTaken("Lobby".into())
        );
        let made = tree.create(new("Ｇａｍｅｓ", None), now).unwrap();
        assert_eq!(made.name, "Games");
    }

    #[test]
    fn the_tree_is_capped_in_count_and_in_size() {
        let (mut tree, now) = tree();
        for i in 1..MAX_CHANNELS {
            tree.create(new(&format!("c{i}"), None), now).unwrap();
        }
        assert_eq!(
            tree.create(new("one more", None), now).unwrap_err(),
            ChannelError::TooManyChannels
        );

        let (mut tree, now) = tree_with_wide_channels();
        let mut wide = new("wide again", None);
        wide.description = "🎧".repeat(limits::DESCRIPTION_MAX);
        assert_eq!(
            tree.create(wide, now).unwrap_err(),
            ChannelError::TreeTooLarge
        );
        // Growing a channel is refused too; shrinking one is fine.
        let lobby = tree.default_id().clone();
        let grow = ChannelPatch {
            description: Some("🎧".repeat(limits::DESCRIPTION_MAX)),
            ..ChannelPatch::default()
        };
        assert_eq!(
            tree.update(lobby.as_str(), grow, now).unwrap_err(),
            ChannelError::TreeTooLarge
        );
        let some = tree.iter().nth(1).unwrap().id.clone();
        let shrink = ChannelPatch {
            description: Some(String::new()),
            ..ChannelPatch::default()
        };
        tree.update(some.as_str(), shrink, now).unwrap();
    }

    /// A tree filled up to its size budget with four-byte descriptions.
    fn tree_with_wide_channels() -> (ChannelTree, Instant) {
        let (mut tree, now) = tree();
        for i in 1..MAX_CHANNELS {
            let mut wide = new(&format!("w{i}"), None);
            wide.description = "🎧".repeat(limits::DESCRIPTION_MAX);
            match tree.create(wide, now) {
                Ok(_) => {}
                Err(ChannelError::TreeTooLarge) => return (tree, now),
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{MAX_CHANNELS} wide channels fit in the budget")
    }

    #[test]
    fn the_bound_holds_for_the_real_encoding() {
        use openspeak_shared::pb;
        use prost::Message;
        let parent = ChannelId("0123456789abcdef".into());
        let id = "fedcba9876543210";
        let (name, description) = ("🎧".repeat(64), "é".repeat(1024));
        let channel = pb::Channel {
            id: id.into(),
            name: name.clone(),
            parent_id: parent.to_string(),
            description: description.clone(),
            max_members: u32::MAX,
            has_password: true,
            temporary: true,
            member_count: u32::MAX,
        };
        let started = pb::SessionStarted {
            session_id: 0,
            channels: vec![channel],
            users: vec![],
        };
        assert!(started.encoded_len() <= wire_bound(id, &name, Some(&parent), &description));
    }

    #[test]
    fn unknown_parents_are_refused() {
        let (mut tree, now) = tree();
        let missing = ChannelId("nope".into());
        assert_eq!(
            tree.create(new("x", Some(&missing)), now).unwrap_err(),
            ChannelError::ParentNotFound(missing)
        );
    }

    #[test]
    fn iteration_puts_parents_before_children() {
        let (mut tree, now) = tree();
        let a = tree.create(new("A", None), now).unwrap().id.clone();
        let b = tree.create(new("B", None), now).unwrap().id.clone();
        let a1 = tree.create(new("A1", Some(&a)), now).unwrap().id.clone();
        let a1x = tree.create(new("A1x", Some(&a1)), now).unwrap().id.clone();
        let names: Vec<_> = tree.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Lobby", "A", "A1", "A1x", "B"]);
        assert_eq!(tree.subtree(a.as_str()), vec![a.clone(), a1.clone(), a1x]);
        let removed: Vec<_> = tree
            .remove_subtree(a.as_str())
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(removed, ["A1x", "A1", "A"]);
        assert_eq!(tree.len(), 2);
        assert!(tree.get(b.as_str()).is_some());
    }

    #[test]
    fn a_channel_cannot_move_below_itself() {
        let (mut tree, now) = tree();
        let a = tree.create(new("A", None), now).unwrap().id.clone();
        let a1 = tree.create(new("A1", Some(&a)), now).unwrap().id.clone();
        let patch = ChannelPatch {
            parent: Some(Some(a1.clone())),
            ..ChannelPatch::default()
        };
        assert_eq!(
            tree.update(a.as_str(), patch, now).unwrap_err(),
            ChannelError::Cycle
        );
        // Moving the child to the top level works and keeps the tree sound.
        let up = ChannelPatch {
            parent: Some(None),
            ..ChannelPatch::default()
        };
        tree.update(a1.as_str(), up, now).unwrap();
        let names: Vec<_> = tree.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Lobby", "A", "A1"]);
    }

    #[test]
    fn passwords_are_checked_and_can_be_removed() {
        let (mut tree, now) = tree();
        let mut spec = new("Secret", None);
        spec.password = "hunter2".into();
        let id = tree.create(spec, now).unwrap().id.clone();
        let channel = tree.get(id.as_str()).unwrap();
        assert!(channel.has_password());
        assert!(channel.password_matches("hunter2"));
        assert!(!channel.password_matches("hunter3"));
        let clear = ChannelPatch {
            password: Some(String::new()),
            ..ChannelPatch::default()
        };
        let channel = tree.update(id.as_str(), clear, now).unwrap();
        assert!(!channel.has_password());
        assert!(channel.password_matches(""));
    }

    #[test]
    fn capacity_counts_members() {
        let (mut tree, now) = tree();
        let mut spec = new("Duo", None);
        spec.max_members = 2;
        let id = tree.create(spec, now).unwrap().id.clone();
        tree.add_member(&id, SessionId(1));
        assert!(tree.get(id.as_str()).unwrap().has_room());
        tree.add_member(&id, SessionId(2));
        assert!(!tree.get(id.as_str()).unwrap().has_room());
    }

    #[test]
    fn records_restore_the_same_tree() {
        let (mut tree, now) = tree();
        let a = tree.create(new("A", None), now).unwrap().id.clone();
        let mut secret = new("Secret", Some(&a));
        secret.password = "pw".into();
        secret.max_members = 3;
        secret.description = "hush".into();
        tree.create(secret, now).unwrap();
        let mut temp = new("Temp", None);
        temp.temporary = true;
        tree.create(temp, now).unwrap();
        let lobby = ChannelPatch {
            description: Some("welcome".into()),
            ..ChannelPatch::default()
        };
        tree.update(tree.default_id().clone().as_str(), lobby, now)
            .unwrap();

        let records = tree.records();
        let restored = ChannelTree::restore("Main hall", records.clone(), now).unwrap();
        let names: Vec<_> = restored.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Main hall", "A", "Secret", "Temp"]);
        let secret = restored.iter().find(|c| c.name == "Secret").unwrap();
        assert!(secret.password_matches("pw") && !secret.password_matches("x"));
        assert_eq!(
            (secret.max_members, secret.description.as_str()),
            (3, "hush")
        );
        assert_eq!(secret.parent, Some(a));
        assert_eq!(restored.get("lobby").unwrap().description, "welcome");
        // Everything but the default channel's name comes back the same.
        let mut again = restored.records();
        again[0].name = records[0].name.clone();
        assert_eq!(again, records);
    }

    #[test]
    fn corrupt_records_are_refused() {
        let now = Instant::now();
        let orphan = ChannelRecord {
            id: "x".into(),
            name: "X".into(),
            parent: Some("missing".into()),
            description: String::new(),
            max_members: 0,
            password: None,
            temporary: false,
        };
        assert!(matches!(
            ChannelTree::restore("Lobby", vec![orphan.clone()], now),
            Err(ChannelError::Corrupt { .. })
        ));
        let clash = ChannelRecord {
            parent: None,
            name: "lobby".into(),
            ..orphan
        };
        assert!(matches!(
            ChannelTree::restore("Lobby", vec![clash], now),
            Err(ChannelError::NameTaken(_))
        ));
    }

    #[test]
    fn update_validates_before_changing_anything() {
        let (mut tree, now) = tree();
        let id = tree.create(new("Keep", None), now).unwrap().id.clone();
        let patch = ChannelPatch {
            description: Some("new".into()),
            name: Some(String::new()),
            ..ChannelPatch::default()
        };
        assert!(matches!(
            tree.update(id.as_str(), patch, now),
            Err(ChannelError::Invalid(_))
        ));
        assert_eq!(tree.get(id.as_str()).unwrap().description, "");
    }
}
