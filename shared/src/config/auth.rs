//! The `auth` section: tokens, the first admin token and the ban on
//! addresses that keep presenting bad tokens.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    InvalidValue, Seconds,
    check::{check, check_path, check_seconds, check_secret},
};

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
    /// Sessions one member token may have open at once; 0 = no limit.
    /// Admin tokens have none.
    pub max_sessions_per_token: u32,
    /// Calls a second one member token may make, over time (each session's
    /// `Connect` included); 0 = no limit. Admin tokens have none.
    pub requests_per_second: u32,
    /// Calls one member token may make at once after a quiet spell, above
    /// `requests_per_second`.
    pub request_burst: u32,
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
            max_sessions_per_token: 16,
            requests_per_second: 50,
            request_burst: 200,
        }
    }
}

impl AuthConfig {
    /// The first value of the section that parses but cannot work.
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        check_path("auth.tokens_file", self.tokens_file.as_deref())?;
        check_path(
            "auth.bootstrap_token_file",
            self.bootstrap_token_file.as_deref(),
        )?;
        check_secret("auth.bootstrap_token", self.bootstrap_token.as_deref())?;
        check(self.max_failures >= 1, "auth.max_failures", || {
            "must be at least 1".into()
        })?;
        check_seconds("auth.failure_window", self.failure_window)?;
        check_seconds("auth.ban_duration", self.ban_duration)?;
        check(
            self.requests_per_second == 0 || self.request_burst >= 1,
            "auth.request_burst",
            || "must be at least 1 while auth.requests_per_second limits calls".into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_accepted, assert_rejected};

    #[test]
    fn impossible_values_are_rejected_naming_the_key() {
        assert_rejected(&[
            ("auth.bootstrap_token", "naïve"),
            ("auth.max_failures", "0"),
            ("auth.failure_window", "0"),
            ("auth.ban_duration", "0"),
            ("auth.tokens_file", ""),
            ("auth.bootstrap_token_file", ""),
            ("auth.request_burst", "0"),
        ]);
    }

    #[test]
    fn boundary_values_are_accepted() {
        assert_accepted(&[
            ("auth.max_failures", "1"),
            ("auth.token_ttl", "0"),
            ("auth.max_sessions_per_token", "0"),
            ("auth.requests_per_second", "0"),
        ]);
    }
}
