//! A protobuf message encoded once and sent many times.
//!
//! The control plane sends every event to every session. Encoding it once
//! into [`Encoded`] and handing each session's stream a reference-counted
//! copy of the bytes turns a per-session clone and encode into an atomic
//! increment. It implements `prost::Message` so that tonic's ordinary codec
//! can send it; the bytes on the wire are the original message's.

use bytes::{Buf, BufMut, Bytes};
use prost::{
    DecodeError, Message,
    encoding::{DecodeContext, WireType, skip_field},
};

/// The encoding of one message; cloning shares the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded(Bytes);

impl Encoded {
    pub fn new(message: &impl Message) -> Self {
        Self(Bytes::from(message.encode_to_vec()))
    }

    /// Bytes that already hold an encoded message.
    pub fn from_bytes(bytes: Bytes) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Message for Encoded {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Only ever sent, never received: a peer's bytes are skipped.
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    #[test]
    fn sends_the_same_bytes_as_the_message() {
        let event = pb::Event {
            sequence: 7,
            event: Some(pb::event::Event::MemberJoined(pb::MemberJoined {
                session_id: 3,
                channel_id: "lobby".into(),
            })),
        };
        let encoded = Encoded::new(&event);
        assert_eq!(encoded.encode_to_vec(), event.encode_to_vec());
        assert_eq!(encoded.encoded_len(), event.encoded_len());
        assert_eq!(pb::Event::decode(encoded.as_bytes()).unwrap(), event);
    }
}
