//! A simulated bad network, in the client: which packets are lost, delayed,
//! held back or doubled.
//!
//! Pure and seeded: an [`Impairment`] is a state machine that answers "what
//! happens to the next packet?" from its own random streams, with no clock
//! and no socket. The drivers apply its answer: on the uplink before a
//! packet is sent (a delayed packet waits in a `DelayLine` and goes out
//! later, which reorders it naturally), on the downlink when a packet
//! arrives. Each client and direction gets its own seed from the run's
//! `--seed` ([`stream_seed`]), so a run is reproducible and clients are
//! independent of each other.
//!
//! Loss, delay and the extras draw from separate random streams, so that
//! adding jitter to a run does not change which packets it loses.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use thiserror::Error;

/// How losses are spread over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LossModel {
    /// Every packet independently.
    Bernoulli,
    /// Gilbert-Elliott with a lossless good state and a lossy bad state:
    /// losses come in bursts of mean `--burst-len` packets.
    Gilbert,
}

/// The shape of the delay's random part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum JitterDist {
    /// Uniform in `delay ± jitter`.
    Uniform,
    /// Normal with mean `delay` and standard deviation `jitter`, cut at 4σ.
    Normal,
}

/// What one direction of one client's link does to packets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImpairmentSpec {
    /// Long-run fraction of packets lost, `0 <= loss < 1`.
    pub loss: f64,
    /// How the losses are spread.
    pub loss_model: LossModel,
    /// Gilbert only: mean number of packets in a loss burst (>= 1).
    pub burst_len: f64,
    /// Fixed delay added to every packet.
    #[serde(rename = "delay_ms", serialize_with = "as_millis")]
    pub delay: Duration,
    /// Spread of the delay around `delay` (see [`JitterDist`]). A packet's
    /// delay never goes below zero.
    #[serde(rename = "jitter_ms", serialize_with = "as_millis")]
    pub jitter: Duration,
    /// The jitter's distribution.
    pub jitter_dist: JitterDist,
    /// Fraction of packets held back one extra frame.
    pub reorder: f64,
    /// Fraction of packets sent twice.
    pub duplicate: f64,
    /// One frame: how far a reordered packet is held back (1 / pps).
    #[serde(skip)]
    pub frame: Duration,
}

/// An impossible impairment setting.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ImpairmentError {
    /// A fraction outside its range.
    #[error("{what} must be at least 0 and below 1, not {value}")]
    Fraction {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: f64,
    },
    /// A burst shorter than one packet.
    #[error("--burst-len must be at least 1, not {0}")]
    BurstLen(f64),
    /// Gilbert-Elliott cannot reach this loss with bursts this short: the
    /// good state would have to turn bad more often than every packet.
    #[error(
        "a loss of {loss} cannot be made of bursts {burst_len} packets long on average; \
         use a longer --burst-len (at least {min_burst:.2}) or a lower loss"
    )]
    GilbertInfeasible {
        /// The loss asked for.
        loss: f64,
        /// The burst length asked for.
        burst_len: f64,
        /// The shortest mean burst that reaches this loss.
        min_burst: f64,
    },
}

impl ImpairmentSpec {
    /// A link that does nothing to packets.
    pub fn clean(frame: Duration) -> Self {
        ImpairmentSpec {
            loss: 0.0,
            loss_model: LossModel::Bernoulli,
            burst_len: 1.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            jitter_dist: JitterDist::Uniform,
            reorder: 0.0,
            duplicate: 0.0,
            frame,
        }
    }

    /// Whether every packet passes at once, unchanged: the drivers then skip
    /// the delay line.
    pub fn is_clean(&self) -> bool {
        self.loss == 0.0
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.reorder == 0.0
            && self.duplicate == 0.0
    }

    /// Checks every value; `which` names the direction in messages.
    pub fn validate(&self, which: &'static str) -> Result<(), ImpairmentError> {
        check_fraction(which, self.loss)?;
        check_fraction("--reorder", self.reorder)?;
        check_fraction("--duplicate", self.duplicate)?;
        if self.loss_model == LossModel::Gilbert {
            if !(self.burst_len >= 1.0 && self.burst_len.is_finite()) {
                return Err(ImpairmentError::BurstLen(self.burst_len));
            }
            // A hair of slack: 0.8 with bursts of 4 is exactly feasible, but
            // not in floating point.
            if gilbert_enter_bad(self.loss, self.burst_len) > 1.0 + 1e-9 {
                return Err(ImpairmentError::GilbertInfeasible {
                    loss: self.loss,
                    burst_len: self.burst_len,
                    // enter_bad <= 1  <=>  burst_len >= loss / (1 - loss).
                    min_burst: (self.loss / (1.0 - self.loss)).max(1.0),
                });
            }
        }
        Ok(())
    }

