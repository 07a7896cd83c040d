//! The `channels` and `presence` sections: the channel tree's fixed parts,
//! and the sessions in it.

use serde::{Deserialize, Serialize};

use super::{
    InvalidValue, Seconds,
    check::{check, check_seconds},
};

/// Longest `channels.default`, as for every channel name
/// (`docs/API.md`, "Input limits").
const MAX_CHANNEL_NAME: usize = 64;

/// The channel tree's fixed parts and who may grow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    /// Name of the default channel, where every session starts.
    pub default: String,
    /// Whether members (not only admins) may create channels.
    pub members_can_create: bool,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            default: "Lobby".into(),
            members_can_create: false,
        }
    }
}

impl ChannelsConfig {
    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        let name_len = self.default.trim().chars().count();
        check(
            (1..=MAX_CHANNEL_NAME).contains(&name_len),
            "channels.default",
            || {
                format!(
                    "a channel name must be 1 to {MAX_CHANNEL_NAME} characters after trimming, got {name_len}"
                )
            },
        )
    }
}

/// Sessions' presence and the event stream each one receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// A session without activity for this long is marked idle.
    pub idle_timeout: Seconds,
    /// Events one session may have waiting before it is ended as too slow.
    pub event_queue: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Seconds(300),
            event_queue: 4096,
        }
    }
}

impl PresenceConfig {
    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        check_seconds("presence.idle_timeout", self.idle_timeout)?;
        check(self.event_queue >= 16, "presence.event_queue", || {
            format!("must be at least 16, got {}", self.event_queue)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_accepted, assert_rejected};

    #[test]
    fn impossible_values_are_rejected_naming_the_key() {
        assert_rejected(&[
            ("presence.idle_timeout", "0"),
            ("presence.event_queue", "15"),
            ("channels.default", ""),
            ("channels.default", "   "),
            ("channels.default", &"x".repeat(65)),
        ]);
    }

    #[test]
    fn boundary_values_are_accepted() {
        assert_accepted(&[
            ("presence.event_queue", "16"),
            ("channels.default", &"é".repeat(64)),
        ]);
    }
}
