//! What each listener received, judged packet by packet, and the run's
//! totals: expected, delivered, lost, late, duplicated, reordered, wrong.
//!
//! Pure: a [`ListenerTally`] takes decoded probes with their arrival time
//! (µs since the run's epoch) and keeps one [`StreamTally`] per speaker of
//! its channel; [`totals`] puts them together with what the speakers sent.
//!
//! The routing rule says each packet a speaker sends goes to every other
//! member of its channel. A listener is owed the packets sent while it was
//! in voice: its [`Window`]s of send times. Without churn a listener has one
//! window, from the start of the send phase on; a churning listener closes
//! its window when it decides to leave, stays a moment for the packets
//! still in flight, and opens another window a moment after it is back.
//! A window's ends are set before any packet they concern can arrive, so
//! each verdict is final when it is made. Losses are counted per stream as
//! owed minus delivered, at the end, after the drain grace.

use fixedbitset::FixedBitSet;
use serde::Serialize;

use crate::voice::layout::Layout;
use crate::voice::probe::Probe;
use crate::voice::timeline::IntervalCounts;

/// A span of send times (µs since the run's epoch) whose packets a listener
/// is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First send time owed.
    pub from_us: u64,
    /// Send times from here on are not owed; `None`: still open.
    pub until_us: Option<u64>,
}

impl Window {
    /// Whether a packet sent at `sent_us` is owed.
    pub fn contains(&self, sent_us: u64) -> bool {
        sent_us >= self.from_us && self.until_us.is_none_or(|u| sent_us < u)
    }
}

/// What one speaker sent in the measured phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendLog {
    /// Only the number: enough when every window covers the whole phase.
    Count(u64),
    /// Each packet's send time, in sequence order (so sorted): needed to
    /// count what a churning listener was owed.
    Times(Vec<u64>),
}

impl SendLog {
    /// Packets sent.
    pub fn sent(&self) -> u64 {
        match self {
            SendLog::Count(n) => *n,
            SendLog::Times(t) => t.len() as u64,
        }
    }

    /// Packets sent within `window`. A [`SendLog::Count`] knows no times
    /// and counts them all: it is only kept when windows span the run.
    pub fn count_in(&self, window: &Window) -> u64 {
        match self {
            SendLog::Count(n) => *n,
            SendLog::Times(t) => {
                let from = t.partition_point(|&x| x < window.from_us);
                let until = window
                    .until_us
                    .map_or(t.len(), |u| t.partition_point(|&x| x < u));
                until.saturating_sub(from) as u64
            }
        }
    }
}

/// One speaker's stream as one listener saw it.
#[derive(Debug, Clone, Default)]
pub struct StreamTally {
    /// Sequences received, one bit each, grown as they come.
    seen: FixedBitSet,
    /// The highest sequence received.
    highest: Option<u32>,
    /// Distinct packets received that were owed.
    pub delivered: u64,
    /// Copies of packets already received.
    pub duplicates: u64,
    /// Packets that came after one with a higher sequence.
    pub reordered: u64,
    /// Delivered after their playout time.
    pub late: u64,
    /// Arrival and send time of the first packet since the listener (re)
    /// joined: the playout clock's origin.
    playout_origin: Option<(u64, u64)>,
    /// A warm-up packet of this stream arrived.
    pub heard_warmup: bool,
}

impl StreamTally {
    /// Records `seq` once; whether it is new.
    fn mark(&mut self, seq: u32) -> bool {
        let seq = seq as usize;
        self.seen.grow(seq + 1);
        !self.seen.put(seq)
    }

    /// Judges one owed packet; returns its verdict.
    fn on_packet(&mut self, seq: u32, sent_us: u64, arrival_us: u64, playout_us: u64) -> Verdict {
        if !self.mark(seq) {
            self.duplicates += 1;
            return Verdict::Duplicate;
        }
        self.delivered += 1;
        match self.highest {
            Some(h) if seq < h => self.reordered += 1,
            _ => self.highest = Some(seq),
        }
        // The listener plays the stream `playout_us` after its first
        // packet, then keeps the sender's pace: packet n is due at
        // first arrival + playout + (sent_n - sent_first).
        let (origin_arrival, origin_sent) =
            *self.playout_origin.get_or_insert((arrival_us, sent_us));
        let due = (origin_arrival + playout_us + sent_us).saturating_sub(origin_sent);
        let late = arrival_us > due;
        self.late += u64::from(late);
        Verdict::Delivered {
            delay_us: arrival_us.saturating_sub(sent_us),
            late,
        }
    }
}

