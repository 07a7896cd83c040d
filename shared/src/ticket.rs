//! The voice ticket: what the control plane hands a client in
//! `OpenVoiceResponse.ticket`, and what a data plane checks on its own,
//! without a round trip, to admit that client's voice connection.
//!
//! A ticket is sealed (encrypted and authenticated) with a [`TicketKey`] the
//! control plane generates and gives every data plane over the internal
//! link. It binds a session id to a channel and an expiry, and carries the
//! session key of the plain-UDP transport, so that the data plane learns
//! that key from the ticket itself. Clients treat the ticket as opaque bytes.
//!
//! ```text
//! ticket    = version (1 byte, = 1) | key_id (u32) | nonce (12 bytes, random)
//!             | ciphertext || tag (16 bytes)
//! plaintext = session_id (u32, non-zero) | expires_at (u64, Unix seconds)
//!             | channel_len (u16) | channel id (channel_len bytes of UTF-8)
//!             | session_key (32 bytes)
//! AEAD      = ChaCha20-Poly1305 (RFC 8439), key = the 32-byte secret of key_id,
//!             AAD = the first 5 bytes (version | key_id)
//! ```
//!
//! All integers are big-endian. A ticket is therefore 79 bytes plus the
//! channel id's length, and at most 79 + 65,535 bytes.
//!
//! Why this shape:
//! - `key_id` travels in the clear (and is authenticated as AAD) so that a
//!   data plane holding the current and the previous key during a rotation
//!   knows which one to try: one AEAD open per ticket, never a trial of all.
//! - The nonce is random per ticket. With 96 random bits, collisions stay
//!   negligible for far more tickets than one key ever seals before it is
//!   rotated; a counter would need state shared by every issuer of a key.
//! - Expiry is checked only after authentication, and the expiry check is
//!   the last one, so an attacker learns nothing from the order of errors
//!   beyond "malformed", "unknown key" and "forged".
//!
//! Nothing here reads the clock: [`TicketVerifier::verify`] takes `now`.
//! Verification never panics on any input; the AEAD's tag comparison is
//! constant-time with respect to the secret (`ring` does it).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

/// The version byte of the format this module reads and writes.
pub const VERSION: u8 = 1;
/// The length of a [`TicketKey`] secret and of a ticket's session key.
pub const KEY_LEN: usize = 32;
/// The clear header: version and key id. It is the AEAD's associated data.
pub const HEADER_LEN: usize = 1 + 4;
/// The length of the random nonce that follows the header.
pub const NONCE_LEN: usize = 12;
/// The length of the authentication tag at the end of a ticket.
pub const TAG_LEN: usize = 16;
/// The longest channel id a ticket can carry (its length is a `u16`).
pub const MAX_CHANNEL_LEN: usize = u16::MAX as usize;
/// The plaintext without the channel id: session id, expiry, channel
/// length and session key.
const FIXED_PLAINTEXT_LEN: usize = 4 + 8 + 2 + KEY_LEN;
/// The shortest ticket: one for an empty channel id.
pub const MIN_TICKET_LEN: usize = HEADER_LEN + NONCE_LEN + FIXED_PLAINTEXT_LEN + TAG_LEN;
/// The longest ticket: one for a channel id of [`MAX_CHANNEL_LEN`] bytes.
pub const MAX_TICKET_LEN: usize = MIN_TICKET_LEN + MAX_CHANNEL_LEN;

/// How long a ticket admits its session after the control plane issues it
/// (`expires_at` is this far after issue). The data plane relies on it too:
/// it refuses tickets of an ended session for this long (plus clock skew),
/// after which every ticket of that session has expired anyway.
pub const TICKET_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a ticket could not be issued or was not accepted.
///
/// The messages are short enough to serve as reject reasons on the wire;
/// [`TicketError::label`] gives a fixed string for metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TicketError {
    /// The bytes are not a ticket of this format, or (when issuing) the
    /// ticket's content cannot be encoded in it.
    #[error("malformed ticket: {0}")]
    Malformed(Malformed),
    /// The ticket names a key this verifier does not hold: a foreign
    /// ticket, or one whose key was rotated out.
    #[error("unknown ticket key {0}")]
    UnknownKey(u32),
    /// Authentication failed: the ticket was tampered with or sealed with
    /// another key of the same id.
    #[error("forged ticket")]
    Forged,
    /// The ticket is authentic but `now` is at or past its expiry.
    #[error("expired ticket")]
    Expired,
    /// The system's random source failed (issuing and key generation only).
    #[error("random source failed")]
    Random,
}

