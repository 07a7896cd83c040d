//! Properties of what the shared crate parses from the network, checked
//! with proptest on every `cargo test`: voice tickets (issue then verify,
//! tampering, arbitrary bytes) and the internal link's protobuf messages.
//! The fuzz targets under `fuzz/` run the same parsers for longer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openspeak_shared::pb::cluster::{
    self as pb, ControlMessage, DataplaneMessage, control_message,
};
use openspeak_shared::ticket::{
    HEADER_LEN, KEY_LEN, MIN_TICKET_LEN, NONCE_LEN, Ticket, TicketError, TicketIssuer, TicketKey,
    TicketVerifier, VERSION,
};
use proptest::prelude::*;
use prost::Message;

/// A modest number of cases, so the suite stays fast.
fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// A fixed instant in whole seconds, so round trips are exact.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn ticket() -> impl Strategy<Value = Ticket> {
    (
        1u32..,
        "\\PC{0,40}",
        1u64..10_000_000,
        any::<[u8; KEY_LEN]>(),
    )
        .prop_map(|(session_id, channel, lifetime, session_key)| Ticket {
            session_id,
            channel,
            expires_at: now() + Duration::from_secs(lifetime),
            session_key,
        })
}

fn key() -> impl Strategy<Value = TicketKey> {
    (any::<u32>(), any::<[u8; KEY_LEN]>()).prop_map(|(id, secret)| TicketKey { id, secret })
}

fn verifier(keys: impl IntoIterator<Item = TicketKey>) -> TicketVerifier {
    let mut v = TicketVerifier::new();
    for k in keys {
        v.insert(k);
    }
    v
}

fn member() -> impl Strategy<Value = pb::Member> {
    (any::<u32>(), "\\PC{0,20}", any::<bool>(), any::<bool>()).prop_map(
        |(session_id, channel_id, muted, deafened)| pb::Member {
            session_id,
            channel_id,
            muted,
            deafened,
        },
    )
}

fn pb_key() -> impl Strategy<Value = pb::TicketKey> {
    (any::<u32>(), prop::collection::vec(any::<u8>(), 0..40))
        .prop_map(|(id, secret)| pb::TicketKey { id, secret })
}

fn control_message() -> impl Strategy<Value = ControlMessage> {
    let kind = prop_oneof![
        (
            prop::collection::vec(pb_key(), 0..3),
            prop::collection::vec(member(), 0..4),
            "[a-f0-9]{0,16}",
        )
            .prop_map(|(keys, members, instance)| {
                control_message::Kind::Snapshot(pb::Snapshot {
                    keys,
                    members,
                    instance,
                })
            }),
        prop::option::of(member())
            .prop_map(|member| control_message::Kind::MemberUpdate(pb::MemberUpdate { member })),
        any::<u32>().prop_map(|session_id| {
            control_message::Kind::MemberRemoved(pb::MemberRemoved { session_id })
        }),
        prop::option::of(pb_key())
            .prop_map(|key| control_message::Kind::TicketKeyAdded(pb::TicketKeyAdded { key })),
    ];
    prop::option::of(kind).prop_map(|kind| ControlMessage { kind })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tickets_round_trip(ticket in ticket(), key in key()) {
        let bytes = TicketIssuer::new(key.clone()).issue(&ticket).expect("issue");
        prop_assert_eq!(bytes.len(), MIN_TICKET_LEN + ticket.channel.len());
        let v = verifier([key]);
        prop_assert_eq!(v.verify(&bytes, now()).expect("verify"), ticket.clone());
        prop_assert_eq!(v.verify(&bytes, ticket.expires_at), Err(TicketError::Expired));
    }

    #[test]
    fn any_flipped_bit_fails(ticket in ticket(), key in key(), bit: prop::sample::Index) {
        let mut bytes = TicketIssuer::new(key.clone()).issue(&ticket).expect("issue");
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let result = verifier([key]).verify(&bytes, now());
        prop_assert!(result.is_err(), "bit {} flipped and it verified", bit);
    }

    #[test]
    fn truncated_or_extended_tickets_fail(
        ticket in ticket(),
        key in key(),
        cut in 1usize..8,
        tail in prop::collection::vec(any::<u8>(), 1..8),
    ) {
        let bytes = TicketIssuer::new(key.clone()).issue(&ticket).expect("issue");
        let v = verifier([key]);
        prop_assert!(v.verify(&bytes[..bytes.len() - cut], now()).is_err());
        let mut longer = bytes.clone();
        longer.extend_from_slice(&tail);
        prop_assert!(v.verify(&longer, now()).is_err());
    }

    #[test]
    fn another_secret_under_the_same_id_is_forged(
        ticket in ticket(),
        key in key(),
        other: [u8; KEY_LEN],
    ) {
        prop_assume!(other != key.secret);
        let bytes = TicketIssuer::new(key.clone()).issue(&ticket).expect("issue");
        let v = verifier([TicketKey { id: key.id, secret: other }]);
        prop_assert_eq!(v.verify(&bytes, now()), Err(TicketError::Forged));
    }

    #[test]
    fn control_messages_round_trip(message in control_message()) {
        let bytes = message.encode_to_vec();
        prop_assert_eq!(bytes.len(), message.encoded_len());
        prop_assert_eq!(ControlMessage::decode(bytes.as_slice()).expect("decodes"), message);
    }

    #[test]
    fn link_decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(message) = ControlMessage::decode(bytes.as_slice()) {
            let again = message.encode_to_vec();
            prop_assert_eq!(ControlMessage::decode(again.as_slice()).expect("decodes"), message);
        }
        if let Ok(message) = DataplaneMessage::decode(bytes.as_slice()) {
            let again = message.encode_to_vec();
            let twice = DataplaneMessage::decode(again.as_slice()).expect("decodes");
            prop_assert_eq!(twice.encode_to_vec(), again);
        }
    }
}

/// Arbitrary bytes are where a verifier meets an attacker: many more cases
/// than the round trips get.
fn many() -> ProptestConfig {
    ProptestConfig::with_cases(20_000)
}

proptest! {
    #![proptest_config(many())]

    #[test]
    fn arbitrary_bytes_never_verify(
        key in key(),
        mut bytes in prop::collection::vec(any::<u8>(), 0..300),
        steer: bool,
    ) {
        // Half the inputs carry the right version and key id, so that they
        // reach the AEAD rather than stop at the header.
        if steer && bytes.len() >= HEADER_LEN + NONCE_LEN {
            bytes[0] = VERSION;
            bytes[1..HEADER_LEN].copy_from_slice(&key.id.to_be_bytes());
        }
        let result = verifier([key]).verify(&bytes, now());
        prop_assert!(result.is_err(), "random bytes verified: {:?}", result);
        // And the refusal has a name, for the metrics and the log.
        prop_assert!(!result.unwrap_err().label().is_empty());
    }
}
