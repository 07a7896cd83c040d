//! The voice datagrams, as clients send them and the data plane forwards
//! them.
//!
//! Two datagrams exist, each the payload of one QUIC DATAGRAM frame, or
//! the plaintext of one sealed plain-UDP packet ([`crate::udp`]). All
//! integers are big-endian.
//!
//! Client → data plane, [`VoicePacket`]:
//!
//! ```text
//! offset size field
//! 0      1    kind = 0x01 (voice)
//! 1      4    sequence: +1 per packet of the speaker's stream, wraps around
//! 5      4    timestamp: the sender's clock in milliseconds (any origin), wraps around
//! 9      ..   payload: one opaque Opus frame, 1..=1000 bytes
//! ```
//!
//! Data plane → client, [`Forwarded`]:
//!
//! ```text
//! 0      1    kind = 0x02 (forwarded voice)
//! 1      4    speaker session id (non-zero)
//! 5      4    sequence (as the speaker sent it)
//! 9      4    timestamp (as the speaker sent it)
//! 13     ..   payload (the same bytes)
//! ```
//!
//! Parsing never panics and never copies the payload: it is a slice of the
//! input [`Bytes`]. Sequence numbers and timestamps wrap around, so compare
//! them with the serial-number helpers ([`serial_cmp`], [`serial_lt`],
//! [`serial_diff`]) rather than with `<`.

use std::cmp::Ordering;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The kind byte of a client's voice datagram.
pub const KIND_VOICE: u8 = 0x01;
/// The kind byte of a datagram the data plane forwards to listeners.
pub const KIND_FORWARDED: u8 = 0x02;
/// Bytes before the payload in a voice datagram: kind, sequence, timestamp.
pub const VOICE_HEADER_LEN: usize = 9;
/// Bytes before the payload in a forwarded datagram: kind, speaker,
/// sequence, timestamp.
pub const FORWARDED_HEADER_LEN: usize = 13;
/// The largest Opus frame a datagram may carry. The data plane never
/// decodes audio; the bound keeps every forwarded datagram well under a
/// QUIC datagram's usable size on a 1280-byte path MTU.
pub const MAX_PAYLOAD: usize = 1000;
/// The largest valid voice datagram.
pub const MAX_VOICE_LEN: usize = VOICE_HEADER_LEN + MAX_PAYLOAD;
/// The largest valid forwarded datagram.
pub const MAX_FORWARDED_LEN: usize = FORWARDED_HEADER_LEN + MAX_PAYLOAD;

/// Why a datagram is not a valid voice or forwarded datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WireError {
    /// The datagram ends before the end of its header (or is empty).
    #[error("datagram too short: {len} bytes, need more than {header}")]
    TooShort {
        /// The datagram's length.
        len: usize,
        /// The header length of the expected kind.
        header: usize,
    },
    /// The first byte is not the kind expected here.
    #[error("unknown datagram kind {0:#04x}")]
    UnknownKind(u8),
    /// The header is complete but no payload follows.
    #[error("empty payload")]
    EmptyPayload,
    /// The payload is longer than [`MAX_PAYLOAD`].
    #[error("payload too long: {len} bytes, at most {max}")]
    PayloadTooLong {
        /// The payload's length.
        len: usize,
        /// The limit, [`MAX_PAYLOAD`].
        max: usize,
    },
    /// A forwarded datagram names speaker 0, which no session has.
    #[error("zero speaker id")]
    ZeroSpeaker,
}

impl WireError {
    /// A short stable label for metrics (`too_short`, `unknown_kind`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "too_short",
            Self::UnknownKind(_) => "unknown_kind",
            Self::EmptyPayload => "empty_payload",
            Self::PayloadTooLong { .. } => "payload_too_long",
            Self::ZeroSpeaker => "zero_speaker",
        }
    }
}

/// One voice datagram as a client sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicePacket {
    /// +1 per packet of the speaker's stream; wraps around.
    pub sequence: u32,
    /// The sender's clock in milliseconds, any origin; wraps around.
    pub timestamp: u32,
    /// One opaque Opus frame, 1..=[`MAX_PAYLOAD`] bytes.
    pub payload: Bytes,
}

