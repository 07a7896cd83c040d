//! The flags every subcommand shares, flattened into each one's own, and
//! their parsers.

use std::path::PathBuf;

use clap::Args;

use crate::common::error::ConnectError;

/// Where the control plane is and who we are: every subcommand's first two
/// flags.
#[derive(Debug, Clone, Args)]
pub struct ServerFlags {
    /// Public gRPC address of the control plane: `HOST:PORT` (or
    /// `http://HOST:PORT`) for plaintext, `https://HOST:PORT` for TLS.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_server)]
    pub addr: String,

    /// PEM file of the authority to trust over TLS, or of the server's
    /// self-signed certificate (`server_cert.pem` with
    /// `server.tls_self_signed`); implies TLS. Without it, `https://`
    /// trusts the public authorities.
    #[arg(long, value_name = "PATH")]
    pub ca: Option<PathBuf>,

    /// An access token. `sessions` and `voice` need an admin token (it
    /// creates the channels and the clients' member token), as does `record
    /// --create`; otherwise a member token is enough.
    #[arg(
        long,
        env = "OPENSPEAK_LOADTEST_TOKEN",
        hide_env_values = true,
        value_parser = parse_token
    )]
    pub token: String,
}

/// The flags of a scenario of many clients (`sessions`, `voice`): the
/// server, the connections, the run's bounds and what to do with the
/// results.
#[derive(Debug, Clone, Args)]
pub struct RunFlags {
    #[command(flatten)]
    pub server: ServerFlags,

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

    /// Clients setting up at the same time: connecting and joining, and for
    /// `voice` also OpenVoice and the QUIC connection.
    #[arg(long, value_name = "R", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ramp_concurrency: u32,

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

    /// Exit with status 4 when a correctness check (for `voice`, a routing
    /// check) fails or any call failed.
    #[arg(long)]
    pub strict: bool,

    /// The server's process id, when it runs on this machine (for `voice`,
    /// the data plane's or openspeak-server's): the report then gives its
    /// CPU time over the run (for `voice`, over the send phase and per
    /// forwarded packet) and its peak memory (Linux `/proc`; null with a
    /// warning when unreadable).
    #[arg(long, value_name = "PID",
          value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub server_pid: Option<u32>,

    /// Names this run's channels `load-<RUN_ID>-<i>` (default: random).
    #[arg(long, value_name = "RUN_ID", value_parser = parse_run_id)]
    pub run_id: Option<String>,
}

impl RunFlags {
    /// The flags' defaults for a run against `addr` with `token`, for
    /// callers without a command line (tests, [`VoicePlan::new`]).
    ///
    /// [`VoicePlan::new`]: crate::VoicePlan::new
    pub fn new(addr: &str, token: &str) -> Self {
        RunFlags {
            server: ServerFlags::new(addr, token),
            connections: 64,
            streams_per_connection: 100,
            ramp_concurrency: 200,
            json: None,
            keep: false,
            quiet: false,
            strict: false,
            server_pid: None,
            run_id: None,
        }
    }

    /// How many HTTP/2 connections a run of `clients` opens:
    /// `--connections`, but no more than one per client and enough that no
    /// connection carries more than `--streams-per-connection` event
    /// streams.
    pub fn connections_for(&self, clients: u32) -> u32 {
        let needed = clients.div_ceil(self.streams_per_connection.max(1));
        self.connections.min(clients).max(needed).max(1)
    }
}

impl ServerFlags {
    /// Plaintext `addr`, no CA: what the library's callers start from.
    pub fn new(addr: &str, token: &str) -> ServerFlags {
        ServerFlags {
            addr: addr.to_owned(),
            token: token.to_owned(),
            ca: None,
        }
    }

    /// Whether the control plane is dialled over TLS.
    pub fn tls(&self) -> bool {
        self.addr.starts_with("https://") || self.ca.is_some()
    }

