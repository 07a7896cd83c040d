//! The internal link's messages (`proto/openspeak/cluster/v1`), decoded
//! with prost: `ControlMessage` (what a data plane reads from the control
//! plane) and `DataplaneMessage` (what the control plane reads from every
//! data plane that dials it).
//!
//! The data plane's conversions (`ticket_key`, `member` in
//! dataplane/src/link.rs) are private, so this target decodes and then
//! applies the same conversion rules through the public API they feed:
//! a 32-byte secret becomes a `TicketKey` in a `TicketVerifier`, any other
//! length is refused, and session 0 is skipped.
//!
//! Properties: decoding never panics; a decoded message re-encodes to
//! bytes that decode to the same message, the encoding is stable
//! (encode . decode . encode = encode) and `encoded_len` is its length.

#![no_main]

use libfuzzer_sys::fuzz_target;
use openspeak_shared::pb::cluster::{
    ControlMessage, DataplaneMessage, TicketKey as PbTicketKey, control_message::Kind,
};
use openspeak_shared::ticket::{KEY_LEN, TicketKey, TicketVerifier};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = ControlMessage::decode(data) {
        let again = round_trip(&message);
        assert_eq!(again, message);
        apply(message);
    }
    if let Ok(message) = DataplaneMessage::decode(data) {
        // `Stats` carries a float, so a NaN makes `==` useless here: the
        // byte-level checks in `round_trip` stand for equality.
        round_trip(&message);
    }
});

/// Re-encodes `message`, checks the encoding, and returns it decoded again.
fn round_trip<M: Message + Default>(message: &M) -> M {
    let bytes = message.encode_to_vec();
    assert_eq!(bytes.len(), message.encoded_len());
    let again = M::decode(bytes.as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again.encode_to_vec(), bytes);
    again
}

/// What the data plane does with a control message, as far as it touches
/// no router: keys into the verifier, members checked for session 0.
fn apply(message: ControlMessage) {
    let mut verifier = TicketVerifier::new();
    let mut keys = Vec::new();
    let mut members = Vec::new();
    match message.kind {
        Some(Kind::Snapshot(s)) => {
            keys.extend(s.keys);
            members.extend(s.members);
        }
        Some(Kind::MemberUpdate(u)) => members.extend(u.member),
        Some(Kind::TicketKeyAdded(a)) => keys.extend(a.key),
        Some(Kind::MemberRemoved(_)) | None => {}
    }
    for key in keys {
        let PbTicketKey { id, secret } = key;
        let len = secret.len();
        match <[u8; KEY_LEN]>::try_from(secret) {
            Ok(secret) => {
                verifier.insert(TicketKey { id, secret });
                assert!(verifier.contains(id));
            }
            Err(_) => assert_ne!(len, KEY_LEN),
        }
    }
    for m in members {
        if m.session_id != 0 {
            let _channel = (!m.channel_id.is_empty()).then_some(m.channel_id.as_str());
        }
    }
}
