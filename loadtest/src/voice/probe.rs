//! The bytes a load-test speaker puts inside each voice payload, and their
//! decoding on the listener's side.
//!
//! The data plane never looks inside a payload (`docs/PROTOCOL.md`,
//! "Opaque payload"), so the load generator can carry there whatever a
//! listener needs to judge the delivery on its own: who sent it, its place
//! in the sender's stream, and when it was sent. All clients run in one
//! process, so "when" is microseconds since one run-wide `Instant`, and the
//! difference to the arrival is the one-way delay through the server.
//!
//! ```text
//! offset size field
//! 0      1    magic: 0xB1 (this layout, version 1)
//! 1      1    flags: bit 0 = warm-up (not measured)
//! 2      4    sender: the sending client's index (u32, big-endian)
//! 6      4    sequence: per sender, from 0 for measured packets
//! 10     8    sent_us: µs since the run's epoch
//! 18     ..   padding: byte k = (k ^ sequence) as u8, up to the payload size
//! ```
//!
//! The padding is a pattern rather than zeros so that a payload changed in
//! transit (which the data plane must never do) is caught, not just one cut
//! short.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The first byte: this layout, version 1.
pub const MAGIC: u8 = 0xB1;
/// Bytes before the padding; the smallest `--payload-bytes`.
pub const HEADER_LEN: usize = 18;
/// The `flags` bit of a warm-up packet.
const FLAG_WARMUP: u8 = 0x01;

/// One payload's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The sending client's index.
    pub sender: u32,
    /// The sender's sequence (warm-up packets have their own count).
    pub sequence: u32,
    /// When the sender made it, µs since the run's epoch.
    pub sent_us: u64,
    /// A warm-up packet: proves the path works, is not measured.
    pub warmup: bool,
}

/// Why a payload is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProbeError {
    /// Shorter than the header.
    #[error("payload of {0} bytes is shorter than the probe header")]
    TooShort(usize),
    /// The first byte is not [`MAGIC`].
    #[error("unknown probe magic {0:#04x}")]
    BadMagic(u8),
    /// The padding is not the pattern the sender wrote.
    #[error("the padding changed in transit")]
    Corrupt,
    /// `encode` was asked for a payload shorter than the header, or longer
    /// than a voice payload may be.
    #[error("cannot make a {0}-byte probe payload")]
    BadSize(usize),
}

impl Probe {
    /// The payload for this probe, padded to `len` bytes
    /// ([`HEADER_LEN`]..=1000).
    pub fn encode(&self, len: usize) -> Result<Bytes, ProbeError> {
        if !(HEADER_LEN..=openspeak_voice::datagram::MAX_PAYLOAD).contains(&len) {
            return Err(ProbeError::BadSize(len));
        }
        let mut buf = BytesMut::with_capacity(len);
        buf.put_u8(MAGIC);
        buf.put_u8(if self.warmup { FLAG_WARMUP } else { 0 });
        buf.put_u32(self.sender);
        buf.put_u32(self.sequence);
        buf.put_u64(self.sent_us);
        for k in HEADER_LEN..len {
            buf.put_u8(pad(k, self.sequence));
        }
        Ok(buf.freeze())
    }

    /// Whether `payload` looks like a warm-up probe, from its first two
    /// bytes alone (cheaper than [`decode`](Self::decode), which also checks
    /// the padding).
    pub fn is_warmup(payload: &[u8]) -> bool {
        matches!(payload, [MAGIC, flags, ..] if flags & FLAG_WARMUP != 0)
    }

    /// Reads a payload; never panics, whatever the bytes.
    pub fn decode(payload: &[u8]) -> Result<Probe, ProbeError> {
        let Some(header) = payload.first_chunk::<HEADER_LEN>() else {
            return Err(ProbeError::TooShort(payload.len()));
        };
        if header[0] != MAGIC {
            return Err(ProbeError::BadMagic(header[0]));
        }
        let probe = Probe {
            warmup: header[1] & FLAG_WARMUP != 0,
            sender: u32::from_be_bytes([header[2], header[3], header[4], header[5]]),
            sequence: u32::from_be_bytes([header[6], header[7], header[8], header[9]]),
            sent_us: u64::from_be_bytes([
                header[10], header[11], header[12], header[13], header[14], header[15], header[16],
                header[17],
            ]),
        };
        let intact = payload
            .iter()
            .enumerate()
            .skip(HEADER_LEN)
            .all(|(k, &b)| b == pad(k, probe.sequence));
        if !intact {
            return Err(ProbeError::Corrupt);
        }
        Ok(probe)
    }
}

/// The padding byte at offset `k` of packet `sequence`.
fn pad(k: usize, sequence: u32) -> u8 {
    // Truncation is the point: a pattern that shifts with the sequence.
    (k as u32 ^ sequence) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Probe {
        Probe {
            sender: 0x0102_0304,
            sequence: 77,
            sent_us: 0x1122_3344_5566_7788,
            warmup: false,
        }
    }

    #[test]
    fn round_trips_at_every_size() {
        for len in [HEADER_LEN, 19, 80, 1000] {
            for warmup in [false, true] {
                let p = Probe { warmup, ..probe() };
                let bytes = p.encode(len).unwrap();
                assert_eq!(bytes.len(), len);
                assert_eq!(Probe::decode(&bytes).unwrap(), p);
                assert_eq!(Probe::is_warmup(&bytes), warmup);
            }
        }
    }

    #[test]
    fn the_header_is_laid_out_as_documented() {
        let bytes = probe().encode(20).unwrap();
        assert_eq!(
            &bytes[..],
            &[
                0xB1,
                0,
                1,
                2,
                3,
                4,
                0,
                0,
                0,
                77,
                0x11,
                0x22,
                0x33,
                0x44,
                0x55,
                0x66,
                0x77,
                0x88,
                18 ^ 77,
                19 ^ 77
            ]
        );
    }

    #[test]
    fn sizes_outside_the_limits_are_refused() {
        assert_eq!(probe().encode(17), Err(ProbeError::BadSize(17)));
        assert_eq!(probe().encode(1001), Err(ProbeError::BadSize(1001)));
    }

    #[test]
    fn foreign_or_damaged_payloads_are_errors_not_panics() {
        assert_eq!(Probe::decode(&[]), Err(ProbeError::TooShort(0)));
        assert!(!Probe::is_warmup(&[]) && !Probe::is_warmup(&[0x4f, 1]));
        assert_eq!(Probe::decode(&[MAGIC; 17]), Err(ProbeError::TooShort(17)));
        let mut bytes = probe().encode(80).unwrap().to_vec();
        bytes[0] = 0x4f;
        assert_eq!(Probe::decode(&bytes), Err(ProbeError::BadMagic(0x4f)));
        let mut bytes = probe().encode(80).unwrap().to_vec();
        bytes[50] ^= 0x10;
        assert_eq!(Probe::decode(&bytes), Err(ProbeError::Corrupt));
        // Any byte string at all: decoding must not panic.
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = Probe::decode(&junk);
        }
    }
}
