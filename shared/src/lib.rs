//! What the OpenSpeak planes share: the protobuf code ([`pb`]), the
//! configuration ([`config`]), the public error reasons ([`Reason`]) and
//! telemetry ([`telemetry`]).
//!
//! Only this crate and the service edges of the planes touch protobuf types;
//! the planes' cores work on plain Rust types.

pub mod cli;
pub mod config;
mod encoded;
mod error;
pub mod gate;
pub mod identity;
pub mod ops;
pub mod pb;
pub mod persist;
pub mod shutdown;
pub mod telemetry;
pub mod ticket;

pub use cli::{ConfigArgs, ServeArgs};
pub use config::{Config, ConfigError, LoadOptions};
pub use encoded::Encoded;
pub use error::{DOMAIN, Reason};

/// gRPC metadata keys of the public API.
pub mod metadata {
    /// `authorization: Bearer <token>` on every call.
    pub const AUTHORIZATION: &str = "authorization";
    /// `openspeak-session: <session_id>` (decimal) on session-scoped calls.
    pub const SESSION: &str = "openspeak-session";
    /// A request id, taken from the request or generated, echoed in the response.
    pub const REQUEST_ID: &str = "x-request-id";
}
