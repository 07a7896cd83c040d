//! What the router hands back to its driver.

use bytes::Bytes;

use crate::SessionId;

/// One datagram to send to one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The listener's session; the driver knows its connection.
    pub to: SessionId,
    /// A forwarded datagram ([`openspeak_voice::datagram::Forwarded`]). Every
    /// listener of one speaker packet gets a clone of the same buffer.
    pub datagram: Bytes,
}

/// Something the control plane should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterEvent {
    /// A session started (its first forwarded packet) or stopped (no
    /// forwarded packet for `speaking_timeout`, or it was muted, moved or
    /// removed) talking.
    SpeakingChanged {
        /// The speaker.
        session: SessionId,
        /// Whether it is talking now.
        speaking: bool,
    },
}
