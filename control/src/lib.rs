//! The OpenSpeak control plane: access tokens, channels, sessions and
//! presence over gRPC.
//!
//! The core ([`Hub`], with the channel tree and the token store beside it)
//! is plain Rust with no IO and no clock. `Broker` shares the hub between
//! RPC handlers and fans its events out in one order. The gRPC services in
//! `service` are the edge where protobuf types become core types and core
//! errors become statuses. [`ControlPlane`] puts it all on a socket.

pub mod admin;
mod authenticator;
mod ban_list;
mod broker;
mod channels;
mod cluster;
pub mod cluster_ca;
mod convert;
mod data_lock;
mod edge;
mod event;
mod hub;
mod ids;
mod limits;
mod metrics;
mod provision;
mod request_rate;
mod server;
mod service;
mod session_ids;
mod snapshot;
mod state_files;
mod store;
mod tokens;

pub use hub::Hub;
pub use metrics::METRICS_PREFIX;
pub use server::{
    CLUSTER_SECRET_MIN, ControlPlane, SELF_SIGNED_CERT_FILE, SELF_SIGNED_KEY_FILE, ServeError,
    StartError,
};
pub use state_files::MARKER as STATE_MARKER;