    /// The most a packet can be delayed, the extra frame included: how long
    /// the drivers must wait for the last delayed packet.
    pub fn max_delay(&self) -> Duration {
        let spread = match self.jitter_dist {
            JitterDist::Uniform => self.jitter,
            JitterDist::Normal => self.jitter * NORMAL_CUT as u32,
        };
        let reorder = if self.reorder > 0.0 {
            self.frame
        } else {
            Duration::ZERO
        };
        self.delay + spread + reorder
    }
}

fn check_fraction(what: &'static str, value: f64) -> Result<(), ImpairmentError> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(ImpairmentError::Fraction { what, value })
    }
}

/// Normal jitter is cut at this many standard deviations, so that the
/// longest delay, and with it the wait for the last packet, is bounded.
const NORMAL_CUT: f64 = 4.0;

/// The good-to-bad rate that makes a Gilbert-Elliott chain with bad-to-good
/// rate `1 / burst_len` lose `loss` of the packets in the long run:
/// loss = p / (p + r)  =>  p = loss * r / (1 - loss).
fn gilbert_enter_bad(loss: f64, burst_len: f64) -> f64 {
    let leave_bad = 1.0 / burst_len;
    loss * leave_bad / (1.0 - loss)
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1_000.0)
}

/// Which way a packet travels, for seeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to data plane, applied before sending.
    Uplink,
    /// Data plane to client, applied on receipt.
    Downlink,
}

/// Random streams per client, by purpose (the `purpose` of [`stream_seed`]).
pub const SEED_IMPAIRMENT: u64 = 0;
/// Talk spurts.
pub const SEED_TALK: u64 = 1;
/// When a churning listener leaves.
pub const SEED_CHURN: u64 = 2;
/// A speaker's offset within the first frame.
pub const SEED_PHASE: u64 = 3;

