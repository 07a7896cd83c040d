//! What every subcommand shares: flag parsers, errors, the admin calls and
//! the connection pool, failure tallies, statistics, the progress line and
//! the report table.

pub mod credentials;
pub mod error;
pub mod flags;
pub mod pool;
pub mod progress;
pub mod report;
pub mod setup;
pub mod stats;
pub mod tally;
pub mod task;
