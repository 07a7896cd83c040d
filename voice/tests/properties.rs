//! Properties of the voice wire formats, checked with proptest on every
//! `cargo test`: round trips through the project's own encoders, parsers
//! that never panic on arbitrary bytes, the plain-UDP seal, and the replay
//! window against a plain model. The fuzz targets under `fuzz/` check the
//! same parsers for longer; these keep them honest in CI.

use std::collections::HashSet;

use bytes::Bytes;
use openspeak_voice::datagram::{
    FORWARDED_HEADER_LEN, Forwarded, KIND_FORWARDED, KIND_VOICE, MAX_PAYLOAD, VOICE_HEADER_LEN,
    VoicePacket, WireError,
};
use openspeak_voice::exchange::{self, Answer, RejectCode};
use openspeak_voice::udp::{
    self, Control, Direction, KEY_LEN, MAX_PLAINTEXT, Packet, SEALED_HEADER_LEN, SessionKey,
    TAG_LEN, UdpError,
};
use proptest::prelude::*;

/// A modest number of cases, so the suite stays fast.
fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..=MAX_PAYLOAD)
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::ToDataplane), Just(Direction::ToClient)]
}

/// Arbitrary bytes, half of them starting with a byte the parsers know, so
/// that the checks after the kind byte run too.
fn datagram_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), 0..1100),
        prop_oneof![Just(None), (0u8..4).prop_map(Some)],
    )
        .prop_map(|(mut bytes, kind)| {
            if let (Some(first), Some(kind)) = (bytes.first_mut(), kind) {
                *first = kind;
            }
            bytes
        })
}

/// Arbitrary bytes of a length in `len` whose first byte, if any, is one
/// of `kinds`: the kind bytes a parser looks at first.
fn starting_with(
    len: std::ops::Range<usize>,
    kinds: std::ops::Range<u8>,
) -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(any::<u8>(), len), kinds).prop_map(|(mut bytes, kind)| {
        if let Some(first) = bytes.first_mut() {
            *first = kind;
        }
        bytes
    })
}

/// What the seal tests seal: a key's secret, a direction, the session, the
/// counter and a plaintext of any length the seal takes.
fn sealing() -> impl Strategy<Value = ([u8; KEY_LEN], Direction, u32, u64, Vec<u8>)> {
    (
        any::<[u8; KEY_LEN]>(),
        direction(),
        any::<u32>(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..=MAX_PLAINTEXT),
    )
}

fn seal(
    key: &SessionKey,
    direction: Direction,
    session: u32,
    counter: u64,
    plaintext: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    udp::seal_into(key, direction, session, counter, plaintext, &mut out);
    out
}

