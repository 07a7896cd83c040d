//! Counters of stream quality, per speaker, per listener and in total, for
//! metrics and for the reports to the control plane.

use openspeak_voice::datagram::WireError;

/// What happened to one session's packets as a speaker.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpeakerStats {
    /// Valid voice datagrams received.
    pub received: u64,
    /// Datagrams that did not parse (not counted in `received`).
    pub malformed: u64,
    /// Dropped because the payload was longer than `max_payload_bytes`.
    pub oversized: u64,
    /// Dropped because the session was over `max_packets_per_second` or
    /// `max_bytes_per_second`.
    pub rate_limited: u64,
    /// Dropped because the session was muted.
    pub muted: u64,
    /// Dropped because the session was in no channel.
    pub no_channel: u64,
    /// Dropped as copies of a packet already released or held.
    pub duplicate: u64,
    /// Dropped because their slot had already been given up.
    pub late: u64,
    /// Dropped as older than `max_packet_age_ms`.
    pub stale: u64,
    /// Sequence numbers given up after waiting for them (never arrived in
    /// time).
    pub lost: u64,
    /// Accepted packets that arrived after a later one and were put back in
    /// order.
    pub reordered: u64,
    /// Packets released to the speaker's channel.
    pub forwarded: u64,
    /// The last interarrival jitter estimate (RFC 3550 §6.4.1), in ms.
    pub jitter_ms: f64,
}

impl SpeakerStats {
    /// Adds the counters of the same speaker as another copy of the router
    /// saw it (a data plane's UDP workers each route some of its packets);
    /// the jitter is the larger.
    pub fn merge(&mut self, other: &Self) {
        self.add(other);
        self.jitter_ms = self.jitter_ms.max(other.jitter_ms);
    }

    fn add(&mut self, o: &Self) {
        self.received += o.received;
        self.malformed += o.malformed;
        self.oversized += o.oversized;
        self.rate_limited += o.rate_limited;
        self.muted += o.muted;
        self.no_channel += o.no_channel;
        self.duplicate += o.duplicate;
        self.late += o.late;
        self.stale += o.stale;
        self.lost += o.lost;
        self.reordered += o.reordered;
        self.forwarded += o.forwarded;
    }
}

/// What happened to the datagrams queued for one session as a listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Datagrams queued for it.
    pub enqueued: u64,
    /// Datagrams handed to the driver by `poll_transmit`.
    pub delivered: u64,
    /// Its oldest datagrams, dropped to keep its lag under
    /// `max_broadcast_lag_ms` (or its queue under `max_listener_queue`).
    pub dropped_lag: u64,
    /// Datagrams still queued when it deafened, moved or left, dropped
    /// because they were meant for where it no longer is.
    pub discarded: u64,
    /// Datagrams queued now.
    pub queued: usize,
}

impl ListenerStats {
    /// Adds another copy of the router's counters for the same listener.
    pub fn merge(&mut self, other: &Self) {
        self.add(other);
    }

    fn add(&mut self, o: &Self) {
        self.enqueued += o.enqueued;
        self.delivered += o.delivered;
        self.dropped_lag += o.dropped_lag;
        self.discarded += o.discarded;
        self.queued += o.queued;
    }
}

/// Malformed datagrams, by [`WireError`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MalformedStats {
    /// [`WireError::TooShort`].
    pub too_short: u64,
    /// [`WireError::UnknownKind`].
    pub unknown_kind: u64,
    /// [`WireError::EmptyPayload`].
    pub empty_payload: u64,
    /// [`WireError::PayloadTooLong`].
    pub payload_too_long: u64,
    /// [`WireError::ZeroSpeaker`]; a client never sends a forwarded
    /// datagram, so this stays 0 unless one is misparsed.
    pub zero_speaker: u64,
}

impl MalformedStats {
    pub(crate) fn count(&mut self, e: &WireError) {
        let slot = match e {
            WireError::TooShort { .. } => &mut self.too_short,
            WireError::UnknownKind(_) => &mut self.unknown_kind,
            WireError::EmptyPayload => &mut self.empty_payload,
            WireError::PayloadTooLong { .. } => &mut self.payload_too_long,
            WireError::ZeroSpeaker => &mut self.zero_speaker,
        };
        *slot += 1;
    }

    /// All malformed datagrams.
    fn add(&mut self, o: &Self) {
        self.too_short += o.too_short;
        self.unknown_kind += o.unknown_kind;
        self.empty_payload += o.empty_payload;
        self.payload_too_long += o.payload_too_long;
        self.zero_speaker += o.zero_speaker;
    }

    pub fn total(&self) -> u64 {
        self.too_short
            + self.unknown_kind
            + self.empty_payload
            + self.payload_too_long
            + self.zero_speaker
    }
}

/// Totals over every session the router has known, removed ones included.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RouterStats {
    /// Datagrams from a session that is not a member.
    pub unknown_session: u64,
    /// Datagrams that did not parse, by reason.
    pub malformed: MalformedStats,
    /// Summed speaker counters (`jitter_ms` is the largest current one).
    pub speakers: SpeakerStats,
    /// Summed listener counters.
    pub listeners: ListenerStats,
    /// Sessions the router knows now (a gauge, not a total).
    pub members: usize,
}

impl RouterStats {
    /// Adds the totals of another copy of the router with the same
    /// membership (a data plane's UDP workers each keep one): every counter
    /// is summed, the jitter is the larger, and `members` stays.
    pub fn merge(&mut self, other: &RouterStats) {
        self.unknown_session += other.unknown_session;
        self.malformed.add(&other.malformed);
        self.speakers.merge(&other.speakers);
        self.listeners.merge(&other.listeners);
    }

    /// Datagrams the data plane itself dropped, for any reason: malformed,
    /// unknown session, oversized, over the session's rate limits, muted
    /// speaker, no channel, duplicate, late, stale, and listener lag or
    /// discards. Loss on the way in (`speakers.lost`) is not
    /// counted: the network lost those, not the server.
    pub fn dropped(&self) -> u64 {
        let s = &self.speakers;
        self.unknown_session
            + self.malformed.total()
            + s.oversized
            + s.rate_limited
            + s.muted
            + s.no_channel
            + s.duplicate
            + s.late
            + s.stale
            + self.listeners.dropped_lag
            + self.listeners.discarded
    }

    pub(crate) fn add_session(&mut self, speaker: &SpeakerStats, listener: &ListenerStats) {
        self.speakers.add(speaker);
        self.listeners.add(listener);
    }
}
