//! OpenSpeak's configuration: one struct for every plane, layered from
//! defaults in code, the YAML file, `OPENSPEAK_<SECTION>__<KEY>` environment
//! variables and command-line flags (strongest last).
//!
//! Durations are whole seconds ([`Seconds`]) except keys ending in `_ms`.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// A duration written as whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seconds(pub u64);

impl Seconds {
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
    pub audio: AudioConfig,
    pub voice: VoiceConfig,
    pub logging: LoggingConfig,
}

/// The public gRPC listener of the control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    /// 0 = any free port (the bound port is logged).
    pub port: u16,
    /// PEM certificate chain; TLS is on when both this and `tls_key` are set.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// How long shutdown waits for session streams to close.
    pub shutdown_grace: Seconds,
    /// Largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// HTTP/2 keepalive ping interval, to find dead connections.
    pub keepalive_interval: Seconds,
    /// How long a keepalive ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Seconds,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 50051,
            tls_cert: None,
            tls_key: None,
            shutdown_grace: Seconds(30),
            max_message_bytes: 64 * 1024,
            keepalive_interval: Seconds(30),
            keepalive_timeout: Seconds(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Default: `<storage.data_dir>/tokens.json`.
    pub tokens_file: Option<PathBuf>,
    /// Default: `<storage.data_dir>/admin_token`.
    pub bootstrap_token_file: Option<PathBuf>,
    /// When set, the first admin token (neither logged nor written).
    pub bootstrap_token: Option<String>,
    /// Lifetime of a created token when the request names none; 0 = never.
    pub token_ttl: Seconds,
    /// Bad tokens from one address within `failure_window` before a ban.
    pub max_failures: u32,
    pub failure_window: Seconds,
    pub ban_duration: Seconds,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            tokens_file: None,
            bootstrap_token_file: None,
            bootstrap_token: None,
            token_ttl: Seconds(0),
            max_failures: 10,
            failure_window: Seconds(120),
            ban_duration: Seconds(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where state lives, relative to the working directory unless absolute.
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    /// Name of the default channel, where every session starts.
    pub default: String,
    /// Whether members (not only admins) may create channels.
    pub members_can_create: bool,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            default: "Lobby".into(),
            members_can_create: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// A session without activity for this long is marked idle.
    pub idle_timeout: Seconds,
    /// Events one session may have waiting before it is ended as too slow.
    pub event_queue: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Seconds(300),
            event_queue: 4096,
        }
    }
}

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
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50061".into(),
            control_addr: "http://127.0.0.1:50061".into(),
            secret: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// The Opus bitrate clients are told to use, in bits per second.
    pub default_bitrate: u32,
    /// Upper bound of the data plane's adaptive jitter buffer.
    pub jitter_buffer_ms: u32,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            default_bitrate: 48_000,
            jitter_buffer_ms: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceConfig {
    /// Most audio one slow listener may have queued before its oldest is dropped.
    pub max_broadcast_lag_ms: u32,
    /// Packets older than this (by sender timestamp) are dropped.
    pub max_packet_age_ms: u32,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        Self {
            max_broadcast_lag_ms: 200,
            max_packet_age_ms: 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive.
    pub level: String,
    /// `text` or `json`.
    pub output_format: String,
    /// Also write the log to this file (appended).
    pub output_file: Option<PathBuf>,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            output_format: "text".into(),
            output_file: None,
        }
    }
}
