//! [`VoiceGrant`]: the answer to `VoiceService.OpenVoice` as plain Rust,
//! and the step from it to a [`VoiceClient`] on the data plane it names.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use openspeak_shared::pb;

use crate::error::{ClientError, within};
use crate::udp::UdpVoiceClient;
use crate::voice::VoiceClient;

/// How long resolving a grant's `quic_endpoint` may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Permission to talk in the session's channel: where the data plane is
/// and the ticket to present there (`docs/PROTOCOL.md`, "Getting a voice
/// ticket").
///
/// One ticket serves one voice connection at a time; for a new connection
/// call `OpenVoice` again.
#[derive(Clone, PartialEq, Eq)]
pub struct VoiceGrant {
    /// The session's id; forwarded voice names speakers by such ids.
    pub session_id: u32,
    /// `host:port` of the data plane's QUIC listener.
    pub quic_endpoint: String,
    /// `host:port` of its plain-UDP listener; empty while it offers none.
    pub udp_endpoint: String,
    /// SHA-256 of the data plane's certificate, 64 lowercase hex digits:
    /// the pin that replaces CA validation.
    pub cert_sha256: String,
    /// Opaque; presented to the data plane unchanged.
    pub ticket: Vec<u8>,
    /// Seals voice over plain UDP.
    pub session_key: Vec<u8>,
    /// When the ticket expires; `None` if the server did not say (or said
    /// something no `SystemTime` can hold).
    pub expires_at: Option<SystemTime>,
}

impl fmt::Debug for VoiceGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The ticket and the key are credentials: lengths only.
        f.debug_struct("VoiceGrant")
            .field("session_id", &self.session_id)
            .field("quic_endpoint", &self.quic_endpoint)
            .field("udp_endpoint", &self.udp_endpoint)
            .field("cert_sha256", &self.cert_sha256)
            .field("ticket_len", &self.ticket.len())
            .field("session_key_len", &self.session_key.len())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl VoiceGrant {
    pub(crate) fn from_response(response: pb::OpenVoiceResponse) -> Result<Self, ClientError> {
        if response.session_id == 0 {
            return Err(ClientError::Unexpected {
                call: "VoiceService.OpenVoice",
                what: "the grant names session 0".into(),
            });
        }
        Ok(VoiceGrant {
            session_id: response.session_id,
            quic_endpoint: response.quic_endpoint,
            udp_endpoint: response.udp_endpoint,
            cert_sha256: response.cert_sha256,
            ticket: response.ticket,
            session_key: response.session_key,
            expires_at: response
                .expires_at
                .and_then(|t| SystemTime::try_from(t).ok()),
        })
    }

    /// The first address `quic_endpoint` resolves to.
    pub async fn quic_addr(&self) -> Result<SocketAddr, ClientError> {
        resolve(&self.quic_endpoint).await
    }

    /// The first address `udp_endpoint` resolves to.
    pub async fn udp_addr(&self) -> Result<SocketAddr, ClientError> {
        if self.udp_endpoint.is_empty() {
            return Err(ClientError::NoUdpEndpoint);
        }
        resolve(&self.udp_endpoint).await
    }

    /// Connects to the data plane over QUIC, pinning `cert_sha256`, and
    /// presents the ticket; returns once the data plane accepted it.
    pub async fn connect(&self) -> Result<VoiceClient, ClientError> {
        let addr = self.quic_addr().await?;
        Ok(VoiceClient::connect(addr, &self.cert_sha256, &self.ticket).await?)
    }

    /// Presents the ticket to the data plane's plain-UDP listener; returns
    /// once the data plane accepted it. Voice is then sealed with
    /// `session_key`.
    pub async fn connect_udp(&self) -> Result<UdpVoiceClient, ClientError> {
        let addr = self.udp_addr().await?;
        Ok(UdpVoiceClient::connect(addr, &self.ticket, &self.session_key).await?)
    }
}

/// The first address `endpoint` (`host:port`) resolves to, within
/// [`RESOLVE_TIMEOUT`].
async fn resolve(endpoint: &str) -> Result<SocketAddr, ClientError> {
    let lookup = async {
        tokio::net::lookup_host(endpoint)
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
    };
    within(RESOLVE_TIMEOUT, "the voice endpoint to resolve", lookup)
        .await?
        .map_err(|source| ClientError::Resolve {
            endpoint: endpoint.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> pb::OpenVoiceResponse {
        pb::OpenVoiceResponse {
            session_id: 7,
            quic_endpoint: "127.0.0.1:50052".into(),
            udp_endpoint: String::new(),
            cert_sha256: "ab".repeat(32),
            ticket: vec![1, 2, 3],
            session_key: vec![9; 32],
            expires_at: Some(prost_types::Timestamp {
                seconds: 2_000_000_000,
                nanos: 0,
            }),
        }
    }

    #[tokio::test]
    async fn a_grant_keeps_the_answer_and_resolves_its_endpoint() {
        let grant = VoiceGrant::from_response(response()).unwrap();
        assert_eq!(grant.session_id, 7);
        assert_eq!(grant.ticket, [1, 2, 3]);
        assert_eq!(
            grant.expires_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        assert_eq!(
            grant.quic_addr().await.unwrap(),
            "127.0.0.1:50052".parse().unwrap()
        );
        let shown = format!("{grant:?}");
        assert!(!shown.contains("[9, 9"), "the key is not shown: {shown}");
    }

    #[tokio::test]
    async fn a_bad_endpoint_or_session_is_an_error_not_a_panic() {
        let grant = VoiceGrant::from_response(pb::OpenVoiceResponse {
            quic_endpoint: "no port".into(),
            expires_at: None,
            ..response()
        })
        .unwrap();
        assert_eq!(grant.expires_at, None);
        assert!(matches!(
            grant.quic_addr().await,
            Err(ClientError::Resolve { .. })
        ));
        assert!(matches!(
            VoiceGrant::from_response(pb::OpenVoiceResponse {
                session_id: 0,
                ..response()
            }),
            Err(ClientError::Unexpected { .. })
        ));
    }
}
