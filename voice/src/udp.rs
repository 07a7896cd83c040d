//! Voice over plain UDP: the packets, their sealing with the session key,
//! and the replay window. For networks and clients that cannot do QUIC.
//!
//! Every packet starts with a type byte; all integers are big-endian:
//!
//! ```text
//! TICKET  client → data plane   0x01 | version (= 1) | ticket_len (u16) | ticket
//! SEALED  both ways             0x02 | session_id (u32) | counter (u64)
//!                               | ciphertext | tag (16 bytes)
//! REJECT  data plane → client   0x03 | code (u8) | reason_len (u16) | reason
//! ```
//!
//! A SEALED packet is ChaCha20-Poly1305 (RFC 8439) with the 32-byte
//! `session_key` from `OpenVoice`, the 12-byte nonce `direction (u32) |
//! counter (u64)` (direction 0 from the client, 1 from the data plane, so
//! the two sides never share a nonce under their one key) and the 13 header
//! bytes as associated data. The session id travels in the clear so that
//! the data plane finds the key without trying any; the counter is the
//! nonce, so each side counts its packets from 0 and never repeats one
//! under a key, and the receiver refuses replays with a [`ReplayWindow`].
//!
//! The plaintext of a SEALED packet starts with a kind byte: the voice
//! datagrams of [`crate::datagram`] (`0x01` voice, `0x02` forwarded) or one
//! of the control messages here ([`Control`]).
//!
//! Nothing here allocates per packet: [`seal_into`] writes into the
//! caller's buffer and [`open_in_place`] decrypts where the packet lies.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use thiserror::Error;

use crate::exchange::{self, RejectCode};

/// The type byte of a ticket presentation.
pub const TYPE_TICKET: u8 = 0x01;
/// The type byte of a sealed packet.
pub const TYPE_SEALED: u8 = 0x02;
/// The type byte of a refused ticket's answer.
pub const TYPE_REJECT: u8 = 0x03;

/// Bytes of a SEALED packet before the ciphertext: type, session id,
/// counter. They are the associated data.
pub const SEALED_HEADER_LEN: usize = 13;
/// The AEAD tag at the end of a SEALED packet.
pub const TAG_LEN: usize = 16;
/// The length of `session_key`.
pub const KEY_LEN: usize = 32;

/// The plaintext kind of a ping (client → data plane): `0x10 | id (u64)`.
pub const KIND_PING: u8 = 0x10;
/// The plaintext kind of a ping's answer (data plane → client):
/// `0x11 | id (u64)`, the ping's id.
pub const KIND_PONG: u8 = 0x11;
/// The plaintext kind of a ticket's acceptance (data plane → client):
/// `0x12 | session_id (u32)`.
pub const KIND_ACCEPTED: u8 = 0x12;
/// The plaintext kind of the end of a session's UDP voice (data plane →
/// client): `0x13 | code (u8)`, a [`RejectCode`] value (8 replaced, 9
/// removed) or 0 when the data plane shuts down.
pub const KIND_CLOSED: u8 = 0x13;

/// The largest plaintext a data plane accepts in one packet: a voice
/// datagram with the largest payload.
pub const MAX_PLAINTEXT: usize = crate::datagram::MAX_FORWARDED_LEN;

/// Which way a sealed packet goes; it is the nonce's first four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Direction {
    /// From the client to the data plane.
    ToDataplane = 0,
    /// From the data plane to the client.
    ToClient = 1,
}

/// Why a packet is not a valid plain-UDP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UdpError {
    /// Shorter than its header (or empty).
    #[error("packet too short: {0} bytes")]
    TooShort(usize),
    /// The type byte is not one this side receives.
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
    /// The AEAD refused it: the wrong key, or altered on the way.
    #[error("packet failed authentication")]
    BadSeal,
    /// The plaintext is longer than any message.
    #[error("plaintext too long: {0} bytes")]
    TooLong(usize),
}

