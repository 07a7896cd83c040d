//! The OpenSpeak routing core: forwards each speaker's voice datagrams to
//! the other members of its channel.
//!
//! [`Router`] is a sans-IO state machine in the style of `quinn-proto`: it
//! owns no socket, starts no task and never reads the clock. Every input
//! carries the time (`now: Instant`), and every output (a datagram to send,
//! a speaking event for the control plane, the next instant it needs the
//! time again) is a value the driver drains with `poll_*`. This crate
//! depends on neither tokio nor quinn, so that rule is the compiler's to
//! keep, and loss, reordering, jitter and staleness are tested here in fake
//! time, deterministically.
//!
//! Inside: each session's packets first meet its send limits (`limit.rs`:
//! packets and bytes per second, payload size), each speaker's stream goes
//! through a jitter buffer (`jitter.rs`), each listener has a bounded queue
//! that sheds its own oldest packets (`listener.rs`), and every drop is
//! counted by reason ([`RouterStats`]).
//! The core types are plain Rust ([`SessionId`], [`ChannelKey`],
//! [`Member`]); the datagram layouts come from `openspeak-voice`.

mod config;
mod ids;
mod jitter;
mod limit;
mod listener;
mod member;
mod output;
mod router;
mod stats;

#[cfg(test)]
mod tests;

pub use config::{FRAME, LIMIT_BURST, RouterConfig};
pub use ids::{ChannelKey, SessionId};
pub use limit::SendLimit;
pub use listener::ListenerQueue;
pub use member::{Member, MembershipError};
pub use output::{RouterEvent, Transmit};
pub use router::Router;
pub use stats::{ListenerStats, MalformedStats, RouterStats, SpeakerStats};
