//! A Rust client library for OpenSpeak.
//!
//! Two halves, as the server has two planes:
//! - the control plane's public gRPC API: [`Client`] (a connection and a
//!   token: tokens, channels, who is online) and [`Session`] (one
//!   `PresenceService.Connect` stream: its events and the session-scoped
//!   calls), failing with [`ClientError`]; or a [`ResumingSession`], which
//!   comes back by itself when its control plane goes away (killed,
//!   restarted, unreachable for a while): a new session with the same
//!   name, back in its channel with its presence, announced as
//!   [`SessionEvent::Resumed`] with its new id and a fresh snapshot. It
//!   does not come back when it was ended on purpose (`kicked`, a revoked
//!   or expired token, or dropped by its owner);
//! - [`voice`]: the voice protocol of `docs/PROTOCOL.md`, spoken to a data
//!   plane over QUIC by a [`VoiceClient`] or over plain UDP by a
//!   [`UdpVoiceClient`], reached from a [`VoiceGrant`]; or a [`Call`],
//!   which reconnects by itself when its data plane goes away, and, made
//!   from a [`ResumingSession`], follows it to its new id.
//!
//! A plain [`Session`] is what a tool or a test wants: it ends with its
//! stream, and the caller decides what next. An application for people
//! wants the [`ResumingSession`] and a [`Call`], and nothing to do when the
//! server restarts:
//!
//! ```no_run
//! # async fn demo(channel_id: &str) -> Result<(), openspeak_client::ClientError> {
//! use openspeak_client::{Call, Client, SessionEvent, Transport};
//!
//! let client = Client::connect("http://127.0.0.1:50051", "my-token").await?;
//! let mut session = client.start_resuming_session("alice").await?;
//! session.join(channel_id, "").await?;
//! let call = Call::start(session.voice_opener(), Transport::Quic).await?;
//! loop {
//!     match session.next_event().await? {
//!         SessionEvent::Server(_event) => { /* update the UI */ }
//!         SessionEvent::Reconnecting { .. } => { /* "reconnecting..." */ }
//!         SessionEvent::Resumed(resumed) => {
//!             // Rebuild the UI from `resumed.started`; the call moves to
//!             // `resumed.session_id()` on its own.
//!         }
//!     }
//! }
//! # }
//! ```
//!
//! Events, channels, presences and token infos are the protobuf types of
//! the public contract, re-exported as [`pb`]: the `.proto` files are the
//! reference for their fields. The tests and the load generator act as
//! real clients through this crate.
//!
//! ```no_run
//! # async fn demo() -> Result<(), openspeak_client::ClientError> {
//! use std::time::Duration;
//! use openspeak_client::{Client, pb::event::Event};
//!
//! let client = Client::connect("http://127.0.0.1:50051", "my-token").await?;
//! let channel = client.create_channel("Squad").await?;
//! let mut session = client.start_session("alice").await?;
//! session.join(&channel.id, "").await?;
//! let me = session.id();
//! session
//!     .wait_for(|e| matches!(e, Event::MemberJoined(m) if m.session_id == me), Duration::from_secs(5))
//!     .await?;
//! let voice = session.open_voice().await?.connect().await?;
//! voice.send(0, 0, bytes::Bytes::from_static(b"\xfc\xff\xfe"))?;
//! # Ok(())
//! # }
//! ```

mod call;
mod control;
mod error;
mod grant;
mod resume;
mod session;
pub mod udp;
pub mod voice;

pub use call::{Call, CallEnded, GONE_AFTER, PING_EVERY, Transport, VoiceOpener};
pub use control::{
    CONNECT_TIMEOUT, Client, NewChannel, REQUEST_TIMEOUT, SESSION_START_TIMEOUT, TokenLifetime,
    endpoint,
};
pub use error::ClientError;
pub use grant::VoiceGrant;
pub use openspeak_shared::pb;
pub use openspeak_voice::Forwarded;
pub use resume::{
    RESUME_FIRST_PAUSE, RESUME_MAX_PAUSE, Rejoin, Resumed, ResumingSession, SessionEvent,
};
pub use session::{PresenceUpdate, Session};
pub use tonic::Code;
pub use udp::{UdpVoiceClient, UdpVoiceError};
pub use voice::{VoiceClient, VoiceError};
