//! Identifiers of the control plane's core.

use std::{borrow::Borrow, fmt};

/// A session's id: the voice protocol's, which the data planes and the
/// datagrams know a session by; never reused while any plane may still
/// know an old session by it (see `SessionIds`).
pub use openspeak_voice::SessionId;

/// A channel's opaque id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub String);

impl ChannelId {
    /// The id of the default channel, whatever its configured name.
    pub fn default_channel() -> Self {
        ChannelId("lobby".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ChannelId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
