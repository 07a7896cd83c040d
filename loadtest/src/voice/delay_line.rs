//! Packets the simulated network is holding: each leaves at its due time.
//!
//! Pure: the caller passes `now` and sleeps until [`DelayLine::next_due`].
//! Packets with the same due time leave in the order they came in, so a
//! constant delay never reorders; only differing delays do, as on a real
//! network.

use std::collections::BTreeMap;
use std::time::Instant;

/// Items waiting for their due time.
#[derive(Debug)]
pub struct DelayLine<T> {
    /// By due time, then by insertion order (which breaks ties between
    /// equal due times): the first entry is the next to leave.
    held: BTreeMap<(Instant, u64), T>,
    /// Insertion counter.
    next_order: u64,
}

impl<T> Default for DelayLine<T> {
    fn default() -> Self {
        DelayLine {
            held: BTreeMap::new(),
            next_order: 0,
        }
    }
}

impl<T> DelayLine<T> {
    /// Holds `item` until `due`.
    pub fn push(&mut self, due: Instant, item: T) {
        self.held.insert((due, self.next_order), item);
        self.next_order += 1;
    }

    /// The next item whose time has come, if any; call until `None`.
    #[must_use]
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        let entry = self.held.first_entry().filter(|e| e.key().0 <= now)?;
        Some(entry.remove())
    }

    /// When the next item is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.first_key_value().map(|(&(due, _), _)| due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn items_leave_by_due_time_then_by_arrival() {
        let t0 = Instant::now();
        let mut line = DelayLine::default();
        line.push(t0 + ms(30), "c");
        line.push(t0 + ms(10), "a");
        line.push(t0 + ms(10), "b");
        line.push(t0 + ms(20), "x");
        assert_eq!(line.next_due(), Some(t0 + ms(10)));
        assert_eq!(line.pop_due(t0 + ms(5)), None);
        assert_eq!(line.pop_due(t0 + ms(10)), Some("a"));
        assert_eq!(line.pop_due(t0 + ms(10)), Some("b"));
        assert_eq!(line.pop_due(t0 + ms(10)), None);
        assert_eq!(line.pop_due(t0 + ms(100)), Some("x"));
        assert_eq!(line.pop_due(t0 + ms(100)), Some("c"));
        assert_eq!(line.next_due(), None);
    }

    #[test]
    fn a_longer_delay_on_an_earlier_packet_reorders() {
        let t0 = Instant::now();
        let mut line = DelayLine::default();
        // Packet 0 sent at 0 with 50 ms, packet 1 sent at 20 ms with 5 ms.
        line.push(t0 + ms(50), 0);
        line.push(t0 + ms(25), 1);
        let mut out = Vec::new();
        while let Some(p) = line.pop_due(t0 + ms(60)) {
            out.push(p);
        }
        assert_eq!(out, [1, 0]);
    }
}