/// Parses and opens `packet`; any failure, at either step, is an error.
fn open(key: &SessionKey, direction: Direction, packet: &mut [u8]) -> Result<Vec<u8>, UdpError> {
    match udp::parse(packet)? {
        Packet::Sealed(header) => {
            udp::open_in_place(key, direction, header, packet).map(<[u8]>::to_vec)
        }
        _ => Err(UdpError::BadSeal),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn voice_packets_round_trip(sequence: u32, timestamp: u32, payload in payload()) {
        let packet = VoicePacket { sequence, timestamp, payload: Bytes::from(payload) };
        let bytes = packet.encode().expect("a valid packet encodes");
        prop_assert_eq!(bytes.len(), VOICE_HEADER_LEN + packet.payload.len());
        prop_assert_eq!(bytes[0], KIND_VOICE);
        prop_assert_eq!(VoicePacket::parse(bytes).expect("parses"), packet);
    }

    #[test]
    fn forwarded_datagrams_round_trip(
        speaker in 1u32..,
        sequence: u32,
        timestamp: u32,
        payload in payload(),
    ) {
        let packet = VoicePacket { sequence, timestamp, payload: Bytes::from(payload) };
        let bytes = Forwarded::build(speaker, &packet).expect("a valid packet forwards");
        prop_assert_eq!(bytes.len(), FORWARDED_HEADER_LEN + packet.payload.len());
        prop_assert_eq!(bytes[0], KIND_FORWARDED);
        let forwarded = Forwarded::parse(bytes.clone()).expect("parses");
        prop_assert_eq!(forwarded.speaker, speaker);
        prop_assert_eq!(forwarded.sequence, sequence);
        prop_assert_eq!(forwarded.timestamp, timestamp);
        prop_assert_eq!(&forwarded.payload, &packet.payload);
        prop_assert_eq!(forwarded.encode().expect("encodes"), bytes);
    }

    #[test]
    fn payloads_outside_the_limits_do_not_encode(sequence: u32, extra in 1usize..64) {
        let empty = VoicePacket { sequence, timestamp: 0, payload: Bytes::new() };
        prop_assert_eq!(empty.encode(), Err(WireError::EmptyPayload));
        let long = VoicePacket { payload: Bytes::from(vec![0; MAX_PAYLOAD + extra]), ..empty };
        let too_long = matches!(long.encode(), Err(WireError::PayloadTooLong { .. }));
        prop_assert!(too_long);
    }

    #[test]
    fn sealed_packets_round_trip(
        (secret, direction, session, counter, plaintext) in sealing(),
    ) {
        let key = SessionKey::new(&secret);
        let mut packet = seal(&key, direction, session, counter, &plaintext);
        prop_assert_eq!(packet.len(), SEALED_HEADER_LEN + plaintext.len() + TAG_LEN);
        let parsed = udp::parse(&packet);
        prop_assert_eq!(
            parsed,
            Ok(Packet::Sealed(udp::SealedHeader { session_id: session, counter }))
        );
        prop_assert_eq!(open(&key, direction, &mut packet), Ok(plaintext));
    }

    #[test]
    fn any_flipped_bit_fails_to_open(
        (secret, direction, session, counter, plaintext) in sealing(),
        bit: prop::sample::Index,
    ) {
        let key = SessionKey::new(&secret);
        let mut packet = seal(&key, direction, session, counter, &plaintext);
        let bit = bit.index(packet.len() * 8);
        packet[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(open(&key, direction, &mut packet).is_err(), "bit {} flipped", bit);
    }

    #[test]
    fn the_other_direction_or_key_fails_to_open(
        secret: [u8; KEY_LEN],
        other: [u8; KEY_LEN],
        session: u32,
        counter: u64,
        plaintext in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assume!(secret != other);
        let key = SessionKey::new(&secret);
        let packet = seal(&key, Direction::ToDataplane, session, counter, &plaintext);
        prop_assert_eq!(
            open(&key, Direction::ToClient, &mut packet.clone()),
            Err(UdpError::BadSeal)
        );
        prop_assert_eq!(
            open(&SessionKey::new(&other), Direction::ToDataplane, &mut packet.clone()),
            Err(UdpError::BadSeal)
        );
    }

    #[test]
    fn arbitrary_packets_never_open(
        secret: [u8; KEY_LEN],
        direction in direction(),
        mut bytes in prop::collection::vec(any::<u8>(), 0..1100),
        sealed_type: bool,
    ) {
        if sealed_type && !bytes.is_empty() {
            bytes[0] = udp::TYPE_SEALED;
        }
        let key = SessionKey::new(&secret);
        prop_assert!(open(&key, direction, &mut bytes).is_err());
    }

    #[test]
    fn udp_parse_never_panics_and_tickets_reencode(
        bytes in starting_with(0..200, 0..5),
    ) {
        match udp::parse(&bytes) {
            Ok(Packet::Ticket(body)) => {
                if let Ok(ticket) = exchange::parse_request(body) {
                    prop_assert_eq!(udp::encode_ticket(ticket).expect("fits"), bytes.clone());
                }
            }
            Ok(Packet::Reject { reason, .. }) => prop_assert_eq!(reason.len() + 4, bytes.len()),
            Ok(Packet::Sealed(_)) => prop_assert!(bytes.len() >= SEALED_HEADER_LEN + TAG_LEN),
            Err(UdpError::TooShort(len)) => prop_assert_eq!(len, bytes.len()),
            Err(UdpError::UnknownType(t)) => prop_assert_eq!(Some(&t), bytes.first()),
            Err(e) => prop_assert!(false, "parse returned {:?}", e),
        }
    }

    #[test]
    fn control_messages_round_trip(id: u64, session: u32, code: u8, which in 0u8..4) {
        let message = match which {
            0 => Control::Ping(id),
            1 => Control::Pong(id),
            2 => Control::Accepted(session),
            _ => Control::Closed(code),
        };
        let mut buf = Vec::new();
        message.encode(&mut buf);
        prop_assert_eq!(Control::parse(&buf), Some(message));
    }

    #[test]
    fn control_parse_accepts_only_what_reencodes(
        bytes in starting_with(0..12, 0x0f..0x15),
    ) {
        if let Some(message) = Control::parse(&bytes) {
            let mut again = Vec::new();
            message.encode(&mut again);
            prop_assert_eq!(again, bytes);
        }
    }

    #[test]
    fn the_replay_window_takes_each_counter_at_most_once(
        steps in prop::collection::vec((0u8..4, any::<u64>(), any::<bool>()), 0..400),
    ) {
        let mut window = udp::ReplayWindow::default();
        let mut taken = HashSet::new();
        let mut highest: Option<u64> = None;
        for (how, raw, take) in steps {
            let base = highest.unwrap_or(0);
            let counter = match how {
                0 => raw,
                1 => base.saturating_sub(raw % 300),
                2 => base.saturating_add(raw % 300),
                _ => u64::MAX - raw % 300,
            };
            let expected = !taken.contains(&counter)
                && highest.is_none_or(|h| counter > h || h - counter < udp::ReplayWindow::SIZE);
            prop_assert_eq!(window.check(counter), expected, "counter {}", counter);
            if expected && take {
                let newest = window.take(counter);
                prop_assert_eq!(newest, highest.is_none_or(|h| counter > h));
                prop_assert!(!window.check(counter));
                taken.insert(counter);
                highest = Some(highest.map_or(counter, |h| h.max(counter)));
            }
        }
    }

    #[test]
    fn ticket_requests_round_trip(ticket in prop::collection::vec(any::<u8>(), 0..2048)) {
        let request = exchange::encode_request(&ticket).expect("fits");
        prop_assert_eq!(exchange::parse_request(&request), Ok(&ticket[..]));
    }

    #[test]
    fn ticket_request_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        match exchange::parse_request(&bytes) {
            Ok(ticket) => prop_assert_eq!(exchange::encode_request(ticket).expect("fits"), bytes),
            Err(RejectCode::Malformed | RejectCode::UnsupportedVersion) => {}
            Err(code) => prop_assert!(false, "refused with {:?}", code),
        }
    }

    #[test]
    fn answers_round_trip(session: u32, code_index in 0usize..RejectCode::ALL.len()) {
        prop_assert_eq!(
            exchange::parse_answer(&exchange::encode_accept(session)),
            Ok(Answer::Accepted(session))
        );
        let code = RejectCode::ALL[code_index];
        prop_assert_eq!(
            exchange::parse_answer(&exchange::encode_reject(code)),
            Ok(Answer::Rejected { code: code as u8, reason: code.reason().to_owned() })
        );
    }

    #[test]
    fn answer_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        match exchange::parse_answer(&bytes) {
            Ok(Answer::Accepted(session)) => {
                prop_assert_eq!(exchange::encode_accept(session).to_vec(), bytes);
            }
            Ok(Answer::Rejected { code, .. }) => prop_assert_ne!(code, 0),
            Err(e) => prop_assert_eq!(e.len, bytes.len()),
        }
    }
}

/// Arbitrary bytes are what a data plane's socket takes from anyone: many
/// more cases than the round trips get.
fn many() -> ProptestConfig {
    ProptestConfig::with_cases(20_000)
}

proptest! {
    #![proptest_config(many())]

    #[test]
    fn datagram_parsers_never_panic_and_reencode(bytes in datagram_bytes()) {
        let datagram = Bytes::from(bytes);
        if let Ok(packet) = VoicePacket::parse(datagram.clone()) {
            prop_assert!((1..=MAX_PAYLOAD).contains(&packet.payload.len()));
            prop_assert_eq!(packet.encode().expect("encodes"), datagram.clone());
        }
        if let Ok(forwarded) = Forwarded::parse(datagram.clone()) {
            prop_assert_ne!(forwarded.speaker, 0);
            prop_assert_eq!(forwarded.encode().expect("encodes"), datagram);
        }
    }
}
