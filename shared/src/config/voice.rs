//! The `audio` and `voice` sections: what clients are told about encoding
//! audio, and how the data plane bounds the latency of what it forwards.

use serde::{Deserialize, Serialize};

use super::{
    InvalidValue,
    check::{check, check_ms},
};

/// Opus's bitrate range, in bits per second.
const OPUS_BITRATE: std::ops::RangeInclusive<u32> = 6_000..=510_000;

/// What clients are told about encoding and buffering audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// The Opus bitrate clients are told to use, in bits per second.
    pub default_bitrate: u32,
    /// Upper bound of the data plane's adaptive jitter buffer.
    pub jitter_buffer_ms: u32,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            default_bitrate: 48_000,
            jitter_buffer_ms: 60,
        }
    }
}

impl AudioConfig {
    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        let bitrate = self.default_bitrate;
        check(
            OPUS_BITRATE.contains(&bitrate),
            "audio.default_bitrate",
            || {
                format!(
                    "must be from {} to {} bits per second (what Opus can do), got {bitrate}",
                    OPUS_BITRATE.start(),
                    OPUS_BITRATE.end()
                )
            },
        )?;
        check_ms("audio.jitter_buffer_ms", self.jitter_buffer_ms)
    }
}

/// How the data plane bounds the latency of forwarded voice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceConfig {
    /// Most audio one slow listener may have queued before its oldest is dropped.
    pub max_broadcast_lag_ms: u32,
    /// Packets older than this (by sender timestamp) are dropped.
    pub max_packet_age_ms: u32,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        Self {
            max_broadcast_lag_ms: 200,
            max_packet_age_ms: 500,
        }
    }
}

impl VoiceConfig {
    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        check_ms("voice.max_broadcast_lag_ms", self.max_broadcast_lag_ms)?;
        check_ms("voice.max_packet_age_ms", self.max_packet_age_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_accepted, assert_rejected};

    #[test]
    fn impossible_values_are_rejected_naming_the_key() {
        assert_rejected(&[
            ("audio.default_bitrate", "0"),
            ("audio.default_bitrate", "1000000"),
            ("audio.jitter_buffer_ms", "0"),
            ("audio.jitter_buffer_ms", "60000"),
            ("voice.max_broadcast_lag_ms", "0"),
            ("voice.max_packet_age_ms", "0"),
        ]);
    }

    #[test]
    fn boundary_values_are_accepted() {
        assert_accepted(&[
            ("audio.default_bitrate", "6000"),
            ("audio.jitter_buffer_ms", "10000"),
        ]);
    }
}