impl VoicePacket {
    /// Parses a client's voice datagram. The payload shares `datagram`'s
    /// buffer.
    pub fn parse(datagram: Bytes) -> Result<Self, WireError> {
        check_kind(&datagram, KIND_VOICE, VOICE_HEADER_LEN)?;
        let payload = checked_payload(&datagram, VOICE_HEADER_LEN)?;
        Ok(Self {
            sequence: be_u32(&datagram, 1),
            timestamp: be_u32(&datagram, 5),
            payload,
        })
    }

    /// The datagram a client sends for this packet.
    pub fn encode(&self) -> Result<Bytes, WireError> {
        check_payload_len(self.payload.len())?;
        let mut buf = BytesMut::with_capacity(VOICE_HEADER_LEN + self.payload.len());
        buf.put_u8(KIND_VOICE);
        buf.put_u32(self.sequence);
        buf.put_u32(self.timestamp);
        buf.put_slice(&self.payload);
        Ok(buf.freeze())
    }
}

/// One voice datagram as the data plane forwards it to a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The speaker's session id; never 0.
    pub speaker: u32,
    /// The sequence number as the speaker sent it.
    pub sequence: u32,
    /// The timestamp as the speaker sent it.
    pub timestamp: u32,
    /// The payload, byte for byte as the speaker sent it.
    pub payload: Bytes,
}

impl Forwarded {
    /// Builds the forwarded datagram for `packet` from `speaker`, header and
    /// payload in one buffer, so that the router can hand clones of the same
    /// reference-counted [`Bytes`] to every listener.
    pub fn build(speaker: u32, packet: &VoicePacket) -> Result<Bytes, WireError> {
        encode_forwarded(speaker, packet.sequence, packet.timestamp, &packet.payload)
    }

    /// Parses a forwarded datagram (the client side). The payload shares
    /// `datagram`'s buffer.
    pub fn parse(datagram: Bytes) -> Result<Self, WireError> {
        check_kind(&datagram, KIND_FORWARDED, FORWARDED_HEADER_LEN)?;
        let speaker = be_u32(&datagram, 1);
        if speaker == 0 {
            return Err(WireError::ZeroSpeaker);
        }
        let payload = checked_payload(&datagram, FORWARDED_HEADER_LEN)?;
        Ok(Self {
            speaker,
            sequence: be_u32(&datagram, 5),
            timestamp: be_u32(&datagram, 9),
            payload,
        })
    }

    /// The datagram for this value; the same bytes [`Forwarded::build`]
    /// makes.
    pub fn encode(&self) -> Result<Bytes, WireError> {
        encode_forwarded(self.speaker, self.sequence, self.timestamp, &self.payload)
    }
}

fn encode_forwarded(
    speaker: u32,
    sequence: u32,
    timestamp: u32,
    payload: &[u8],
) -> Result<Bytes, WireError> {
    if speaker == 0 {
        return Err(WireError::ZeroSpeaker);
    }
    check_payload_len(payload.len())?;
    let mut buf = BytesMut::with_capacity(FORWARDED_HEADER_LEN + payload.len());
    buf.put_u8(KIND_FORWARDED);
    buf.put_u32(speaker);
    buf.put_u32(sequence);
    buf.put_u32(timestamp);
    buf.put_slice(payload);
    Ok(buf.freeze())
}

/// Checks the kind byte first, so that a datagram of another kind is
/// reported as such even when it is short, then the header length.
fn check_kind(datagram: &[u8], kind: u8, header: usize) -> Result<(), WireError> {
    match datagram.first() {
        None => Err(WireError::TooShort { len: 0, header }),
        Some(&k) if k != kind => Err(WireError::UnknownKind(k)),
        Some(_) if datagram.len() < header => Err(WireError::TooShort {
            len: datagram.len(),
            header,
        }),
        Some(_) => Ok(()),
    }
}

/// The payload after a header that [`check_kind`] has already found
/// complete.
fn checked_payload(datagram: &Bytes, header: usize) -> Result<Bytes, WireError> {
    check_payload_len(datagram.len().saturating_sub(header))?;
    Ok(datagram.slice(header..))
}