/// A session's key, ready to seal and open.
pub struct SessionKey(LessSafeKey);

impl SessionKey {
    /// The key from `OpenVoiceResponse.session_key`.
    pub fn new(bytes: &[u8; KEY_LEN]) -> Self {
        // A 32-byte key is always valid for ChaCha20-Poly1305.
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 32-byte ChaCha20 key");
        Self(LessSafeKey::new(key))
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// The header of a SEALED packet, in the clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedHeader {
    /// The session whose key sealed it.
    pub session_id: u32,
    /// The sender's packet counter: the nonce.
    pub counter: u64,
}

/// What arrived, by type, before any key is used.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A ticket presentation: the QUIC exchange's request, byte for byte,
    /// to check with [`exchange::parse_request`].
    Ticket(&'a [u8]),
    /// A sealed packet, to open with its session's key.
    Sealed(SealedHeader),
    /// A refused ticket: the code and the reason.
    Reject { code: u8, reason: &'a [u8] },
}

/// Reads a packet's type and clear header. Never panics.
pub fn parse(packet: &[u8]) -> Result<Packet<'_>, UdpError> {
    match packet {
        [] => Err(UdpError::TooShort(0)),
        [TYPE_TICKET, rest @ ..] => Ok(Packet::Ticket(rest)),
        [TYPE_SEALED, ..] => {
            if packet.len() < SEALED_HEADER_LEN + TAG_LEN {
                return Err(UdpError::TooShort(packet.len()));
            }
            let session_id = u32::from_be_bytes([packet[1], packet[2], packet[3], packet[4]]);
            let mut counter = [0; 8];
            counter.copy_from_slice(&packet[5..13]);
            Ok(Packet::Sealed(SealedHeader {
                session_id,
                counter: u64::from_be_bytes(counter),
            }))
        }
        [TYPE_REJECT, code, hi, lo, reason @ ..]
            if usize::from(u16::from_be_bytes([*hi, *lo])) == reason.len() =>
        {
            Ok(Packet::Reject {
                code: *code,
                reason,
            })
        }
        [TYPE_REJECT, ..] => Err(UdpError::TooShort(packet.len())),
        [other, ..] => Err(UdpError::UnknownType(*other)),
    }
}

/// A TICKET packet presenting `ticket`.
pub fn encode_ticket(ticket: &[u8]) -> Result<Vec<u8>, exchange::TicketTooLong> {
    let request = exchange::encode_request(ticket)?;
    let mut packet = Vec::with_capacity(1 + request.len());
    packet.push(TYPE_TICKET);
    packet.extend_from_slice(&request);
    Ok(packet)
}

/// The REJECT packet for `code`.
pub fn encode_reject(code: RejectCode) -> Vec<u8> {
    let answer = exchange::encode_reject(code);
    let mut packet = Vec::with_capacity(1 + answer.len());
    packet.push(TYPE_REJECT);
    packet.extend_from_slice(&answer);
    packet
}

/// The nonce of packet `counter` going `direction`.
fn nonce(direction: Direction, counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&(direction as u32).to_be_bytes());
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Seals `plaintext` as packet `counter` of `session_id` going
/// `direction`, replacing `out`'s contents with the SEALED packet. `out`
/// keeps its capacity, so a reused buffer costs no allocation.
pub fn seal_into(
    key: &SessionKey,
    direction: Direction,
    session_id: u32,
    counter: u64,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.push(TYPE_SEALED);
    out.extend_from_slice(&session_id.to_be_bytes());
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(plaintext);
    let (header, body) = out.split_at_mut(SEALED_HEADER_LEN);
    // Sealing fails only past ChaCha20's 256 GiB per nonce; a packet is
    // never near that.
    let tag = key
        .0
        .seal_in_place_separate_tag(nonce(direction, counter), Aad::from(&*header), body)
        .expect("a voice packet is within the AEAD's limits");
    out.extend_from_slice(tag.as_ref());
}

/// Opens the SEALED `packet` (header `header`, from [`parse`]) in place
/// and returns its plaintext, a part of `packet`.
pub fn open_in_place<'a>(
    key: &SessionKey,
    direction: Direction,
    header: SealedHeader,
    packet: &'a mut [u8],
) -> Result<&'a [u8], UdpError> {
    if packet.len() < SEALED_HEADER_LEN + TAG_LEN {
        return Err(UdpError::TooShort(packet.len()));
    }
    if packet.len() - SEALED_HEADER_LEN - TAG_LEN > MAX_PLAINTEXT {
        return Err(UdpError::TooLong(
            packet.len() - SEALED_HEADER_LEN - TAG_LEN,
        ));
    }
    let (aad, body) = packet.split_at_mut(SEALED_HEADER_LEN);
    let plaintext = key
        .0
        .open_in_place(nonce(direction, header.counter), Aad::from(&*aad), body)
        .map_err(|_| UdpError::BadSeal)?;
    Ok(plaintext)
}

