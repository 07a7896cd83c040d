//! The `audio` and `voice` sections: what clients are told about encoding
//! audio, and how the data plane bounds the latency of what it forwards and
//! how much one session may send.

use serde::{Deserialize, Serialize};

use super::{
    InvalidValue,
    check::{check, check_ms, check_range},
};

/// Opus's bitrate range, in bits per second.
const OPUS_BITRATE: std::ops::RangeInclusive<u32> = 6_000..=510_000;

/// The largest payload the voice protocol carries (`MAX_PAYLOAD` in
/// `openspeak-voice`, which this crate does not depend on): a longer one is
/// malformed whatever the configuration says.
const MAX_OPUS_FRAME: u32 = 1_000;

/// The highest `voice.max_packets_per_second`. Opus's shortest frame
/// (2.5 ms) makes 400 packets a second; a limit far above that no longer
/// protects a channel from anything.
const MAX_PACKET_RATE: u32 = 10_000;

/// The highest `voice.max_bytes_per_second`: the largest payloads at the
/// highest packet rate.
const MAX_BYTE_RATE: u32 = MAX_PACKET_RATE * MAX_OPUS_FRAME;

/// What clients are told about encoding and buffering audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// The Opus bitrate meant for clients, in bits per second. Validated,
    /// but no call carries it to clients yet.
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
        check_range(
            "audio.default_bitrate",
            self.default_bitrate,
            OPUS_BITRATE,
            "bits per second (what Opus can do)",
        )?;
        check_ms("audio.jitter_buffer_ms", self.jitter_buffer_ms)
    }
}

/// How the data plane bounds the latency of forwarded voice, and how much
/// one session may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceConfig {
    /// Most audio one slow listener may have queued before its oldest is dropped.
    pub max_broadcast_lag_ms: u32,
    /// Packets older than this (by sender timestamp) are dropped.
    pub max_packet_age_ms: u32,
    /// Voice packets one session may send per second, with a burst of one
    /// second's worth; the excess is dropped. A real Opus stream sends 50
    /// (20 ms frames) or 100 (10 ms frames).
    pub max_packets_per_second: u32,
    /// Payload bytes one session may send per second, with a burst of one
    /// second's worth; the excess is dropped. Opus at its highest bitrate
    /// (510 kbit/s) sends about 64,000.
    pub max_bytes_per_second: u32,
    /// The largest payload accepted; a larger one is dropped. At most 1000,
    /// the protocol's largest Opus frame.
    pub max_payload_bytes: u32,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        Self {
            max_broadcast_lag_ms: 200,
            max_packet_age_ms: 500,
            max_packets_per_second: 200,
            max_bytes_per_second: 64_000,
            max_payload_bytes: MAX_OPUS_FRAME,
        }
    }
}

impl VoiceConfig {
    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        check_ms("voice.max_broadcast_lag_ms", self.max_broadcast_lag_ms)?;
        check_ms("voice.max_packet_age_ms", self.max_packet_age_ms)?;
        check_range(
            "voice.max_packets_per_second",
            self.max_packets_per_second,
            1..=MAX_PACKET_RATE,
            "packets a second",
        )?;
        check_range(
            "voice.max_bytes_per_second",
            self.max_bytes_per_second,
            1..=MAX_BYTE_RATE,
            "bytes a second",
        )?;
        check_range(
            "voice.max_payload_bytes",
            self.max_payload_bytes,
            1..=MAX_OPUS_FRAME,
            "bytes (the protocol's largest Opus frame)",
        )?;
        let (bytes, payload) = (self.max_bytes_per_second, self.max_payload_bytes);
        // The byte bucket holds one second's worth: below one largest
        // payload, packets of that size could never pass, yet would not be
        // "oversized" either.
        check(bytes >= payload, "voice.max_bytes_per_second", || {
            format!(
                "must be at least voice.max_payload_bytes ({payload}), or the largest \
                 packets could never pass; got {bytes}"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_accepted, assert_rejected};
    use super::VoiceConfig;

    #[test]
    fn impossible_values_are_rejected_naming_the_key() {
        assert_rejected(&[
            ("audio.default_bitrate", "0"),
            ("audio.default_bitrate", "1000000"),
            ("audio.jitter_buffer_ms", "0"),
            ("audio.jitter_buffer_ms", "60000"),
            ("voice.max_broadcast_lag_ms", "0"),
            ("voice.max_packet_age_ms", "0"),
            ("voice.max_packets_per_second", "0"),
            ("voice.max_packets_per_second", "10001"),
            ("voice.max_bytes_per_second", "0"),
            ("voice.max_bytes_per_second", "10000001"),
            // Below the default largest payload (1000).
            ("voice.max_bytes_per_second", "999"),
            ("voice.max_payload_bytes", "0"),
            ("voice.max_payload_bytes", "1001"),
        ]);
    }

    #[test]
    fn boundary_values_are_accepted() {
        assert_accepted(&[
            ("audio.default_bitrate", "6000"),
            ("audio.jitter_buffer_ms", "10000"),
            ("voice.max_packets_per_second", "1"),
            ("voice.max_packets_per_second", "10000"),
            ("voice.max_bytes_per_second", "1000"),
            ("voice.max_bytes_per_second", "10000000"),
            ("voice.max_payload_bytes", "1000"),
        ]);
    }

    #[test]
    fn the_send_limits_default_well_above_a_real_opus_stream() {
        let voice = VoiceConfig::default();
        assert_eq!(
            (
                voice.max_packets_per_second,
                voice.max_bytes_per_second,
                voice.max_payload_bytes
            ),
            (200, 64_000, 1_000)
        );
        // 10 ms frames are 100 a second; 510 kbit/s is 63,750 bytes.
        assert!(voice.max_packets_per_second >= 2 * 100);
        assert!(voice.max_bytes_per_second >= 510_000 / 8);
    }

    #[test]
    fn a_byte_rate_below_the_largest_payload_is_rejected_naming_both_keys() {
        let mut voice = VoiceConfig {
            max_bytes_per_second: 500,
            max_payload_bytes: 400,
            ..VoiceConfig::default()
        };
        assert_eq!(voice.validate(), Ok(()));
        voice.max_payload_bytes = 501;
        let err = voice.validate().unwrap_err();
        assert_eq!(err.key, "voice.max_bytes_per_second");
        assert!(
            err.reason.contains("voice.max_payload_bytes (501)"),
            "{err}"
        );
    }
}
