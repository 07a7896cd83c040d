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

use std::{
    collections::HashMap,
    fmt, fs, io,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment, Metadata, Profile, Provider,
    error::{Actual, Kind},
    providers::{Format, Serialized, Yaml},
    value::{Dict, Map, Value},
};
use serde::{Deserialize, Serialize};

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
}

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

/// Tokens, the bootstrap admin token and the ban on repeated bad tokens.
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
    /// How far back failures count towards `max_failures`.
    pub failure_window: Seconds,
    /// How long a banned address is refused with `RATE_LIMITED`.
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

/// Where the control plane keeps state across restarts.
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

/// The channel tree's fixed parts and who may grow it.
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

/// Sessions' presence and the event stream each one receives.
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
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            quic_port: 50052,
            public_host: None,
            id: None,
            capacity: 0,
            tls_cert: None,
            tls_key: None,
            metrics_listen: "127.0.0.1:9101".into(),
        }
    }
}

impl DataplaneConfig {
    /// The address to serve metrics on: `None` when `metrics_listen` is
    /// empty (metrics off), an error when it is not an IP address and port.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, std::net::AddrParseError> {
        if self.metrics_listen.is_empty() {
            return Ok(None);
        }
        self.metrics_listen.parse().map(Some)
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
}

/// What clients are told about encoding and buffering audio.
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

/// How the data plane bounds the latency of forwarded voice.
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

/// What the process logs and where; see [`crate::telemetry::init`].
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

/// How log lines are written, the parsed form of `logging.output_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// `text` or `json`; anything else is `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

impl LoggingConfig {
    /// The parsed `output_format`; `None` only for a config that skipped
    /// [`Config::validate`].
    pub fn format(&self) -> Option<LogFormat> {
        LogFormat::from_name(&self.output_format)
    }
}

/// Where the YAML file is looked for when no `--config` is given. Relative
/// to the working directory, like `storage.data_dir`.
pub const DEFAULT_CONFIG_PATH: &str = "config/config.yaml";

/// Prefix of the environment variables that set keys. The whole prefix
/// belongs to configuration: an `OPENSPEAK_*` variable that names no key is
/// an error, so that a typo cannot be silently ignored.
pub const ENV_PREFIX: &str = "OPENSPEAK_";

/// Separates section and key in a variable name (`OPENSPEAK_SERVER__PORT`);
/// double because keys themselves contain `_`.
pub const ENV_SEPARATOR: &str = "__";

/// What [`Config::load`] reads besides the defaults in code.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The YAML file. `None` means [`DEFAULT_CONFIG_PATH`], which may be
    /// missing; a path given here must exist.
    pub config_path: Option<PathBuf>,
    /// Where `OPENSPEAK_*` variables come from.
    pub env: EnvSource,
    /// Command-line overrides, applied in order (a later one wins).
    pub overrides: Vec<Override>,
}

impl LoadOptions {
    /// Reads the file at `path`, which must exist.
    pub fn config_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_path = Some(path.into());
        self
    }

    /// Takes environment variables from `vars` instead of the process, so
    /// that tests need not touch the process environment.
    pub fn env_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = EnvSource::Vars(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Adds a command-line override, stronger than every earlier source.
    pub fn with_override(mut self, over: Override) -> Self {
        self.overrides.push(over);
        self
    }
}

/// The source of `OPENSPEAK_*` variables.
#[derive(Debug, Clone, Default)]
pub enum EnvSource {
    /// The process environment, read once by [`Config::load`].
    #[default]
    Process,
    /// These `(name, value)` pairs; names without [`ENV_PREFIX`] are ignored.
    Vars(Vec<(String, String)>),
}

/// One key set on the command line: `--set server.port=50051`, or a
/// convenience flag such as `--port 50051`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Dotted key, e.g. `server.port`.
    pub key: String,
    /// The value as typed; typed keys parse it (`50051`, `true`).
    pub value: String,
    /// The flag that gave it, e.g. `--port`, named in errors.
    pub flag: String,
}

impl Override {
    /// An override of `key` by `flag`.
    pub fn new(flag: impl Into<String>, key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            flag: flag.into(),
        }
    }

    /// Parses `KEY=VALUE` as `--set` takes it. The value may be empty and
    /// may contain `=`; the key must be dotted words.
    pub fn parse(flag: &str, arg: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::BadOverride {
            flag: flag.to_owned(),
            arg: arg.to_owned(),
        };
        let (key, value) = arg.split_once('=').ok_or_else(bad)?;
        let key = key.trim();
        if !is_dotted_key(key) {
            return Err(bad());
        }
        Ok(Self::new(flag, key, value))
    }
}

/// Whether `key` is non-empty words joined by single dots.
fn is_dotted_key(key: &str) -> bool {
    key.split('.')
        .all(|part| !part.is_empty() && !part.contains(char::is_whitespace))
}

/// Where a configuration value came from; errors name it so the operator
/// knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The defaults in code.
    Default,
    /// The YAML file at this path (as given).
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the defaults"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(flag) => write!(f, "command-line flag {flag}"),
        }
    }
}

