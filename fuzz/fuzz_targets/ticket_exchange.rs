//! The QUIC ticket exchange: `exchange::parse_request` (the data plane
//! reads it from every new connection before any authentication) and
//! `exchange::parse_answer` (the client reads the data plane's answer).
//!
//! Properties: neither panics; an accepted request re-encodes to the same
//! bytes and a refused one is refused for the right reason; an answer that
//! parses re-encodes to the same bytes (when its reason is UTF-8), a
//! rejection never carries code 0, and a malformed one reports its length.

#![no_main]

use libfuzzer_sys::fuzz_target;
use openspeak_voice::exchange::{
    self, Answer, EXCHANGE_VERSION, MAX_REQUEST, MalformedAnswer, RejectCode,
};

fuzz_target!(|data: &[u8]| {
    match exchange::parse_request(data) {
        Ok(ticket) => {
            assert!(data.len() <= MAX_REQUEST);
            assert_eq!(exchange::encode_request(ticket).expect("fits"), data);
        }
        Err(RejectCode::Malformed) => {
            let framed = data.len() >= 3
                && usize::from(u16::from_be_bytes([data[1], data[2]])) == data.len() - 3;
            assert!(data.is_empty() || (data[0] == EXCHANGE_VERSION && !framed));
        }
        Err(RejectCode::UnsupportedVersion) => assert_ne!(data[0], EXCHANGE_VERSION),
        Err(other) => panic!("parse_request refused with {other:?}"),
    }

    match exchange::parse_answer(data) {
        Ok(Answer::Accepted(session)) => {
            assert_eq!(exchange::encode_accept(session), data);
        }
        Ok(Answer::Rejected { code, reason }) => {
            assert_ne!(code, 0);
            assert_eq!(data[0], code);
            let declared = usize::from(u16::from_be_bytes([data[1], data[2]]));
            assert_eq!(declared, data.len() - 3);
            if let Ok(text) = std::str::from_utf8(&data[3..]) {
                assert_eq!(reason, text);
            }
            if let Some(known) = RejectCode::from_u8(code) {
                assert_eq!(known as u8, code);
                if reason == known.reason() {
                    assert_eq!(exchange::encode_reject(known), data);
                }
            }
        }
        Err(MalformedAnswer { len }) => assert_eq!(len, data.len()),
    }
});
