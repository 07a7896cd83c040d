//! A data plane's voice endpoint alone, for tests of the voice path
//! without a control plane: QUIC and plain UDP on 127.0.0.1 (any free
//! ports), a ticket key of its own, and membership set by hand.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use openspeak_dataplane::{
    AdmissionLimits, DataplaneCert, Handle, Member, RouterConfig, SessionId, VoiceEndpoint,
};
use openspeak_shared::ticket::{Ticket, TicketIssuer, TicketKey, TicketVerifier};

/// A running voice endpoint and what a test needs to reach it.
pub struct Server {
    /// The QUIC listener.
    pub addr: SocketAddr,
    /// The plain-UDP listener.
    pub udp_addr: SocketAddr,
    /// The certificate's SHA-256, as clients pin it.
    pub pin: [u8; 32],
    /// Membership and counters.
    pub handle: Handle,
    /// Seals tickets the endpoint accepts.
    pub issuer: TicketIssuer,
    /// The certificate's directory lives as long as the endpoint.
    _dir: tempfile::TempDir,
}

/// Starts a voice endpoint on the test's runtime (jitter buffer 60 ms,
/// packets stale after 1 s, listener lag 500 ms: generous, so that a busy
/// test machine drops nothing).
pub fn start() -> Server {
    start_with_key(TicketKey::generate(7).expect("a ticket key"))
}

/// [`start`], accepting tickets sealed with `key` (for a client in another
/// process, which seals its own).
pub fn start_with_key(key: TicketKey) -> Server {
    start_with(key, AdmissionLimits::default(), 0, 1)
}

/// [`start_with_key`] with `workers` threads serving plain-UDP voice
/// (`dataplane.udp_workers`).
pub fn start_with_key_and_udp_workers(key: TicketKey, workers: usize) -> Server {
    start_with(key, AdmissionLimits::default(), 0, workers)
}

/// [`start`] with `workers` threads sending plain-UDP voice
/// (`dataplane.udp_send_workers`).
pub fn start_with_send_workers(workers: usize) -> Server {
    start_with(
        TicketKey::generate(7).expect("a ticket key"),
        AdmissionLimits::default(),
        workers,
        1,
    )
}

/// [`start`] with `workers` threads serving plain-UDP voice, each with a
/// socket of its own on the port (`dataplane.udp_workers`).
pub fn start_with_udp_workers(workers: usize) -> Server {
    start_with(
        TicketKey::generate(7).expect("a ticket key"),
        AdmissionLimits::default(),
        0,
        workers,
    )
}

/// [`start`] with other limits on connections not yet admitted, which a
/// test reaches with a handful of connections.
pub fn start_limited(limits: AdmissionLimits) -> Server {
    start_with(TicketKey::generate(7).expect("a ticket key"), limits, 0, 1)
}

fn start_with(
    key: TicketKey,
    limits: AdmissionLimits,
    send_workers: usize,
    udp_workers: usize,
) -> Server {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cert = DataplaneCert::load_or_generate(dir.path()).expect("a certificate");
    let mut verifier = TicketVerifier::new();
    verifier.insert(key.clone());
    let issuer = TicketIssuer::new(key);
    let (endpoint, handle) = VoiceEndpoint::bind(
        "127.0.0.1:0".parse().expect("an address"),
        &cert,
        RouterConfig::new(60, 1000, 500),
        Arc::new(RwLock::new(verifier)),
    )
    .expect("the QUIC listener binds");
    let endpoint = endpoint
        .with_admission_limits(limits)
        .with_plain_udp_workers("127.0.0.1:0".parse().expect("an address"), udp_workers)
        .expect("the plain-UDP listener binds")
        .with_send_workers(send_workers)
        .expect("the send workers start");
    let addr = endpoint.local_addr().expect("a bound address");
    let udp_addr = endpoint.plain_addr().expect("a plain-UDP address");
    tokio::spawn(endpoint.run());
    Server {
        addr,
        udp_addr,
        pin: cert.sha256(),
        handle,
        issuer,
        _dir: dir,
    }
}

impl Server {
    /// A ticket for `session` in channel `c1`; see [`ticket`].
    pub fn ticket(&self, session: u32, valid_for: i64) -> Vec<u8> {
        ticket(&self.issuer, session, valid_for)
    }

    /// The pin as `OpenVoice` gives it: 64 lowercase hex digits.
    pub fn pin_hex(&self) -> String {
        self.pin.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Makes `session` a member of `channel`, unmuted.
    pub async fn member(&self, session: u32, channel: &str, deafened: bool) {
        self.handle
            .set_member(
                SessionId(session),
                Member {
                    channel: Some(channel.into()),
                    muted: false,
                    deafened,
                },
            )
            .await
            .expect("the endpoint takes the member");
    }
}

/// The session key [`ticket`] puts in `session`'s tickets.
pub fn session_key(session: u32) -> [u8; 32] {
    [session as u8; 32]
}

/// A ticket for `session` in channel `c1`, valid for `valid_for` seconds
/// (negative: expired that long ago), carrying [`session_key`].
pub fn ticket(issuer: &TicketIssuer, session: u32, valid_for: i64) -> Vec<u8> {
    let now = SystemTime::now();
    let expires_at = if valid_for >= 0 {
        now + Duration::from_secs(valid_for as u64)
    } else {
        now - Duration::from_secs(valid_for.unsigned_abs())
    };
    issuer
        .issue(&Ticket {
            session_id: session,
            channel: "c1".into(),
            expires_at,
            session_key: session_key(session),
        })
        .expect("a ticket")
}
