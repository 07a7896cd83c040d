//! Voice tickets: `TicketVerifier::verify`, which a data plane runs on
//! bytes from any client that completed a QUIC handshake (or sent a UDP
//! TICKET packet), before it knows who the client is.
//!
//! The first input byte picks a mode; the rest is the input proper.
//! - Raw (even): the rest is a ticket. A verifier whose keys sealed nothing
//!   accepts nothing. The verifier holding the seeds' key accepts a ticket
//!   only if it is byte for byte the sealing of what it says (so a seed
//!   still verifies, and no changed byte of one does), unexpired.
//! - Sealed plaintext (odd): the rest is a plaintext that a key holder
//!   sealed (the harness seals it with the seeds' key, as the format
//!   describes), to reach the plaintext parser behind the AEAD. It never
//!   panics, fails only as malformed or expired, and a ticket it accepts
//!   encodes back to the same plaintext.
//! - Both modes: a ticket built from the input is issued, verifies back to
//!   itself, and fails with one bit flipped.

#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use openspeak_shared::ticket::{
    HEADER_LEN, KEY_LEN, MAX_CHANNEL_LEN, NONCE_LEN, Ticket, TicketError, TicketIssuer, TicketKey,
    TicketVerifier, VERSION,
};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

/// The key the seed tickets are sealed with (made up; protects nothing).
const SEED_KEY_ID: u32 = 7;
const SEED_SECRET: [u8; KEY_LEN] = [0x11; KEY_LEN];
/// Keys that sealed nothing: one under the seeds' id, one under another.
const OTHER_SECRET: [u8; KEY_LEN] = [0x99; KEY_LEN];

/// The verifying instant: 2023-11-14T22:13:20Z. Seed tickets expire after it.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn verifier(keys: &[(u32, [u8; KEY_LEN])]) -> TicketVerifier {
    let mut v = TicketVerifier::new();
    for &(id, secret) in keys {
        v.insert(TicketKey { id, secret });
    }
    v
}

/// The plaintext layout of the ticket format, written independently of the
/// crate from its documentation.
fn plaintext_of(t: &Ticket) -> Vec<u8> {
    let secs = t
        .expires_at
        .duration_since(UNIX_EPOCH)
        .expect("after epoch")
        .as_secs();
    let mut out = Vec::new();
    out.extend_from_slice(&t.session_id.to_be_bytes());
    out.extend_from_slice(&secs.to_be_bytes());
    out.extend_from_slice(&u16::try_from(t.channel.len()).expect("u16").to_be_bytes());
    out.extend_from_slice(t.channel.as_bytes());
    out.extend_from_slice(&t.session_key);
    out
}

/// Seals `plaintext` as a ticket of key `key_id` under `nonce`.
fn seal(secret: &[u8; KEY_LEN], key_id: u32, nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, secret).expect("32 bytes"));
    let mut out = vec![VERSION];
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&out[..HEADER_LEN]),
            &mut body,
        )
        .expect("small");
    out.extend_from_slice(&body);
    out.extend_from_slice(tag.as_ref());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let now = now();

    if mode & 1 == 0 {
        let strangers = verifier(&[(SEED_KEY_ID, OTHER_SECRET), (8, OTHER_SECRET)]);
        let result = strangers.verify(rest, now);
        assert!(result.is_err(), "verified without the key: {result:?}");

        let holder = verifier(&[(SEED_KEY_ID, SEED_SECRET), (8, OTHER_SECRET)]);
        match holder.verify(rest, now) {
            Ok(ticket) => {
                assert_ne!(ticket.session_id, 0);
                assert!(ticket.expires_at > now);
                let nonce: [u8; NONCE_LEN] = rest[HEADER_LEN..HEADER_LEN + NONCE_LEN]
                    .try_into()
                    .expect("12");
                let again = seal(&SEED_SECRET, SEED_KEY_ID, nonce, &plaintext_of(&ticket));
                assert_eq!(again, rest, "a ticket verified that is not a sealing");
            }
            Err(e) => assert!(!e.label().is_empty()),
        }
    } else {
        let sealed = seal(&SEED_SECRET, SEED_KEY_ID, [3; NONCE_LEN], rest);
        let holder = verifier(&[(SEED_KEY_ID, SEED_SECRET)]);
        match holder.verify(&sealed, now) {
            Ok(ticket) => {
                assert_ne!(ticket.session_id, 0);
                assert!(ticket.expires_at > now);
                assert_eq!(plaintext_of(&ticket), rest);
            }
            Err(TicketError::Malformed(_) | TicketError::Expired) => {}
            Err(e) => panic!("an authentic ticket failed with {e:?}"),
        }
    }

    issue_round_trip(rest, now);
});

/// Issues a ticket made from the input, verifies it, then flips one bit.
fn issue_round_trip(input: &[u8], now: SystemTime) {
    let word = |at: usize| -> u32 {
        let mut b = [0u8; 4];
        for (i, x) in b.iter_mut().enumerate() {
            *x = input.get(at + i).copied().unwrap_or(0);
        }
        u32::from_le_bytes(b)
    };
    let session_id = word(0).max(1);
    let lifetime = u64::from(word(4) % 100_000) + 1;
    let channel = String::from_utf8_lossy(input.get(8..).unwrap_or_default()).into_owned();
    if channel.len() > MAX_CHANNEL_LEN {
        return;
    }
    let mut session_key = [0u8; KEY_LEN];
    for (k, b) in session_key.iter_mut().zip(input.iter().rev()) {
        *k = *b;
    }
    let ticket = Ticket {
        session_id,
        channel,
        expires_at: now + Duration::from_secs(lifetime),
        session_key,
    };
    let key = TicketKey {
        id: word(2),
        secret: SEED_SECRET,
    };
    let bytes = TicketIssuer::new(key.clone())
        .issue(&ticket)
        .expect("issue");
    let v = verifier(&[(key.id, key.secret)]);
    assert_eq!(v.verify(&bytes, now).expect("round trip"), ticket);
    assert_eq!(
        v.verify(&bytes, ticket.expires_at),
        Err(TicketError::Expired)
    );

    let bit = (word(4) as usize ^ input.len()) % (bytes.len() * 8);
    let mut flipped = bytes;
    flipped[bit / 8] ^= 1 << (bit % 8);
    assert!(
        v.verify(&flipped, now).is_err(),
        "bit {bit} flipped and the ticket still verified"
    );
}