/// Why the configuration could not be loaded. Start-up stops on any of them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config PATH` names a file that does not exist.
    #[error("config file {} not found", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The path as given.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file is not YAML, or not a map of sections.
    #[error("cannot parse {}: {message}", path.display())]
    Syntax {
        /// The path as given.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An `OPENSPEAK_*` variable whose value is not UTF-8.
    #[error("environment variable {name} is not valid UTF-8")]
    NotUnicode {
        /// The variable's name.
        name: String,
    },
    /// A command-line override that is not `KEY=VALUE`.
    #[error("command-line flag {flag} expects KEY=VALUE such as server.port=50051, got `{arg}`")]
    BadOverride {
        /// The flag, e.g. `--set`.
        flag: String,
        /// What followed it.
        arg: String,
    },
    /// A key that no section has (a typo, usually).
    #[error("unknown key `{key}` in {origin}")]
    UnknownKey {
        /// Dotted key, e.g. `server.prot`.
        key: String,
        /// Who set it.
        origin: Origin,
    },
    /// A value of the wrong kind, e.g. text for a number.
    #[error("wrong type for `{key}` in {origin}: expected {expected}, found {found}")]
    WrongType {
        /// Dotted key.
        key: String,
        /// Who set it.
        origin: Origin,
        /// What the key takes.
        expected: String,
        /// What it got.
        found: String,
    },
    /// A value of the right kind that cannot work, e.g. a port above 65535
    /// or an unknown log format.
    #[error("invalid value for `{key}` in {origin}: {reason}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// Who set it.
        origin: Origin,
        /// What is wrong, for the operator.
        reason: String,
    },
    /// `OPENSPEAK_SERVER_PORT` for `OPENSPEAK_SERVER__PORT`.
    #[error(
        "environment variable {name} looks like a `{section}` key, but section and key \
         are separated by two underscores: OPENSPEAK_<SECTION>__<KEY>"
    )]
    MissingSeparator { name: String, section: String },
    /// Anything else `figment` reports; its message names key and source.
    #[error("{0}")]
    Other(String),
}

impl ConfigError {
    /// The dotted key at fault, when one is.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The source of the value at fault, when there is one.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            ConfigError::UnknownKey { origin, .. }
            | ConfigError::WrongType { origin, .. }
            | ConfigError::Invalid { origin, .. } => Some(origin),
            _ => None,
        }
    }
}

/// A value that parses but cannot work, found by [`Config::validate`].
/// [`Config::load`] turns it into [`ConfigError::Invalid`] with the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for `{key}`: {reason}")]
pub struct InvalidValue {
    /// Dotted key.
    pub key: &'static str,
    /// What is wrong, for the operator.
    pub reason: String,
}

/// Longest `channels.default`, as for every channel name (`CONTRACT.md`).
const MAX_CHANNEL_NAME: usize = 64;
/// Opus's bitrate range, in bits per second.
const OPUS_BITRATE: std::ops::RangeInclusive<u32> = 6_000..=510_000;
/// Voice latency bounds beyond this are no longer conversation.
const MAX_VOICE_MS: u32 = 10_000;

