//! The voice router: membership in, datagrams in, forwarded datagrams and
//! speaking events out.

use std::collections::{HashMap, VecDeque};
use std::mem;
use std::time::Instant;

use bytes::Bytes;
use openspeak_voice::datagram::{Forwarded, VoicePacket};

use crate::jitter::JitterBuffer;
use crate::limit::SendLimit;
use crate::listener::ListenerQueue;
use crate::{
    ChannelKey, ListenerStats, MalformedStats, Member, MembershipError, RouterConfig, RouterEvent,
    RouterStats, SessionId, SpeakerStats, Transmit,
};

/// Routes the voice of every session to the other members of its channel.
///
/// A `Router` does no IO and never reads the clock; it makes progress only
/// when its driver calls it, and every call that depends on time takes
/// `now`. Its methods come in four kinds:
///
/// - Getters, taking `&self`: [`speaker_stats`](Self::speaker_stats),
///   [`listener_stats`](Self::listener_stats), [`stats`](Self::stats),
///   [`member`](Self::member), [`held`](Self::held),
///   [`is_speaking`](Self::is_speaking).
/// - Handlers for input from the network and the clock, named `handle_*`:
///   [`handle_datagram`](Self::handle_datagram) for each voice datagram
///   from an authenticated session, [`handle_timeout`](Self::handle_timeout)
///   when the instant from [`poll_timeout`](Self::poll_timeout) is reached.
/// - Mutators, for what the control plane and the transports say:
///   [`set_member`](Self::set_member), [`remove_member`](Self::remove_member),
///   [`set_blocked`](Self::set_blocked).
/// - `#[must_use]` polls for its output: [`poll_transmit`](Self::poll_transmit)
///   (datagrams to send), [`poll_event`](Self::poll_event) (speaking
///   changes for the control plane), [`poll_timeout`](Self::poll_timeout)
///   (when to call `handle_timeout` next).
///
/// Drive it like this: after any handler or mutator, call `poll_transmit`
/// until it returns `None` and send each datagram, then `poll_event` until
/// `None`, then ask `poll_timeout` again and (re)arm one timer with it;
/// when the timer fires, call `handle_timeout(now)` and drain again. Output
/// only accumulates between drains (the per-listener queues are bounded by
/// the lag rule), so draining late costs memory and latency, not
/// correctness.
///
/// A datagram that does not parse, comes from a session that may not talk,
/// or is over its session's send limits (payload size, packets and bytes
/// per second) is counted and dropped; nothing from the network can make
/// it panic.
#[derive(Debug)]
pub struct Router {
    config: RouterConfig,
    /// Every session the control plane has told us about.
    peers: HashMap<SessionId, Peer>,
    /// The members of each channel, in the order they joined: the fan-out
    /// list, so that forwarding does not scan every session.
    channels: HashMap<ChannelKey, Vec<SessionId>>,
    /// Listeners with queued datagrams, in round-robin order, so that
    /// `poll_transmit` serves them fairly rather than one queue at a time.
    ready: VecDeque<SessionId>,
    events: VecDeque<RouterEvent>,
    /// Counters of sessions that are gone, so the totals never go down.
    retired: RouterStats,
    unknown_session: u64,
    malformed: MalformedStats,
    /// Reused buffers, so the hot path does not allocate per packet.
    released: Vec<VoicePacket>,
    due: Vec<SessionId>,
}

/// One session, as speaker and as listener.
///
/// Most of a server's sessions are idle at any moment, and a data plane
/// with several workers keeps a copy of the router on each, so an idle
/// session costs only its membership here: what it has as speaker and
/// listener is allocated when it first sends or is first sent something,
/// and kept until it goes (its counters and send limits must outlive its
/// silences).
#[derive(Debug, Default)]
struct Peer {
    member: Member,
    active: Option<Box<Active>>,
}

