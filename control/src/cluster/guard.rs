//! The internal link's door: throttles and logs refused attaches.
//!
//! The link's only credential is `cluster.secret`, so a peer that can reach
//! `cluster.listen` may guess at it. [`AttachGuard`] makes that slow and
//! visible:
//!
//! - **Throttle.** After [`MAX_FAILURES`] refused secrets from one IP address
//!   within [`FAILURE_WINDOW`], the address is refused for [`BAN`] without
//!   its secret being looked at (so that even a correct guess then gets no
//!   answer that tells it so).
//! - **Log.** Each refusal is logged at warn, but at most one line per
//!   address per [`LOG_INTERVAL`]; the next line says how many refusals
//!   were left out in between, so a flood cannot fill the log and is still
//!   counted.
//!
//! Pure but for the lock: the caller passes the time in.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::ban_list::{BanList, Banned};

/// Refused secrets from one address that start its ban.
pub const MAX_FAILURES: u32 = 10;
/// How far back refused secrets count towards [`MAX_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a throttled address is refused.
pub const BAN: Duration = Duration::from_secs(60);
/// At most one log line per address this often.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Addresses whose log lines are tracked at most; past this, addresses
/// quiet for [`LOG_INTERVAL`] are forgotten first, so that refusals from
/// many addresses cannot grow memory without bound.
const MAX_LOG_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct AttachGuard {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    bans: BanList,
    logs: HashMap<IpAddr, LogEntry>,
}

#[derive(Debug, Clone, Copy)]
struct LogEntry {
    /// When the last line about this address was written.
    logged_at: Instant,
    /// Refusals since then that were not logged.
    suppressed: u64,
}

/// Whether to write a log line for a refusal, and what it adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine {
    /// Refusals from the address left out of the log since its last line.
    pub suppressed: u64,
}

impl Default for AttachGuard {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                bans: BanList::new(MAX_FAILURES, FAILURE_WINDOW, BAN),
                logs: HashMap::new(),
            }),
        }
    }
}

impl AttachGuard {
    /// Whether `addr` may present a secret at `now`.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Banned> {
        self.lock().bans.check(addr, now)
    }

    /// Counts a wrong or missing secret from `addr`; returns the ban if this
    /// one started it.
    pub fn record_failure(&self, addr: IpAddr, now: Instant) -> Option<Banned> {
        self.lock().bans.record_failure(addr, now)
    }

    /// Notes a refusal of `addr` for the log; `Some` when a line is due.
    pub fn log_refusal(&self, addr: IpAddr, now: Instant) -> Option<LogLine> {
        let mut inner = self.lock();
        if inner.logs.len() >= MAX_LOG_TRACKED && !inner.logs.contains_key(&addr) {
            inner
                .logs
                .retain(|_, e| now.saturating_duration_since(e.logged_at) < LOG_INTERVAL);
            // Still full of addresses logged within the interval: a flood
            // from that many addresses; this one's line waits for room.
            if inner.logs.len() >= MAX_LOG_TRACKED {
                return None;
            }
        }
        match inner.logs.get_mut(&addr) {
            Some(entry) if now.saturating_duration_since(entry.logged_at) < LOG_INTERVAL => {
                entry.suppressed += 1;
                None
            }
            Some(entry) => {
                let line = LogLine {
                    suppressed: entry.suppressed,
                };
                *entry = LogEntry {
                    logged_at: now,
                    suppressed: 0,
                };
                Some(line)
            }
            None => {
                inner.logs.insert(
                    addr,
                    LogEntry {
                        logged_at: now,
                        suppressed: 0,
                    },
                );
                Some(LogLine { suppressed: 0 })
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn ten_failures_in_a_minute_throttle_the_address_for_a_minute() {
        let guard = AttachGuard::default();
        let t0 = Instant::now();
        for i in 0..9 {
            let at = t0 + Duration::from_secs(i);
            assert!(guard.check(A, at).is_ok());
            assert_eq!(guard.record_failure(A, at), None);
        }
        let at = t0 + Duration::from_secs(9);
        let ban = guard.record_failure(A, at).expect("the tenth failure bans");
        assert_eq!(ban.until, at + BAN);
        assert!(guard.check(A, at + BAN - Duration::from_secs(1)).is_err());
        assert!(guard.check(A, at + BAN).is_ok());
        assert!(
            guard.check(B, at).is_ok(),
            "other addresses are not affected"
        );
    }

    #[test]
    fn one_line_per_address_per_interval_counting_the_rest() {
        let guard = AttachGuard::default();
        let t0 = Instant::now();
        assert_eq!(
            guard.log_refusal(A, t0),
            Some(LogLine { suppressed: 0 }),
            "the first refusal is logged"
        );
        for i in 1..=5 {
            assert_eq!(guard.log_refusal(A, t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(
            guard.log_refusal(B, t0 + Duration::from_secs(1)),
            Some(LogLine { suppressed: 0 }),
            "addresses are limited separately"
        );
        assert_eq!(
            guard.log_refusal(A, t0 + LOG_INTERVAL),
            Some(LogLine { suppressed: 5 }),
            "the next line counts what was left out"
        );
        assert_eq!(guard.log_refusal(A, t0 + LOG_INTERVAL), None);
    }

    #[test]
    fn the_log_limiter_forgets_quiet_addresses_when_full() {
        let guard = AttachGuard::default();
        let t0 = Instant::now();
        for i in 0..MAX_LOG_TRACKED as u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(guard.log_refusal(addr, t0).is_some());
        }
        // Full of addresses logged just now: a new one waits.
        assert_eq!(guard.log_refusal(A, t0), None);
        // Once they are quiet, they make room.
        assert!(guard.log_refusal(A, t0 + LOG_INTERVAL).is_some());
        assert_eq!(guard.lock().logs.len(), 1);
    }
}