/// A control message inside a SEALED packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The client asks for a [`Control::Pong`] with the same id.
    Ping(u64),
    /// The answer to [`Control::Ping`].
    Pong(u64),
    /// The data plane took the ticket: voice may flow for this session.
    Accepted(u32),
    /// The data plane ended this session's UDP voice with this code.
    Closed(u8),
}

impl Control {
    /// The plaintext of this message.
    pub fn encode(self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Control::Ping(id) => {
                out.push(KIND_PING);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Control::Pong(id) => {
                out.push(KIND_PONG);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Control::Accepted(session) => {
                out.push(KIND_ACCEPTED);
                out.extend_from_slice(&session.to_be_bytes());
            }
            Control::Closed(code) => {
                out.push(KIND_CLOSED);
                out.push(code);
            }
        }
    }

    /// The control message in `plaintext`, if it is one; `None` for voice
    /// and for anything malformed.
    pub fn parse(plaintext: &[u8]) -> Option<Self> {
        let u64_at = |b: &[u8]| b.try_into().ok().map(u64::from_be_bytes);
        match plaintext {
            [KIND_PING, id @ ..] => u64_at(id).map(Control::Ping),
            [KIND_PONG, id @ ..] => u64_at(id).map(Control::Pong),
            [KIND_ACCEPTED, a, b, c, d] => {
                Some(Control::Accepted(u32::from_be_bytes([*a, *b, *c, *d])))
            }
            [KIND_CLOSED, code] => Some(Control::Closed(*code)),
            _ => None,
        }
    }
}

/// Which counters a receiver has already taken: the highest, and a bitmap
/// of the [`ReplayWindow::SIZE`] below it. A packet whose counter is older
/// than that, or already taken, is a replay (or too late to matter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// One more than the highest counter taken; 0 before the first. Wider
    /// than a counter so that taking `u64::MAX` still leaves it above.
    next: u128,
    /// Bit `i` set: counter `next - 1 - i` was taken.
    seen: u128,
}

impl ReplayWindow {
    /// How far behind the highest counter a packet may still arrive.
    pub const SIZE: u64 = 128;

    /// Whether `counter` would be taken: call before opening, so a replay
    /// costs no decryption; [`take`](Self::take) it only once it opened.
    pub fn check(&self, counter: u64) -> bool {
        let counter = u128::from(counter);
        if counter >= self.next {
            return true;
        }
        let behind = self.next - 1 - counter;
        behind < u128::from(Self::SIZE) && self.seen & (1 << behind) == 0
    }

