//! QUIC configuration for voice: the ALPN, the server's and the client's
//! TLS setup (the client pins the server's certificate hash), and transport
//! settings tuned for small, frequent, unreliable datagrams.
//!
//! Everything here uses rustls' *ring* provider, chosen explicitly, so no
//! code path depends on a process-wide default provider being installed.

use std::sync::Arc;
use std::time::Duration;

use quinn_proto::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use quinn_proto::{
    AckFrequencyConfig, ConnectionError, IdleTimeout, TransportConfig, TransportErrorCode, VarInt,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, PeerIncompatible};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The application protocol of voice over QUIC (`docs/PROTOCOL.md`).
pub const ALPN: &[u8] = b"openspeak-voice/1";

/// A connection with nothing to send sends a QUIC PING this often, which
/// the peer ACKs. This keeps NAT bindings open through silences (many home
/// routers drop idle UDP mappings after about 30 s, some sooner) and lets
/// each side notice a dead peer. While voice flows it costs nothing: the
/// timer restarts with every packet received from the peer.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// A client sends its keep-alive PING this often instead: every PING is
/// answered (with an ACK) within 25 ms, so a client that hears nothing for
/// three of these periods knows its data plane is gone, long before the
/// idle timeout, and can get voice back elsewhere (`docs/PROTOCOL.md`,
/// "Keepalive"). One small packet a second is nothing next to voice.
pub const CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(1);

/// A connection that hears nothing at all for this long is closed. Three
/// keep-alive periods, so one or two lost PINGs (which QUIC retransmits
/// anyway) do not end a call, while a vanished client frees its slot, and
/// its ticket, within seconds rather than the 30 s default. The effective
/// timeout is the smaller of the two peers' values.
const IDLE_TIMEOUT_MS: u32 = 15_000;

/// Each side asks its peer to ACK only after more than 10 ack-eliciting
/// packets, or 25 ms, instead of every second packet: the setting measured
/// in `docs/PERFORMANCE.md`, where it cut ACK-only packets by 84-93% and
/// server CPU per forwarded datagram by 10-22%. Datagrams are never retransmitted, so
/// slower ACKs only delay loss detection and RTT samples for congestion
/// control, which at voice rates never limits anything. Peers without the
/// ACK-frequency extension (draft-ietf-quic-ack-frequency, which quinn
/// 0.11 implements) ignore the request and keep their default.
const ACK_ELICITING_THRESHOLD: u32 = 10;
const MAX_ACK_DELAY: Duration = Duration::from_millis(25);

/// Incoming datagram bytes the server buffers per connection before it
/// drops the oldest (quinn counts about 32 bytes of overhead per datagram).
/// The driver reads datagrams as they arrive; this only absorbs a late
/// wake-up. 32 KiB holds about 30 maximum-size voice datagrams, more than
/// the 500 ms of one speaker's audio that `voice.max_packet_age_ms` would
/// still accept, yet bounds the worst case for thousands of connections.
/// It is also the largest DATAGRAM frame the server accepts
/// (`max_datagram_frame_size`), far above the 1,009-byte voice maximum.
const SERVER_DATAGRAM_RECEIVE_BUFFER: usize = 32 * 1024;

/// Outgoing datagram bytes queued per connection before quinn drops the
/// oldest. Datagrams queue here only within one wake-up of the driver, or
/// when congestion control holds a listener back; in the second case old
/// audio is worth less than new, and the 1 MiB default would hold seconds
/// of it. 32 KiB fits a burst of 30 maximum-size (or about 150 typical)
/// forwarded datagrams. The lag rule (`voice.max_broadcast_lag_ms`) cannot
/// see into this queue, so the data plane keeps only a little voice in it
/// and the rest in a queue of its own in front, where age is known.
pub const SERVER_DATAGRAM_SEND_BUFFER: usize = 32 * 1024;

/// A client receives the fan-out of every speaker in its channel, and it is
/// one connection, so it can afford a deeper buffer than the server's.
const CLIENT_DATAGRAM_RECEIVE_BUFFER: usize = 128 * 1024;

/// A client sends one stream of 50 packets a second; a backlog beyond
/// about 15 maximum-size packets (300 ms) is stale audio.
const CLIENT_DATAGRAM_SEND_BUFFER: usize = 16 * 1024;

/// Bidirectional streams a client may open at once: enough for presenting
/// its ticket and a spare. Voice needs no unidirectional streams.
const MAX_CLIENT_BIDI_STREAMS: u32 = 4;