/// What became of one received payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A new, owed packet; `delay_us` is its one-way delay.
    Delivered {
        /// Arrival minus send time, µs.
        delay_us: u64,
        /// It missed its playout time.
        late: bool,
    },
    /// A copy of a packet already received.
    Duplicate,
    /// Sent while this listener was away (churn): not owed, not judged.
    OutsideWindow,
    /// A warm-up packet; `first` when it is the stream's first.
    Warmup {
        /// The first warm-up packet of this stream here.
        first: bool,
    },
    /// A routing error: its own packet, another channel's, a client that
    /// does not speak, or a speaker id that is not the sender's session.
    Wrong,
    /// A sequence beyond any the run can send.
    OutOfRange,
}

/// Everything one listener received.
#[derive(Debug, Clone)]
pub struct ListenerTally {
    /// The listener's client index.
    index: u32,
    /// Who speaks where.
    layout: Layout,
    /// The fixed playout delay, µs.
    playout_us: u64,
    /// Sequences from here on cannot be ours.
    seq_limit: u32,
    /// One per speaker rank of its channel (its own slot stays empty when
    /// it speaks itself).
    streams: Vec<StreamTally>,
    /// When it was owed packets.
    windows: Vec<Window>,
    /// Routing errors.
    pub wrong: u64,
    /// Payloads that are not ours or not intact, and sequences out of range.
    pub malformed: u64,
    /// Packets sent while it was away.
    pub outside_window: u64,
}

impl ListenerTally {
    /// A listener with no window yet.
    pub fn new(index: u32, layout: Layout, playout_us: u64, seq_limit: u32) -> Self {
        ListenerTally {
            index,
            layout,
            playout_us,
            seq_limit,
            streams: vec![StreamTally::default(); layout.speakers as usize],
            windows: Vec::new(),
            wrong: 0,
            malformed: 0,
            outside_window: 0,
        }
    }

    /// From `from_us` on it is owed every packet (closing any open window
    /// first). The playout clocks restart: a rejoined listener starts its
    /// jitter buffers afresh.
    pub fn open_window(&mut self, from_us: u64) {
        self.close_window(from_us);
        self.windows.push(Window {
            from_us,
            until_us: None,
        });
        for s in &mut self.streams {
            s.playout_origin = None;
        }
    }

    /// From `until_us` on it is owed nothing.
    pub fn close_window(&mut self, until_us: u64) {
        if let Some(w) = self.windows.last_mut()
            && w.until_us.is_none()
        {
            w.until_us = Some(until_us.max(w.from_us));
        }
    }

    /// The listener's client index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Its stream from speaker `sender`, if `sender` speaks in its channel.
    pub fn stream(&self, sender: u32) -> Option<&StreamTally> {
        self.stream_index(sender).map(|k| &self.streams[k])
    }

    fn stream_index(&self, sender: u32) -> Option<usize> {
        let l = &self.layout;
        if sender == self.index || l.channel_of(sender) != l.channel_of(self.index) {
            return None;
        }
        l.speaker_rank(sender).map(|r| r as usize)
    }

    /// A payload that did not decode.
    pub fn on_malformed(&mut self) {
        self.malformed += 1;
    }

    /// Judges a decoded probe that arrived at `arrival_us`;
    /// `speaker_matches` tells whether the data plane's speaker id is the
    /// session of the probe's sender.
    pub fn on_probe(&mut self, arrival_us: u64, probe: &Probe, speaker_matches: bool) -> Verdict {
        let Some(k) = self.stream_index(probe.sender).filter(|_| speaker_matches) else {
            self.wrong += 1;
            return Verdict::Wrong;
        };
        let stream = &mut self.streams[k];
        if probe.warmup {
            let first = !stream.heard_warmup;
            stream.heard_warmup = true;
            return Verdict::Warmup { first };
        }
        if probe.sequence >= self.seq_limit {
            self.malformed += 1;
            return Verdict::OutOfRange;
        }
        if !self.windows.iter().any(|w| w.contains(probe.sent_us)) {
            self.outside_window += 1;
            return Verdict::OutsideWindow;
        }
        stream.on_packet(probe.sequence, probe.sent_us, arrival_us, self.playout_us)
    }
}

