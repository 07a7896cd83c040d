//! The `metrics` section: the control plane's HTTP listener for operators
//! (`/metrics`, `/healthz`, `/readyz`). A data plane's is
//! `dataplane.metrics_listen`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{
    InvalidValue,
    check::{check, optional_addr},
};

/// The control plane's operators' listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` to serve on; port 0 = any free port (the bound address
    /// is logged). Empty: no such listener. Loopback by default, because
    /// the numbers are for the operator, not for the clients.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9100".into(),
        }
    }
}

impl MetricsConfig {
    /// The address to serve on: `None` when `listen` is empty, an error
    /// when it is not an IP address and port.
    pub fn addr(&self) -> Result<Option<SocketAddr>, std::net::AddrParseError> {
        optional_addr(&self.listen)
    }

    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        check(self.addr().is_ok(), "metrics.listen", || {
            format!(
                "`{}` is not an IP address and port such as 127.0.0.1:9100 (\"\" serves no metrics)",
                self.listen
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_accepted, assert_rejected};

    #[test]
    fn listen_is_an_address_or_empty() {
        assert_rejected(&[
            ("metrics.listen", "localhost:9100"),
            ("metrics.listen", "9100"),
        ]);
        assert_accepted(&[
            ("metrics.listen", "127.0.0.1:0"),
            ("metrics.listen", "[::1]:9100"),
        ]);
    }
}
