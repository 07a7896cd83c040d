//! A client's voice connection over either transport, so that the voice
//! scenario runs the same over QUIC and over plain UDP (`--transport`).

use bytes::Bytes;
use openspeak_client::Forwarded;
use openspeak_client::udp::{UdpVoiceClient, UdpVoiceError};
use openspeak_client::voice::{VoiceClient, VoiceError};
use thiserror::Error;

/// One client's voice connection to the data plane.
#[derive(Debug)]
pub enum VoiceConn {
    /// QUIC DATAGRAMs on a pinned connection.
    Quic(VoiceClient),
    /// Plain UDP sealed with the session key; boxed, as it carries its
    /// key schedule and would make every QUIC member as large.
    Udp(Box<UdpVoiceClient>),
}

/// Why a voice connection failed, by transport.
#[derive(Debug, Error)]
pub enum ConnError {
    /// Over QUIC.
    #[error(transparent)]
    Quic(#[from] VoiceError),
    /// Over plain UDP.
    #[error(transparent)]
    Udp(#[from] UdpVoiceError),
}

impl VoiceConn {
    /// The session id the data plane accepted the ticket for.
    pub fn session_id(&self) -> u32 {
        match self {
            VoiceConn::Quic(v) => v.session_id(),
            VoiceConn::Udp(v) => v.session_id(),
        }
    }

    /// Sends one voice packet.
    pub fn send(&self, sequence: u32, timestamp_ms: u32, payload: Bytes) -> Result<(), ConnError> {
        match self {
            VoiceConn::Quic(v) => Ok(v.send(sequence, timestamp_ms, payload)?),
            VoiceConn::Udp(v) => Ok(v.send(sequence, timestamp_ms, payload)?),
        }
    }

    /// The next forwarded voice datagram.
    pub async fn recv(&self) -> Result<Forwarded, ConnError> {
        match self {
            VoiceConn::Quic(v) => Ok(v.recv().await?),
            VoiceConn::Udp(v) => Ok(v.recv().await?),
        }
    }

    /// Packets of any kind received from the data plane so far: while it
    /// grows, the data plane is there.
    pub fn heard(&self) -> u64 {
        match self {
            VoiceConn::Quic(v) => v.packets_received(),
            VoiceConn::Udp(v) => v.packets_received(),
        }
    }

    /// Keeps a quiet client's path open and asks the data plane for an
    /// answer: a ping over UDP (the data plane forgets a UDP session silent
    /// for 15 s); nothing over QUIC, whose own keep-alive does both.
    pub fn keepalive(&self) -> Result<(), ConnError> {
        match self {
            VoiceConn::Quic(_) => Ok(()),
            VoiceConn::Udp(v) => Ok(v.ping()?),
        }
    }

    /// Ends the connection: QUIC says goodbye; UDP has nothing to close.
    pub async fn close(self) {
        match self {
            VoiceConn::Quic(v) => v.close().await,
            VoiceConn::Udp(_) => {}
        }
    }
}
