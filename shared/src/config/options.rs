//! What [`Config::load`](super::Config::load) reads besides the defaults in
//! code: which file, which environment, which command-line overrides.

use std::path::PathBuf;

use super::ConfigError;

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

/// What [`Config::load`](super::Config::load) reads besides the defaults
/// in code.
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
    /// The process environment, read once by
    /// [`Config::load`](super::Config::load).
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
pub(super) fn is_dotted_key(key: &str) -> bool {
    key.split('.')
        .all(|part| !part.is_empty() && !part.contains(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::super::testing::flag;
    use super::*;

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
