//! The flags of the `sessions` scenario, as clap parses them.
//!
//! They live in the library (not in `main.rs`) so that the scenario takes one
//! plain value and tests can build it without a command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// `openspeak-loadtest sessions`: connect, join, change presence, leave.
#[derive(Debug, Clone, Args)]
pub struct SessionsArgs {
    /// Public gRPC address of the control plane (plain HTTP/2, no TLS).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_addr)]
    pub addr: String,

    /// An admin token: it creates the channels and the clients' member token.
    #[arg(
        long,
        env = "OPENSPEAK_LOADTEST_TOKEN",
        hide_env_values = true,
        value_parser = parse_token
    )]
    pub token: String,

    /// Number of simulated clients (sessions).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub clients: u32,

    /// Number of channels to create; client i joins channel i % C.
    #[arg(long, value_name = "C", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub channels: u32,

    /// HTTP/2 connections to spread the clients over (one per tonic
    /// Channel). Raised when needed to respect --streams-per-connection.
    #[arg(long, value_name = "K", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,

    /// Most event streams on one connection. Servers often cap concurrent
    /// HTTP/2 streams at 100 or 200, and each client also makes unary calls
    /// on the same connection, so keep this below the server's limit.
    #[arg(long, value_name = "S", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub streams_per_connection: u32,

    /// Clients connecting and joining at the same time.
    #[arg(long, value_name = "R", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ramp_concurrency: u32,

    /// Bound on the whole run, in seconds. On expiry the tool reports what it
    /// has and exits with status 3.
    #[arg(long, value_name = "SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,

    /// Clients use the admin token instead of a fresh member token.
    #[arg(long)]
    pub as_admin: bool,

    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Keep the channels and the member token after the run (default: delete
    /// the channels and revoke the token).
    #[arg(long)]
    pub keep: bool,

    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,

    /// Exit with status 4 when a correctness check fails or any call failed.
    #[arg(long)]
    pub strict: bool,

    /// The server's process id, when it runs on this machine: the report
    /// then gives its CPU time over the run and its peak memory (Linux
    /// `/proc`; null with a warning when unreadable).
    #[arg(long, value_name = "PID",
          value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub server_pid: Option<u32>,

    /// Names this run's channels `load-<RUN_ID>-<i>` (default: random).
    #[arg(long, value_name = "RUN_ID", value_parser = parse_run_id)]
    pub run_id: Option<String>,
}

impl SessionsArgs {
    /// The `--timeout` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// How many connections the run opens: `--connections`, but no more than
    /// one per client and enough that no connection carries more than
    /// `--streams-per-connection` event streams.
    pub fn effective_connections(&self) -> u32 {
        let needed = self.clients.div_ceil(self.streams_per_connection);
        self.connections.min(self.clients).max(needed)
    }
}

/// Accepts `HOST:PORT` (or `http://HOST:PORT`) and returns `HOST:PORT`.
pub fn parse_addr(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.starts_with("https://") {
        return Err("TLS is not supported yet; give a plain HOST:PORT".into());
    }
    let hostport = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    let Some((host, port)) = hostport.rsplit_once(':') else {
        return Err(format!("`{s}` is not HOST:PORT"));
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("`{s}` is not HOST:PORT"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(hostport.to_owned()),
        _ => Err(format!("`{port}` is not a port number (1-65535)")),
    }
}

pub(crate) fn parse_token(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("the token is empty".into());
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be printable ASCII without spaces".into());
    }
    Ok(t.to_owned())
}

pub(crate) fn parse_run_id(s: &str) -> Result<String, String> {
    let ok =
        !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err("1 to 32 letters, digits or dashes".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SessionsArgs,
    }

    fn parse(extra: &[&str]) -> Result<SessionsArgs, clap::Error> {
        let mut argv = vec!["x", "--addr", "127.0.0.1:50051", "--token", "t0k"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    #[test]
    fn addresses_are_host_and_port() {
        assert_eq!(parse_addr("127.0.0.1:50051").unwrap(), "127.0.0.1:50051");
        assert_eq!(parse_addr("http://localhost:1/").unwrap(), "localhost:1");
        assert_eq!(parse_addr("[::1]:7").unwrap(), "[::1]:7");
        assert!(parse_addr("localhost").is_err());
        assert!(parse_addr("localhost:0").is_err());
        assert!(parse_addr("localhost:99999").is_err());
        assert!(parse_addr(":80").is_err());
        assert!(parse_addr("https://h:443").is_err());
    }

    #[test]
    fn bad_flags_are_errors_not_panics() {
        assert!(parse(&["--clients", "0"]).is_err());
        assert!(parse(&["--clients", "-3"]).is_err());
        assert!(parse(&["--channels", "many"]).is_err());
        assert!(parse(&["--timeout", "0"]).is_err());
        assert!(parse(&["--run-id", "has space"]).is_err());
        assert!(parse(&["--token", "  "]).is_err());
        assert!(parse(&["--server-pid", "0"]).is_err());
        assert!(parse(&["--server-pid", "server"]).is_err());
        assert_eq!(parse(&["--server-pid", "42"]).unwrap().server_pid, Some(42));
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