impl Config {
    /// Loads the configuration: defaults in code, then the YAML file, then
    /// `OPENSPEAK_<SECTION>__<KEY>` variables, then `opts.overrides`, each
    /// stronger than the last; then [`validate`](Self::validate)s it.
    ///
    /// `channels.default` comes back trimmed, as channel names are stored.
    pub fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
        Self::load_with_default_path(opts, Path::new(DEFAULT_CONFIG_PATH))
    }

    /// [`load`](Self::load) with another default file path, so that tests
    /// do not depend on the working directory.
    pub(crate) fn load_with_default_path(
        opts: &LoadOptions,
        default_path: &Path,
    ) -> Result<Config, ConfigError> {
        let mut layers = Layers::new();
        layers.push(Origin::Default, defaults_dict()?);

        let (path, explicit) = match &opts.config_path {
            Some(path) => (path.as_path(), true),
            None => (default_path, false),
        };
        match fs::read_to_string(path) {
            Ok(text) => layers.push(Origin::File(path.to_owned()), parse_yaml(path, &text)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ConfigError::NotFound {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        }

        let sections = section_names();
        for (name, value) in env_vars(&opts.env)? {
            let rest = &name[ENV_PREFIX.len()..];
            if !rest.contains(ENV_SEPARATOR) {
                // Not of the `OPENSPEAK_<SECTION>__<KEY>` form, so not ours:
                // tools (the load generator's `OPENSPEAK_TOKEN`) use such
                // names. One that starts with a section name is a key with
                // an underscore missing, though, and must not be ignored.
                let lower = rest.to_lowercase();
                if let Some(section) = sections.iter().find(|s| {
                    lower
                        .strip_prefix(s.as_str())
                        .is_some_and(|r| r.starts_with('_'))
                }) {
                    return Err(ConfigError::MissingSeparator {
                        name: name.clone(),
                        section: section.clone(),
                    });
                }
                continue;
            }
            let key: Vec<String> = rest.split(ENV_SEPARATOR).map(str::to_lowercase).collect();
            let origin = Origin::Env(name);
            if key.iter().any(String::is_empty) {
                return Err(ConfigError::UnknownKey {
                    key: key.join("."),
                    origin,
                });
            }
            layers.push(origin, nested(&key, value));
        }

        for over in &opts.overrides {
            if !is_dotted_key(&over.key) {
                return Err(ConfigError::BadOverride {
                    flag: over.flag.clone(),
                    arg: format!("{}={}", over.key, over.value),
                });
            }
            let key: Vec<String> = over.key.split('.').map(str::to_owned).collect();
            layers.push(
                Origin::Flag(over.flag.clone()),
                nested(&key, over.value.clone()),
            );
        }

        // Lossy: environment and flag values are strings, and typed keys
        // parse them (`"50051"` for a port), while string keys keep them as
        // typed, so `OPENSPEAK_AUTH__BOOTSTRAP_TOKEN=0123` stays `0123`.
        let mut config: Config = layers
            .figment
            .extract_lossy()
            .map_err(|e| layers.error(e))?;
        config.validate().map_err(|e| ConfigError::Invalid {
            key: e.key.to_owned(),
            origin: layers.origin_of(e.key),
            reason: e.reason,
        })?;
        config.channels.default = config.channels.default.trim().to_owned();
        Ok(config)
    }

    /// Checks values that parse but cannot work, and returns the first.
    /// [`load`](Self::load) calls it; call it yourself on a config built in
    /// code.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let server = &self.server;
        check(server.host.parse::<IpAddr>().is_ok(), "server.host", || {
            format!(
                "`{}` is not an IP address (0.0.0.0 listens on every interface)",
                server.host
            )
        })?;
        check_tls_pair(
            ("server.tls_cert", server.tls_cert.as_deref()),
            ("server.tls_key", server.tls_key.as_deref()),
        )?;
        check_seconds("server.shutdown_grace", server.shutdown_grace)?;
        check(
            server.max_message_bytes >= 1024,
            "server.max_message_bytes",
            || {
                format!(
                    "must be at least 1024 bytes, got {}",
                    server.max_message_bytes
                )
            },
        )?;
        check_seconds("server.keepalive_interval", server.keepalive_interval)?;
        check_seconds("server.keepalive_timeout", server.keepalive_timeout)?;

        let auth = &self.auth;
        check_path("auth.tokens_file", auth.tokens_file.as_deref())?;
        check_path(
            "auth.bootstrap_token_file",
            auth.bootstrap_token_file.as_deref(),
        )?;
        check_secret("auth.bootstrap_token", auth.bootstrap_token.as_deref())?;
        check(auth.max_failures >= 1, "auth.max_failures", || {
            "must be at least 1".into()
        })?;
        check_seconds("auth.failure_window", auth.failure_window)?;
        check_seconds("auth.ban_duration", auth.ban_duration)?;

        check_path("storage.data_dir", Some(&self.storage.data_dir))?;

        let name_len = self.channels.default.trim().chars().count();
        check(
            (1..=MAX_CHANNEL_NAME).contains(&name_len),
            "channels.default",
            || {
                format!(
                    "a channel name must be 1 to {MAX_CHANNEL_NAME} characters after trimming, got {name_len}"
                )
            },
        )?;

        check_seconds("presence.idle_timeout", self.presence.idle_timeout)?;
        check(
            self.presence.event_queue >= 16,
            "presence.event_queue",
            || format!("must be at least 16, got {}", self.presence.event_queue),
        )?;

        let cluster = &self.cluster;
        check(
            cluster.listen.parse::<SocketAddr>().is_ok(),
            "cluster.listen",
            || {
                format!(
                    "`{}` is not an IP address and port such as 127.0.0.1:50061",
                    cluster.listen
                )
            },
        )?;
        let remote = cluster
            .control_addr
            .strip_prefix("http://")
            .or_else(|| cluster.control_addr.strip_prefix("https://"));
        check(
            remote.is_some_and(|rest| !rest.is_empty()),
            "cluster.control_addr",
            || {
                format!(
                    "`{}` is not an http:// or https:// address such as http://127.0.0.1:50061",
                    cluster.control_addr
                )
            },
        )?;
        check_secret("cluster.secret", cluster.secret.as_deref())?;

        let dataplane = &self.dataplane;
        check(
            dataplane.host.parse::<IpAddr>().is_ok(),
            "dataplane.host",
            || {
                format!(
                    "`{}` is not an IP address (0.0.0.0 listens on every interface)",
                    dataplane.host
                )
            },
        )?;
        check(
            dataplane
                .public_host
                .as_deref()
                .is_none_or(|h| !h.is_empty() && !h.contains([' ', '/'])),
            "dataplane.public_host",
            || {
                "must be a host name or IP address clients can reach (leave it out for the bind host)".into()
            },
        )?;
        check_secret("dataplane.id", dataplane.id.as_deref())?;
        check_tls_pair(
            ("dataplane.tls_cert", dataplane.tls_cert.as_deref()),
            ("dataplane.tls_key", dataplane.tls_key.as_deref()),
        )?;
        check(
            dataplane.metrics_addr().is_ok(),
            "dataplane.metrics_listen",
            || {
                format!(
                    "`{}` is not an IP address and port such as 127.0.0.1:9101 (\"\" serves no metrics)",
                    dataplane.metrics_listen
                )
            },
        )?;

        let bitrate = self.audio.default_bitrate;
        check(
            OPUS_BITRATE.contains(&bitrate),
            "audio.default_bitrate",
            || {
                format!(
                    "must be from {} to {} bits per second (what Opus can do), got {bitrate}",
                    OPUS_BITRATE.start(),
                    OPUS_BITRATE.end()
                )
            },
        )?;
        check_ms("audio.jitter_buffer_ms", self.audio.jitter_buffer_ms)?;
        check_ms(
            "voice.max_broadcast_lag_ms",
            self.voice.max_broadcast_lag_ms,
        )?;
        check_ms("voice.max_packet_age_ms", self.voice.max_packet_age_ms)?;

        let logging = &self.logging;
        check(
            crate::telemetry::env_filter(&logging.level).is_some(),
            "logging.level",
            || {
                format!(
                    "`{}` is not a level (error, warn, info, debug, trace, off) or a filter such as `info,openspeak_control=debug`",
                    logging.level
                )
            },
        )?;
        check(logging.format().is_some(), "logging.output_format", || {
            format!("`{}` is neither `text` nor `json`", logging.output_format)
        })?;
        check_path("logging.output_file", logging.output_file.as_deref())?;
        Ok(())
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

fn invalid(key: &'static str, reason: String) -> InvalidValue {
    InvalidValue { key, reason }
}

/// `Err` with `reason()` unless `ok`; the reason is built only when needed.
fn check(ok: bool, key: &'static str, reason: impl FnOnce() -> String) -> Result<(), InvalidValue> {
    if ok {
        Ok(())
    } else {
        Err(invalid(key, reason()))
    }
}

/// Zero seconds would mean "never wait" or "never expire", which none of
/// these keys can take.
fn check_seconds(key: &'static str, value: Seconds) -> Result<(), InvalidValue> {
    check(value.0 > 0, key, || "must be at least 1 second".into())
}

fn check_ms(key: &'static str, value: u32) -> Result<(), InvalidValue> {
    check((1..=MAX_VOICE_MS).contains(&value), key, || {
        format!("must be from 1 to {MAX_VOICE_MS} milliseconds, got {value}")
    })
}

/// A certificate and its key come together or not at all, and neither may
/// be an empty path.
fn check_tls_pair(
    (cert_key, cert): (&'static str, Option<&Path>),
    (key_key, key): (&'static str, Option<&Path>),
) -> Result<(), InvalidValue> {
    match (cert, key) {
        (Some(_), None) => Err(invalid(
            cert_key,
            format!("a certificate needs `{key_key}` too, or neither"),
        )),
        (None, Some(_)) => Err(invalid(
            key_key,
            format!("a key needs `{cert_key}` too, or neither"),
        )),
        _ => {
            check_path(cert_key, cert)?;
            check_path(key_key, key)
        }
    }
}

/// An empty path would resolve to the working directory itself.
fn check_path(key: &'static str, path: Option<&Path>) -> Result<(), InvalidValue> {
    check(path.is_none_or(|p| !p.as_os_str().is_empty()), key, || {
        "must not be empty (leave the key out instead)".into()
    })
}

/// Secrets travel in gRPC metadata (an HTTP/2 header, after `Bearer `),
/// which only carries visible ASCII.
fn check_secret(key: &'static str, secret: Option<&str>) -> Result<(), InvalidValue> {
    check(
        secret.is_none_or(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())),
        key,
        || "must be visible ASCII characters without spaces, as it travels in a header".into(),
    )
}

/// The defaults in code as a figment dict, so they are one layer like the
/// others.
fn defaults_dict() -> Result<Dict, ConfigError> {
    Serialized::defaults(Config::default())
        .data()
        .map(|mut profiles| profiles.remove(&Profile::Default).unwrap_or_default())
        .map_err(|e| ConfigError::Other(e.to_string()))
}

/// Parses the YAML file into a dict of sections.
fn parse_yaml(path: &Path, text: &str) -> Result<Dict, ConfigError> {
    // A file of only comments is an empty configuration, not an error.
    let has_content = text.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with('#') && line != "---"
    });
    if !has_content {
        return Ok(Dict::new());
    }
    let mut dict = Yaml::string(text)
        .data()
        .map(|mut profiles| profiles.remove(&Profile::Default).unwrap_or_default())
        .map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.kind.to_string(),
        })?;
    // `server:` with every key commented out is an empty section.
    for value in dict.values_mut() {
        if matches!(value, Value::Empty(..)) {
            *value = Value::from(Dict::new());
        }
    }
    Ok(dict)
}

