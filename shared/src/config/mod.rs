//! OpenSpeak's configuration: one struct for every plane, layered from
//! defaults in code, the YAML file, `OPENSPEAK_<SECTION>__<KEY>` environment
//! variables and command-line flags (strongest last).
//!
//! Durations are whole seconds ([`Seconds`]) except keys ending in `_ms`.
//!
//! [`Config::load`] does the layering with `figment`, then [`Config::validate`]
//! rejects values that parse but cannot work. Every failure is a
//! [`ConfigError`] naming the dotted key and the [`Origin`] that supplied it,
//! because an operator with three sources of configuration needs to know
//! which one to fix.
//!
//! Each section lives in its own file with the checks of its values, so a
//! new key is added in one place; what is read is in `options`, the layering
//! in `load`, the errors in `error`.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

mod auth;
mod channels;
mod check;
mod cluster;
mod dataplane;
mod error;
mod load;
mod logging;
mod metrics;
mod options;
mod server;
mod storage;
#[cfg(test)]
mod testing;
mod voice;

pub use auth::AuthConfig;
pub use channels::{ChannelsConfig, PresenceConfig};
pub use cluster::ClusterConfig;
pub use dataplane::DataplaneConfig;
pub use error::{ConfigError, InvalidValue, Origin};
pub use logging::{LogFormat, LoggingConfig};
pub use metrics::MetricsConfig;
pub use options::{
    DEFAULT_CONFIG_PATH, ENV_PREFIX, ENV_SEPARATOR, EnvSource, LoadOptions, Override,
};
pub use server::ServerConfig;
pub use storage::StorageConfig;
pub use voice::{AudioConfig, VoiceConfig};

/// A duration written as whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seconds(pub u64);

impl Seconds {
    /// The same span as a [`Duration`], for timers.
    pub fn get(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

/// The whole configuration. Every section denies unknown keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub channels: ChannelsConfig,
    pub presence: PresenceConfig,
    pub cluster: ClusterConfig,
    pub dataplane: DataplaneConfig,
    pub audio: AudioConfig,
    pub voice: VoiceConfig,
    pub logging: LoggingConfig,
    pub metrics: MetricsConfig,
}

impl Config {
    /// Checks values that parse but cannot work, and returns the first.
    /// [`load`](Self::load) calls it; call it yourself on a config built in
    /// code.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        // Section by section in the order of the file, so that of several
        // bad values the operator is told about the first one they would read.
        self.server.validate()?;
        self.auth.validate()?;
        self.storage.validate()?;
        self.channels.validate()?;
        self.presence.validate()?;
        self.cluster.validate()?;
        self.dataplane.validate()?;
        self.audio.validate()?;
        self.voice.validate()?;
        self.logging.validate()?;
        self.metrics.validate()
    }

    /// Where tokens are stored: `auth.tokens_file`, by default
    /// `<storage.data_dir>/tokens.json`.
    pub fn tokens_file(&self) -> PathBuf {
        self.auth
            .tokens_file
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("tokens.json"))
    }

    /// Where the generated first admin token is written:
    /// `auth.bootstrap_token_file`, by default `<storage.data_dir>/admin_token`.
    pub fn bootstrap_token_file(&self) -> PathBuf {
        self.auth
            .bootstrap_token_file
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("admin_token"))
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use figment::value::Value;

    use super::{
        testing::{flag, load, opts},
        *,
    };

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    /// The first bad key is reported in the order of the sections, and of
    /// the keys within each, whatever else is wrong.
    #[test]
    fn validation_reports_the_first_bad_key_in_order() {
        let bad: &[(&str, &str)] = &[
            ("server.host", "x"),
            ("server.tls_cert", ""),
            ("server.tls_key", ""),
            ("server.shutdown_grace", "0"),
            ("server.max_message_bytes", "0"),
            ("server.keepalive_interval", "0"),
            ("server.keepalive_timeout", "0"),
            ("auth.tokens_file", ""),
            ("auth.bootstrap_token_file", ""),
            ("auth.bootstrap_token", ""),
            ("auth.max_failures", "0"),
            ("auth.failure_window", "0"),
            ("auth.ban_duration", "0"),
            ("storage.data_dir", ""),
            ("channels.default", ""),
            ("presence.idle_timeout", "0"),
            ("presence.event_queue", "0"),
            ("cluster.listen", "x"),
            ("cluster.control_addr", "x"),
            ("cluster.secret", ""),
            ("dataplane.host", "x"),
            ("dataplane.public_host", ""),
            ("dataplane.id", ""),
            ("dataplane.tls_cert", ""),
            ("dataplane.tls_key", ""),
            ("dataplane.metrics_listen", "x"),
            ("audio.default_bitrate", "0"),
            ("audio.jitter_buffer_ms", "0"),
            ("voice.max_broadcast_lag_ms", "0"),
            ("voice.max_packet_age_ms", "0"),
            ("voice.max_packets_per_second", "0"),
            ("voice.max_bytes_per_second", "0"),
            ("voice.max_payload_bytes", "0"),
            ("logging.level", "x"),
            ("logging.output_format", "x"),
            ("logging.output_file", ""),
        ];
        for first in 0..bad.len() {
            let opts = bad[first..].iter().fold(opts(), |opts, (key, value)| {
                opts.with_override(flag(key, value))
            });
            let err = load(&opts).unwrap_err();
            assert_eq!(err.key(), Some(bad[first].0), "{err}");
        }
    }

    #[test]
    fn example_config_loads_as_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/config.yaml");
        let config = load(&opts().config_path(&path)).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn example_config_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/config.yaml");
        let text = fs::read_to_string(path).unwrap();
        let Ok(Value::Dict(_, sections)) = Value::serialize(Config::default()) else {
            panic!("config serializes to a dict");
        };
        for (section, keys) in sections {
            assert!(
                text.contains(&format!("\n{section}:\n")),
                "section {section}"
            );
            let Value::Dict(_, keys) = keys else {
                panic!("{section} is a section");
            };
            for key in keys.keys() {
                let shown = format!("\n  {key}: ");
                let commented = format!("\n  # {key}: ");
                assert!(
                    text.contains(&shown) || text.contains(&commented),
                    "{section}.{key} is not in the example"
                );
            }
        }
    }

    #[test]
    fn state_paths_resolve_under_data_dir() {
        let mut config = Config::default();
        config.storage.data_dir = PathBuf::from("/srv/os");
        assert_eq!(config.tokens_file(), PathBuf::from("/srv/os/tokens.json"));
        assert_eq!(
            config.bootstrap_token_file(),
            PathBuf::from("/srv/os/admin_token")
        );
        config.auth.tokens_file = Some(PathBuf::from("/etc/t.json"));
        config.auth.bootstrap_token_file = Some(PathBuf::from("/run/admin"));
        assert_eq!(config.tokens_file(), PathBuf::from("/etc/t.json"));
        assert_eq!(config.bootstrap_token_file(), PathBuf::from("/run/admin"));
    }
}
