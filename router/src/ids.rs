//! The identifiers the router keys its state by.

use std::fmt;
use std::sync::Arc;

/// A voice session: the protocol's id, which the transport has
/// authenticated. Never 0 for a member (see
/// [`crate::MembershipError::ZeroSession`]).
pub use openspeak_voice::SessionId;

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
