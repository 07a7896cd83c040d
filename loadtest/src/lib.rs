//! The OpenSpeak load generator: many real gRPC clients against one control
//! plane, with a progress line, latency histograms and correctness checks.
//!
//! The binary (`src/main.rs`) only parses flags; each scenario lives here.
//! The one scenario so far is [`sessions`](run_sessions): N clients connect,
//! join channels, change presence and leave, while every client watches the
//! server's event stream. `README.md` explains the flags and every number of
//! the report.
//!
//! The code is split the way the rest of OpenSpeak is: pure parts that take
//! `now: Instant` and values, and thin tokio drivers around them.
//! - Pure: `observer` (one session's event stream: sequence check, which
//!   joins it saw, the event delays), `checks` (which events were owed and
//!   missing), `stats` (histograms, rates), `report` (table and JSON),
//!   `tally` (failures by reason).
//! - `process_stats`: the server's and the tool's own CPU time and memory,
//!   from `/proc` and `getrusage`; null, never an error, when unreadable.
//! - Shared state: `registry`, one slot per client that the clients publish
//!   facts in (session id, join instants, sequences) for each other.
//! - Drivers: `client` (one client's actor and event reader), `sessions`
//!   (the phases of the run), `setup` (the admin calls), `pool` (the
//!   HTTP/2 connections), `progress` (the line on stderr).

mod args;
mod checks;
mod client;
mod credentials;
mod error;
mod observer;
mod pool;
mod process_stats;
mod progress;
mod registry;
mod report;
mod sessions;
mod setup;
mod stats;
mod tally;
pub mod voice;

pub use args::{SessionsArgs, parse_addr};
pub use error::{ConnectError, SessionsError, SetupError};
pub use report::{Outcome, Report, ServerStats, Settled};
pub use sessions::run_sessions;
pub use stats::LatencySummary;
