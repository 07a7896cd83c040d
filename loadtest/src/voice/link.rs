//! One direction of the simulated network for one client: each item meets
//! its [`Fate`], and the delayed ones wait in a [`DelayLine`]. The speaker's
//! uplink and the listener's downlink are both one of these.
//!
//! Pure: the caller passes `now` and sleeps until [`Link::next_due`].

use std::time::Instant;

use crate::voice::delay_line::DelayLine;
use crate::voice::impairment::{Fate, Impairment, ImpairmentSpec};

/// A simulated link.
#[derive(Debug)]
pub struct Link<T> {
    /// `None` for a clean link, which draws nothing.
    impairment: Option<Impairment>,
    /// Delayed items, with their arrival times.
    held: DelayLine<(Instant, T)>,
}

impl<T: Clone> Link<T> {
    /// A link doing what `spec` says, its random draws seeded by `seed`.
    pub fn new(spec: ImpairmentSpec, seed: u64) -> Self {
        Link {
            impairment: (!spec.is_clean()).then(|| Impairment::new(spec, seed)),
            held: DelayLine::default(),
        }
    }

    /// Puts `item` on the link at `now`: the copies that arrive at once
    /// (at `now`) go onto `arrived`; delayed ones are held. `false` when the
    /// link lost it.
    pub fn send(&mut self, now: Instant, item: T, arrived: &mut Vec<T>) -> bool {
        let Some(impairment) = &mut self.impairment else {
            arrived.push(item);
            return true;
        };
        let Fate::Pass { delay, duplicate } = impairment.fate() else {
            return false;
        };
        for _ in 0..1 + usize::from(duplicate) {
            if delay.is_zero() {
                arrived.push(item.clone());
            } else {
                self.held.push(now + delay, (now + delay, item.clone()));
            }
        }
        true
    }

    /// When the next held item arrives.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.next_due()
    }

    /// The next held item that has arrived by `now`, with its arrival time;
    /// call until `None`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(T, Instant)> {
        self.held
            .pop_due(now)
            .map(|(arrival, item)| (item, arrival))
    }

    /// Everything held, in arrival order, as if it had been waited for.
    pub fn drain(&mut self) -> Vec<(T, Instant)> {
        let mut out = Vec::new();
        while let Some(due) = self.next_due() {
            while let Some(arrived) = self.pop_due(due) {
                out.push(arrived);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    #[test]
    fn a_clean_link_passes_everything_at_once() {
        let t0 = Instant::now();
        let mut link = Link::new(ImpairmentSpec::clean(FRAME), 1);
        let mut arrived = Vec::new();
        assert!(link.send(t0, 7, &mut arrived));
        assert_eq!(arrived, [7]);
        assert_eq!(link.next_due(), None);
    }

    #[test]
    fn delayed_and_duplicated_items_arrive_at_their_time() {
        let t0 = Instant::now();
        let delay = Duration::from_millis(30);
        let mut link = Link::new(
            ImpairmentSpec {
                delay,
                duplicate: 0.999,
                ..ImpairmentSpec::clean(FRAME)
            },
            1,
        );
        let mut arrived = Vec::new();
        assert!(link.send(t0, 1, &mut arrived));
        assert!(link.send(t0 + FRAME, 2, &mut arrived));
        assert!(arrived.is_empty());
        assert_eq!(link.next_due(), Some(t0 + delay));
        assert_eq!(link.pop_due(t0 + FRAME), None);
        assert_eq!(link.pop_due(t0 + delay), Some((1, t0 + delay)));
        assert_eq!(link.pop_due(t0 + delay), Some((1, t0 + delay)));
        assert_eq!(link.pop_due(t0 + delay), None);
        let rest = link.drain();
        assert_eq!(rest, [(2, t0 + FRAME + delay), (2, t0 + FRAME + delay)]);
        assert_eq!(link.next_due(), None);
    }

    #[test]
    fn a_lossy_link_loses_some() {
        let t0 = Instant::now();
        let mut link = Link::new(
            ImpairmentSpec {
                loss: 0.5,
                ..ImpairmentSpec::clean(FRAME)
            },
            3,
        );
        let mut arrived = Vec::new();
        let passed = (0..1_000)
            .filter(|&i| link.send(t0, i, &mut arrived))
            .count();
        assert_eq!(arrived.len(), passed);
        assert!((300..700).contains(&passed), "{passed}");
    }
}