fn check_payload_len(len: usize) -> Result<(), WireError> {
    if len == 0 {
        Err(WireError::EmptyPayload)
    } else if len > MAX_PAYLOAD {
        Err(WireError::PayloadTooLong {
            len,
            max: MAX_PAYLOAD,
        })
    } else {
        Ok(())
    }
}

/// Reads a big-endian u32 at `at`; callers have checked the length, and a
/// short read yields 0 rather than a panic all the same.
fn be_u32(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes)
}

/// The signed distance from `b` to `a` in serial-number arithmetic
/// (RFC 1982): positive when `a` comes after `b`, even across a wrap.
///
/// Exactly 2^31 apart is undefined in RFC 1982; here it reads as
/// `i32::MIN` (`a` before `b`), in both directions.
pub fn serial_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Orders two wrapping u32 serial numbers (RFC 1982).
pub fn serial_cmp(a: u32, b: u32) -> Ordering {
    serial_diff(a, b).cmp(&0)
}

/// Whether serial number `a` comes before `b` (RFC 1982).
pub fn serial_lt(a: u32, b: u32) -> bool {
    serial_diff(a, b) < 0
}

/// Whether serial number `a` comes after `b` (RFC 1982).
pub fn serial_gt(a: u32, b: u32) -> bool {
    serial_diff(a, b) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice(seq: u32, ts: u32, payload: &[u8]) -> Bytes {
        let mut v = vec![KIND_VOICE];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(payload);
        Bytes::from(v)
    }

    #[test]
    fn voice_layout_is_exact() {
        let d = voice(0x0102_0304, 0xA0B0_C0D0, b"opus");
        let p = VoicePacket::parse(d.clone()).expect("valid");
        assert_eq!(p.sequence, 0x0102_0304);
        assert_eq!(p.timestamp, 0xA0B0_C0D0);
        assert_eq!(&p.payload[..], b"opus");
        assert_eq!(p.encode().expect("valid"), d);
    }

    #[test]
    fn voice_parse_is_zero_copy() {
        let d = voice(1, 2, &[7; 100]);
        let p = VoicePacket::parse(d.clone()).expect("valid");
        assert_eq!(p.payload.as_ptr(), d[VOICE_HEADER_LEN..].as_ptr());
    }

    #[test]
    fn voice_round_trips_at_the_limits() {
        for len in [1, 2, MAX_PAYLOAD - 1, MAX_PAYLOAD] {
            for (seq, ts) in [(0, 0), (u32::MAX, u32::MAX), (1, u32::MAX - 5)] {
                let p = VoicePacket {
                    sequence: seq,
                    timestamp: ts,
                    payload: Bytes::from(vec![0xAB; len]),
                };
                let d = p.encode().expect("valid");
                assert_eq!(d.len(), VOICE_HEADER_LEN + len);
                assert_eq!(VoicePacket::parse(d).expect("valid"), p);
            }
        }
    }

    #[test]
    fn voice_errors() {
        assert_eq!(
            VoicePacket::parse(Bytes::new()),
            Err(WireError::TooShort { len: 0, header: 9 })
        );
        assert_eq!(
            VoicePacket::parse(Bytes::from_static(&[1, 0, 0, 0])),
            Err(WireError::TooShort { len: 4, header: 9 })
        );
        assert_eq!(
            VoicePacket::parse(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
            Err(WireError::UnknownKind(0x7f))
        );
        // A forwarded datagram is not a voice datagram.
        assert_eq!(
            VoicePacket::parse(Bytes::from_static(&[2])),
            Err(WireError::UnknownKind(2))
        );
        assert_eq!(
            VoicePacket::parse(voice(1, 1, b"")),
            Err(WireError::EmptyPayload)
        );
        assert_eq!(
            VoicePacket::parse(voice(1, 1, &[0; MAX_PAYLOAD + 1])),
            Err(WireError::PayloadTooLong {
                len: MAX_PAYLOAD + 1,
                max: MAX_PAYLOAD
            })
        );
        let empty = VoicePacket {
            sequence: 0,
            timestamp: 0,
            payload: Bytes::new(),
        };
        assert_eq!(empty.encode(), Err(WireError::EmptyPayload));
        let long = VoicePacket {
            payload: Bytes::from(vec![0; MAX_PAYLOAD + 1]),
            ..empty
        };
        assert!(matches!(
            long.encode(),
            Err(WireError::PayloadTooLong { .. })
        ));
    }

    #[test]
    fn forwarded_layout_and_round_trip() {
        let p = VoicePacket::parse(voice(u32::MAX, 7, b"frame")).expect("valid");
        let d = Forwarded::build(0x1122_3344, &p).expect("valid");
        assert_eq!(
            &d[..FORWARDED_HEADER_LEN],
            &[
                2, 0x11, 0x22, 0x33, 0x44, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 7
            ]
        );
        assert_eq!(&d[FORWARDED_HEADER_LEN..], b"frame");
        let f = Forwarded::parse(d.clone()).expect("valid");
        assert_eq!(
            f,
            Forwarded {
                speaker: 0x1122_3344,
                sequence: u32::MAX,
                timestamp: 7,
                payload: Bytes::from_static(b"frame"),
            }
        );
        assert_eq!(f.encode().expect("valid"), d);
        assert_eq!(f.payload.as_ptr(), d[FORWARDED_HEADER_LEN..].as_ptr());
    }

    #[test]
    fn forwarded_errors() {
        let p = VoicePacket {
            sequence: 1,
            timestamp: 1,
            payload: Bytes::from_static(b"x"),
        };
        assert_eq!(Forwarded::build(0, &p), Err(WireError::ZeroSpeaker));
        let mut zero = Forwarded::build(9, &p).expect("valid").to_vec();
        zero[1..5].copy_from_slice(&[0; 4]);
        assert_eq!(
            Forwarded::parse(Bytes::from(zero)),
            Err(WireError::ZeroSpeaker)
        );
        assert_eq!(
            Forwarded::parse(Bytes::new()),
            Err(WireError::TooShort { len: 0, header: 13 })
        );
        assert_eq!(
            Forwarded::parse(Bytes::from_static(&[2, 0, 0, 0, 1, 0])),
            Err(WireError::TooShort { len: 6, header: 13 })
        );
        assert_eq!(
            Forwarded::parse(voice(1, 1, b"voice, not forwarded")),
            Err(WireError::UnknownKind(1))
        );
        let header_only = Bytes::from_static(&[2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Forwarded::parse(header_only), Err(WireError::EmptyPayload));
        let mut long = Forwarded::build(9, &p).expect("valid").to_vec();
        long.resize(FORWARDED_HEADER_LEN + MAX_PAYLOAD + 1, 0);
        assert!(matches!(
            Forwarded::parse(Bytes::from(long)),
            Err(WireError::PayloadTooLong {
                len: 1001,
                max: 1000
            })
        ));
    }

    #[test]
    fn error_messages_are_short_and_lowercase() {
        let all = [
            WireError::TooShort { len: 1, header: 9 },
            WireError::UnknownKind(3),
            WireError::EmptyPayload,
            WireError::PayloadTooLong {
                len: 1001,
                max: 1000,
            },
            WireError::ZeroSpeaker,
        ];
        for e in all {
            let msg = e.to_string();
            assert!(msg.starts_with(|c: char| c.is_ascii_lowercase()), "{msg}");
            assert!(!e.label().is_empty());
        }
        assert_eq!(
            WireError::UnknownKind(3).to_string(),
            "unknown datagram kind 0x03"
        );
    }

    #[test]
    fn serial_numbers_wrap() {
        assert!(serial_lt(u32::MAX, 0));
        assert!(serial_gt(0, u32::MAX));
        assert!(serial_lt(5, 6));
        assert!(!serial_lt(6, 6));
        assert_eq!(serial_diff(2, u32::MAX), 3);
        assert_eq!(serial_diff(u32::MAX, 2), -3);
        assert_eq!(serial_cmp(0x8000_0000, 0x7fff_ffff), Ordering::Greater);
        assert_eq!(serial_cmp(7, 7), Ordering::Equal);
        assert_eq!(serial_cmp(u32::MAX - 1, 1), Ordering::Less);
    }
}
