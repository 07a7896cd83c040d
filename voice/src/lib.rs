//! The OpenSpeak voice protocol, as both ends speak it: what a client and
//! a data plane must agree on byte for byte, in one place.
//!
//! - [`datagram`]: the voice datagrams (a client's [`VoicePacket`], the
//!   data plane's [`Forwarded`]) and the serial-number arithmetic for their
//!   wrapping sequence numbers and timestamps.
//! - [`exchange`]: how a client presents its ticket on a new QUIC
//!   connection, the answer, and the [`RejectCode`]s that are also the
//!   connections' close codes.
//! - [`quic`]: the QUIC settings for voice (ALPN, DATAGRAM buffers,
//!   keep-alive, ACK frequency) for both sides, and the client's check of
//!   the server certificate against the pin `OpenVoice` hands out.
//! - [`udp`]: voice over plain UDP: the packets, their sealing with the
//!   session key from `OpenVoice`, and the replay window.
//! - [`SessionId`]: the number both planes and the datagrams know a
//!   session by.
//!
//! No tokio, no sockets: the data plane's driver and the client library
//! each do their own IO around these. `docs/PROTOCOL.md` describes the same
//! for client authors in other languages.

pub mod datagram;
pub mod exchange;
pub mod quic;
pub mod udp;

/// A session's id, as the control plane numbers it: non-zero (forwarded
/// datagrams carry it as the speaker id, where 0 is no one), and never
/// reused while any plane may still know an old session by it. The control
/// plane hands it out, a data plane's transports authenticate it, and the
/// router keys its state by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u32);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

pub use datagram::{Forwarded, MAX_PAYLOAD, VoicePacket, WireError};
pub use exchange::{Answer, EXCHANGE_VERSION, RejectCode, TICKET_TIMEOUT};
pub use quic::{ALPN, PinError, QuicConfigError, client_config, parse_pin, server_config};
