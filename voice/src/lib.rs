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
//!
//! No tokio, no sockets: the data plane's driver and the client library
//! each do their own IO around these. `docs/PROTOCOL.md` describes the same
//! for client authors in other languages.

pub mod datagram;
pub mod exchange;
pub mod quic;
pub mod udp;

pub use datagram::{Forwarded, MAX_PAYLOAD, VoicePacket, WireError};
pub use exchange::{Answer, EXCHANGE_VERSION, RejectCode, TICKET_TIMEOUT};
pub use quic::{ALPN, PinError, QuicConfigError, client_config, parse_pin, server_config};
