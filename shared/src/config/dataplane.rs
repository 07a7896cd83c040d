//! The `dataplane` section: the data plane's voice listener and how it
//! presents itself to the control plane and to clients.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

use super::{
    InvalidValue,
    check::{check, check_secret, check_tls_pair, optional_addr},
};

/// The data plane's voice listener and how it presents itself to the
/// control plane and to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneConfig {
    /// IP address the voice listeners bind; `0.0.0.0` (or `::`) for every
    /// interface.
    pub host: String,
    /// UDP port of voice over QUIC; 0 = any free port (the bound port is
    /// logged and registered).
    pub quic_port: u16,
    /// UDP port of voice over plain UDP, sealed with the session key; 0 =
    /// any free port (the bound port is logged and registered).
    pub udp_port: u16,
    /// The host clients are told to dial. Default: `host`, or `127.0.0.1`
    /// when `host` is an unspecified address (`0.0.0.0`, `::`).
    pub public_host: Option<String>,
    /// The name it registers under; a data plane that registers again with
    /// the same id replaces its old registration. Default: a random id
    /// generated on first start and kept in `<storage.data_dir>/dataplane_id`.
    pub id: Option<String>,
    /// Voice sessions it should carry; the control plane places no new
    /// channel on it beyond that. 0 = no limit.
    pub capacity: u32,
    /// PEM certificate of the QUIC listener. Unset (with `tls_key`): one is
    /// generated on first start and kept in `storage.data_dir`, so its
    /// fingerprint stays the same across restarts.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// `host:port` of the HTTP listener for `/metrics` (Prometheus) and
    /// `/healthz`; port 0 = any free port (the bound address is logged).
    /// Empty: no such listener. Loopback by default, because the counters
    /// are for the operator, not for the clients.
    pub metrics_listen: String,
    /// Bytes of kernel buffer each voice socket asks for, each way, so
    /// that a burst (of garbage, or while the data plane is not scheduled)
    /// does not drop real voice. 0 = the kernel's default.
    pub socket_buffer_bytes: usize,
    /// Threads that hand the plain-UDP fan-out to the kernel, beside the
    /// thread that routes; 0 = that thread sends too. Off by default: on a
    /// 2-core machine they bought no capacity and cost CPU
    /// (BENCHMARKS.md, "Send workers"); on a machine with cores to spare
    /// for a loaded data plane, one per spare core.
    pub udp_send_workers: usize,
    /// Threads that read, route, seal and send plain-UDP voice, each with
    /// a socket of its own on `udp_port` (the kernel spreads the clients'
    /// addresses over them); 0 = one per core.
    pub udp_workers: usize,
}

/// The most `dataplane.udp_send_workers`: more threads than cores only
/// take turns.
const MAX_SEND_WORKERS: usize = 256;

/// The most `dataplane.udp_workers`, for the same reason.
const MAX_UDP_WORKERS: usize = 256;

impl Default for DataplaneConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            quic_port: 50052,
            udp_port: 50053,
            public_host: None,
            id: None,
            capacity: 0,
            tls_cert: None,
            tls_key: None,
            metrics_listen: "127.0.0.1:9101".into(),
            socket_buffer_bytes: 4 << 20,
            udp_send_workers: 0,
            udp_workers: 0,
        }
    }
}

