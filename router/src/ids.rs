//! The identifiers the router keys its state by.

use std::fmt;
use std::sync::Arc;

/// A voice session, as the control plane numbers it and the transport has
/// authenticated it. Forwarded datagrams carry it as the speaker id, so it
/// is never 0 for a member (see [`crate::MembershipError::ZeroSession`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u32);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A channel, by the opaque id the control plane gives it.
///
/// The data plane only compares channels, never interprets them; an
/// `Arc<str>` keeps the control plane's string ids as they are while making
/// a copy of the key cheap.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelKey(Arc<str>);

impl ChannelKey {
    /// The control plane's id for the channel.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ChannelKey {
    fn from(id: &str) -> Self {
        Self(Arc::from(id))
    }
}

impl From<String> for ChannelKey {
    fn from(id: String) -> Self {
        Self(Arc::from(id))
    }
}

impl fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
