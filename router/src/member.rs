//! What the control plane tells the router about one session.

use thiserror::Error;

use crate::ChannelKey;

/// A session's place in the voice graph, as the control plane last said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// The channel whose other members hear this session, and whose
    /// speakers it hears; `None` while it is in no channel.
    pub channel: Option<ChannelKey>,
    /// Self-mute or server mute: its packets are dropped.
    pub muted: bool,
    /// Self-deafen or server deafen: nothing is forwarded to it.
    pub deafened: bool,
}

/// Why [`crate::Router::set_member`] refused a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MembershipError {
    /// Session 0 cannot be a speaker id on the wire.
    #[error("session id 0 is reserved")]
    ZeroSession,
}