impl DataplaneConfig {
    /// The address to serve metrics on: `None` when `metrics_listen` is
    /// empty (metrics off), an error when it is not an IP address and port.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, std::net::AddrParseError> {
        optional_addr(&self.metrics_listen)
    }

    /// How many threads serve plain-UDP voice: `udp_workers`, or one per
    /// core the process may use when it is 0.
    pub fn udp_worker_count(&self) -> usize {
        match self.udp_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The host clients dial: `public_host`, else `host` unless that is
    /// an unspecified address, else the loopback of its family.
    pub fn advertised_host(&self) -> String {
        if let Some(host) = &self.public_host {
            return host.clone();
        }
        match self.host.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() && ip.is_ipv6() => "::1".into(),
            Ok(ip) if ip.is_unspecified() => "127.0.0.1".into(),
            _ => self.host.clone(),
        }
    }

    /// Whether the voice listeners take packets from other machines while
    /// clients are told to dial a loopback address: the default when
    /// `public_host` is left out and `host` is every interface. A client
    /// on another machine then gets a ticket for an address it cannot
    /// reach, so the data plane warns at start.
    pub fn advertised_only_locally(&self) -> bool {
        let binds_everywhere = self
            .host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        let advertised_loopback = self
            .advertised_host()
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
        binds_everywhere && advertised_loopback
    }

    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        check(
            self.udp_send_workers <= MAX_SEND_WORKERS,
            "dataplane.udp_send_workers",
            || {
                format!(
                    "must be at most {MAX_SEND_WORKERS} (one per spare core is plenty), got {}",
                    self.udp_send_workers
                )
            },
        )?;
        check(
            self.udp_workers <= MAX_UDP_WORKERS,
            "dataplane.udp_workers",
            || {
                format!(
                    "must be at most {MAX_UDP_WORKERS} (0 means one per core), got {}",
                    self.udp_workers
                )
            },
        )?;
        check(
            self.socket_buffer_bytes == 0 || self.socket_buffer_bytes >= 65_536,
            "dataplane.socket_buffer_bytes",
            || {
                format!(
                    "must be 0 (the kernel's default) or at least 65536, got {}",
                    self.socket_buffer_bytes
                )
            },
        )?;
        check(
            self.host.parse::<IpAddr>().is_ok(),
            "dataplane.host",
            || {
                format!(
                    "`{}` is not an IP address (0.0.0.0 listens on every interface)",
                    self.host
                )
            },
        )?;
        check(
            self.public_host
                .as_deref()
                .is_none_or(|h| !h.is_empty() && !h.contains([' ', '/'])),
            "dataplane.public_host",
            || {
                "must be a host name or IP address clients can reach (leave it out for the bind host)".into()
            },
        )?;
        check(
            self.udp_port == 0 || self.udp_port != self.quic_port,
            "dataplane.udp_port",
            || {
                format!(
                    "{} is also dataplane.quic_port; both are UDP, so they need ports of their own",
                    self.udp_port
                )
            },
        )?;
        check_secret("dataplane.id", self.id.as_deref())?;
        check_tls_pair(
            ("dataplane.tls_cert", self.tls_cert.as_deref()),
            ("dataplane.tls_key", self.tls_key.as_deref()),
        )?;
        check(
            self.metrics_addr().is_ok(),
            "dataplane.metrics_listen",
            || {
                format!(
                    "`{}` is not an IP address and port such as 127.0.0.1:9101 (\"\" serves no metrics)",
                    self.metrics_listen
                )
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        Config, ConfigError, Origin,
        testing::{flag, load, load_env, opts, with_file},
    };

    #[test]
    fn the_default_listens_everywhere_but_advertises_loopback() {
        let mut dp = super::DataplaneConfig::default();
        assert!(dp.advertised_only_locally(), "the default: warned about");
        dp.host = "::".into();
        assert!(dp.advertised_only_locally());
        dp.public_host = Some("voice.example.org".into());
        assert!(!dp.advertised_only_locally(), "a public host is reachable");
        dp.public_host = Some("127.0.0.1".into());
        assert!(
            dp.advertised_only_locally(),
            "a loopback public host is not"
        );
        dp.public_host = None;
        dp.host = "127.0.0.1".into();
        assert!(
            !dp.advertised_only_locally(),
            "a loopback box is consistent"
        );
        dp.host = "192.0.2.7".into();
        assert!(
            !dp.advertised_only_locally(),
            "it advertises its own address"
        );
    }

    #[test]
    fn metrics_listen_is_an_address_or_empty() {
        let metrics = |config: &Config| config.dataplane.metrics_addr().unwrap();
        assert_eq!(
            metrics(&Config::default()),
            Some("127.0.0.1:9101".parse().unwrap()),
            "the contract's default"
        );
        let any_port = load_env([("OPENSPEAK_DATAPLANE__METRICS_LISTEN", "[::1]:0")]);
        assert_eq!(metrics(&any_port), Some("[::1]:0".parse().unwrap()));
        let off = load_env([("OPENSPEAK_DATAPLANE__METRICS_LISTEN", "")]);
        assert_eq!(metrics(&off), None, "empty turns it off");
        let (_dir, _path, file) = with_file("dataplane:\n  metrics_listen: \"\"\n");
        assert_eq!(metrics(&load(&file).unwrap()), None);

        for value in ["127.0.0.1", "localhost:9101", " ", "0.0.0.0:99999"] {
            let err = load(
                &file
                    .clone()
                    .with_override(flag("dataplane.metrics_listen", value)),
            )
            .unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { .. }), "{value}: {err}");
            assert_eq!(err.key(), Some("dataplane.metrics_listen"), "{err}");
            assert_eq!(err.origin(), Some(&Origin::Flag("--set".into())), "{err}");
            assert!(err.to_string().contains(&format!("`{value}`")), "{err}");
        }
    }

    #[test]
    fn socket_buffers_are_the_default_or_at_least_64_kib() {
        super::super::testing::assert_rejected(&[("dataplane.socket_buffer_bytes", "65535")]);
        super::super::testing::assert_accepted(&[
            ("dataplane.socket_buffer_bytes", "0"),
            ("dataplane.socket_buffer_bytes", "65536"),
        ]);
    }

    #[test]
    fn send_workers_are_off_by_default_and_bounded() {
        assert_eq!(Config::default().dataplane.udp_send_workers, 0);
        let three = load_env([("OPENSPEAK_DATAPLANE__UDP_SEND_WORKERS", "3")]);
        assert_eq!(three.dataplane.udp_send_workers, 3);
        super::super::testing::assert_rejected(&[("dataplane.udp_send_workers", "257")]);
        super::super::testing::assert_accepted(&[("dataplane.udp_send_workers", "256")]);
    }

    #[test]
    fn udp_workers_default_to_one_per_core_and_are_bounded() {
        let default = Config::default().dataplane;
        assert_eq!(default.udp_workers, 0);
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(default.udp_worker_count(), cores);
        let two = load_env([("OPENSPEAK_DATAPLANE__UDP_WORKERS", "2")]);
        assert_eq!(two.dataplane.udp_worker_count(), 2);
        super::super::testing::assert_rejected(&[("dataplane.udp_workers", "257")]);
        super::super::testing::assert_accepted(&[("dataplane.udp_workers", "256")]);
    }

    #[test]
    fn the_two_voice_ports_differ_unless_any() {
        let both = |quic: &str, udp: &str| {
            load(&opts().env_vars([
                ("OPENSPEAK_DATAPLANE__QUIC_PORT", quic.to_owned()),
                ("OPENSPEAK_DATAPLANE__UDP_PORT", udp.to_owned()),
            ]))
        };
        assert_eq!(Config::default().dataplane.udp_port, 50053);
        assert!(both("0", "0").is_ok(), "both any free port");
        assert!(both("6000", "6001").is_ok());
        let err = both("6000", "6000").unwrap_err();
        assert_eq!(err.key(), Some("dataplane.udp_port"), "{err}");
        assert!(err.to_string().contains("quic_port"), "{err}");
    }
}
