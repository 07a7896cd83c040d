//! The `storage` section: where the control plane keeps its state.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{InvalidValue, check::check_path};

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

impl StorageConfig {
    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        check_path("storage.data_dir", Some(&self.data_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::assert_rejected;

    #[test]
    fn impossible_values_are_rejected_naming_the_key() {
        assert_rejected(&[("storage.data_dir", "")]);
    }
}
