//! Forwarded voice on its way into one QUIC connection, with the lag rule
//! kept when congestion control holds the listener back.
//!
//! quinn sends a connection's queued datagrams as its congestion control
//! allows. Its queue knows nothing of time: when full it can only refuse a
//! new datagram or drop the oldest, and the server's queue holds about 300
//! typical forwarded datagrams, seconds of audio. A listener whose path
//! cannot carry its channel would hear that audio late while the newest was
//! lost. So the endpoint gives quinn at most [`QUIC_BACKLOG`] bytes of voice
//! per connection. The rest waits in front of it in a [`ListenerQueue`],
//! where `voice.max_broadcast_lag_ms` drops the oldest, as in the router's
//! own queues, and goes on into quinn as quinn sends. A connection that
//! keeps up never has anything waiting: what a drain hands quinn is sent in
//! the same turn.

use std::time::Instant;

use bytes::Bytes;
use openspeak_router::{ListenerQueue, RouterConfig};
use openspeak_voice::quic::SERVER_DATAGRAM_SEND_BUFFER;
use quinn_proto::{Connection, SendDatagramError};

/// The most voice, in quinn's accounting (each datagram's bytes plus 32 of
/// bookkeeping), that one connection's datagram queue may hold before more
/// waits in front of it: about 20 forwarded datagrams of a 60-byte payload,
/// or two of the largest. A new datagram goes to quinn only while the
/// queue is at or below this, so the largest voice datagram always fits.
pub(super) const QUIC_BACKLOG: usize = 2 * 1024;

/// What became of a datagram offered to a connection.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Offered {
    /// In quinn's queue, to be sent as its congestion control allows.
    Queued,
    /// Waiting in front of quinn; the lag rule dropped this many older
    /// ones to make way for it.
    Waiting { dropped: u64 },
    /// quinn's queue had no room (counted as `send_buffer_full`).
    Full,
    /// quinn refused it: the connection is closing, or the peer takes no
    /// datagrams of that size (counted as `send_error`).
    Refused,
}

/// One connection's forwarded voice not yet sent.
#[derive(Debug, Default)]
pub(super) struct VoiceOut {
    waiting: ListenerQueue,
    /// Since when voice has been waiting to be sent: in quinn's queue or in
    /// front of it. The forward delay is measured from here.
    pub(super) since: Option<Instant>,
}

impl VoiceOut {
    /// Hands `datagram` to quinn, or queues it behind what already waits.
    /// `now` is when the input it was routed from arrived.
    pub(super) fn offer(
        &mut self,
        quic: &mut Connection,
        now: Instant,
        datagram: Bytes,
        config: &RouterConfig,
    ) -> Offered {
        if self.waiting.is_empty() && backlog(quic) <= QUIC_BACKLOG {
            let offered = send(quic, datagram);
            if offered == Offered::Queued {
                self.since.get_or_insert(now);
            }
            return offered;
        }
        let dropped = self.waiting.push(now, datagram, config);
        self.since.get_or_insert(now);
        Offered::Waiting { dropped }
    }

    /// Moves waiting voice into quinn while its queue has room under
    /// [`QUIC_BACKLOG`]; `Offered` for each datagram quinn did not take.
    /// Returns how many it took.
    pub(super) fn refill(&mut self, quic: &mut Connection, mut lost: impl FnMut(Offered)) -> usize {
        // The first to move is the oldest: the forward delay of what moves
        // runs from when it began to wait.
        let Some(oldest) = self.waiting.oldest() else {
            return 0;
        };
        let mut moved = 0;
        while backlog(quic) <= QUIC_BACKLOG {
            let Some(datagram) = self.waiting.pop() else {
                break;
            };
            match send(quic, datagram) {
                Offered::Queued => moved += 1,
                other => lost(other),
            }
        }
        if moved > 0 {
            self.since.get_or_insert(oldest);
        }
        moved
    }

    /// Datagrams waiting in front of quinn.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.stats().queued
    }
}

/// Voice in quinn's datagram queue, in its accounting; 32 when empty.
fn backlog(quic: &mut Connection) -> usize {
    SERVER_DATAGRAM_SEND_BUFFER.saturating_sub(quic.datagrams().send_buffer_space())
}

fn send(quic: &mut Connection, datagram: Bytes) -> Offered {
    match quic.datagrams().send(datagram, false) {
        Ok(()) => Offered::Queued,
        Err(SendDatagramError::Blocked(_)) => Offered::Full,
        Err(_) => Offered::Refused,
    }
}
