//! Packets the simulated network is holding: each leaves at its due time.
//!
//! Pure: the caller passes `now` and sleeps until [`DelayLine::next_due`].
//! Packets with the same due time leave in the order they came in, so a
//! constant delay never reorders; only differing delays do, as on a real
//! network.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

/// Items waiting for their due time.
#[derive(Debug)]
pub struct DelayLine<T> {
    /// Earliest due first (a min-heap through `Reverse`).
    heap: BinaryHeap<Reverse<Entry<T>>>,
    /// Insertion counter: breaks ties between equal due times.
    next_order: u64,
}

#[derive(Debug)]
struct Entry<T> {
    due: Instant,
    order: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

impl<T> Default for DelayLine<T> {
    fn default() -> Self {
        DelayLine {
            heap: BinaryHeap::new(),
            next_order: 0,
        }
    }
}

impl<T> DelayLine<T> {
    /// Holds `item` until `due`.
    pub fn push(&mut self, due: Instant, item: T) {
        let order = self.next_order;
        self.next_order += 1;
        self.heap.push(Reverse(Entry { due, order, item }));
    }

    /// The next item whose time has come, if any; call until `None`.
    #[must_use]
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.heap.peek()?.0.due > now {
            return None;
        }
        self.heap.pop().map(|Reverse(e)| e.item)
    }

    /// When the next item is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.due)
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
