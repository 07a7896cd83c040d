//! When a speaker talks: all the time, or in talk spurts separated by
//! silences, as people do.
//!
//! Spurt and silence lengths are exponential with the given means (the
//! classic on-off model of conversational speech, ITU-T P.59 style), drawn
//! in whole frames from a seeded random stream, so a run is reproducible.
//! Pure: the speaker asks once per frame whether to send.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One speaker's talk pattern.
#[derive(Debug)]
pub struct TalkPattern {
    /// `None`: talks without pause.
    spurts: Option<Spurts>,
}

#[derive(Debug)]
struct Spurts {
    /// Mean talk spurt, frames.
    talk_mean: f64,
    /// Mean silence, frames.
    silence_mean: f64,
    /// In a spurt (else silent).
    talking: bool,
    /// Frames left in the current spurt or silence.
    left: u64,
    rng: StdRng,
}

impl TalkPattern {
    /// Talks every frame.
    pub fn continuous() -> Self {
        TalkPattern { spurts: None }
    }

    /// Spurts of mean `talk`, silences of mean `silence`, with frames of
    /// `frame`; starts at a random point of the pattern so that speakers do
    /// not all start and stop together.
    pub fn spurts(talk: Duration, silence: Duration, frame: Duration, seed: u64) -> Self {
        let frames = |d: Duration| (d.as_secs_f64() / frame.as_secs_f64()).max(1.0);
        let (talk_mean, silence_mean) = (frames(talk), frames(silence));
        let mut rng = StdRng::seed_from_u64(seed);
        let talking = rng.random::<f64>() < talk_mean / (talk_mean + silence_mean);
        let mut s = Spurts {
            talk_mean,
            silence_mean,
            talking,
            left: 0,
            rng,
        };
        // Exponential lengths are memoryless: a fresh draw is also the
        // remaining length at a random point.
        s.left = s.draw();
        TalkPattern { spurts: Some(s) }
    }

    /// Whether the speaker sends in the next frame.
    pub fn next_frame(&mut self) -> bool {
        let Some(s) = &mut self.spurts else {
            return true;
        };
        if s.left == 0 {
            s.talking = !s.talking;
            s.left = s.draw();
        }
        s.left -= 1;
        s.talking
    }
}

impl Spurts {
    /// The length of the state just entered, at least one frame.
    fn draw(&mut self) -> u64 {
        let mean = if self.talking {
            self.talk_mean
        } else {
            self.silence_mean
        };
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u = 1.0 - self.rng.random::<f64>();
        ((-u.ln() * mean).round() as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    #[test]
    fn continuous_always_talks() {
        let mut t = TalkPattern::continuous();
        assert!((0..1000).all(|_| t.next_frame()));
    }

    #[test]
    fn spurts_have_their_duty_cycle_and_mean_length() {
        let mut t = TalkPattern::spurts(
            Duration::from_millis(1000),
            Duration::from_millis(1500),
            FRAME,
            4,
        );
        let frames: Vec<bool> = (0..500_000).map(|_| t.next_frame()).collect();
        let talking = frames.iter().filter(|f| **f).count() as f64 / frames.len() as f64;
        assert!((talking - 0.4).abs() < 0.02, "duty cycle {talking}");
        let spurts = frames.windows(2).filter(|w| w[1] && !w[0]).count() as f64;
        let mean_spurt = frames.iter().filter(|f| **f).count() as f64 / spurts;
        assert!((mean_spurt - 50.0).abs() < 2.5, "mean spurt {mean_spurt}");
    }

    #[test]
    fn same_seed_same_pattern() {
        let run = |seed| {
            let mut t = TalkPattern::spurts(
                Duration::from_millis(400),
                Duration::from_millis(400),
                FRAME,
                seed,
            );
            (0..2000).map(|_| t.next_frame()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