/// The run's delivery numbers, as the report gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Measured packets the speakers made (uplink losses included: the
    /// simulated network lost them after they were sent).
    pub sent: u64,
    /// Deliveries the routing rule calls for, to listeners in voice.
    pub expected: u64,
    /// Distinct owed packets received.
    pub delivered: u64,
    /// Owed and never received, summed per stream.
    pub lost: u64,
    /// Delivered, but after their playout time.
    pub late: u64,
    /// Extra copies.
    pub duplicates: u64,
    /// Came after a packet with a higher sequence.
    pub reordered: u64,
    /// Routing errors: own packets, another channel's, a non-speaker's, or
    /// a speaker id that is not the sender's. Must be 0.
    pub wrong: u64,
    /// Payloads not ours, damaged, or out of range. Must be 0.
    pub malformed: u64,
    /// Packets sent while a churning listener was away (not judged).
    pub outside_window: u64,
    /// Listeners judged (not in the report).
    #[serde(skip)]
    pub listeners: u64,
}

impl Totals {
    /// `lost / expected`, 0 when nothing was expected.
    pub fn loss_ratio(&self) -> f64 {
        ratio(self.lost, self.expected)
    }

    /// `late / expected`.
    pub fn late_ratio(&self) -> f64 {
        ratio(self.late, self.expected)
    }

