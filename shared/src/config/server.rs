//! The `server` section: the control plane's public gRPC listener.

use std::{net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    InvalidValue, Seconds,
    check::{check, check_seconds, check_tls_pair},
};

/// The public gRPC listener of the control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// IP address to bind; `0.0.0.0` (or `::`) for every interface.
    pub host: String,
    /// 0 = any free port (the bound port is logged).
    pub port: u16,
    /// PEM certificate chain; TLS is on when both this and `tls_key` are set.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a certificate the control plane makes itself on
    /// first start and keeps in the data directory (`server_cert.pem`,
    /// `server_key.pem`); its fingerprint is logged. Clients trust that
    /// certificate file as their CA. For a box without a certificate of
    /// its own; not together with `tls_cert`/`tls_key`.
    pub tls_self_signed: bool,
    /// How long shutdown waits for session streams to close.
    pub shutdown_grace: Seconds,
    /// Largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// HTTP/2 keepalive ping interval, to find dead connections.
    pub keepalive_interval: Seconds,
    /// How long a keepalive ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Seconds,
    /// Connections open at once on each listener (the public one and the
    /// internal link's); one more is closed at once.
    pub max_connections: usize,
    /// How long a new connection may stay silent before it is closed.
    pub handshake_timeout: Seconds,
    /// Calls and streams open at once on one connection.
    pub max_concurrent_streams: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 50051,
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            shutdown_grace: Seconds(30),
            max_message_bytes: 64 * 1024,
            keepalive_interval: Seconds(30),
            keepalive_timeout: Seconds(10),
            max_connections: 10_000,
            handshake_timeout: Seconds(10),
            max_concurrent_streams: 100,
        }
    }
}

impl ServerConfig {
    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        check(self.host.parse::<IpAddr>().is_ok(), "server.host", || {
            format!(
                "`{}` is not an IP address (0.0.0.0 listens on every interface)",
                self.host
            )
        })?;
        check_tls_pair(
            ("server.tls_cert", self.tls_cert.as_deref()),
            ("server.tls_key", self.tls_key.as_deref()),
        )?;
        check(
            !(self.tls_self_signed && self.tls_cert.is_some()),
            "server.tls_self_signed",
            || {
                "is true while server.tls_cert and server.tls_key name a certificate; \
                 choose one"
                    .into()
            },
        )?;
        check_seconds("server.shutdown_grace", self.shutdown_grace)?;
        check(
            self.max_message_bytes >= 1024,
            "server.max_message_bytes",
            || {
                format!(
                    "must be at least 1024 bytes, got {}",
                    self.max_message_bytes
                )
            },
        )?;
        check_seconds("server.keepalive_interval", self.keepalive_interval)?;
        check_seconds("server.keepalive_timeout", self.keepalive_timeout)?;
        check(self.max_connections >= 1, "server.max_connections", || {
            "must be at least 1".into()
        })?;
        check_seconds("server.handshake_timeout", self.handshake_timeout)?;
        check(
            self.max_concurrent_streams >= 2,
            "server.max_concurrent_streams",
            || {
                format!(
                    "must be at least 2 (a session's event stream and one call), got {}",
                    self.max_concurrent_streams
                )
            },
        )
    }

    /// What the gate in front of each listener allows.
    pub fn gate_limits(&self) -> crate::gate::GateLimits {
        crate::gate::GateLimits {
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{
        assert_accepted, assert_file_error, assert_rejected, file_error, load, with_file,
    };
    use super::*;

    #[test]
    fn impossible_values_are_rejected_naming_the_key() {
        assert_rejected(&[
            ("server.host", "localhost"),
            ("server.host", "0.0.0.0:50051"),
            ("server.tls_cert", "cert.pem"),
            ("server.tls_key", "key.pem"),
            ("server.shutdown_grace", "0"),
            ("server.keepalive_interval", "0"),
            ("server.keepalive_timeout", "0"),
            ("server.max_message_bytes", "1023"),
            ("server.max_connections", "0"),
            ("server.handshake_timeout", "0"),
            ("server.max_concurrent_streams", "1"),
        ]);
    }

    #[test]
    fn boundary_values_are_accepted() {
        assert_accepted(&[
            ("server.max_message_bytes", "1024"),
            ("server.host", "::"),
            ("server.max_connections", "1"),
            ("server.max_concurrent_streams", "2"),
        ]);
    }

    #[test]
    fn tls_needs_both_files() {
        assert_file_error("server:\n  tls_key: key.pem\n", "server.tls_key");
        let (_dir, _path, opts) = with_file("server:\n  tls_key: key.pem\n  tls_cert: cert.pem\n");
        let config = load(&opts).unwrap();
        assert_eq!(config.server.tls_cert, Some(PathBuf::from("cert.pem")));
    }

    #[test]
    fn a_self_signed_certificate_or_a_given_one_not_both() {
        let (_dir, _path, opts) = with_file("server:\n  tls_self_signed: true\n");
        assert!(load(&opts).unwrap().server.tls_self_signed);
        let (err, _path) = file_error(
            "server:\n  tls_self_signed: true\n  tls_key: key.pem\n  tls_cert: cert.pem\n",
        );
        assert_eq!(err.key(), Some("server.tls_self_signed"));
        assert!(err.to_string().contains("choose one"), "{err}");
    }
}
