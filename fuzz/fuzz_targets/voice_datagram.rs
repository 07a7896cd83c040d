//! The voice datagrams: a client's `VoicePacket` (what the data plane
//! parses from every QUIC DATAGRAM and every opened UDP packet) and the
//! data plane's `Forwarded` (what a client parses).
//!
//! Properties: parsing never panics; what parses has a payload of
//! 1..=MAX_PAYLOAD bytes, shares the input's buffer, and re-encodes to the
//! same bytes; a `VoicePacket` forwarded by any speaker parses back with
//! the same fields; each error names the actual problem.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use openspeak_voice::datagram::{
    FORWARDED_HEADER_LEN, Forwarded, KIND_FORWARDED, KIND_VOICE, MAX_PAYLOAD, VOICE_HEADER_LEN,
    VoicePacket, WireError,
};

fuzz_target!(|data: &[u8]| {
    let datagram = Bytes::copy_from_slice(data);

    match VoicePacket::parse(datagram.clone()) {
        Ok(packet) => {
            assert_eq!(data[0], KIND_VOICE);
            assert!((1..=MAX_PAYLOAD).contains(&packet.payload.len()));
            assert_eq!(packet.payload.len(), data.len() - VOICE_HEADER_LEN);
            // Zero copy: the payload is the tail of the input buffer.
            assert_eq!(
                packet.payload.as_ptr(),
                datagram[VOICE_HEADER_LEN..].as_ptr()
            );
            assert_eq!(packet.encode().expect("a parsed packet encodes"), datagram);

            // Forwarding it, under any non-zero speaker taken from the
            // input, gives a datagram the client parses back field by field.
            let speaker = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) | 1;
            let forwarded = Forwarded::build(speaker, &packet).expect("a parsed packet forwards");
            assert_eq!(
                forwarded.len(),
                data.len() + FORWARDED_HEADER_LEN - VOICE_HEADER_LEN
            );
            let back = Forwarded::parse(forwarded.clone()).expect("a forwarded datagram parses");
            assert_eq!(back.speaker, speaker);
            assert_eq!(back.sequence, packet.sequence);
            assert_eq!(back.timestamp, packet.timestamp);
            assert_eq!(back.payload, packet.payload);
            assert_eq!(back.encode().expect("re-encodes"), forwarded);
        }
        Err(e) => check_error(e, data, KIND_VOICE, VOICE_HEADER_LEN),
    }

    match Forwarded::parse(datagram.clone()) {
        Ok(f) => {
            assert_eq!(data[0], KIND_FORWARDED);
            assert_ne!(f.speaker, 0);
            assert!((1..=MAX_PAYLOAD).contains(&f.payload.len()));
            assert_eq!(
                f.payload.as_ptr(),
                datagram[FORWARDED_HEADER_LEN..].as_ptr()
            );
            assert_eq!(f.encode().expect("a parsed datagram encodes"), datagram);
            // A forwarded datagram is never taken for a client's voice.
            assert_eq!(
                VoicePacket::parse(datagram.clone()),
                Err(WireError::UnknownKind(KIND_FORWARDED))
            );
        }
        Err(WireError::ZeroSpeaker) => {
            assert_eq!(data[0], KIND_FORWARDED);
            assert!(data.len() >= FORWARDED_HEADER_LEN);
            assert_eq!(data[1..5], [0; 4]);
        }
        Err(e) => check_error(e, data, KIND_FORWARDED, FORWARDED_HEADER_LEN),
    }
});

/// The error is the right one for `data` given the expected kind and header.
fn check_error(e: WireError, data: &[u8], kind: u8, header: usize) {
    assert!(!e.label().is_empty());
    match e {
        WireError::TooShort { len, header: h } => {
            assert_eq!(len, data.len());
            assert_eq!(h, header);
            assert!(data.is_empty() || (data[0] == kind && data.len() < header));
        }
        WireError::UnknownKind(k) => {
            assert_eq!(data.first(), Some(&k));
            assert_ne!(k, kind);
        }
        WireError::EmptyPayload => {
            assert_eq!(data[0], kind);
            assert_eq!(data.len(), header);
        }
        WireError::PayloadTooLong { len, max } => {
            assert_eq!(data[0], kind);
            assert_eq!(max, MAX_PAYLOAD);
            assert_eq!(len, data.len() - header);
            assert!(len > MAX_PAYLOAD);
        }
        WireError::ZeroSpeaker => panic!("ZeroSpeaker from a voice datagram"),
    }
}