/// Stream flow-control windows on the server. Streams carry only small
/// control messages (a ticket), and an unauthenticated client must not be
/// able to make the server buffer the 1.25 MB per stream of the default.
const SERVER_STREAM_RECEIVE_WINDOW: u32 = 16 * 1024;
const SERVER_RECEIVE_WINDOW: u32 = 64 * 1024;

/// Why a QUIC configuration could not be built.
#[derive(Debug, Error)]
pub enum QuicConfigError {
    /// rustls refused the configuration (e.g. the provider lacks TLS 1.3).
    #[error("invalid TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The provider lacks the cipher suite QUIC's initial packets need.
    #[error("{0}")]
    InitialCipherSuite(#[from] NoInitialCipherSuite),
}

/// Why a certificate pin string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PinError {
    /// A SHA-256 is 64 hex digits.
    #[error("a certificate pin is 64 hex digits, not {0} characters")]
    Length(usize),
    /// Something other than `0-9`, `a-f`, `A-F`.
    #[error("a certificate pin is hex digits only")]
    NotHex,
}

/// The QUIC server configuration of the voice listener: `identity` (the
/// certificate chain and its key) as its identity, TLS 1.3 only, ALPN
/// [`ALPN`], DATAGRAM frames enabled.
///
/// 0-RTT is off: anything sent in it (a ticket, say) could be replayed.
pub fn server_config(
    identity: Arc<CertifiedKey>,
) -> Result<quinn_proto::ServerConfig, QuicConfigError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity)));
    tls.alpn_protocols = vec![ALPN.to_vec()];

    let mut transport = voice_transport();
    transport
        .datagram_receive_buffer_size(Some(SERVER_DATAGRAM_RECEIVE_BUFFER))
        .datagram_send_buffer_size(SERVER_DATAGRAM_SEND_BUFFER)
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CLIENT_BIDI_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(SERVER_STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(SERVER_RECEIVE_WINDOW));

    let mut config =
        quinn_proto::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The QUIC client configuration for a data plane whose leaf certificate
/// has SHA-256 `pin` (see [`parse_pin`]): TLS 1.3 only, ALPN [`ALPN`],
/// DATAGRAM frames enabled.
///
/// The server is accepted only if its leaf certificate hashes to `pin` and
/// it proves, by the TLS 1.3 handshake signature, that it holds that
/// certificate's key. Names, CA chains and validity dates are not checked,
/// so the server name given to `Endpoint::connect` can be any valid name
/// or address (the data plane's host is the natural choice).
pub fn client_config(pin: [u8; 32]) -> Result<quinn_proto::ClientConfig, QuicConfigError> {
    let provider = Arc::new(ring::default_provider());
    let verifier = PinnedServer::new(pin, &provider);
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];

    let mut transport = voice_transport();
    transport
        .keep_alive_interval(Some(CLIENT_KEEP_ALIVE))
        .datagram_receive_buffer_size(Some(CLIENT_DATAGRAM_RECEIVE_BUFFER))
        .datagram_send_buffer_size(CLIENT_DATAGRAM_SEND_BUFFER);

    let mut config = quinn_proto::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Parses a certificate pin as the control plane gives it
/// (`OpenVoiceResponse.cert_sha256`): 64 hex digits. Upper case is accepted
/// too; nothing else, not even surrounding whitespace.
pub fn parse_pin(hex: &str) -> Result<[u8; 32], PinError> {
    if hex.len() != 64 {
        return Err(PinError::Length(hex.chars().count()));
    }
    let mut pin = [0; 32];
    hex::decode_to_slice(hex, &mut pin).map_err(|_| PinError::NotHex)?;
    Ok(pin)
}

/// The TLS alert rustls sends, and reports locally, when a certificate
/// verifier refuses the peer's certificate with a `CertificateError::Other`.
/// The pinning verifier checks nothing but the pin, so this alert on the
/// client's side means the server's certificate is not the pinned one.
const ALERT_CERTIFICATE_UNKNOWN: u8 = 46;

/// Whether a client connection built with [`client_config`] failed its
/// handshake because the server's certificate is not the pinned one.
pub fn is_pin_mismatch(error: &ConnectionError) -> bool {
    matches!(
        error,
        ConnectionError::TransportError(e)
            if e.code == TransportErrorCode::crypto(ALERT_CERTIFICATE_UNKNOWN)
    )
}

