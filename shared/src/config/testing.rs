//! What the configuration's tests share: loading without touching the
//! process environment or the working directory, and the checks every
//! section's tests run on its keys and on the errors a file gives.

use std::{fs, path::PathBuf};

use super::{Config, ConfigError, LoadOptions, Origin, Override};

/// Options that read no process environment.
pub(super) fn opts() -> LoadOptions {
    LoadOptions::default().env_vars(Vec::<(String, String)>::new())
}

/// A temp dir holding `config.yaml` with `yaml`, and options naming it.
pub(super) fn with_file(yaml: &str) -> (tempfile::TempDir, PathBuf, LoadOptions) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    fs::write(&path, yaml).unwrap();
    let opts = opts().config_path(&path);
    (dir, path, opts)
}

/// Loads a config file holding `yaml`, which must fail: the error and
/// the file's path (the file is gone by then, but errors name the path).
pub(super) fn file_error(yaml: &str) -> (ConfigError, PathBuf) {
    let (_dir, path, opts) = with_file(yaml);
    (load(&opts).unwrap_err(), path)
}

/// [`file_error`] for an error that names `key` and the file, as every
/// error about a file's key must; returned for the caller's own checks.
#[track_caller]
pub(super) fn assert_file_error(yaml: &str, key: &str) -> (ConfigError, PathBuf) {
    let (err, path) = file_error(yaml);
    assert_eq!(err.key(), Some(key), "{err}");
    assert_eq!(err.origin(), Some(&Origin::File(path.clone())), "{err}");
    (err, path)
}

pub(super) fn flag(key: &str, value: &str) -> Override {
    Override::new("--set", key, value)
}

pub(super) fn env(name: &str) -> Origin {
    Origin::Env(name.into())
}

/// Loads with exactly the environment variables `vars` (and no file),
/// which must load.
#[track_caller]
pub(super) fn load_env<const N: usize>(vars: [(&str, &str); N]) -> Config {
    load(&opts().env_vars(vars)).unwrap()
}

/// Loads with no file at the default path.
pub(super) fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    Config::load_with_default_path(opts, &dir.path().join("absent.yaml"))
}

/// Each `(key, value)`, set alone by `--set`, is rejected as invalid,
/// naming the key and the flag.
pub(super) fn assert_rejected(cases: &[(&str, &str)]) {
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

/// Each `(key, value)`, set alone by `--set`, loads.
pub(super) fn assert_accepted(cases: &[(&str, &str)]) {
    for (key, value) in cases {
        let result = load(&opts().with_override(flag(key, value)));
        assert!(result.is_ok(), "{key}={value}: {result:?}");
    }
}
