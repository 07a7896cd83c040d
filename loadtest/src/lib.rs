//! The OpenSpeak load generator: many real gRPC clients against one control
//! plane, with a progress line, latency histograms and correctness checks.
//!
//! The binary (`src/main.rs`) only parses flags; each scenario lives here.
//! The one scenario so far is [`sessions`](run_sessions): N clients connect,
//! join channels, change presence and leave, while every client watches the
//! server's event stream.
//!
//! The code is split the way the rest of OpenSpeak is: pure parts that take
//! `now: Instant` and values (the [`Observer`] of one event stream, the
//! missing-event check, the statistics, the report) and thin tokio drivers
//! around them (the client tasks, the progress printer, the scenario).

mod args;
mod checks;
mod client;
mod credentials;
mod error;
mod observer;
mod pool;
mod progress;
mod registry;
mod report;
mod sessions;
mod setup;
mod stats;
mod tally;

pub use args::{SessionsArgs, parse_addr};
pub use error::{ConnectError, SessionsError, SetupError};
pub use observer::Observer;
pub use report::{Outcome, Report};
pub use sessions::run_sessions;