impl TicketError {
    /// A fixed, lowercase label for metrics: `malformed`, `unknown_key`,
    /// `forged`, `expired` or `random`.
    pub fn label(&self) -> &'static str {
        match self {
            TicketError::Malformed(_) => "malformed",
            TicketError::UnknownKey(_) => "unknown_key",
            TicketError::Forged => "forged",
            TicketError::Expired => "expired",
            TicketError::Random => "random",
        }
    }
}

/// What is wrong with a malformed ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Malformed {
    /// Shorter than [`MIN_TICKET_LEN`] (or empty).
    #[error("too short")]
    TooShort,
    /// Longer than [`MAX_TICKET_LEN`].
    #[error("too long")]
    TooLong,
    /// The version byte is not [`VERSION`].
    #[error("unknown version {0}")]
    Version(u8),
    /// The channel length does not match the rest of the plaintext.
    #[error("bad channel length")]
    ChannelLength,
    /// The channel id is not UTF-8.
    #[error("channel id not utf-8")]
    ChannelNotUtf8,
    /// The channel id is longer than [`MAX_CHANNEL_LEN`] bytes (issuing only).
    #[error("channel id too long")]
    ChannelTooLong,
    /// The session id is 0, which no session has.
    #[error("zero session id")]
    ZeroSession,
    /// The expiry is before the Unix epoch or beyond what the platform's
    /// `SystemTime` can hold.
    #[error("expiry out of range")]
    ExpiryOutOfRange,
}

impl From<Malformed> for TicketError {
    fn from(m: Malformed) -> Self {
        TicketError::Malformed(m)
    }
}

/// A key that seals and opens tickets. The control plane generates one,
/// issues with it, and gives it to the data planes over the internal link.
///
/// `Debug` shows the id only, never the secret.
#[derive(Clone)]
pub struct TicketKey {
    /// Names the key in every ticket it seals, so a verifier holding several
    /// keys (during a rotation) knows which to use.
    pub id: u32,
    /// The ChaCha20-Poly1305 key.
    pub secret: [u8; KEY_LEN],
}

impl TicketKey {
    /// A new key with a random secret from the system's random source.
    pub fn generate(id: u32) -> Result<Self, TicketError> {
        let mut secret = [0; KEY_LEN];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| TicketError::Random)?;
        Ok(TicketKey { id, secret })
    }

    fn aead_key(&self) -> LessSafeKey {
        // The only failure of `UnboundKey::new` is a key of the wrong
        // length, which the array type rules out.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &self.secret)
            .expect("a 32-byte key fits ChaCha20-Poly1305");
        LessSafeKey::new(unbound)
    }
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What a ticket says, in plain Rust types.
///
/// `Debug` does not show the session key.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The voice session the ticket admits; never 0.
    pub session_id: u32,
    /// The channel the session may speak and listen in.
    pub channel: String,
    /// The ticket is valid strictly before this instant. It is encoded in
    /// whole seconds, rounded down, so a ticket never outlives what its
    /// issuer asked for.
    pub expires_at: SystemTime,
    /// The session key of the plain-UDP transport, for the data plane.
    pub session_key: [u8; KEY_LEN],
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("session_id", &self.session_id)
            .field("channel", &self.channel)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Seals tickets with one key: the control plane's current key.
pub struct TicketIssuer {
    /// Written into every ticket's header.
    key_id: u32,
    /// The expanded key, so that issuing does not redo the key setup.
    key: LessSafeKey,
    /// The source of the per-ticket nonces.
    rng: SystemRandom,
}

impl TicketIssuer {
    /// An issuer that seals with `key`.
    pub fn new(key: TicketKey) -> Self {
        TicketIssuer {
            key_id: key.id,
            key: key.aead_key(),
            rng: SystemRandom::new(),
        }
    }

    /// The id of the key this issuer seals with.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Seals `ticket` under a fresh random nonce.
    ///
    /// Fails with [`TicketError::Malformed`] if the ticket cannot be encoded
    /// (session id 0, a channel id over [`MAX_CHANNEL_LEN`] bytes, an expiry
    /// before the Unix epoch) and with [`TicketError::Random`] if the random
    /// source fails.
    pub fn issue(&self, ticket: &Ticket) -> Result<Vec<u8>, TicketError> {
        let plaintext = encode_plaintext(ticket)?;
        let mut nonce = [0; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| TicketError::Random)?;
        Ok(seal(&self.key, self.key_id, nonce, &plaintext))
    }
}

