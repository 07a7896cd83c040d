//! The per-listener queue of forwarded datagrams, and the lag rule that
//! keeps one slow listener from holding stale audio.
//!
//! Lag is judged by queuing time: each datagram remembers the `now` at
//! which it was queued, and when a new one is queued, the oldest ones that
//! have waited longer than `max_broadcast_lag_ms` are dropped. Queuing time
//! is exactly the delay the queue adds, whatever the number of speakers;
//! counting 20 ms per packet would overcount when several people talk at
//! once, and the speakers' own timestamps have unrelated origins. A count
//! limit backs it up for bursts that arrive within one instant.
//!
//! The router keeps one per member. A driver whose transport has a queue
//! of its own that the lag rule cannot see (quinn's datagram queue, which
//! congestion control drains) keeps one too, in front of it, so that what
//! a congested listener waits for is still judged by age.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::{ListenerStats, RouterConfig};

/// Datagrams waiting for one listener. Empty, it holds no allocation.
#[derive(Debug, Default)]
pub struct ListenerQueue {
    entries: VecDeque<Queued>,
    stats: ListenerStats,
    /// The driver said the listener cannot take more now: `poll_transmit`
    /// passes it by, and the lag rule trims what piles up.
    pub(crate) blocked: bool,
    /// Whether the listener is in the router's round-robin of listeners
    /// with datagrams, so that it is in it at most once.
    pub(crate) scheduled: bool,
}

#[derive(Debug)]
struct Queued {
    datagram: Bytes,
    queued_at: Instant,
}

impl ListenerQueue {
    /// Queues one datagram, first dropping the oldest ones the lag rule
    /// condemns; returns how many it dropped (also in its counters).
    pub fn push(&mut self, now: Instant, datagram: Bytes, config: &RouterConfig) -> u64 {
        let max_lag = config.max_lag();
        let mut dropped = 0;
        while let Some(oldest) = self.entries.front() {
            let too_old = now.saturating_duration_since(oldest.queued_at) > max_lag;
            if !too_old && self.entries.len() < config.queue_limit() {
                break;
            }
            self.entries.pop_front();
            dropped += 1;
        }
        self.stats.dropped_lag += dropped;
        self.entries.push_back(Queued {
            datagram,
            queued_at: now,
        });
        self.stats.enqueued += 1;
        dropped
    }

    /// The oldest datagram, counted as delivered.
    pub fn pop(&mut self) -> Option<Bytes> {
        let q = self.entries.pop_front()?;
        self.stats.delivered += 1;
        Some(q.datagram)
    }

    /// Drops everything queued: the listener deafened, moved or left.
    pub fn discard(&mut self) {
        self.stats.discarded += self.entries.len() as u64;
        self.entries.clear();
    }

    /// When the oldest datagram still queued was queued.
    pub fn oldest(&self) -> Option<Instant> {
        self.entries.front().map(|q| q.queued_at)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Its counters, and how many datagrams it holds now.
    pub fn stats(&self) -> ListenerStats {
        ListenerStats {
            queued: self.entries.len(),
            ..self.stats
        }
    }
}
