//! The OpenSpeak data plane: the process that moves voice. It takes each
//! speaker's datagrams off the network and hands them to the routing core
//! (`openspeak-router`, which does no IO), then sends what the core
//! forwards to the other members of the speaker's channel.
//!
//! Around the core: [`VoiceEndpoint`] (the QUIC driver: one task owns the
//! socket, quinn-proto's endpoint, every connection, their admission and
//! the session table), [`Link`] (the internal gRPC link that feeds it
//! membership and ticket keys), the metrics listener (`/metrics` and
//! `/healthz` over HTTP, rendered from the counters the endpoint and router
//! keep) and [`Dataplane`] (all three, bound from the configuration: what
//! the binaries run). The wire formats come from `openspeak-voice`, shared
//! with clients.
//!
//! The routing core's types are re-exported, since the [`Handle`] speaks
//! in them.

mod cert;
mod endpoint;
mod link;
mod metrics;
mod server;
mod udp;

pub use cert::{CERT_FILE, CertError, DataplaneCert, KEY_FILE};
pub use endpoint::{
    AdmissionLimits, BindError, EndpointStats, FORWARD_DELAY_BUCKETS, ForwardDelay, Handle,
    HandleError, MAX_UNADMITTED, MemberChange, RETRY_ABOVE, Resynced, UDP_DROP_REASONS,
    VoiceEndpoint,
};
pub use link::{Link, LinkConfig, LinkState, Registration};
pub use metrics::{METRICS_PREFIX, SCRAPE_TIMEOUT};
pub use openspeak_router::{
    ChannelKey, FRAME, ListenerStats, MalformedStats, Member, MembershipError, Router,
    RouterConfig, RouterEvent, RouterStats, SessionId, SpeakerStats, Transmit,
};
pub use server::{Dataplane, ID_FILE, StartError};