impl fmt::Debug for TicketIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketIssuer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Checks tickets against the keys it holds: during a rotation, the
/// current key and the previous one, so tickets issued just before the
/// rotation stay valid until their expiry or until the old key is removed.
#[derive(Default)]
pub struct TicketVerifier {
    /// Expanded keys by id; a ticket's header says which one opens it.
    keys: HashMap<u32, LessSafeKey>,
}

impl TicketVerifier {
    /// A verifier that holds no key yet and so rejects every ticket.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key`, replacing any key of the same id.
    pub fn insert(&mut self, key: TicketKey) {
        self.keys.insert(key.id, key.aead_key());
    }

    /// Drops the key `id`; returns whether it was held. Tickets sealed with
    /// it are rejected from then on as [`TicketError::UnknownKey`].
    pub fn remove(&mut self, id: u32) -> bool {
        self.keys.remove(&id).is_some()
    }

    /// Whether the key `id` is held.
    pub fn contains(&self, id: u32) -> bool {
        self.keys.contains_key(&id)
    }

    /// Opens `bytes` and returns the ticket if it is well-formed, sealed
    /// with a held key, and not expired at `now` (expired when
    /// `now >= expires_at`). Never panics, whatever the input.
    pub fn verify(&self, bytes: &[u8], now: SystemTime) -> Result<Ticket, TicketError> {
        if bytes.len() < MIN_TICKET_LEN {
            return Err(Malformed::TooShort.into());
        }
        if bytes.len() > MAX_TICKET_LEN {
            return Err(Malformed::TooLong.into());
        }
        let mut r = Reader(bytes);
        let [version] = r.take::<1>()?;
        if version != VERSION {
            return Err(Malformed::Version(version).into());
        }
        let key_id = u32::from_be_bytes(r.take()?);
        let key = self
            .keys
            .get(&key_id)
            .ok_or(TicketError::UnknownKey(key_id))?;
        let nonce = Nonce::assume_unique_for_key(r.take()?);
        let aad = Aad::from(bytes.get(..HEADER_LEN).ok_or(Malformed::TooShort)?);
        let mut sealed = r.0.to_vec();
        let plaintext = key
            .open_in_place(nonce, aad, &mut sealed)
            .map_err(|_| TicketError::Forged)?;
        let ticket = decode_plaintext(plaintext)?;
        if now >= ticket.expires_at {
            return Err(TicketError::Expired);
        }
        Ok(ticket)
    }
}

impl fmt::Debug for TicketVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<u32> = self.keys.keys().copied().collect();
        ids.sort_unstable();
        f.debug_struct("TicketVerifier")
            .field("key_ids", &ids)
            .finish()
    }
}

/// The plaintext layout of the module header, checked for what the format
/// cannot carry.
fn encode_plaintext(ticket: &Ticket) -> Result<Vec<u8>, Malformed> {
    if ticket.session_id == 0 {
        return Err(Malformed::ZeroSession);
    }
    let channel_len = u16::try_from(ticket.channel.len()).map_err(|_| Malformed::ChannelTooLong)?;
    let expires_at = ticket
        .expires_at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Malformed::ExpiryOutOfRange)?
        .as_secs();
    let mut out = Vec::with_capacity(FIXED_PLAINTEXT_LEN + ticket.channel.len());
    out.extend_from_slice(&ticket.session_id.to_be_bytes());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(&channel_len.to_be_bytes());
    out.extend_from_slice(ticket.channel.as_bytes());
    out.extend_from_slice(&ticket.session_key);
    Ok(out)
}