/// The seed of one client's random stream `purpose` in one direction,
/// derived from the run's seed with SplitMix64 so that neighbouring inputs
/// give unrelated streams.
pub fn stream_seed(run_seed: u64, client: u32, direction: Direction, purpose: u64) -> u64 {
    let dir = match direction {
        Direction::Uplink => 1,
        Direction::Downlink => 2,
    };
    let mut x = splitmix64(run_seed);
    x = splitmix64(x ^ u64::from(client));
    x = splitmix64(x ^ dir);
    splitmix64(x ^ purpose)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether packets are lost: one of the two models, with its state.
#[derive(Debug)]
pub struct LossProcess {
    /// The model and its state.
    state: LossState,
    /// Its own random stream.
    rng: StdRng,
}

#[derive(Debug)]
enum LossState {
    /// Never loses (loss 0): draws nothing.
    Never,
    /// Each packet lost with probability `p`.
    Bernoulli { p: f64 },
    /// Good state loses nothing, bad state loses everything.
    Gilbert {
        enter_bad: f64,
        leave_bad: f64,
        bad: bool,
    },
}

impl LossProcess {
    /// The process for `spec`'s loss (validated), seeded.
    pub fn new(spec: &ImpairmentSpec, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let state = if spec.loss <= 0.0 {
            LossState::Never
        } else {
            match spec.loss_model {
                LossModel::Bernoulli => LossState::Bernoulli { p: spec.loss },
                LossModel::Gilbert => LossState::Gilbert {
                    enter_bad: gilbert_enter_bad(spec.loss, spec.burst_len).min(1.0),
                    leave_bad: 1.0 / spec.burst_len,
                    // Start in the long-run distribution, so that a short run
                    // is not biased towards the good state.
                    bad: rng.random::<f64>() < spec.loss,
                },
            }
        };
        LossProcess { state, rng }
    }

    /// Whether the next packet is lost.
    pub fn lose(&mut self) -> bool {
        match &mut self.state {
            LossState::Never => false,
            LossState::Bernoulli { p } => self.rng.random::<f64>() < *p,
            LossState::Gilbert {
                enter_bad,
                leave_bad,
                bad,
            } => {
                // The state a packet meets decides its fate; then the chain
                // moves. A burst is thus one stay in the bad state, whose
                // length is geometric with mean 1 / leave_bad.
                let lost = *bad;
                let u = self.rng.random::<f64>();
                *bad = if *bad {
                    u >= *leave_bad
                } else {
                    u < *enter_bad
                };
                lost
            }
        }
    }
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It never arrives.
    Lost,
    /// It arrives after `delay`; twice when `duplicate`.
    Pass {
        /// How long the network holds it.
        delay: Duration,
        /// A second copy arrives with it.
        duplicate: bool,
    },
}

/// One direction of one client's link.
#[derive(Debug)]
pub struct Impairment {
    /// The settings.
    spec: ImpairmentSpec,
    /// Which packets are lost.
    loss: LossProcess,
    /// Delay, reordering and duplication draws.
    rng: StdRng,
}

impl Impairment {
    /// The link for `spec` (validated), seeded with `seed`.
    pub fn new(spec: ImpairmentSpec, seed: u64) -> Self {
        let loss = LossProcess::new(&spec, splitmix64(seed ^ 0x1055));
        let rng = StdRng::seed_from_u64(splitmix64(seed ^ 0xde1a));
        Impairment { spec, loss, rng }
    }

    /// What happens to the next packet.
    pub fn fate(&mut self) -> Fate {
        if self.loss.lose() {
            return Fate::Lost;
        }
        let spec = &self.spec;
        let mut delay_us = spec.delay.as_secs_f64() * 1e6;
        if !spec.jitter.is_zero() {
            let sigma = spec.jitter.as_secs_f64() * 1e6;
            delay_us += match spec.jitter_dist {
                JitterDist::Uniform => self.rng.random_range(-sigma..=sigma),
                JitterDist::Normal => {
                    sigma * standard_normal(&mut self.rng).clamp(-NORMAL_CUT, NORMAL_CUT)
                }
            };
        }
        let mut delay = Duration::from_micros(delay_us.max(0.0).round() as u64);
        if spec.reorder > 0.0 && self.rng.random::<f64>() < spec.reorder {
            delay += spec.frame;
        }
        let duplicate = spec.duplicate > 0.0 && self.rng.random::<f64>() < spec.duplicate;
        Fate::Pass { delay, duplicate }
    }
}

/// One draw of N(0, 1), by Box-Muller (rand 0.9 alone has no normal
/// distribution, and one formula is not worth a dependency).
fn standard_normal(rng: &mut StdRng) -> f64 {
    // 1 - u is in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    fn spec(loss: f64, model: LossModel, burst_len: f64) -> ImpairmentSpec {
        ImpairmentSpec {
            loss,
            loss_model: model,
            burst_len,
            ..ImpairmentSpec::clean(FRAME)
        }
    }

    #[test]
    fn bernoulli_ten_percent_is_ten_percent() {
        let mut p = LossProcess::new(&spec(0.10, LossModel::Bernoulli, 1.0), 42);
        let lost = (0..100_000).filter(|_| p.lose()).count();
        let ratio = lost as f64 / 100_000.0;
        assert!((ratio - 0.10).abs() <= 0.005, "{ratio}");
    }

    /// Long-run loss and mean burst length of a Gilbert-Elliott chain.
    fn gilbert_stats(loss: f64, burst_len: f64, seed: u64) -> (f64, f64) {
        let mut p = LossProcess::new(&spec(loss, LossModel::Gilbert, burst_len), seed);
        let n = 400_000;
        let (mut lost, mut bursts, mut in_burst) = (0u64, 0u64, false);
        for _ in 0..n {
            let l = p.lose();
            if l {
                lost += 1;
                if !in_burst {
                    bursts += 1;
                }
            }
            in_burst = l;
        }
        (lost as f64 / n as f64, lost as f64 / bursts as f64)
    }

    #[test]
    fn gilbert_meets_its_loss_and_burst_length() {
        for (loss, burst) in [(0.05, 3.0), (0.10, 1.0), (0.20, 8.0)] {
            let (ratio, mean_burst) = gilbert_stats(loss, burst, 7);
            assert!(
                (ratio - loss).abs() <= 0.1 * loss,
                "loss {loss} burst {burst}: measured loss {ratio}"
            );
            assert!(
                (mean_burst - burst).abs() <= 0.05 * burst,
                "loss {loss} burst {burst}: measured burst {mean_burst}"
            );
        }
    }

    #[test]
    fn gilbert_bursts_are_longer_than_bernoulli_ones() {
        let (_, gilbert) = gilbert_stats(0.05, 3.0, 1);
        let mut p = LossProcess::new(&spec(0.05, LossModel::Bernoulli, 1.0), 1);
        let draws: Vec<bool> = (0..200_000).map(|_| p.lose()).collect();
        let lost = draws.iter().filter(|l| **l).count() as f64;
        let bursts = draws.windows(2).filter(|w| w[1] && !w[0]).count() as f64;
        let bernoulli = lost / bursts;
        assert!(bernoulli < 1.1 && gilbert > 2.5, "{bernoulli} vs {gilbert}");
    }

    #[test]
    fn same_seed_same_decisions_other_seed_other_decisions() {
        let s = ImpairmentSpec {
            jitter: Duration::from_millis(30),
            delay: Duration::from_millis(30),
            reorder: 0.02,
            duplicate: 0.01,
            ..spec(0.05, LossModel::Gilbert, 3.0)
        };
        let run = |seed| {
            let mut i = Impairment::new(s.clone(), seed);
            (0..5_000).map(|_| i.fate()).collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn adding_jitter_keeps_the_same_losses() {
        let plain = spec(0.1, LossModel::Bernoulli, 1.0);
        let jittery = ImpairmentSpec {
            jitter: Duration::from_millis(10),
            ..plain.clone()
        };
        let losses = |s: &ImpairmentSpec| {
            let mut i = Impairment::new(s.clone(), 3);
            (0..2_000)
                .map(|_| i.fate() == Fate::Lost)
                .collect::<Vec<_>>()
        };
        assert_eq!(losses(&plain), losses(&jittery));
    }

    #[test]
    fn stream_seeds_differ_by_client_direction_and_purpose() {
        let a = stream_seed(1, 0, Direction::Uplink, 0);
        assert_eq!(a, stream_seed(1, 0, Direction::Uplink, 0));
        for other in [
            stream_seed(2, 0, Direction::Uplink, 0),
            stream_seed(1, 1, Direction::Uplink, 0),
            stream_seed(1, 0, Direction::Downlink, 0),
            stream_seed(1, 0, Direction::Uplink, 1),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn delays_stay_within_their_bounds() {
        for dist in [JitterDist::Uniform, JitterDist::Normal] {
            let s = ImpairmentSpec {
                delay: Duration::from_millis(30),
                jitter: Duration::from_millis(30),
                jitter_dist: dist,
                reorder: 0.1,
                ..ImpairmentSpec::clean(FRAME)
            };
            let max = s.max_delay();
            let mut i = Impairment::new(s, 5);
            let mut sum = Duration::ZERO;
            let n = 20_000;
            for _ in 0..n {
                match i.fate() {
                    Fate::Pass { delay, duplicate } => {
                        assert!(delay <= max, "{dist:?}: {delay:?} > {max:?}");
                        assert!(!duplicate);
                        sum += delay;
                    }
                    Fate::Lost => panic!("no loss configured"),
                }
            }
            // Mean: 30 ms, plus 2 ms for the 10 % held back a frame, plus
            // a little from clamping negative delays at zero.
            let mean = sum.as_secs_f64() * 1e3 / f64::from(n);
            assert!((31.0..35.0).contains(&mean), "{dist:?}: mean {mean} ms");
        }
    }

    #[test]
    fn reorder_and_duplicate_fractions_hold() {
        let s = ImpairmentSpec {
            reorder: 0.2,
            duplicate: 0.05,
            ..ImpairmentSpec::clean(FRAME)
        };
        let mut i = Impairment::new(s, 11);
        let n = 50_000;
        let (mut held, mut dup) = (0, 0);
        for _ in 0..n {
            if let Fate::Pass { delay, duplicate } = i.fate() {
                held += u32::from(delay == FRAME);
                dup += u32::from(duplicate);
            }
        }
        let (held, dup) = (f64::from(held) / 5e4, f64::from(dup) / 5e4);
        assert!((held - 0.2).abs() < 0.01, "{held}");
        assert!((dup - 0.05).abs() < 0.005, "{dup}");
    }

    #[test]
    fn impossible_settings_are_refused() {
        assert!(
            spec(1.5, LossModel::Bernoulli, 1.0)
                .validate("--uplink-loss")
                .is_err()
        );
        assert!(
            spec(1.0, LossModel::Bernoulli, 1.0)
                .validate("--uplink-loss")
                .is_err()
        );
        assert!(
            spec(-0.1, LossModel::Bernoulli, 1.0)
                .validate("--uplink-loss")
                .is_err()
        );
        assert!(
            spec(f64::NAN, LossModel::Bernoulli, 1.0)
                .validate("x")
                .is_err()
        );
        assert!(spec(0.1, LossModel::Gilbert, 0.5).validate("x").is_err());
        // Bursts of 1 cannot make more than half the packets lost.
        assert!(spec(0.5, LossModel::Gilbert, 1.0).validate("x").is_ok());
        match spec(0.8, LossModel::Gilbert, 1.0).validate("x") {
            Err(ImpairmentError::GilbertInfeasible { min_burst, .. }) => {
                assert!((min_burst - 4.0).abs() < 1e-9, "{min_burst}");
            }
            other => panic!("{other:?}"),
        }
        assert!(spec(0.8, LossModel::Gilbert, 4.0).validate("x").is_ok());
        let s = ImpairmentSpec {
            reorder: 1.0,
            ..ImpairmentSpec::clean(FRAME)
        };
        assert!(s.validate("x").is_err());
    }

    #[test]
    fn a_clean_link_passes_everything_at_once() {
        let s = ImpairmentSpec::clean(FRAME);
        assert!(s.is_clean());
        assert_eq!(s.max_delay(), Duration::ZERO);
        let mut i = Impairment::new(s, 0);
        for _ in 0..100 {
            assert_eq!(
                i.fate(),
                Fate::Pass {
                    delay: Duration::ZERO,
                    duplicate: false
                }
            );
        }
    }
}
