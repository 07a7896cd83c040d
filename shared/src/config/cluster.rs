//! The `cluster` section: the internal link between the control plane and
//! its data planes.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    InvalidValue,
    check::{check, check_path, check_secret, check_tls_pair},
};

/// The internal link between the control plane and its data planes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Where the control plane listens for data planes.
    pub listen: String,
    /// Where a data plane dials the control plane.
    pub control_addr: String,
    /// Shared secret both sides present; required when they run apart.
    pub secret: Option<String>,
    /// PEM certificate of this end of the link: on the control plane the
    /// link's server certificate (TLS is on when it and `tls_key` are
    /// set), on a data plane the certificate it presents to the control
    /// plane. `openspeak-control cluster init` makes them.
    pub tls_cert: Option<PathBuf>,
    /// Its private key.
    pub tls_key: Option<PathBuf>,
    /// PEM of the cluster's authority: the control plane then requires
    /// each data plane to present a certificate it signed (mutual TLS),
    /// and a data plane dialling `https://` trusts only it.
    pub tls_ca: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50061".into(),
            control_addr: "http://127.0.0.1:50061".into(),
            secret: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }
}

impl ClusterConfig {
    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        check(
            self.listen.parse::<SocketAddr>().is_ok(),
            "cluster.listen",
            || {
                format!(
                    "`{}` is not an IP address and port such as 127.0.0.1:50061",
                    self.listen
                )
            },
        )?;
        let remote = self
            .control_addr
            .strip_prefix("http://")
            .or_else(|| self.control_addr.strip_prefix("https://"));
        check(
            remote.is_some_and(|rest| !rest.is_empty()),
            "cluster.control_addr",
            || {
                format!(
                    "`{}` is not an http:// or https:// address such as http://127.0.0.1:50061",
                    self.control_addr
                )
            },
        )?;
        check_tls_pair(
            ("cluster.tls_cert", self.tls_cert.as_deref()),
            ("cluster.tls_key", self.tls_key.as_deref()),
        )?;
        check_path("cluster.tls_ca", self.tls_ca.as_deref())?;
        check_secret("cluster.secret", self.secret.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_accepted, assert_rejected};

    #[test]
    fn impossible_values_are_rejected_naming_the_key() {
        assert_rejected(&[
            ("cluster.listen", "127.0.0.1"),
            ("cluster.listen", "localhost:50061"),
            ("cluster.control_addr", "127.0.0.1:50061"),
            ("cluster.control_addr", "http://"),
            ("cluster.secret", ""),
            ("cluster.secret", "two words"),
        ]);
    }

    #[test]
    fn boundary_values_are_accepted() {
        assert_accepted(&[
            ("cluster.listen", "[::]:50061"),
            ("cluster.control_addr", "https://control.example:50061"),
        ]);
    }
}
