//! The flags of the `sessions` scenario, as clap parses them.
//!
//! They live in the library (not in `main.rs`) so that the scenario takes one
//! plain value and tests can build it without a command line.

use std::time::Duration;

use clap::Args;

use crate::common::flags::RunFlags;

/// `openspeak-loadtest sessions`: connect, join, change presence, leave.
#[derive(Debug, Clone, Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub run: RunFlags,

    /// Number of simulated clients (sessions).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub clients: u32,

    /// Number of channels to create; client i joins channel i % C.
    #[arg(long, value_name = "C", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub channels: u32,

    /// Bound on the whole run, in seconds. On expiry the tool reports what it
    /// has and exits with status 3.
    #[arg(long, value_name = "SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,

    /// Clients use the admin token instead of a fresh member token.
    #[arg(long)]
    pub as_admin: bool,
}

impl SessionsArgs {
    /// The `--timeout` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// How many connections the run opens.
    pub fn effective_connections(&self) -> u32 {
        self.run.connections_for(self.clients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::flags::{assert_refused, parse_flags};

    fn parse(extra: &[&str]) -> Result<SessionsArgs, clap::Error> {
        parse_flags(extra)
    }

    #[test]
    fn bad_flags_are_errors_not_panics() {
        assert_refused(
            parse,
            &[],
            &[
                &["--clients", "0"],
                &["--clients", "-3"],
                &["--channels", "many"],
                &["--timeout", "0"],
                &["--run-id", "has space"],
                &["--token", "  "],
                &["--server-pid", "0"],
                &["--server-pid", "server"],
            ],
        );
        assert_eq!(
            parse(&["--server-pid", "42"]).unwrap().run.server_pid,
            Some(42)
        );
    }

    #[test]
    fn connections_are_bounded_by_clients_and_stream_limit() {
        let a = parse(&["--clients", "50", "--connections", "64"]).unwrap();
        assert_eq!(a.effective_connections(), 50);
        let a = parse(&["--clients", "10000", "--connections", "64"]).unwrap();
        assert_eq!(a.effective_connections(), 100);
        let a = parse(&["--clients", "1000", "--connections", "4"]).unwrap();
        assert_eq!(a.effective_connections(), 10);
        let a = parse(&["--clients", "1000"]).unwrap();
        assert_eq!(a.effective_connections(), 64);
    }
}