/// The top-level sections of [`Config`], lowercase.
fn section_names() -> Vec<String> {
    Figment::from(Serialized::defaults(Config::default()))
        .data()
        .ok()
        .and_then(|mut data| data.remove(&Profile::Default))
        .map(|dict| dict.into_keys().collect())
        .unwrap_or_default()
}

/// The `OPENSPEAK_*` variables, sorted by name so the result does not
/// depend on the order the OS lists them in.
fn env_vars(source: &EnvSource) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = match source {
        EnvSource::Vars(vars) => vars
            .iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .cloned()
            .collect(),
        EnvSource::Process => {
            let mut vars = Vec::new();
            // `vars_os`, not `vars`: a stranger's non-UTF-8 variable must
            // not stop start-up (`vars` panics on it).
            for (name, value) in std::env::vars_os() {
                let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
                    continue;
                };
                let value = value.into_string().map_err(|_| ConfigError::NotUnicode {
                    name: name.to_owned(),
                })?;
                vars.push((name.to_owned(), value));
            }
            vars
        }
    };
    vars.sort();
    Ok(vars)
}

/// `{a: {b: value}}` for the key path `[a, b]`.
fn nested(key: &[String], value: String) -> Dict {
    let mut value = Value::from(value);
    for part in key.iter().skip(1).rev() {
        let mut dict = Dict::new();
        dict.insert(part.clone(), value);
        value = Value::from(dict);
    }
    let mut dict = Dict::new();
    if let Some(first) = key.first() {
        dict.insert(first.clone(), value);
    }
    dict
}