/// What both sides share: the timers for voice (see [`KEEP_ALIVE`] and
/// [`IDLE_TIMEOUT_MS`]) and the request for fewer ACKs (see
/// [`ACK_ELICITING_THRESHOLD`]). The server's request thins the ACKs of
/// listening clients; the client's, which quinn honours, thins the ACKs
/// the server sends to a talking client.
fn voice_transport() -> TransportConfig {
    let mut ack_frequency = AckFrequencyConfig::default();
    ack_frequency
        .ack_eliciting_threshold(VarInt::from_u32(ACK_ELICITING_THRESHOLD))
        .max_ack_delay(Some(MAX_ACK_DELAY));

    let mut transport = TransportConfig::default();
    transport
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))))
        .ack_frequency_config(Some(ack_frequency));
    transport
}

/// Accepts exactly one server certificate, named by its SHA-256, in place
/// of name and chain validation.
#[derive(Debug)]
struct PinnedServer {
    pin: [u8; 32],
    /// The provider's signature algorithms, to check the handshake
    /// signature against the pinned certificate's key.
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedServer {
    fn new(pin: [u8; 32], provider: &CryptoProvider) -> Self {
        Self {
            pin,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

/// The server's certificate is not the pinned one. rustls shows this
/// error by its `Debug` form, hence the name.
#[derive(Debug, Error)]
#[error("the certificate is not the pinned one")]
struct NotThePinnedCertificate;

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest: [u8; 32] = Sha256::digest(end_entity).into();
        if bool::from(digest.ct_eq(&self.pin)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(NotThePinnedCertificate)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable with a TLS 1.3-only config; refused should that change.
        Err(PeerIncompatible::Tls13RequiredForQuic.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_pin_in_either_case() {
        let lower = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let pin = parse_pin(lower).unwrap();
        assert_eq!(pin[..4], [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(pin[31], 0xff);
        assert_eq!(parse_pin(&lower.to_uppercase()), Ok(pin));
        assert_eq!(hex::encode(pin), lower);
    }

    #[test]
    fn refuses_malformed_pins() {
        let good = "ab".repeat(32);
        assert_eq!(parse_pin(""), Err(PinError::Length(0)));
        assert_eq!(parse_pin(&good[..62]), Err(PinError::Length(62)));
        assert_eq!(parse_pin(&format!("{good}00")), Err(PinError::Length(66)));
        assert_eq!(
            parse_pin(&format!(" {}", &good[1..])),
            Err(PinError::NotHex)
        );
        assert_eq!(parse_pin(&"zz".repeat(32)), Err(PinError::NotHex));
        // Non-ASCII: 64 bytes is still not hex; the length is told in
        // characters.
        assert_eq!(
            parse_pin(&format!("{}é", &good[..62])),
            Err(PinError::NotHex)
        );
        assert_eq!(
            parse_pin(&format!("{}é", &good[..61])),
            Err(PinError::Length(62))
        );
    }

    /// A fresh self-signed identity and its pin.
    fn identity() -> (Arc<CertifiedKey>, [u8; 32]) {
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key_pair).unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        let pin: [u8; 32] = Sha256::digest(&der).into();
        let key = rustls::pki_types::PrivateKeyDer::try_from(key_pair.serialize_der()).unwrap();
        let signing_key = ring::default_provider()
            .key_provider
            .load_private_key(key)
            .unwrap();
        (Arc::new(CertifiedKey::new(vec![der], signing_key)), pin)
    }

    #[test]
    fn verifier_accepts_only_the_pinned_certificate() {
        let (identity, pin) = identity();
        let leaf = identity.cert[0].clone();
        let name = ServerName::try_from("localhost").unwrap();
        let provider = ring::default_provider();

        let pinned = PinnedServer::new(pin, &provider);
        assert!(
            pinned
                .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
                .is_ok()
        );

        let mut other = pin;
        other[31] ^= 1;
        let err = PinnedServer::new(other, &provider)
            .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
            .unwrap_err();
        assert!(err.to_string().contains("NotThePinnedCertificate"), "{err}");
    }

    #[test]
    fn configs_build() {
        let (identity, pin) = identity();
        server_config(identity).unwrap();
        client_config(pin).unwrap();
    }

    #[test]
    fn buffers_fit_the_largest_voice_datagram() {
        // Forwarded voice is at most 1,013 bytes; quinn adds ~32 bytes of
        // bookkeeping per buffered datagram.
        for size in [
            SERVER_DATAGRAM_RECEIVE_BUFFER,
            SERVER_DATAGRAM_SEND_BUFFER,
            CLIENT_DATAGRAM_RECEIVE_BUFFER,
            CLIENT_DATAGRAM_SEND_BUFFER,
        ] {
            assert!(size >= 10 * (1013 + 64), "{size}");
        }
        assert!(KEEP_ALIVE * 3 <= Duration::from_millis(IDLE_TIMEOUT_MS.into()));
    }
}