/// A session's state as speaker and listener, once it has any.
#[derive(Debug, Default)]
struct Active {
    /// Its stream as a speaker; `None` until it talks, and again once it has
    /// been silent for `stream_idle_timeout`, muted or moved.
    stream: Option<JitterBuffer>,
    /// When its last packet was forwarded, while it counts as speaking.
    speaking_since_last: Option<Instant>,
    /// Its send limits' buckets. Kept for as long as the session, not with
    /// the stream, which a sequence jump, mute or move resets.
    limit: SendLimit,
    speaker: SpeakerStats,
    queue: ListenerQueue,
}

impl Peer {
    /// Its state as speaker and listener, made on first use.
    fn active(&mut self) -> &mut Active {
        self.active.get_or_insert_with(Box::default)
    }

    /// Its state as speaker and listener, if it has any yet.
    fn active_mut(&mut self) -> Option<&mut Active> {
        self.active.as_deref_mut()
    }

    fn speaker_stats(&self) -> SpeakerStats {
        self.active.as_ref().map(|a| a.speaker).unwrap_or_default()
    }

    fn listener_stats(&self) -> ListenerStats {
        self.active
            .as_ref()
            .map(|a| a.queue.stats())
            .unwrap_or_default()
    }

    /// The earliest instant this peer needs `handle_timeout`.
    fn next_timeout(&self, config: &RouterConfig) -> Option<Instant> {
        self.active.as_ref()?.next_timeout(config)
    }
}

impl Active {
    fn next_timeout(&self, config: &RouterConfig) -> Option<Instant> {
        let stream = self.stream.as_ref().map(|s| {
            let idle = s.last_arrival() + config.idle_timeout();
            s.next_deadline().map_or(idle, |d| d.min(idle))
        });
        let speaking = self
            .speaking_since_last
            .map(|t| t + config.speaking_timeout);
        match (stream, speaking) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Router {
    /// A router with no members.
    pub fn new(config: RouterConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
            channels: HashMap::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            retired: RouterStats::default(),
            unknown_session: 0,
            malformed: MalformedStats::default(),
            released: Vec::new(),
            due: Vec::new(),
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// What the control plane last said about `session`.
    pub fn member(&self, session: SessionId) -> Option<&Member> {
        self.peers.get(&session).map(|p| &p.member)
    }

    /// Each session's counters, as speaker and as listener.
    pub fn session_stats(
        &self,
    ) -> impl Iterator<Item = (SessionId, SpeakerStats, ListenerStats)> + '_ {
        self.peers
            .iter()
            .map(|(session, p)| (*session, p.speaker_stats(), p.listener_stats()))
    }

    /// Every session it knows.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.peers.keys().copied()
    }

    /// The channels that have at least one member (an emptied channel's
    /// entry is removed at once).
    pub fn channels(&self) -> impl Iterator<Item = &ChannelKey> + '_ {
        self.channels.keys()
    }

    /// `session`'s counters as a speaker.
    pub fn speaker_stats(&self, session: SessionId) -> Option<SpeakerStats> {
        self.peers.get(&session).map(Peer::speaker_stats)
    }

    /// `session`'s counters as a listener.
    pub fn listener_stats(&self, session: SessionId) -> Option<ListenerStats> {
        self.peers.get(&session).map(Peer::listener_stats)
    }

    /// Packets `session`'s stream holds while waiting for missing ones;
    /// `None` when it has no stream state (never talked, or forgotten).
    pub fn held(&self, session: SessionId) -> Option<usize> {
        self.peers
            .get(&session)?
            .active
            .as_ref()?
            .stream
            .as_ref()
            .map(JitterBuffer::held)
    }

    /// Whether `session` counts as speaking.
    pub fn is_speaking(&self, session: SessionId) -> bool {
        self.peers
            .get(&session)
            .and_then(|p| p.active.as_ref())
            .is_some_and(|a| a.speaking_since_last.is_some())
    }

