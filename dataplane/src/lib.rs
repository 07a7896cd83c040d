//! The OpenSpeak data plane: routes voice datagrams from each speaker to
//! the other members of its channel.
//!
//! The core is [`Router`], a sans-IO state machine in the style of
//! `quinn-proto`: it owns no socket, starts no task and never reads the
//! clock. Every input carries the time (`now: Instant`), and every output
//! (a datagram to send, an event for the control plane, the next instant it
//! needs the time again) is a value the driver drains with `poll_*`. The
//! QUIC and UDP transports and the internal link to the control plane are
//! thin drivers around it, so loss, reordering, jitter and staleness are
//! tested here in fake time, deterministically.
//!
//! The core types are plain Rust ([`SessionId`], [`ChannelKey`],
//! [`Member`]); protobuf stays at the edge. The datagram layout lives in
//! [`openspeak_shared::voice`], shared with clients.
//!
//! Around the core: [`VoiceEndpoint`] (the QUIC driver), [`Link`] (the
//! internal gRPC link that feeds it membership and ticket keys), the
//! metrics listener (`/metrics` and `/healthz` over HTTP, rendered from the
//! counters the endpoint and router keep) and [`Dataplane`] (all three,
//! bound from the configuration: what the binaries run).

mod cert;
mod config;
mod endpoint;
mod ids;
mod jitter;
mod link;
mod listener;
mod member;
mod metrics;
mod output;
mod quic;
mod router;
mod server;
mod stats;
mod udp;

#[cfg(test)]
mod tests;

pub use cert::{CERT_FILE, CertError, DataplaneCert, KEY_FILE};
pub use config::{FRAME, RouterConfig};
pub use endpoint::{
    BindError, EXCHANGE_VERSION, EndpointStats, FORWARD_DELAY_BUCKETS, ForwardDelay, Handle,
    HandleError, RejectCode, Resynced, TICKET_TIMEOUT, VoiceEndpoint,
};
pub use ids::{ChannelKey, SessionId};
pub use link::{Link, LinkConfig, LinkState, Registration};
pub use member::{Member, MembershipError};
pub use metrics::{METRICS_PREFIX, SCRAPE_TIMEOUT};
pub use output::{RouterEvent, Transmit};
pub use quic::{ALPN, PinError, QuicConfigError, client_config, parse_pin, server_config};
pub use router::Router;
pub use server::{Dataplane, ID_FILE, StartError};
pub use stats::{ListenerStats, MalformedStats, RouterStats, SpeakerStats};
