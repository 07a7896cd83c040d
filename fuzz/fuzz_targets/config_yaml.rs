//! The configuration file: `Config::load` of a YAML document (the only
//! entry point reads a file, so each input is written to a scratch file
//! first), with no environment variables and no overrides.
//!
//! Properties: loading never panics, whatever the bytes; a configuration
//! that loads also passes `validate`; and written back out as YAML it
//! loads again to the same configuration.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use openspeak_shared::{Config, LoadOptions};

/// One scratch file per fuzzing process, in memory where Linux offers it.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("openspeak-fuzz-config-{}.yaml", std::process::id()))
    })
}

fn load(text: &[u8]) -> Result<Config, openspeak_shared::ConfigError> {
    let path = scratch();
    std::fs::write(path, text).expect("write the scratch file");
    let opts = LoadOptions::default()
        .config_path(path)
        .env_vars(Vec::<(String, String)>::new());
    Config::load(&opts)
}

fuzz_target!(|data: &[u8]| {
    let Ok(config) = load(data) else {
        return;
    };
    assert_eq!(config.validate(), Ok(()));
    let yaml = serde_yaml_ng::to_string(&config).expect("a config serializes");
    match load(yaml.as_bytes()) {
        Ok(again) => assert_eq!(again, config, "written back:\n{yaml}"),
        Err(e) => panic!("a loaded config written back does not load: {e}\n{yaml}"),
    }
});