/// Parses an authenticated plaintext. A key holder could still have sealed
/// garbage, so every field is checked as if it came from the network.
fn decode_plaintext(plaintext: &[u8]) -> Result<Ticket, Malformed> {
    let mut r = Reader(plaintext);
    let session_id = u32::from_be_bytes(r.take()?);
    let expires_at = u64::from_be_bytes(r.take()?);
    let channel_len = usize::from(u16::from_be_bytes(r.take()?));
    if r.0.len() != channel_len + KEY_LEN {
        return Err(Malformed::ChannelLength);
    }
    let (channel, rest) =
        r.0.split_at_checked(channel_len)
            .ok_or(Malformed::ChannelLength)?;
    let session_key: [u8; KEY_LEN] = rest.try_into().map_err(|_| Malformed::ChannelLength)?;
    if session_id == 0 {
        return Err(Malformed::ZeroSession);
    }
    let channel = std::str::from_utf8(channel)
        .map_err(|_| Malformed::ChannelNotUtf8)?
        .to_owned();
    let expires_at = UNIX_EPOCH
        .checked_add(Duration::from_secs(expires_at))
        .ok_or(Malformed::ExpiryOutOfRange)?;
    Ok(Ticket {
        session_id,
        channel,
        expires_at,
        session_key,
    })
}

/// Builds a ticket around an encoded plaintext, sealing it in place.
fn seal(key: &LessSafeKey, key_id: u32, nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.push(VERSION);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let (clear, body) = out.split_at_mut(HEADER_LEN + NONCE_LEN);
    let aad = Aad::from(&clear[..HEADER_LEN]);
    // ChaCha20-Poly1305 fails only past 256 GiB of input; a ticket is at
    // most 64 KiB.
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), aad, body)
        .expect("a ticket is far below the AEAD's input limit");
    out.extend_from_slice(tag.as_ref());
    out
}

