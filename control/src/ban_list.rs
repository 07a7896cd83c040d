//! Refuses addresses that keep presenting bad tokens.
//!
//! After `max_failures` bad tokens from one IP address within `window`, the
//! address is refused for `ban` before its token is even looked at. Pure:
//! the caller passes the time in, and keeps the bans in the store (see
//! `Authenticator`) so that a restart does not lift them.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

/// How many addresses are tracked at most. A flood of failures from many
/// addresses must not grow memory without bound; past this, entries whose
/// failures have all aged out are dropped first.
const MAX_TRACKED: usize = 100_000;

/// The longest a ban runs: a century is "for good" to an operator, and an
/// `Instant` that far ahead exists on every platform, where `now + u64::MAX
/// seconds` would overflow. Every way a ban comes in (the API, the admin
/// commands on a stopped server, the store at start) is cut to it.
pub const MAX_BAN: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How long a ban an operator asks for runs: `requested_secs` of 0 means
/// `default` (`auth.ban_duration`), anything else is cut to [`MAX_BAN`].
/// The API and the admin commands on a stopped server both ask here, so
/// that `ban add --duration N` means the same whether the server runs.
pub fn ban_length(requested_secs: u64, default: Duration) -> Duration {
    match requested_secs {
        0 => default,
        secs => Duration::from_secs(secs).min(MAX_BAN),
    }
}

#[derive(Debug)]
pub struct BanList {
    max_failures: u32,
    window: Duration,
    ban: Duration,
    entries: HashMap<IpAddr, Entry>,
}

#[derive(Debug, Default)]
struct Entry {
    /// Times of the failures still inside the window, oldest first.
    failures: VecDeque<Instant>,
    banned_until: Option<Instant>,
}

/// The address is refused until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Banned {
    pub until: Instant,
}

impl BanList {
    pub fn new(max_failures: u32, window: Duration, ban: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            ban,
            entries: HashMap::new(),
        }
    }

    /// Whether `addr` may try a token at `now`.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Banned> {
        match self.entries.get(&addr).and_then(|e| e.banned_until) {
            Some(until) if now < until => Err(Banned { until }),
            _ => Ok(()),
        }
    }

    /// Records a bad token from `addr`; returns the ban if this one started it.
    pub fn record_failure(&mut self, addr: IpAddr, now: Instant) -> Option<Banned> {
        if self.entries.len() >= MAX_TRACKED && !self.entries.contains_key(&addr) {
            self.prune(now);
        }
        let window = self.window;
        let entry = self.entries.entry(addr).or_default();
        while entry
            .failures
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= window)
        {
            entry.failures.pop_front();
        }
        entry.failures.push_back(now);
        if entry.failures.len() >= self.max_failures as usize {
            entry.failures.clear();
            let until = now + self.ban;
            entry.banned_until = Some(until);
            return Some(Banned { until });
        }
        None
    }

    /// Puts back a ban kept across a restart; one that has ended is
    /// ignored.
    pub fn restore(&mut self, addr: IpAddr, until: Instant, now: Instant) {
        if now < until {
            self.entries.entry(addr).or_default().banned_until = Some(until);
        }
    }

    /// Refuses `addr` until `until` (an operator's ban): its failures so
    /// far are forgotten, as a ban from failures does.
    pub fn ban(&mut self, addr: IpAddr, until: Instant) {
        let entry = self.entries.entry(addr).or_default();
        entry.failures.clear();
        entry.banned_until = Some(until);
    }

    /// Lets `addr` in again; whether it was refused at `now`.
    pub fn lift(&mut self, addr: IpAddr, now: Instant) -> bool {
        let was = self.check(addr, now).is_err();
        self.entries.remove(&addr);
        was
    }

    /// The addresses refused at `now` and until when, soonest lifted first.
    pub fn banned(&self, now: Instant) -> Vec<(IpAddr, Instant)> {
        let mut bans: Vec<_> = self
            .entries
            .iter()
            .filter_map(|(addr, e)| e.banned_until.filter(|&u| now < u).map(|u| (*addr, u)))
            .collect();
        bans.sort_by_key(|&(addr, until)| (until, addr));
        bans
    }

    /// How long a ban from failures lasts.
    pub fn ban_duration(&self) -> Duration {
        self.ban
    }

    /// Forgets addresses with no live ban and no failure inside the window.
    pub fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.entries.retain(|_, e| {
            let banned = e.banned_until.is_some_and(|until| now < until);
            let recent = e
                .failures
                .back()
                .is_some_and(|&t| now.saturating_duration_since(t) < window);
            banned || recent
        });
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn list() -> BanList {
        BanList::new(10, Duration::from_secs(120), Duration::from_secs(300))
    }

    #[test]
    fn the_tenth_failure_in_the_window_bans_for_the_ban_duration() {
        let t0 = Instant::now();
        let mut bans = list();
        for i in 0..9 {
            assert_eq!(bans.record_failure(A, t0 + Duration::from_secs(i)), None);
            assert!(bans.check(A, t0 + Duration::from_secs(i)).is_ok());
        }
        let at = t0 + Duration::from_secs(9);
        let ban = bans.record_failure(A, at).expect("tenth failure bans");
        assert_eq!(ban.until, at + Duration::from_secs(300));
        assert!(bans.check(A, at + Duration::from_secs(299)).is_err());
        assert!(bans.check(A, at + Duration::from_secs(300)).is_ok());
        // Other addresses are not affected.
        assert!(bans.check(B, at).is_ok());
    }

    #[test]
    fn an_asked_for_ban_is_the_default_for_0_and_at_most_a_century() {
        let default = Duration::from_secs(900);
        assert_eq!(ban_length(0, default), default);
        assert_eq!(ban_length(600, default), Duration::from_secs(600));
        assert_eq!(ban_length(u64::MAX, default), MAX_BAN);
    }

    #[test]
    fn a_restored_ban_refuses_until_it_ends() {
        let t0 = Instant::now();
        let mut bans = list();
        bans.restore(A, t0 + Duration::from_secs(10), t0);
        bans.restore(B, t0, t0);
        assert!(bans.check(A, t0 + Duration::from_secs(9)).is_err());
        assert!(bans.check(A, t0 + Duration::from_secs(10)).is_ok());
        assert!(bans.check(B, t0).is_ok());
        assert_eq!(bans.tracked(), 1, "an ended ban is not kept");
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let t0 = Instant::now();
        let mut bans = list();
        for i in 0..9 {
            bans.record_failure(A, t0 + Duration::from_secs(i));
        }
        // 130 s later the first nine have aged out.
        assert_eq!(bans.record_failure(A, t0 + Duration::from_secs(130)), None);
        assert!(bans.check(A, t0 + Duration::from_secs(130)).is_ok());
    }

    #[test]
    fn prune_forgets_quiet_addresses_but_keeps_bans() {
        let t0 = Instant::now();
        let mut bans = BanList::new(1, Duration::from_secs(10), Duration::from_secs(100));
        bans.record_failure(A, t0);
        let mut quiet = BanList::new(5, Duration::from_secs(10), Duration::from_secs(100));
        quiet.record_failure(B, t0);
        bans.prune(t0 + Duration::from_secs(50));
        quiet.prune(t0 + Duration::from_secs(50));
        assert_eq!(bans.tracked(), 1);
        assert_eq!(quiet.tracked(), 0);
    }
}
