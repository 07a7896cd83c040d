//! The layering behind [`Config::load`]: each source (defaults, the YAML
//! file, `OPENSPEAK_*` variables, command-line overrides) becomes one named
//! figment provider, so that errors can say which source set the value.

use std::{collections::HashMap, fs, io, path::Path};

use figment::{
    Figment, Metadata, Profile, Provider,
    error::{Actual, Kind},
    providers::Serialized,
    value::{Dict, Map, Value},
};

use super::{
    Config, ConfigError, DEFAULT_CONFIG_PATH, ENV_PREFIX, ENV_SEPARATOR, EnvSource, LoadOptions,
    Origin, options::is_dotted_key,
};

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
    let mut dict: Dict = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
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
    use std::path::PathBuf;

    use super::super::{
        Override, Seconds,
        testing::{assert_file_error, env, file_error, flag, load, load_env, opts, with_file},
    };
    use super::*;

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
        let config = load_env([("OPENSPEAK_TOKEN", "ost_abc"), ("OPENSPEAK_X", "1")]);
        assert_eq!(config, Config::default());
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
        let config = load_env([
            ("OPENSPEAK_AUTH__BOOTSTRAP_TOKEN", "s3cret"),
            ("OPENSPEAK_STORAGE__DATA_DIR", "/var/lib/openspeak"),
            ("OPENSPEAK_CHANNELS__MEMBERS_CAN_CREATE", "true"),
            ("OPENSPEAK_LOGGING__LEVEL", "info,openspeak_control=debug"),
            ("OPENSPEAK_CLUSTER__LISTEN", "[::1]:0"),
            ("OTHER_SERVER__PORT", "not ours"),
            ("PATH", "/usr/bin"),
        ]);
        assert_eq!(config.auth.bootstrap_token.as_deref(), Some("s3cret"));
        assert_eq!(config.storage.data_dir, PathBuf::from("/var/lib/openspeak"));
        assert!(config.channels.members_can_create);
        assert_eq!(config.logging.level, "info,openspeak_control=debug");
        assert_eq!(config.cluster.listen, "[::1]:0");
    }

    #[test]
    fn numeric_looking_env_values_stay_strings() {
        let config = load_env([
            ("OPENSPEAK_AUTH__BOOTSTRAP_TOKEN", "0123"),
            ("OPENSPEAK_CLUSTER__SECRET", "123"),
            ("OPENSPEAK_CHANNELS__DEFAULT", "true"),
            ("OPENSPEAK_STORAGE__DATA_DIR", "42"),
        ]);
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
        assert_eq!(load_env([("OPENSPEAK_SERVER__PORT", "0")]).server.port, 0);
        let (_dir, _path, opts) =
            with_file("server:\n  port: 0\ncluster:\n  listen: 127.0.0.1:0\n");
        let config = load(&opts).unwrap();
        assert_eq!(config.server.port, 0);
        assert_eq!(config.cluster.listen, "127.0.0.1:0");
    }

    #[test]
    fn unknown_key_in_file_names_key_and_file() {
        let (err, path) = assert_file_error("server:\n  prot: 1\n", "server.prot");
        assert_eq!(
            err.to_string(),
            format!("unknown key `server.prot` in {}", path.display())
        );
        assert_file_error("sever:\n  port: 1\n", "sever");
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
        assert_file_error("server: 5\n", "server");
        let (err, path) = file_error("auth:\n  bootstrap_token: 12345\n");
        assert_eq!(
            err.to_string(),
            format!(
                "wrong type for `auth.bootstrap_token` in {}: expected a string, \
                 found unsigned int `12345` (quote it to make it text)",
                path.display()
            )
        );
        let (err, _path) = file_error("logging:\n  level: [info]\n");
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
    fn syntax_errors_name_the_file() {
        let (err, path) = file_error("server:\n  port: [1\n");
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
    fn channel_name_is_trimmed() {
        let config = load_env([("OPENSPEAK_CHANNELS__DEFAULT", "  Hall ")]);
        assert_eq!(config.channels.default, "Hall");
    }
}