/// Reads fixed-size fields off the front of a slice without panicking.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(Malformed::TooShort)?;
        self.0 = rest;
        Ok(*head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed instant, in whole seconds, so round trips are exact.
    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn key(id: u32, fill: u8) -> TicketKey {
        TicketKey {
            id,
            secret: [fill; KEY_LEN],
        }
    }

    fn ticket() -> Ticket {
        Ticket {
            session_id: 42,
            channel: "lobby-ü".to_owned(),
            expires_at: t0() + Duration::from_secs(60),
            session_key: [0x77; KEY_LEN],
        }
    }

    /// The test ticket, issued under `k`.
    fn issued(k: TicketKey) -> Vec<u8> {
        TicketIssuer::new(k).issue(&ticket()).expect("issue")
    }

    fn verifier(keys: impl IntoIterator<Item = TicketKey>) -> TicketVerifier {
        let mut v = TicketVerifier::new();
        for k in keys {
            v.insert(k);
        }
        v
    }

    /// Seals an arbitrary plaintext, to test what a key holder could send.
    fn seal_raw(k: &TicketKey, plaintext: &[u8]) -> Vec<u8> {
        seal(&k.aead_key(), k.id, [3; NONCE_LEN], plaintext)
    }

    #[test]
    fn round_trip() {
        let k = key(7, 0x11);
        let bytes = issued(k.clone());
        assert_eq!(bytes.len(), MIN_TICKET_LEN + ticket().channel.len());
        assert_eq!(bytes[0], VERSION);
        assert_eq!(bytes[1..5], 7u32.to_be_bytes());
        let got = verifier([k]).verify(&bytes, t0()).expect("verify");
        assert_eq!(got, ticket());
        assert_eq!(got.session_key, [0x77; KEY_LEN]);
    }

    #[test]
    fn round_trip_at_the_channel_limits() {
        let k = key(1, 0x22);
        let issuer = TicketIssuer::new(k.clone());
        let v = verifier([k]);
        for len in [0, 1, MAX_CHANNEL_LEN] {
            let t = Ticket {
                channel: "c".repeat(len),
                ..ticket()
            };
            let bytes = issuer.issue(&t).expect("issue");
            assert_eq!(bytes.len(), MIN_TICKET_LEN + len);
            assert_eq!(v.verify(&bytes, t0()).expect("verify"), t);
        }
    }

    #[test]
    fn expiry_is_rounded_down_to_whole_seconds() {
        let k = key(1, 0x22);
        let t = Ticket {
            expires_at: t0() + Duration::from_millis(1_999),
            ..ticket()
        };
        let bytes = TicketIssuer::new(k.clone()).issue(&t).expect("issue");
        let got = verifier([k]).verify(&bytes, t0()).expect("verify");
        assert_eq!(got.expires_at, t0() + Duration::from_secs(1));
    }

    #[test]
    fn every_tampered_byte_is_rejected() {
        let k = key(7, 0x11);
        let bytes = issued(k.clone());
        let v = verifier([k]);
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                let err = v.verify(&bad, t0()).expect_err("tampered ticket accepted");
                let want = match i {
                    0 => TicketError::Malformed(Malformed::Version(VERSION ^ flip)),
                    1..HEADER_LEN => {
                        TicketError::UnknownKey(u32::from_be_bytes(bad[1..5].try_into().unwrap()))
                    }
                    _ => TicketError::Forged,
                };
                assert_eq!(err, want, "byte {i} flipped with {flip:#04x}");
            }
        }
        // Truncated or extended by one byte: the tag no longer matches.
        assert_eq!(
            v.verify(&bytes[..bytes.len() - 1], t0()),
            Err(TicketError::Forged)
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(v.verify(&longer, t0()), Err(TicketError::Forged));
    }

    #[test]
    fn wrong_key_of_the_same_id_is_forged() {
        let bytes = issued(key(7, 0x11));
        let v = verifier([key(7, 0x12)]);
        assert_eq!(v.verify(&bytes, t0()), Err(TicketError::Forged));
    }

    #[test]
    fn unknown_key_id() {
        let bytes = issued(key(7, 0x11));
        let v = verifier([key(8, 0x11)]);
        assert_eq!(v.verify(&bytes, t0()), Err(TicketError::UnknownKey(7)));
        assert_eq!(
            TicketVerifier::new().verify(&bytes, t0()),
            Err(TicketError::UnknownKey(7))
        );
    }

    #[test]
    fn expired_at_exactly_expires_at() {
        let k = key(7, 0x11);
        let bytes = issued(k.clone());
        let v = verifier([k]);
        let exp = ticket().expires_at;
        assert!(v.verify(&bytes, exp - Duration::from_secs(1)).is_ok());
        assert!(v.verify(&bytes, exp - Duration::from_nanos(1)).is_ok());
        assert_eq!(v.verify(&bytes, exp), Err(TicketError::Expired));
        assert_eq!(
            v.verify(&bytes, exp + Duration::from_secs(3600)),
            Err(TicketError::Expired)
        );
    }

    #[test]
    fn rotation_keeps_the_previous_key_until_removed() {
        let old = key(1, 0xA1);
        let new = key(2, 0xA2);
        let old_ticket = issued(old.clone());
        let new_ticket = issued(new.clone());
        let mut v = verifier([old]);
        assert!(v.verify(&old_ticket, t0()).is_ok());
        assert_eq!(v.verify(&new_ticket, t0()), Err(TicketError::UnknownKey(2)));

        v.insert(new);
        assert!(v.contains(1) && v.contains(2));
        assert!(v.verify(&old_ticket, t0()).is_ok());
        assert!(v.verify(&new_ticket, t0()).is_ok());

        assert!(v.remove(1));
        assert!(!v.remove(1));
        assert_eq!(v.verify(&old_ticket, t0()), Err(TicketError::UnknownKey(1)));
        assert!(v.verify(&new_ticket, t0()).is_ok());
    }

    #[test]
    fn insert_replaces_a_key_of_the_same_id() {
        let bytes = issued(key(7, 0x11));
        let mut v = verifier([key(7, 0x11)]);
        assert!(v.verify(&bytes, t0()).is_ok());
        v.insert(key(7, 0x99));
        assert_eq!(v.verify(&bytes, t0()), Err(TicketError::Forged));
    }

    #[test]
    fn same_content_gives_different_tickets() {
        let k = key(7, 0x11);
        let issuer = TicketIssuer::new(k.clone());
        let a = issuer.issue(&ticket()).expect("issue");
        let b = issuer.issue(&ticket()).expect("issue");
        assert_ne!(a, b);
        assert_ne!(
            a[HEADER_LEN..HEADER_LEN + NONCE_LEN],
            b[HEADER_LEN..HEADER_LEN + NONCE_LEN]
        );
        let v = verifier([k]);
        assert_eq!(v.verify(&a, t0()), v.verify(&b, t0()));
    }

    #[test]
    fn generated_keys_differ_and_work() {
        let a = TicketKey::generate(1).expect("generate");
        let b = TicketKey::generate(1).expect("generate");
        assert_ne!(a.secret, b.secret);
        let bytes = issued(a.clone());
        assert!(verifier([a]).verify(&bytes, t0()).is_ok());
        assert_eq!(verifier([b]).verify(&bytes, t0()), Err(TicketError::Forged));
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        let v = verifier([key(7, 0x11)]);
        let valid = issued(key(7, 0x11));
        let m = |e| Err(TicketError::Malformed(e));
        assert_eq!(v.verify(&[], t0()), m(Malformed::TooShort));
        assert_eq!(v.verify(&[VERSION], t0()), m(Malformed::TooShort));
        assert_eq!(
            v.verify(&valid[..MIN_TICKET_LEN - 1], t0()),
            m(Malformed::TooShort)
        );
        assert_eq!(
            v.verify(&vec![VERSION; MAX_TICKET_LEN + 1], t0()),
            m(Malformed::TooLong)
        );
        for version in [0, 2, 0xFF] {
            let mut bad = valid.clone();
            bad[0] = version;
            assert_eq!(v.verify(&bad, t0()), m(Malformed::Version(version)));
        }
    }

    #[test]
    fn authentic_but_malformed_plaintext_is_rejected() {
        let k = key(7, 0x11);
        let v = verifier([k.clone()]);
        let good = encode_plaintext(&ticket()).expect("encode");
        let m = |e| Err(TicketError::Malformed(e));
        assert_eq!(v.verify(&seal_raw(&k, &good), t0()), Ok(ticket()));

        let mut zero = good.clone();
        zero[..4].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            v.verify(&seal_raw(&k, &zero), t0()),
            m(Malformed::ZeroSession)
        );

        for channel_len in [0u16, 7, 9, u16::MAX] {
            let mut bad = good.clone();
            bad[12..14].copy_from_slice(&channel_len.to_be_bytes());
            assert_eq!(
                v.verify(&seal_raw(&k, &bad), t0()),
                m(Malformed::ChannelLength),
                "channel_len {channel_len}"
            );
        }

        let mut not_utf8 = good.clone();
        not_utf8[14] = 0xFF;
        assert_eq!(
            v.verify(&seal_raw(&k, &not_utf8), t0()),
            m(Malformed::ChannelNotUtf8)
        );

        let mut far = good.clone();
        far[4..12].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            v.verify(&seal_raw(&k, &far), t0()),
            m(Malformed::ExpiryOutOfRange)
        );
    }

    #[test]
    fn issue_rejects_what_the_format_cannot_carry() {
        let issuer = TicketIssuer::new(key(7, 0x11));
        let m = |e| Err(TicketError::Malformed(e));
        let zero = Ticket {
            session_id: 0,
            ..ticket()
        };
        assert_eq!(issuer.issue(&zero), m(Malformed::ZeroSession));
        let long = Ticket {
            channel: "c".repeat(MAX_CHANNEL_LEN + 1),
            ..ticket()
        };
        assert_eq!(issuer.issue(&long), m(Malformed::ChannelTooLong));
        let early = Ticket {
            expires_at: UNIX_EPOCH - Duration::from_secs(1),
            ..ticket()
        };
        assert_eq!(issuer.issue(&early), m(Malformed::ExpiryOutOfRange));
    }

    #[test]
    fn debug_shows_no_secret() {
        let secret = [0x5A; KEY_LEN];
        let k = TicketKey { id: 3, secret };
        let t = Ticket {
            session_key: secret,
            ..ticket()
        };
        let outputs = [
            format!("{k:?}"),
            format!("{k:#?}"),
            format!("{t:?}"),
            format!("{t:#?}"),
            format!("{:?}", TicketIssuer::new(k.clone())),
            format!("{:?}", verifier([k.clone()])),
        ];
        for out in outputs {
            let lower = out.to_lowercase();
            assert!(!out.contains("90, 90"), "{out}");
            assert!(!lower.contains("5a5a"), "{out}");
            assert!(!lower.contains("0x5a"), "{out}");
            assert!(!lower.contains("secret"), "{out}");
            assert!(!lower.contains("session_key"), "{out}");
        }
    }

    #[test]
    fn labels_and_messages_are_short_and_lowercase() {
        let all = [
            TicketError::Malformed(Malformed::TooShort),
            TicketError::UnknownKey(7),
            TicketError::Forged,
            TicketError::Expired,
            TicketError::Random,
        ];
        for e in all {
            let label = e.label();
            assert!(label.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert_eq!(e.to_string(), e.to_string().to_lowercase());
        }
        assert_eq!(
            TicketError::Malformed(Malformed::ChannelLength).to_string(),
            "malformed ticket: bad channel length"
        );
    }
}
