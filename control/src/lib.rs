//! The OpenSpeak control plane: access tokens, channels, sessions and
//! presence over gRPC.
//!
//! The core ([`Hub`], with the channel tree and tokens beside it) is plain
//! Rust with no IO and no clock; `Broker` wraps it for concurrent use and
//! fans its events out; the gRPC services in `service` are the edge where
//! protobuf types become core types and errors become statuses.

mod ban_list;
mod channels;
mod event;
mod hub;
mod ids;
mod limits;
mod persist;
mod session_ids;
mod tokens;

pub use hub::Hub;