    /// Totals over all sessions, removed ones included.
    pub fn stats(&self) -> RouterStats {
        let mut total = self.retired;
        total.unknown_session = self.unknown_session;
        total.malformed = self.malformed;
        total.speakers.jitter_ms = 0.0;
        total.members = self.peers.len();
        for a in self.peers.values().filter_map(|p| p.active.as_ref()) {
            total.add_session(&a.speaker, &a.queue.stats());
            total.speakers.jitter_ms = total.speakers.jitter_ms.max(a.speaker.jitter_ms);
        }
        total
    }

    /// Adds `session` or changes its channel, mute or deafen state.
    ///
    /// Moving to another channel (or to none) or being muted ends its
    /// current stream: what its jitter buffer holds is dropped, and if it
    /// was speaking a `SpeakingChanged { speaking: false }` follows at once.
    /// Moving or deafening drops what was queued for it.
    pub fn set_member(
        &mut self,
        session: SessionId,
        member: Member,
    ) -> Result<(), MembershipError> {
        if session.0 == 0 {
            return Err(MembershipError::ZeroSession);
        }
        let peer = self.peers.entry(session).or_default();
        let old = mem::replace(&mut peer.member, member);
        let new = &peer.member;
        let moved = old.channel != new.channel;
        let muted = new.muted && !old.muted;
        let deafened = new.deafened && !old.deafened;
        if let Some(active) = &mut peer.active {
            if moved || deafened {
                active.queue.discard();
            }
            if moved || muted {
                active.stream = None;
                if active.speaking_since_last.take().is_some() {
                    self.events.push_back(RouterEvent::SpeakingChanged {
                        session,
                        speaking: false,
                    });
                }
            }
        }
        if moved {
            let new_channel = new.channel.clone();
            if let Some(old_channel) = old.channel {
                self.leave_channel(session, &old_channel);
            }
            if let Some(channel) = new_channel {
                self.channels.entry(channel).or_default().push(session);
            }
        }
        Ok(())
    }

    /// Forgets `session`: it leaves its channel, its queue and stream are
    /// dropped, and if it was speaking a `SpeakingChanged { speaking: false }`
    /// follows. Returns its final counters, as speaker and as listener.
    pub fn remove_member(&mut self, session: SessionId) -> Option<(SpeakerStats, ListenerStats)> {
        let peer = self.peers.remove(&session)?;
        if let Some(channel) = &peer.member.channel {
            self.leave_channel(session, channel);
        }
        let Some(mut active) = peer.active else {
            return Some(Default::default());
        };
        if active.speaking_since_last.is_some() {
            self.events.push_back(RouterEvent::SpeakingChanged {
                session,
                speaking: false,
            });
        }
        active.queue.discard();
        let listener = active.queue.stats();
        self.retired.add_session(&active.speaker, &listener);
        Some((active.speaker, listener))
    }

    /// Tells the router whether `session`'s transport can take datagrams
    /// now. While blocked, `poll_transmit` passes it by and the lag rule
    /// drops its oldest datagrams as new ones come; the others are not
    /// affected.
    pub fn set_blocked(&mut self, session: SessionId, blocked: bool) {
        let Some(peer) = self.peers.get_mut(&session) else {
            return;
        };
        // Unblocking a listener that was never sent anything changes nothing.
        let Some(active) = (if blocked {
            Some(peer.active())
        } else {
            peer.active_mut()
        }) else {
            return;
        };
        let queue = &mut active.queue;
        queue.blocked = blocked;
        if !blocked && !queue.is_empty() && !queue.scheduled {
            queue.scheduled = true;
            self.ready.push_back(session);
        }
    }