/// The figment being built, and which [`Origin`] each of its providers is,
/// so that errors can name the source by the metadata figment keeps.
struct Layers {
    figment: Figment,
    origins: HashMap<String, Origin>,
}

impl Layers {
    fn new() -> Self {
        Self {
            figment: Figment::new(),
            origins: HashMap::new(),
        }
    }

    /// Merges `data` over everything pushed before.
    fn push(&mut self, origin: Origin, data: Dict) {
        let name = origin.to_string();
        self.origins.insert(name.clone(), origin);
        let figment = std::mem::take(&mut self.figment);
        self.figment = figment.merge(Layer { name, data });
    }

    /// The source of the value now at `key`.
    fn origin_of(&self, key: &str) -> Origin {
        self.figment
            .find_metadata(key)
            .and_then(|meta| self.origins.get(meta.name.as_ref()))
            .cloned()
            .unwrap_or(Origin::Default)
    }

    /// Names key and source of an extraction error.
    fn error(&self, e: figment::Error) -> ConfigError {
        let origin = e
            .metadata
            .as_ref()
            .and_then(|meta| self.origins.get(meta.name.as_ref()))
            .cloned();
        let Some(origin) = origin else {
            return ConfigError::Other(e.to_string());
        };
        let key = e.path.join(".");
        match e.kind {
            Kind::UnknownField(..) => ConfigError::UnknownKey { key, origin },
            Kind::InvalidType(found, expected) => {
                // YAML reads `secret: 123456` as a number; say how to fix it.
                let scalar = matches!(
                    found,
                    Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) | Actual::Bool(_)
                );
                let hint = if scalar && matches!(expected.as_str(), "a string" | "path string") {
                    " (quote it to make it text)"
                } else {
                    ""
                };
                ConfigError::WrongType {
                    key,
                    origin,
                    expected: describe_expected(&expected),
                    found: format!("{found}{hint}"),
                }
            }
            Kind::InvalidValue(found, expected) => ConfigError::Invalid {
                key,
                origin,
                reason: format!("expected {}, found {found}", describe_expected(&expected)),
            },
            Kind::USizeOutOfRange(_) | Kind::ISizeOutOfRange(_) => ConfigError::Invalid {
                key,
                origin,
                reason: "the number is too large".into(),
            },
            kind => ConfigError::Invalid {
                key,
                origin,
                reason: kind.to_string(),
            },
        }
    }
}

/// Serde's names for what a key takes, in an operator's words.
fn describe_expected(expected: &str) -> String {
    match expected {
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "usize" => "a whole number".into(),
        "a boolean" => "true or false".into(),
        "path string" => "a path".into(),
        s if s.starts_with("struct ") => "a section of keys".into(),
        other => other.into(),
    }
}

/// One source as a figment provider, named by its [`Origin`].
struct Layer {
    name: String,
    data: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options that read no process environment.
    fn opts() -> LoadOptions {
        LoadOptions::default().env_vars(Vec::<(String, String)>::new())
    }

