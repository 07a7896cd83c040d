//! Plain-UDP voice: `udp::parse` of every packet a data plane (or client)
//! receives, `udp::open_in_place` of SEALED packets, and `Control::parse`
//! of opened plaintexts.
//!
//! Properties:
//! - `parse` never panics and its result describes the bytes exactly
//!   (TICKET and REJECT re-encode to the input; SEALED's header fields are
//!   the clear bytes; errors give the real length or type);
//! - opening under a key that sealed nothing never yields plaintext;
//!   opening under the seeds' key yields plaintext only for a packet that is
//!   byte for byte the sealing of that plaintext (no malleability), and
//!   never under the other direction's nonce;
//! - seal then open round-trips any plaintext of at most MAX_PLAINTEXT
//!   bytes under any session id and counter, and one flipped bit of the
//!   sealed packet makes it fail;
//! - what `Control::parse` accepts re-encodes to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use openspeak_voice::exchange::{self, RejectCode};
use openspeak_voice::udp::{
    self, Control, Direction, KEY_LEN, MAX_PLAINTEXT, Packet, SEALED_HEADER_LEN, SessionKey,
    TAG_LEN, TYPE_REJECT, TYPE_SEALED, TYPE_TICKET, UdpError,
};

/// The key the seed corpus's SEALED packets are sealed with (made up for
/// the corpus; it protects nothing).
const SEED_KEY: [u8; KEY_LEN] = [0x42; KEY_LEN];
/// A key that sealed nothing anywhere.
const OTHER_KEY: [u8; KEY_LEN] = [0x17; KEY_LEN];

fuzz_target!(|data: &[u8]| {
    let seed_key = SessionKey::new(&SEED_KEY);
    let other_key = SessionKey::new(&OTHER_KEY);

    match udp::parse(data) {
        Ok(Packet::Ticket(body)) => {
            assert_eq!(data[0], TYPE_TICKET);
            assert_eq!(body, &data[1..]);
            match exchange::parse_request(body) {
                Ok(ticket) => {
                    assert_eq!(udp::encode_ticket(ticket).expect("fits"), data);
                }
                Err(code) => assert!(matches!(
                    code,
                    RejectCode::Malformed | RejectCode::UnsupportedVersion
                )),
            }
        }
        Ok(Packet::Reject { code, reason }) => {
            let mut again = vec![TYPE_REJECT, code];
            again.extend_from_slice(&u16::try_from(reason.len()).expect("u16").to_be_bytes());
            again.extend_from_slice(reason);
            assert_eq!(again, data);
            if let Some(known) = RejectCode::from_u8(code)
                && reason == known.reason().as_bytes()
            {
                assert_eq!(udp::encode_reject(known), data);
            }
        }
        Ok(Packet::Sealed(header)) => {
            assert_eq!(data[0], TYPE_SEALED);
            assert!(data.len() >= SEALED_HEADER_LEN + TAG_LEN);
            assert_eq!(header.session_id.to_be_bytes(), data[1..5]);
            assert_eq!(header.counter.to_be_bytes(), data[5..13]);
            for direction in [Direction::ToDataplane, Direction::ToClient] {
                let mut packet = data.to_vec();
                let opened = udp::open_in_place(&other_key, direction, header, &mut packet);
                assert!(opened.is_err(), "opened without the key: {opened:?}");

                let mut packet = data.to_vec();
                if let Ok(plaintext) = udp::open_in_place(&seed_key, direction, header, &mut packet)
                {
                    assert!(plaintext.len() <= MAX_PLAINTEXT);
                    let mut resealed = Vec::new();
                    udp::seal_into(
                        &seed_key,
                        direction,
                        header.session_id,
                        header.counter,
                        plaintext,
                        &mut resealed,
                    );
                    assert_eq!(resealed, data, "a packet opened that is not a sealing");
                    let other = match direction {
                        Direction::ToDataplane => Direction::ToClient,
                        Direction::ToClient => Direction::ToDataplane,
                    };
                    let mut packet = data.to_vec();
                    assert_eq!(
                        udp::open_in_place(&seed_key, other, header, &mut packet),
                        Err(UdpError::BadSeal)
                    );
                }
            }
        }
        Err(UdpError::TooShort(len)) => {
            assert_eq!(len, data.len());
            assert!(data.is_empty() || data[0] == TYPE_SEALED || data[0] == TYPE_REJECT);
        }
        Err(UdpError::UnknownType(t)) => {
            assert_eq!(data.first(), Some(&t));
            assert!(![TYPE_TICKET, TYPE_SEALED, TYPE_REJECT].contains(&t));
        }
        Err(e) => panic!("parse returned {e:?}, which only open_in_place may return"),
    }

    if let Some(control) = Control::parse(data) {
        let mut again = Vec::new();
        control.encode(&mut again);
        assert_eq!(again, data);
    }

    seal_round_trip(&seed_key, data);
});

/// Seals the input (cut to MAX_PLAINTEXT) under a session id, counter and
/// direction taken from it, opens it again, then flips one bit.
fn seal_round_trip(key: &SessionKey, data: &[u8]) {
    let mut word = [0u8; 12];
    for (w, b) in word.iter_mut().zip(data.iter().rev()) {
        *w = *b;
    }
    let session_id = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
    let counter = u64::from_le_bytes(word[4..12].try_into().expect("8 bytes"));
    let direction = if session_id & 1 == 0 {
        Direction::ToDataplane
    } else {
        Direction::ToClient
    };
    let plaintext = &data[..data.len().min(MAX_PLAINTEXT)];

    let mut sealed = Vec::new();
    udp::seal_into(key, direction, session_id, counter, plaintext, &mut sealed);
    assert_eq!(sealed.len(), SEALED_HEADER_LEN + plaintext.len() + TAG_LEN);
    let Ok(Packet::Sealed(header)) = udp::parse(&sealed) else {
        panic!("a sealed packet does not parse as SEALED");
    };
    assert_eq!((header.session_id, header.counter), (session_id, counter));
    let mut packet = sealed.clone();
    let opened = udp::open_in_place(key, direction, header, &mut packet).expect("round trip");
    assert_eq!(opened, plaintext);

    // One bit, chosen by the input, flipped anywhere in the packet.
    let bit = (counter as usize ^ data.len()) % (sealed.len() * 8);
    let mut flipped = sealed.clone();
    flipped[bit / 8] ^= 1 << (bit % 8);
    if let Ok(Packet::Sealed(header)) = udp::parse(&flipped) {
        assert!(
            udp::open_in_place(key, direction, header, &mut flipped).is_err(),
            "bit {bit} flipped and the packet still opened"
        );
    }
}
