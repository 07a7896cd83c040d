//! How fast one member token may call: a token bucket per token
//! (`auth.requests_per_second`, refilled steadily, holding up to
//! `auth.request_burst`), so that one client cannot keep the control plane
//! busy for everyone. Every call counts, each session's `Connect` too, so
//! this is also the rate at which a token may open sessions.
//!
//! Admin tokens are not limited: an operator's scripts may need bursts,
//! and an admin may do anything anyway.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use openspeak_shared::Reason;
use tonic::Status;
use tracing::warn;

/// How often, at most, a refusal is logged (refusals are counted between).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Every this many calls, the buckets of tokens that have been quiet long
/// enough to be full again are forgotten, so that memory follows the
/// tokens in use, not every token ever seen.
const FORGET_EVERY: u64 = 10_000;

/// The per-token limit; `None` inside when calls are not limited.
pub struct RequestRate {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    per_second: u32,
    calls: AtomicU64,
    refused: AtomicU64,
    logged: Mutex<Option<Instant>>,
}

impl RequestRate {
    /// `per_second` calls a second per token with bursts of `burst`;
    /// `per_second` 0 limits nothing.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            DefaultKeyedRateLimiter::hashmap(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiter,
            per_second,
            calls: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            logged: Mutex::new(None),
        }
    }

    /// Takes one call of `token_id` from its bucket, or says when to retry.
    pub fn check(&self, token_id: &str) -> Result<(), Status> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.calls.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            limiter.retain_recent();
        }
        let Err(not_until) = limiter.check_key(&token_id.to_owned()) else {
            return Ok(());
        };
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        self.note_refusal(token_id);
        Err(Reason::RateLimited.status(format!(
            "too many calls with this token: at most {} a second \
             (auth.requests_per_second); try again in {} ms",
            self.per_second,
            wait.as_millis().max(1)
        )))
    }

    fn note_refusal(&self, token_id: &str) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return;
        }
        *logged = Some(Instant::now());
        warn!(
            token_id,
            refused_so_far = refused,
            per_second = self.per_second,
            "a token calls faster than auth.requests_per_second; refusing the excess"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn a_token_gets_its_burst_then_is_refused_while_another_is_not() {
        let rate = RequestRate::new(1, 5);
        for _ in 0..5 {
            rate.check("a").unwrap();
        }
        let refused = rate.check("a").unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(
            refused.message().contains("auth.requests_per_second"),
            "{}",
            refused.message()
        );
        rate.check("b").expect("each token has a bucket of its own");
    }

    #[test]
    fn zero_limits_nothing() {
        let rate = RequestRate::new(0, 0);
        for _ in 0..10_000 {
            rate.check("a").unwrap();
        }
    }
}