    /// A temp dir holding `config.yaml` with `yaml`, and options naming it.
    fn with_file(yaml: &str) -> (tempfile::TempDir, PathBuf, LoadOptions) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        fs::write(&path, yaml).unwrap();
        let opts = opts().config_path(&path);
        (dir, path, opts)
    }

    fn flag(key: &str, value: &str) -> Override {
        Override::new("--set", key, value)
    }

    fn env(name: &str) -> Origin {
        Origin::Env(name.into())
    }

    /// Loads with no file at the default path.
    fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        Config::load_with_default_path(opts, &dir.path().join("absent.yaml"))
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn missing_default_file_means_defaults() {
        assert_eq!(load(&opts()).unwrap(), Config::default());
    }

    #[test]
    fn missing_explicit_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.yaml");
        let err = load(&opts().config_path(&path)).unwrap_err();
        assert!(matches!(&err, ConfigError::NotFound { path: p } if *p == path));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn the_default_path_is_read_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        fs::write(&path, "server:\n  port: 4000\n").unwrap();
        let config = Config::load_with_default_path(&opts(), &path).unwrap();
        assert_eq!(config.server.port, 4000);
    }

    #[test]
    fn precedence_default_file_env_flag() {
        let (_dir, _path, opts) = with_file(
            "server:\n  port: 1111\n  host: 127.0.0.1\n  shutdown_grace: 5\nauth:\n  max_failures: 3\n",
        );
        let opts = opts
            .env_vars([
                ("OPENSPEAK_SERVER__PORT", "2222"),
                ("OPENSPEAK_SERVER__SHUTDOWN_GRACE", "6"),
                ("OPENSPEAK_AUTH__MAX_FAILURES", "4"),
            ])
            .with_override(flag("server.port", "3333"));
        let config = load(&opts).unwrap();
        assert_eq!(config.server.port, 3333, "flag over env");
        assert_eq!(config.server.shutdown_grace, Seconds(6), "env over file");
        assert_eq!(config.auth.max_failures, 4, "env over file");
        assert_eq!(config.server.host, "127.0.0.1", "file over default");
        assert_eq!(config.server.keepalive_timeout, Seconds(10), "default");
        assert_eq!(config.channels.default, "Lobby", "default");
    }

    #[test]
    fn env_names_without_a_section_separator_are_left_to_tools() {
        let opts = opts().env_vars([("OPENSPEAK_TOKEN", "ost_abc"), ("OPENSPEAK_X", "1")]);
        assert_eq!(load(&opts).unwrap(), Config::default());
    }

    #[test]
    fn a_key_with_one_underscore_too_few_is_an_error() {
        let opts = opts().env_vars([("OPENSPEAK_SERVER_PORT", "1")]);
        let err = load(&opts).unwrap_err();
        assert!(
            matches!(&err, ConfigError::MissingSeparator { section, .. } if section == "server"),
            "{err}"
        );
        assert!(err.to_string().contains("OPENSPEAK_SERVER_PORT"), "{err}");
    }

    #[test]
    fn later_flags_win() {
        let opts = opts()
            .with_override(flag("server.port", "1"))
            .with_override(Override::new("--port", "server.port", "2"));
        assert_eq!(load(&opts).unwrap().server.port, 2);
    }

    #[test]
    fn env_names_use_double_underscore_and_any_case_keys() {
        let opts = opts().env_vars([
            ("OPENSPEAK_AUTH__BOOTSTRAP_TOKEN", "s3cret"),
            ("OPENSPEAK_STORAGE__DATA_DIR", "/var/lib/openspeak"),
            ("OPENSPEAK_CHANNELS__MEMBERS_CAN_CREATE", "true"),
            ("OPENSPEAK_LOGGING__LEVEL", "info,openspeak_control=debug"),
            ("OPENSPEAK_CLUSTER__LISTEN", "[::1]:0"),
            ("OTHER_SERVER__PORT", "not ours"),
            ("PATH", "/usr/bin"),
        ]);
        let config = load(&opts).unwrap();
        assert_eq!(config.auth.bootstrap_token.as_deref(), Some("s3cret"));
        assert_eq!(config.storage.data_dir, PathBuf::from("/var/lib/openspeak"));
        assert!(config.channels.members_can_create);
        assert_eq!(config.logging.level, "info,openspeak_control=debug");
        assert_eq!(config.cluster.listen, "[::1]:0");
    }

    #[test]
    fn numeric_looking_env_values_stay_strings() {
        let opts = opts().env_vars([
            ("OPENSPEAK_AUTH__BOOTSTRAP_TOKEN", "0123"),
            ("OPENSPEAK_CLUSTER__SECRET", "123"),
            ("OPENSPEAK_CHANNELS__DEFAULT", "true"),
            ("OPENSPEAK_STORAGE__DATA_DIR", "42"),
        ]);
        let config = load(&opts).unwrap();
        assert_eq!(config.auth.bootstrap_token.as_deref(), Some("0123"));
        assert_eq!(config.cluster.secret.as_deref(), Some("123"));
        assert_eq!(config.channels.default, "true");
        assert_eq!(config.storage.data_dir, PathBuf::from("42"));
        let opts = LoadOptions::default()
            .env_vars([("OPENSPEAK_AUTH__BOOTSTRAP_TOKEN", "12345")])
            .with_override(flag("cluster.secret", "1e5"));
        let config = load(&opts).unwrap();
        assert_eq!(config.auth.bootstrap_token.as_deref(), Some("12345"));
        assert_eq!(config.cluster.secret.as_deref(), Some("1e5"));
    }

    #[test]
    fn port_zero_is_any_free_port() {
        let opts = opts().env_vars([("OPENSPEAK_SERVER__PORT", "0")]);
        assert_eq!(load(&opts).unwrap().server.port, 0);
        let (_dir, _path, opts) =
            with_file("server:\n  port: 0\ncluster:\n  listen: 127.0.0.1:0\n");
        let config = load(&opts).unwrap();
        assert_eq!(config.server.port, 0);
        assert_eq!(config.cluster.listen, "127.0.0.1:0");
    }

    #[test]
    fn unknown_key_in_file_names_key_and_file() {
        let (_dir, path, opts) = with_file("server:\n  prot: 1\n");
        let err = load(&opts).unwrap_err();
        assert_eq!(err.key(), Some("server.prot"));
        assert_eq!(err.origin(), Some(&Origin::File(path.clone())));
        assert_eq!(
            err.to_string(),
            format!("unknown key `server.prot` in {}", path.display())
        );
        let (_dir, path, opts) = with_file("sever:\n  port: 1\n");
        let err = load(&opts).unwrap_err();
        assert_eq!(err.key(), Some("sever"));
        assert_eq!(err.origin(), Some(&Origin::File(path)));
    }

    #[test]
    fn unknown_env_key_names_the_variable() {
        for (name, key) in [
            ("OPENSPEAK_SERVER__PROT", "server.prot"),
            ("OPENSPEAK_SERVER__", "server."),
            ("OPENSPEAK_SERVER__PORT__X", "server.port.x"),
        ] {
            let err = load(&opts().env_vars([(name, "1")])).unwrap_err();
            assert_eq!(err.origin(), Some(&env(name)), "{name}: {err}");
            let text = err.to_string();
            assert!(text.contains(name), "{text}");
            assert!(text.contains(key) || name.ends_with("__X"), "{text}");
        }
        let err = load(&opts().env_vars([("OPENSPEAK_SERVER__PROT", "1")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown key `server.prot` in environment variable OPENSPEAK_SERVER__PROT"
        );
    }

    #[test]
    fn unknown_flag_key_names_the_flag() {
        let err = load(&opts().with_override(flag("server.prot", "1"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown key `server.prot` in command-line flag --set"
        );
        let err = load(&opts().with_override(flag("server..port", "1"))).unwrap_err();
        assert!(matches!(err, ConfigError::BadOverride { .. }), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_source() {
        let (_dir, path, opts_file) = with_file("server:\n  port: fifty\n");
        let cases = [
            (opts_file, "server.port", Origin::File(path)),
            (
                opts().env_vars([("OPENSPEAK_PRESENCE__IDLE_TIMEOUT", "5m")]),
                "presence.idle_timeout",
                env("OPENSPEAK_PRESENCE__IDLE_TIMEOUT"),
            ),
            (
                opts().env_vars([("OPENSPEAK_CHANNELS__MEMBERS_CAN_CREATE", "maybe")]),
                "channels.members_can_create",
                env("OPENSPEAK_CHANNELS__MEMBERS_CAN_CREATE"),
            ),
            (
                opts().with_override(Override::new("--port", "server.port", "http")),
                "server.port",
                Origin::Flag("--port".into()),
            ),
        ];
        for (opts, key, origin) in cases {
            let err = load(&opts).unwrap_err();
            assert!(matches!(err, ConfigError::WrongType { .. }), "{err}");
            assert_eq!(err.key(), Some(key), "{err}");
            assert_eq!(err.origin(), Some(&origin), "{err}");
            assert!(err.to_string().contains(&origin.to_string()), "{err}");
        }
        let err = load(&opts().env_vars([("OPENSPEAK_SERVER__PORT", "fifty")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "wrong type for `server.port` in environment variable OPENSPEAK_SERVER__PORT: \
             expected a whole number from 0 to 65535, found string \"fifty\""
        );
    }

    #[test]
    fn wrong_type_for_a_section_or_string() {
        let (_dir, path, opts) = with_file("server: 5\n");
        let err = load(&opts).unwrap_err();
        assert_eq!(err.key(), Some("server"));
        assert_eq!(err.origin(), Some(&Origin::File(path)));
        let (_dir, path, opts) = with_file("auth:\n  bootstrap_token: 12345\n");
        let err = load(&opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "wrong type for `auth.bootstrap_token` in {}: expected a string, \
                 found unsigned int `12345` (quote it to make it text)",
                path.display()
            )
        );
        let (_dir, _path, opts) = with_file("logging:\n  level: [info]\n");
        let err = load(&opts).unwrap_err();
        assert_eq!(err.key(), Some("logging.level"), "{err}");
    }

    #[test]
    fn out_of_range_numbers_name_key_and_source() {
        for value in ["70000", "-1", "1.5"] {
            let opts = opts().env_vars([("OPENSPEAK_SERVER__PORT", value)]);
            let err = load(&opts).unwrap_err();
            assert_eq!(err.key(), Some("server.port"), "{value}: {err}");
            assert_eq!(err.origin(), Some(&env("OPENSPEAK_SERVER__PORT")), "{err}");
        }
    }

    #[test]
    fn impossible_values_are_rejected_naming_the_key() {
        let cases: &[(&str, &str)] = &[
            ("logging.level", "verbose"),
            ("logging.level", ""),
            ("logging.level", "info,h2=loud"),
            ("logging.output_format", "xml"),
            ("logging.output_file", ""),
            ("server.host", "localhost"),
            ("server.host", "0.0.0.0:50051"),
            ("cluster.listen", "127.0.0.1"),
            ("cluster.listen", "localhost:50061"),
            ("cluster.control_addr", "127.0.0.1:50061"),
            ("cluster.control_addr", "http://"),
            ("cluster.secret", ""),
            ("cluster.secret", "two words"),
            ("auth.bootstrap_token", "naïve"),
            ("server.tls_cert", "cert.pem"),
            ("server.tls_key", "key.pem"),
            ("server.shutdown_grace", "0"),
            ("server.keepalive_interval", "0"),
            ("server.keepalive_timeout", "0"),
            ("server.max_message_bytes", "1023"),
            ("auth.max_failures", "0"),
            ("auth.failure_window", "0"),
            ("auth.ban_duration", "0"),
            ("auth.tokens_file", ""),
            ("auth.bootstrap_token_file", ""),
            ("storage.data_dir", ""),
            ("presence.idle_timeout", "0"),
            ("presence.event_queue", "15"),
            ("channels.default", ""),
            ("channels.default", "   "),
            ("channels.default", &"x".repeat(65)),
            ("audio.default_bitrate", "0"),
            ("audio.default_bitrate", "1000000"),
            ("audio.jitter_buffer_ms", "0"),
            ("audio.jitter_buffer_ms", "60000"),
            ("voice.max_broadcast_lag_ms", "0"),
            ("voice.max_packet_age_ms", "0"),
        ];
        for (key, value) in cases {
            let err = load(&opts().with_override(flag(key, value))).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { .. }),
                "{key}={value}: {err}"
            );
            assert_eq!(err.key(), Some(*key), "{key}={value}: {err}");
            assert_eq!(err.origin(), Some(&Origin::Flag("--set".into())), "{err}");
            let text = err.to_string();
            assert!(
                text.starts_with(&format!(
                    "invalid value for `{key}` in command-line flag --set: "
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn boundary_values_are_accepted() {
        let cases: &[(&str, &str)] = &[
            ("server.max_message_bytes", "1024"),
            ("auth.max_failures", "1"),
            ("presence.event_queue", "16"),
            ("channels.default", &"é".repeat(64)),
            ("server.host", "::"),
            ("cluster.listen", "[::]:50061"),
            ("cluster.control_addr", "https://control.example:50061"),
            ("logging.level", "TRACE"),
            (
                "logging.level",
                "warn,tonic=info,openspeak_control[session]=debug",
            ),
            ("auth.token_ttl", "0"),
            ("audio.default_bitrate", "6000"),
            ("audio.jitter_buffer_ms", "10000"),
        ];
        for (key, value) in cases {
            let result = load(&opts().with_override(flag(key, value)));
            assert!(result.is_ok(), "{key}={value}: {result:?}");
        }
    }

    #[test]
    fn validation_errors_name_the_source_that_set_the_value() {
        let (_dir, path, opts) = with_file("logging:\n  output_format: xml\n");
        let err = load(&opts).unwrap_err();
        assert_eq!(err.origin(), Some(&Origin::File(path.clone())));
        assert_eq!(
            err.to_string(),
            format!(
                "invalid value for `logging.output_format` in {}: `xml` is neither `text` nor `json`",
                path.display()
            )
        );
        let err = load(&opts.env_vars([("OPENSPEAK_PRESENCE__EVENT_QUEUE", "1")])).unwrap_err();
        assert_eq!(err.key(), Some("presence.event_queue"));
        assert_eq!(err.origin(), Some(&env("OPENSPEAK_PRESENCE__EVENT_QUEUE")));
    }

    #[test]
    fn tls_needs_both_files() {
        let (_dir, path, opts) = with_file("server:\n  tls_key: key.pem\n");
        let err = load(&opts).unwrap_err();
        assert_eq!(err.key(), Some("server.tls_key"));
        assert_eq!(err.origin(), Some(&Origin::File(path)));
        let (_dir, _path, opts) = with_file("server:\n  tls_key: key.pem\n  tls_cert: cert.pem\n");
        let config = load(&opts).unwrap();
        assert_eq!(config.server.tls_cert, Some(PathBuf::from("cert.pem")));
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let (_dir, path, opts) = with_file("server:\n  port: [1\n");
        let err = load(&opts).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Syntax { path: p, .. } if *p == path),
            "{err}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        let (_dir, _path, opts) = with_file("- a list\n");
        assert!(matches!(load(&opts), Err(ConfigError::Syntax { .. })));
    }

    #[test]
    fn empty_files_and_sections_mean_defaults() {
        for yaml in [
            "",
            "# only a comment\n",
            "---\n",
            "server:\n  # port: 1\nauth:\n",
        ] {
            let (_dir, _path, opts) = with_file(yaml);
            assert_eq!(load(&opts).unwrap(), Config::default(), "{yaml:?}");
        }
    }

    #[test]
    fn null_clears_an_optional_key() {
        let (_dir, _path, opts) = with_file("auth:\n  bootstrap_token: ~\n");
        let config = load(&opts).unwrap();
        assert_eq!(config.auth.bootstrap_token, None);
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
    fn metrics_listen_is_an_address_or_empty() {
        let metrics = |config: &Config| config.dataplane.metrics_addr().unwrap();
        assert_eq!(
            metrics(&Config::default()),
            Some("127.0.0.1:9101".parse().unwrap()),
            "the contract's default"
        );
        let any_port = opts().env_vars([("OPENSPEAK_DATAPLANE__METRICS_LISTEN", "[::1]:0")]);
        assert_eq!(
            metrics(&load(&any_port).unwrap()),
            Some("[::1]:0".parse().unwrap())
        );
        let off = opts().env_vars([("OPENSPEAK_DATAPLANE__METRICS_LISTEN", "")]);
        assert_eq!(metrics(&load(&off).unwrap()), None, "empty turns it off");
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
    fn channel_name_is_trimmed() {
        let opts = opts().env_vars([("OPENSPEAK_CHANNELS__DEFAULT", "  Hall ")]);
        assert_eq!(load(&opts).unwrap().channels.default, "Hall");
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

    #[test]
    fn overrides_parse_key_value() {
        assert_eq!(
            Override::parse("--set", "auth.bootstrap_token=a=b").unwrap(),
            flag("auth.bootstrap_token", "a=b")
        );
        assert_eq!(
            Override::parse("--set", "server.host=").unwrap(),
            flag("server.host", "")
        );
        for bad in ["server.port", "=1", ".port=1", "server. port=1"] {
            assert!(Override::parse("--set", bad).is_err(), "{bad}");
        }
    }
}