    /// Takes one datagram that `from`'s transport received and
    /// authenticated. In-order packets are forwarded in this call; a packet
    /// behind a gap waits for at most the adaptive target delay.
    ///
    /// The session's send limits come first, before mute, channel and
    /// stream: they bound everything a session sends, and a packet dropped
    /// there costs a counter, not a fan-out. Its sequence number still
    /// settles its slot in the stream, so that the packets after it do not
    /// wait for it, nor count it lost.
    pub fn handle_datagram(&mut self, now: Instant, from: SessionId, datagram: Bytes) {
        self.take_datagram(now, from, datagram, None::<fn(usize) -> bool>);
    }

    /// [`Router::handle_datagram`] with the session's packet and byte
    /// limits decided by `admit` (given the payload's length) instead of
    /// the router's own buckets: for a driver that reads one session's
    /// packets on several threads, each with a copy of the router, and
    /// keeps one [`SendLimit`] per session that they all take from. The
    /// payload cap, the counting and the skipping of a dropped packet's
    /// sequence number are the router's, as for any packet.
    pub fn handle_datagram_limited(
        &mut self,
        now: Instant,
        from: SessionId,
        datagram: Bytes,
        admit: impl FnOnce(usize) -> bool,
    ) {
        self.take_datagram(now, from, datagram, Some(admit));
    }

    fn take_datagram(
        &mut self,
        now: Instant,
        from: SessionId,
        datagram: Bytes,
        admit: Option<impl FnOnce(usize) -> bool>,
    ) {
        let Some(peer) = self.peers.get_mut(&from) else {
            self.unknown_session += 1;
            return;
        };
        let muted = peer.member.muted;
        let in_channel = peer.member.channel.is_some();
        let peer = peer.active();
        let packet = match VoicePacket::parse(datagram) {
            Ok(packet) => packet,
            Err(e) => {
                self.malformed.count(&e);
                peer.speaker.malformed += 1;
                return;
            }
        };
        peer.speaker.received += 1;
        let len = packet.payload.len();
        let admitted = |limit: &mut SendLimit| match admit {
            Some(admit) => admit(len),
            None => limit.admit(now, len, &self.config),
        };
        let over_limit = if len > self.config.payload_limit() {
            Some(&mut peer.speaker.oversized)
        } else if !admitted(&mut peer.limit) {
            Some(&mut peer.speaker.rate_limited)
        } else {
            None
        };
        if let Some(count) = over_limit {
            *count += 1;
            if let Some(stream) = &mut peer.stream {
                let mut released = mem::take(&mut self.released);
                let seq = packet.sequence;
                stream.skip(now, seq, &self.config, &mut peer.speaker, &mut released);
                self.fan_out(now, from, &mut released);
                self.released = released;
            }
            return;
        }
        if muted {
            peer.speaker.muted += 1;
            return;
        }
        if !in_channel {
            peer.speaker.no_channel += 1;
            return;
        }
        let mut released = mem::take(&mut self.released);
        let stream = peer
            .stream
            .get_or_insert_with(|| JitterBuffer::new(now, &packet));
        stream.push(now, packet, &self.config, &mut peer.speaker, &mut released);
        self.fan_out(now, from, &mut released);
        self.released = released;
    }

    /// Does what was due by `now`: releases held packets whose wait is
    /// over, ends speaking for the silent, forgets idle streams.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = mem::take(&mut self.due);
        due.clear();
        due.extend(
            self.peers
                .iter()
                .filter(|(_, p)| p.next_timeout(&self.config).is_some_and(|t| t <= now))
                .map(|(id, _)| *id),
        );
        // Same inputs, same output order, whatever the hash map's order.
        due.sort_unstable();