    /// What the listeners' ears miss: `(lost + late) / expected`.
    pub fn playout_loss_ratio(&self) -> f64 {
        ratio(self.lost + self.late, self.expected)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Adds up what `listeners` received against what the speakers sent.
/// `logs[i]` is client `i`'s log when it spoke (`None` for listeners and
/// for speakers that never got into voice).
pub fn totals(layout: &Layout, logs: &[Option<SendLog>], listeners: &[ListenerTally]) -> Totals {
    let mut t = Totals {
        sent: logs.iter().flatten().map(SendLog::sent).sum(),
        listeners: listeners.len() as u64,
        ..Totals::default()
    };
    for l in listeners {
        t.wrong += l.wrong;
        t.malformed += l.malformed;
        t.outside_window += l.outside_window;
        let channel = layout.channel_of(l.index);
        for speaker in layout.speakers_of(channel).filter(|&s| s != l.index) {
            let Some(stream) = l.stream(speaker) else {
                continue;
            };
            let owed = match logs.get(speaker as usize) {
                Some(Some(log)) => l.windows.iter().map(|w| log.count_in(w)).sum(),
                _ => 0,
            };
            t.expected += owed;
            t.delivered += stream.delivered;
            t.lost += owed.saturating_sub(stream.delivered);
            t.late += stream.late;
            t.duplicates += stream.duplicates;
            t.reordered += stream.reordered;
        }
    }
    t
}

/// The same numbers by the send time's interval (`--timeline`): interval
/// `k` holds the packets sent from `starts_us[k]` (µs since the epoch; the
/// first interval also holds anything earlier) up to the next start, the
/// last one everything after its start. Summed over the intervals they are
/// [`totals`]' `sent`, `expected`, `delivered` and `lost`. `None` when a
/// speaker kept only a count ([`SendLog::Count`]): its packets have no
/// times to sort by.
pub fn by_interval(
    layout: &Layout,
    logs: &[Option<SendLog>],
    listeners: &[ListenerTally],
    starts_us: &[u64],
) -> Option<Vec<IntervalCounts>> {
    let mut out = vec![IntervalCounts::default(); starts_us.len()];
    if out.is_empty() {
        return Some(out);
    }
    // Per speaker, the index of its first packet in each interval: its
    // measured sequence numbers are indices into its send times.
    let mut firsts: Vec<Option<Vec<usize>>> = Vec::with_capacity(logs.len());
    for log in logs {
        firsts.push(match log {
            None => None,
            Some(SendLog::Count(0)) => Some(vec![0; starts_us.len()]),
            Some(SendLog::Count(_)) => return None,
            Some(SendLog::Times(t)) => {
                let mut f: Vec<usize> = starts_us
                    .iter()
                    .map(|&s| t.partition_point(|&x| x < s))
                    .collect();
                f[0] = 0;
                for (k, c) in out.iter_mut().enumerate() {
                    let end = f.get(k + 1).copied().unwrap_or(t.len());
                    c.sent += (end - f[k]) as u64;
                }
                Some(f)
            }
        });
    }
    for l in listeners {
        let channel = layout.channel_of(l.index);
        for speaker in layout.speakers_of(channel).filter(|&s| s != l.index) {
            let (Some(stream), Some(Some(SendLog::Times(times))), Some(Some(first))) = (
                l.stream(speaker),
                logs.get(speaker as usize),
                firsts.get(speaker as usize),
            ) else {
                continue;
            };
            let seen = stream.seen.len();
            for w in &l.windows {
                // The packets owed in this window, as indices.
                let a = times.partition_point(|&x| x < w.from_us);
                let b = w
                    .until_us
                    .map_or(times.len(), |u| times.partition_point(|&x| x < u));
                for (k, c) in out.iter_mut().enumerate() {
                    let end = first.get(k + 1).copied().unwrap_or(times.len());
                    let (from, until) = (a.max(first[k]), b.min(end));
                    if from >= until {
                        continue;
                    }
                    let owed = (until - from) as u64;
                    // Only owed packets are marked, and windows do not
                    // overlap, so each delivery is counted once.
                    let got = stream.seen.count_ones(from.min(seen)..until.min(seen)) as u64;
                    c.expected += owed;
                    c.delivered += got;
                    c.lost += owed - got;
                }
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: Layout = Layout {
        clients: 6,
        channels: 2,
        speakers: 1,
        churn: false,
    };
    const PLAYOUT: u64 = 60_000;

    fn probe(sender: u32, sequence: u32, sent_us: u64) -> Probe {
        Probe {
            sender,
            sequence,
            sent_us,
            warmup: false,
        }
    }

    /// Client `client` of `layout` as a listener, in voice from 0 on: owed
    /// everything its channel's speakers send.
    fn listener_in(client: u32, layout: Layout) -> ListenerTally {
        let mut l = ListenerTally::new(client, layout, PLAYOUT, 1_000);
        l.open_window(0);
        l
    }

    /// [`LAYOUT`] with its listeners leaving and rejoining.
    const CHURN_LAYOUT: Layout = Layout {
        churn: true,
        ..LAYOUT
    };

    /// Listener 2 (channel 0, whose speaker is client 0), owed everything.
    fn listener() -> ListenerTally {
        listener_in(2, LAYOUT)
    }

    /// The totals of [`LAYOUT`] with `l` its only listener and speaker 0
    /// having sent `sent` packets.
    fn totals_alone(l: ListenerTally, sent: u64) -> Totals {
        totals(&LAYOUT, &[Some(SendLog::Count(sent))], &[l])
    }

    #[test]
    fn in_order_delivery_is_all_delivered() {
        let mut l = listener();
        for seq in 0..10 {
            let sent = u64::from(seq) * 20_000;
            let v = l.on_probe(sent + 1_500, &probe(0, seq, sent), true);
            assert_eq!(
                v,
                Verdict::Delivered {
                    delay_us: 1_500,
                    late: false
                }
            );
        }
        let logs = vec![Some(SendLog::Count(10)), None, None, None, None, None];
        let t = totals(&LAYOUT, &logs, &[l]);
        assert_eq!(
            t,
            Totals {
                sent: 10,
                expected: 10,
                delivered: 10,
                listeners: 1,
                ..Totals::default()
            }
        );
        assert_eq!(t.loss_ratio(), 0.0);
    }

    #[test]
    fn loss_duplicates_and_reordering_are_told_apart() {
        let mut l = listener();
        // Sent 0..10; 3 and 7 never arrive; 5 arrives after 6; 2 twice.
        for seq in [0, 1, 2, 2, 4, 6, 5, 8, 9] {
            l.on_probe(
                u64::from(seq) * 20_000 + 1_000,
                &probe(0, seq, u64::from(seq) * 20_000),
                true,
            );
        }
        let logs = vec![Some(SendLog::Count(10)), None, None, None, None, None];
        let t = totals(&LAYOUT, &logs, &[l]);
        assert_eq!(t.expected, 10);
        assert_eq!(t.delivered, 8);
        assert_eq!(t.lost, 2);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.reordered, 1);
        assert_eq!(t.loss_ratio(), 0.2);
    }

    #[test]
    fn expected_is_every_other_member_of_the_channel() {
        // Channel 0 holds clients 0, 2, 4; client 0 speaks. Listeners 2 and
        // 4 are owed its 10 packets each; the speaker itself nothing.
        let logs = vec![
            Some(SendLog::Count(10)),
            Some(SendLog::Count(7)),
            None,
            None,
            None,
            None,
        ];
        let listeners: Vec<_> = (0..6).map(|i| listener_in(i, LAYOUT)).collect();
        let t = totals(&LAYOUT, &logs, &listeners);
        assert_eq!(t.sent, 17);
        assert_eq!(t.expected, 2 * 10 + 2 * 7);
        assert_eq!(t.lost, t.expected);
        assert_eq!(t.loss_ratio(), 1.0);
    }

    #[test]
    fn wrong_deliveries_are_routing_errors() {
        let mut l = listener();
        // Its own packet (it does not speak, but say it did), another
        // channel's speaker, a member that does not speak, an unknown
        // client, and a speaker id that is not the sender's session.
        for (sender, matches) in [(2, true), (1, true), (4, true), (99, true), (0, false)] {
            assert_eq!(l.on_probe(5, &probe(sender, 0, 0), matches), Verdict::Wrong);
        }
        assert_eq!(l.wrong, 5);
        let t = totals_alone(l, 1);
        assert_eq!((t.wrong, t.delivered, t.lost), (5, 0, 1));
    }

    #[test]
    fn a_speaker_is_not_owed_its_own_packets() {
        let layout = Layout {
            speakers: 2,
            ..LAYOUT
        };
        // Clients 0 and 2 both speak in channel 0; 4 only listens.
        let mut speaker = listener_in(0, layout);
        assert_eq!(speaker.on_probe(5, &probe(0, 0, 0), true), Verdict::Wrong);
        assert!(matches!(
            speaker.on_probe(5, &probe(2, 0, 0), true),
            Verdict::Delivered { .. }
        ));
        let logs = vec![Some(SendLog::Count(4)), None, Some(SendLog::Count(3))];
        let t = totals(&layout, &logs, &[speaker]);
        assert_eq!(t.expected, 3, "only the other speaker's packets");
        assert_eq!(t.delivered, 1);
    }

    #[test]
    fn late_means_after_the_playout_time() {
        let mut l = listener();
        // First packet: sent 0, arrives at 10 ms; playout 60 ms, so packet
        // n (sent n * 20 ms) plays at 70 ms + n * 20 ms.
        let arrive = |l: &mut ListenerTally, seq: u32, at_ms: u64| {
            l.on_probe(at_ms * 1_000, &probe(0, seq, u64::from(seq) * 20_000), true)
        };
        assert!(matches!(
            arrive(&mut l, 0, 10),
            Verdict::Delivered { late: false, .. }
        ));
        assert!(matches!(
            arrive(&mut l, 1, 90),
            Verdict::Delivered { late: false, .. }
        ));
        assert!(matches!(
            arrive(&mut l, 2, 111),
            Verdict::Delivered { late: true, .. }
        ));
        assert!(matches!(
            arrive(&mut l, 3, 125),
            Verdict::Delivered {
                late: false,
                delay_us: 65_000
            }
        ));
        let t = totals_alone(l, 4);
        assert_eq!((t.delivered, t.late, t.lost), (4, 1, 0));
        assert_eq!(t.playout_loss_ratio(), 0.25);
    }

    #[test]
    fn warmups_and_out_of_range_sequences_are_not_measured() {
        let mut l = listener();
        let warm = Probe {
            warmup: true,
            ..probe(0, 0, 0)
        };
        assert_eq!(l.on_probe(1, &warm, true), Verdict::Warmup { first: true });
        assert_eq!(l.on_probe(2, &warm, true), Verdict::Warmup { first: false });
        assert!(l.stream(0).unwrap().heard_warmup);
        assert_eq!(
            l.on_probe(3, &probe(0, 1_000, 0), true),
            Verdict::OutOfRange
        );
        assert_eq!(l.malformed, 1);
        let t = totals_alone(l, 0);
        assert_eq!((t.delivered, t.expected, t.malformed), (0, 0, 1));
    }

    #[test]
    fn a_churning_listener_is_owed_only_its_windows() {
        // Speaker 0 sends every 20 ms from 0 to 980 ms (50 packets).
        let times: Vec<u64> = (0..50).map(|n| n * 20_000).collect();
        let mut l = listener_in(2, CHURN_LAYOUT);
        l.close_window(300_000); // owed 0..300 ms: 15 packets
        l.open_window(500_000); // owed 500 ms on: 25 packets
        for n in 0..50u32 {
            let sent = u64::from(n) * 20_000;
            l.on_probe(sent + 2_000, &probe(0, n, sent), true);
        }
        assert_eq!(l.outside_window, 10);
        let logs = vec![Some(SendLog::Times(times))];
        let t = totals(&CHURN_LAYOUT, &logs, &[l]);
        assert_eq!(t.expected, 40);
        assert_eq!(t.delivered, 40);
        assert_eq!((t.lost, t.outside_window), (0, 10));
    }

    #[test]
    fn intervals_split_by_send_time_and_add_up_to_the_totals() {
        // Speaker 0 sends every 20 ms from 0 to 980 ms (50 packets);
        // intervals start at 0, 400 and 800 ms.
        let times: Vec<u64> = (0..50).map(|n| n * 20_000).collect();
        let logs = vec![Some(SendLog::Times(times.clone()))];
        // Listener 2 is owed 0..300 ms and 500 ms on, and misses 100 and
        // 600 ms (sequences 5 and 30); listener 4 is owed everything and
        // gets everything but 900 ms (sequence 45).
        let mut a = listener_in(2, CHURN_LAYOUT);
        a.close_window(300_000);
        a.open_window(500_000);
        let mut b = listener_in(4, CHURN_LAYOUT);
        for n in 0..50u32 {
            let sent = u64::from(n) * 20_000;
            if n != 5 && n != 30 {
                a.on_probe(sent + 2_000, &probe(0, n, sent), true);
            }
            if n != 45 {
                b.on_probe(sent + 2_000, &probe(0, n, sent), true);
            }
        }
        let listeners = [a, b];
        let rows = by_interval(&CHURN_LAYOUT, &logs, &listeners, &[0, 400_000, 800_000]).unwrap();
        let c = |sent, expected, delivered, lost| IntervalCounts {
            sent,
            expected,
            delivered,
            lost,
        };
        assert_eq!(
            rows,
            [
                // 20 sent; a owed 15 (0..300), b 20; a misses one.
                c(20, 35, 34, 1),
                // 20 sent; a owed 15 (500..800), b 20; a misses one.
                c(20, 35, 34, 1),
                // 10 sent; both owed all; b misses one.
                c(10, 20, 19, 1),
            ]
        );
        let t = totals(&CHURN_LAYOUT, &logs, &listeners);
        let sum = |f: fn(&IntervalCounts) -> u64| rows.iter().map(f).sum::<u64>();
        assert_eq!(sum(|c| c.sent), t.sent);
        assert_eq!(sum(|c| c.expected), t.expected);
        assert_eq!(sum(|c| c.delivered), t.delivered);
        assert_eq!(sum(|c| c.lost), t.lost);

        // Before the first start counts in the first interval; one
        // interval holds everything; no intervals, no rows.
        let one = by_interval(&CHURN_LAYOUT, &logs, &listeners, &[500_000]).unwrap();
        assert_eq!(one, [c(50, 90, 87, 3)]);
        assert!(
            by_interval(&CHURN_LAYOUT, &logs, &listeners, &[])
                .unwrap()
                .is_empty()
        );
        // A count has no times to sort by.
        let counted = vec![Some(SendLog::Count(50))];
        assert_eq!(by_interval(&CHURN_LAYOUT, &counted, &listeners, &[0]), None);
    }

    #[test]
    fn send_logs_count_within_windows() {
        let log = SendLog::Times(vec![10, 20, 30, 40]);
        let w = |from_us, until_us| Window { from_us, until_us };
        assert_eq!(log.sent(), 4);
        assert_eq!(log.count_in(&w(0, None)), 4);
        assert_eq!(log.count_in(&w(20, Some(40))), 2);
        assert_eq!(log.count_in(&w(41, None)), 0);
        assert_eq!(log.count_in(&w(15, Some(15))), 0);
        assert_eq!(SendLog::Count(9).count_in(&w(5, Some(6))), 9);
    }

    #[test]
    fn windows_close_once_and_never_before_they_open() {
        let mut l = ListenerTally::new(2, LAYOUT, PLAYOUT, 10);
        l.close_window(5); // nothing open: nothing happens
        assert!(l.windows.is_empty());
        l.open_window(100);
        l.close_window(50);
        l.close_window(500);
        assert_eq!(
            l.windows,
            [Window {
                from_us: 100,
                until_us: Some(100)
            }]
        );
    }

    #[test]
    fn the_bitset_grows_for_sparse_sequences() {
        let mut s = StreamTally::default();
        assert!(s.mark(999));
        assert!(!s.mark(999));
        assert!(s.mark(0));
        assert_eq!(s.seen.len(), 1_000);
    }
}