    /// The URI to dial: `https://HOST:PORT` with TLS, else `http://`.
    pub fn uri(&self) -> String {
        let hostport = self.addr.strip_prefix("https://").unwrap_or(&self.addr);
        let scheme = if self.tls() { "https" } else { "http" };
        format!("{scheme}://{hostport}")
    }

    /// The `--ca` file's contents, when one is given.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, ConnectError> {
        self.ca
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|source| ConnectError::Ca {
                    path: path.clone(),
                    source,
                })
            })
            .transpose()
    }

    /// The endpoint to dial, TLS set up as the flags say.
    pub fn endpoint(&self) -> Result<tonic::transport::Endpoint, ConnectError> {
        let ca = self.ca_pem()?;
        openspeak_client::endpoint(&self.uri(), ca.as_deref()).map_err(|source| {
            ConnectError::BadAddress {
                addr: self.addr.clone(),
                source,
            }
        })
    }
}

/// `--addr`: [`parse_addr`], or `https://HOST:PORT` kept as it is.
pub fn parse_server(s: &str) -> Result<String, String> {
    match s.trim().strip_prefix("https://") {
        Some(rest) => parse_addr(rest).map(|hostport| format!("https://{hostport}")),
        None => parse_addr(s),
    }
}

/// Accepts `HOST:PORT` (or `http://HOST:PORT`) and returns `HOST:PORT`.
pub fn parse_addr(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.starts_with("https://") {
        return Err("give a plain HOST:PORT (this listener speaks no TLS)".into());
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

fn parse_token(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("the token is empty".into());
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be printable ASCII without spaces".into());
    }
    Ok(t.to_owned())
}

fn parse_run_id(s: &str) -> Result<String, String> {
    let ok =
        !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err("1 to 32 letters, digits or dashes".into())
    }
}

/// Parses `--addr 127.0.0.1:50051 --token t0k` and `extra` into `A`, as a
/// subcommand that flattens `A` would: for the tests of the flags.
#[cfg(test)]
pub(crate) fn parse_flags<A: Args + clap::FromArgMatches>(
    extra: &[&str],
) -> Result<A, clap::Error> {
    #[derive(clap::Parser)]
    struct Cli<A: Args> {
        #[command(flatten)]
        args: A,
    }
    let mut argv = vec!["x", "--addr", "127.0.0.1:50051", "--token", "t0k"];
    argv.extend_from_slice(extra);
    <Cli<A> as clap::Parser>::try_parse_from(argv).map(|c| c.args)
}

/// Asserts that clap refuses each of `bad`, given after `base`, as a usage
/// error (exit status 2): never a panic and never a value. For the tests
/// of every subcommand's flags.
#[cfg(test)]
pub(crate) fn assert_refused<A: std::fmt::Debug>(
    parse: impl Fn(&[&str]) -> Result<A, clap::Error>,
    base: &[&str],
    bad: &[&[&str]],
) {
    for extra in bad {
        let argv = [base, extra].concat();
        match parse(&argv) {
            Err(e) => assert_eq!(e.exit_code(), 2, "{argv:?}: {e}"),
            Ok(parsed) => panic!("{argv:?} parsed: {parsed:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_server_may_be_dialled_over_tls() {
        assert_eq!(parse_server("https://h:443/").unwrap(), "https://h:443");
        assert_eq!(parse_server("http://h:1").unwrap(), "h:1");
        assert!(parse_server("https://h").is_err());
        let mut server = ServerFlags::new("h:1", "t");
        assert_eq!((server.tls(), server.uri()), (false, "http://h:1".into()));
        server.ca = Some(PathBuf::from("ca.pem"));
        assert_eq!((server.tls(), server.uri()), (true, "https://h:1".into()));
        let server = ServerFlags::new("https://h:1", "t");
        assert_eq!((server.tls(), server.uri()), (true, "https://h:1".into()));
        let missing = ServerFlags {
            ca: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..server
        };
        let err = missing.endpoint().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