        let mut released = mem::take(&mut self.released);
        for &session in &due {
            let Some(peer) = self.peers.get_mut(&session).and_then(Peer::active_mut) else {
                continue;
            };
            if let Some(stream) = &mut peer.stream {
                stream.expire(now, &mut peer.speaker, &mut released);
                // The idle timeout is never shorter than the longest hold,
                // so nothing is still held here; flush it all the same
                // rather than lose it silently.
                if stream.last_arrival() + self.config.idle_timeout() <= now {
                    stream.flush(&mut peer.speaker, &mut released);
                    peer.stream = None;
                }
            }
            self.fan_out(now, session, &mut released);

            let Some(peer) = self.peers.get_mut(&session).and_then(Peer::active_mut) else {
                continue;
            };
            if let Some(last) = peer.speaking_since_last
                && last + self.config.speaking_timeout <= now
            {
                peer.speaking_since_last = None;
                self.events.push_back(RouterEvent::SpeakingChanged {
                    session,
                    speaking: false,
                });
            }
        }
        self.released = released;
        self.due = due;
    }

    /// The next datagram to send. Listeners take turns, one datagram each,
    /// so a listener with a long queue does not delay the others.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        while let Some(to) = self.ready.pop_front() {
            let Some(active) = self.peers.get_mut(&to).and_then(Peer::active_mut) else {
                continue;
            };
            let queue = &mut active.queue;
            if queue.blocked {
                queue.scheduled = false;
                continue;
            }
            let Some(datagram) = queue.pop() else {
                queue.scheduled = false;
                continue;
            };
            if queue.is_empty() {
                queue.scheduled = false;
            } else {
                self.ready.push_back(to);
            }
            return Some(Transmit { to, datagram });
        }
        None
    }

    /// The next event for the control plane.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<RouterEvent> {
        self.events.pop_front()
    }

    /// The earliest instant at which [`Router::handle_timeout`] must be
    /// called; `None` when nothing is pending.
    ///
    /// This scans the sessions: it is meant to be asked once per batch of
    /// input, not once per datagram.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| p.next_timeout(&self.config))
            .min()
    }

    /// Sends `packets` (released from `speaker`'s stream, in order) to every
    /// other member of its channel who is not deafened. Each packet is
    /// encoded once; listeners share the buffer.
    fn fan_out(&mut self, now: Instant, speaker: SessionId, packets: &mut Vec<VoicePacket>) {
        if packets.is_empty() {
            return;
        }
        let Self {
            config,
            peers,
            channels,
            ready,
            events,
            malformed,
            ..
        } = self;
        let members = peers
            .get(&speaker)
            .and_then(|p| p.member.channel.as_ref())
            .and_then(|c| channels.get(c));
        let Some(members) = members else {
            packets.clear();
            return;
        };
        for packet in packets.drain(..) {
            let datagram = match Forwarded::build(speaker.0, &packet) {
                Ok(d) => d,
                // Parsing already checked the payload and set_member the
                // id; count it rather than trust that.
                Err(e) => {
                    malformed.count(&e);
                    continue;
                }
            };
            if let Some(p) = peers.get_mut(&speaker).map(Peer::active) {
                p.speaker.forwarded += 1;
                if p.speaking_since_last.replace(now).is_none() {
                    events.push_back(RouterEvent::SpeakingChanged {
                        session: speaker,
                        speaking: true,
                    });
                }
            }
            for &listener in members {
                if listener == speaker {
                    continue;
                }
                let Some(p) = peers.get_mut(&listener) else {
                    continue;
                };
                if p.member.deafened {
                    continue;
                }
                let queue = &mut p.active().queue;
                queue.push(now, datagram.clone(), config);
                if !queue.scheduled && !queue.blocked {
                    queue.scheduled = true;
                    ready.push_back(listener);
                }
            }
        }
    }

    /// How many sessions have state beyond their membership, and the size
    /// of the entry every session has: what idle sessions cost.
    #[cfg(test)]
    pub(crate) fn footprint(&self) -> (usize, usize) {
        let active = self.peers.values().filter(|p| p.active.is_some()).count();
        (active, mem::size_of::<Peer>())
    }

    fn leave_channel(&mut self, session: SessionId, channel: &ChannelKey) {
        if let Some(members) = self.channels.get_mut(channel) {
            members.retain(|&m| m != session);
            if members.is_empty() {
                self.channels.remove(channel);
            }
        }
    }
}
