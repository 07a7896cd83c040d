//! The small checks the sections' `validate` are made of. Each returns the
//! [`InvalidValue`] for its key, with a reason an operator can act on.

use std::path::Path;

use super::{InvalidValue, Seconds};

/// Voice latency bounds beyond this are no longer conversation.
const MAX_VOICE_MS: u32 = 10_000;

pub(super) fn invalid(key: &'static str, reason: String) -> InvalidValue {
    InvalidValue { key, reason }
}

/// `Err` with `reason()` unless `ok`; the reason is built only when needed.
pub(super) fn check(
    ok: bool,
    key: &'static str,
    reason: impl FnOnce() -> String,
) -> Result<(), InvalidValue> {
    if ok {
        Ok(())
    } else {
        Err(invalid(key, reason()))
    }
}

/// Zero seconds would mean "never wait" or "never expire", which none of
/// these keys can take.
pub(super) fn check_seconds(key: &'static str, value: Seconds) -> Result<(), InvalidValue> {
    check(value.0 > 0, key, || "must be at least 1 second".into())
}

pub(super) fn check_ms(key: &'static str, value: u32) -> Result<(), InvalidValue> {
    check_range(key, value, 1..=MAX_VOICE_MS, "milliseconds")
}

/// `value` must lie in `range`; the reason names the bounds, the `unit`
/// (and why the bounds are what they are, when the unit says so) and the
/// value given.
pub(super) fn check_range<T>(
    key: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<(), InvalidValue>
where
    T: PartialOrd + std::fmt::Display,
{
    check(range.contains(&value), key, || {
        format!(
            "must be from {} to {} {unit}, got {value}",
            range.start(),
            range.end()
        )
    })
}

/// A certificate and its key come together or not at all, and neither may
/// be an empty path.
pub(super) fn check_tls_pair(
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
pub(super) fn check_path(key: &'static str, path: Option<&Path>) -> Result<(), InvalidValue> {
    check(path.is_none_or(|p| !p.as_os_str().is_empty()), key, || {
        "must not be empty (leave the key out instead)".into()
    })
}

/// Secrets travel in gRPC metadata (an HTTP/2 header, after `Bearer `),
/// which only carries visible ASCII.
pub(super) fn check_secret(key: &'static str, secret: Option<&str>) -> Result<(), InvalidValue> {
    check(
        secret.is_none_or(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())),
        key,
        || "must be visible ASCII characters without spaces, as it travels in a header".into(),
    )
}

/// An optional listener address: `None` when `text` is empty (the listener
/// is off), else `text` parsed as an IP address and port.
pub(super) fn optional_addr(
    text: &str,
) -> Result<Option<std::net::SocketAddr>, std::net::AddrParseError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some)
}