    /// Records `counter` as taken; returns whether it is the newest yet
    /// (what may move the session to a new address). Call only after
    /// [`check`](Self::check) said yes and the packet opened.
    pub fn take(&mut self, counter: u64) -> bool {
        let counter = u128::from(counter);
        if counter >= self.next {
            let shift = counter - self.next + 1;
            self.seen = if shift >= u128::from(Self::SIZE) {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.next = counter + 1;
            true
        } else {
            let behind = self.next - 1 - counter;
            if behind < u128::from(Self::SIZE) {
                self.seen |= 1 << behind;
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; KEY_LEN] = [0x42; KEY_LEN];

    fn sealed(direction: Direction, session: u32, counter: u64, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal_into(
            &SessionKey::new(&KEY),
            direction,
            session,
            counter,
            plaintext,
            &mut out,
        );
        out
    }

    fn open(direction: Direction, packet: &mut [u8]) -> Result<Vec<u8>, UdpError> {
        let Ok(Packet::Sealed(header)) = parse(packet) else {
            panic!("not sealed: {packet:?}");
        };
        open_in_place(&SessionKey::new(&KEY), direction, header, packet).map(<[u8]>::to_vec)
    }

    #[test]
    fn sealed_packets_round_trip() {
        let voice = [0x01, 0, 0, 0, 1, 0, 0, 0, 2, 0xaa];
        let mut packet = sealed(Direction::ToDataplane, 7, 3, &voice);
        assert_eq!(packet.len(), SEALED_HEADER_LEN + voice.len() + TAG_LEN);
        assert_eq!(packet[..5], [TYPE_SEALED, 0, 0, 0, 7]);
        assert_eq!(
            parse(&packet),
            Ok(Packet::Sealed(SealedHeader {
                session_id: 7,
                counter: 3
            }))
        );
        assert_eq!(
            open(Direction::ToDataplane, &mut packet),
            Ok(voice.to_vec())
        );
    }

    #[test]
    fn the_wrong_direction_key_or_any_changed_bit_fails() {
        let packet = sealed(Direction::ToDataplane, 7, 3, b"\x10hello!!!");
        // The data plane's own packets do not open as the client's: the
        // direction is in the nonce.
        assert_eq!(
            open(Direction::ToClient, &mut packet.clone()),
            Err(UdpError::BadSeal)
        );
        let mut other = packet.clone();
        let Ok(Packet::Sealed(header)) = parse(&other) else {
            unreachable!()
        };
        assert_eq!(
            open_in_place(
                &SessionKey::new(&[0x43; KEY_LEN]),
                Direction::ToDataplane,
                header,
                &mut other
            ),
            Err(UdpError::BadSeal)
        );
        for i in 0..packet.len() {
            for bit in 0..8 {
                let mut flipped = packet.clone();
                flipped[i] ^= 1 << bit;
                let result = match parse(&flipped) {
                    Ok(Packet::Sealed(header)) => open_in_place(
                        &SessionKey::new(&KEY),
                        Direction::ToDataplane,
                        header,
                        &mut flipped,
                    )
                    .map(<[u8]>::to_vec),
                    Ok(_) | Err(_) => Err(UdpError::BadSeal),
                };
                assert!(result.is_err(), "byte {i} bit {bit} went through");
            }
        }
    }

    #[test]
    fn parse_never_panics_and_names_the_problem() {
        assert_eq!(parse(&[]), Err(UdpError::TooShort(0)));
        assert_eq!(parse(&[0x02; 28]), Err(UdpError::TooShort(28)));
        assert_eq!(parse(&[0x07, 1]), Err(UdpError::UnknownType(7)));
        assert_eq!(parse(&[0x03, 9, 0, 5, b'x']), Err(UdpError::TooShort(5)));
        assert_eq!(
            parse(&[0x03, 9, 0, 1, b'x']),
            Ok(Packet::Reject {
                code: 9,
                reason: b"x"
            })
        );
        assert_eq!(parse(&[0x01, 1, 0, 0]), Ok(Packet::Ticket(&[1, 0, 0][..])));
        for len in 0..64 {
            for first in [0u8, 1, 2, 3, 0xff] {
                let mut p = vec![0x5a; len];
                if let Some(b) = p.first_mut() {
                    *b = first;
                }
                let _ = parse(&p);
            }
        }
    }

    #[test]
    fn tickets_and_rejects_frame_like_the_quic_exchange() {
        let packet = encode_ticket(b"abc").unwrap();
        assert_eq!(packet, [0x01, 0x01, 0, 3, b'a', b'b', b'c']);
        let Ok(Packet::Ticket(body)) = parse(&packet) else {
            unreachable!()
        };
        assert_eq!(exchange::parse_request(body), Ok(&b"abc"[..]));
        assert_eq!(
            exchange::parse_request(&[2, 0, 0]),
            Err(RejectCode::UnsupportedVersion)
        );
        let reject = encode_reject(RejectCode::Expired);
        assert_eq!(
            parse(&reject),
            Ok(Packet::Reject {
                code: 4,
                reason: b"expired ticket"
            })
        );
    }

    #[test]
    fn control_messages_round_trip() {
        let mut buf = Vec::new();
        for message in [
            Control::Ping(u64::MAX - 1),
            Control::Pong(5),
            Control::Accepted(42),
            Control::Closed(9),
        ] {
            message.encode(&mut buf);
            assert_eq!(Control::parse(&buf), Some(message));
        }
        assert_eq!(Control::parse(&[KIND_PING, 1, 2]), None);
        assert_eq!(Control::parse(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0, 1]), None);
        assert_eq!(Control::parse(&[]), None);
    }

    #[test]
    fn the_replay_window_takes_each_counter_once() {
        let mut w = ReplayWindow::default();
        assert!(w.check(0));
        assert!(w.take(0));
        assert!(!w.check(0));
        assert!(w.check(5));
        assert!(w.take(5));
        // Late but within the window, once.
        assert!(w.check(3));
        assert!(!w.take(3));
        assert!(!w.check(3));
        assert!(w.check(4) && w.check(1));
        // The window is 128 packets deep.
        assert!(w.take(200));
        assert!(!w.check(200 - 128));
        assert!(w.check(200 - 127));
        assert!(!w.check(5));
        // A jump past the window forgets what was behind it.
        assert!(w.take(1_000));
        assert!(w.check(999) && !w.check(1_000) && !w.check(1_000 - 128));
        // The last counter is taken once, and nothing after it.
        assert!(w.take(u64::MAX));
        assert!(!w.check(u64::MAX));
    }

    #[test]
    fn the_replay_window_matches_a_set_of_seen_counters() {
        // Against a plain model: taken once, refused when 128 or more
        // behind the highest taken.
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::HashSet::new();
        let mut highest: Option<u64> = None;
        let mut x: u64 = 12345;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = highest.unwrap_or(0);
            let counter = (base + x % 300).saturating_sub(150);
            let expected = !seen.contains(&counter)
                && highest.is_none_or(|h| counter > h || h - counter < ReplayWindow::SIZE);
            assert_eq!(w.check(counter), expected, "counter {counter}");
            if expected {
                w.take(counter);
                seen.insert(counter);
                highest = Some(highest.map_or(counter, |h| h.max(counter)));
            }
        }
    }

    /// The worked example of `docs/PROTOCOL.md`, byte for byte.
    #[test]
    fn worked_example() {
        let key: [u8; KEY_LEN] = std::array::from_fn(|i| i as u8);
        let voice = [
            0x01, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x01, 0xe2, 0x40, 0xaa, 0xbb, 0xcc,
        ];
        let mut out = Vec::new();
        seal_into(
            &SessionKey::new(&key),
            Direction::ToDataplane,
            7,
            1,
            &voice,
            &mut out,
        );
        assert_eq!(hex(&out), WORKED_EXAMPLE);
    }

    /// Computed independently (Python's `cryptography` package, RFC 8439).
    const WORKED_EXAMPLE: &str =
        "02000000070000000000000001685c7cdad90ab9986ddbc5e3fc74e5d7be29e34f95c3a8614740cd83";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
