//! One speaker's decisions in fake time: when each packet leaves, what it
//! carries, and what the simulated uplink does to it. It reads no clock and
//! does no IO; the driver in `member` passes `now` in, sends what comes out
//! and sleeps until [`Speaker::next_wake`].

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::common::stats::micros_between;
use crate::voice::delivery::SendLog;
use crate::voice::impairment::{Direction, SEED_IMPAIRMENT, SEED_PHASE, SEED_TALK, stream_seed};
use crate::voice::link::Link;
use crate::voice::plan::VoicePlan;
use crate::voice::probe::Probe;
use crate::voice::talk_pattern::TalkPattern;

/// How late a tick may come before it counts as missed; tokio's interval,
/// which the speaker's timing used to come from, allows the same.
const TICK_TOLERANCE: Duration = Duration::from_millis(5);

/// A datagram for the voice connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Voice-level sequence.
    pub sequence: u32,
    /// Voice-level timestamp, ms.
    pub timestamp_ms: u32,
    /// When the probe in it was made, µs since the run's epoch.
    pub sent_us: u64,
    /// The probe payload.
    pub payload: Bytes,
}

/// What one [`Speaker::poll`] decided.
#[derive(Debug, Default)]
pub struct Step {
    /// To send now, in this order.
    pub send: Vec<Datagram>,
    /// Measured packets made; each is owed to the channel's listeners in
    /// voice now.
    pub made: u64,
    /// Of those, lost by the simulated uplink.
    pub lost: u64,
}

/// Where the speaker is.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A warm-up packet every frame until [`Speaker::start`]; a late frame
    /// is not made up for.
    Warmup { next: Instant },
    /// A measured frame at `next` and every frame after, until `end`; late
    /// frames are skipped, never sent in a burst.
    Measured { next: Instant, end: Instant },
    /// Only what the simulated uplink still holds.
    Draining,
}

/// One speaker.
#[derive(Debug)]
pub struct Speaker {
    /// The client.
    index: u32,
    /// Time zero of every `sent_us`.
    epoch: Instant,
    /// One packet interval.
    frame: Duration,
    /// Bytes of each payload.
    payload_bytes: usize,
    /// Its offset within the first measured frame.
    offset: Duration,
    /// Length of the measured phase.
    duration: Duration,
    /// Where it is.
    phase: Phase,
    /// Voice-level sequence: one count over warm-up and measured packets,
    /// because the data plane reads a gap as a loss and may wait for it.
    sequence: u32,
    /// The probe sequence of warm-up packets.
    warm_seq: u32,
    /// The probe sequence of measured packets.
    measured: u32,
    /// Talk spurts and silences.
    talk: TalkPattern,
    /// The simulated uplink.
    uplink: Link<Datagram>,
    /// What it sent.
    log: SendLog,
}

impl Speaker {
    /// Client `index` of `plan`, warming up from `now`. `keep_times` keeps
    /// every send time in the log (churn needs them).
    pub fn new(
        index: u32,
        plan: &VoicePlan,
        keep_times: bool,
        epoch: Instant,
        now: Instant,
    ) -> Self {
        let frame = plan.frame();
        let seed = |purpose| stream_seed(plan.seed, index, Direction::Uplink, purpose);
        // Each speaker starts at its own seeded offset within the first
        // frame: real speakers' clocks are not aligned, and aligned ones
        // would hit the data plane with every speaker's packet, and so every
        // listener's copy, in one instant each frame, which measures
        // queueing behind that burst rather than the path through the
        // server.
        let offset = frame.mul_f64((seed(SEED_PHASE) >> 11) as f64 / (1u64 << 53) as f64);
        let talk = match plan.talk {
            Some(t) => TalkPattern::spurts(t.spurt, t.silence, frame, seed(SEED_TALK)),
            None => TalkPattern::continuous(),
        };
        Speaker {
            index,
            epoch,
            frame,
            payload_bytes: plan.payload_bytes,
            offset,
            duration: plan.duration,
            phase: Phase::Warmup { next: now },
            sequence: 0,
            warm_seq: 0,
            measured: 0,
            talk,
            uplink: Link::new(plan.link(Direction::Uplink), seed(SEED_IMPAIRMENT)),
            log: if keep_times {
                SendLog::Times(Vec::new())
            } else {
                SendLog::Count(0)
            },
        }
    }

    /// The run said go at `at`: the measured phase starts within a frame.
    pub fn start(&mut self, at: Instant) {
        if let Phase::Warmup { .. } = self.phase {
            let next = at + self.offset;
            self.phase = Phase::Measured {
                next,
                end: next + self.duration,
            };
        }
    }

    /// When [`poll`](Self::poll) has something to do; `None` once done.
    pub fn next_wake(&self) -> Option<Instant> {
        let tick = match self.phase {
            Phase::Warmup { next } | Phase::Measured { next, .. } => Some(next),
            Phase::Draining => None,
        };
        match (tick, self.uplink.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What to do at `now`: the held packets that are due, then this
    /// frame's packet, if it is time for one.
    pub fn poll(&mut self, now: Instant) -> Step {
        let mut step = Step::default();
        while let Some((d, _)) = self.uplink.pop_due(now) {
            step.send.push(d);
        }
        match self.phase {
            Phase::Warmup { next } if now >= next => {
                let from = if now > next + TICK_TOLERANCE {
                    now
                } else {
                    next
                };
                self.phase = Phase::Warmup {
                    next: from + self.frame,
                };
                self.warm_up(now, &mut step);
            }
            Phase::Measured { next, end } if now >= next => {
                if next >= end {
                    self.phase = Phase::Draining;
                    return step;
                }
                let next = if now > next + TICK_TOLERANCE {
                    let behind = (now - next).as_nanos() % self.frame.as_nanos();
                    now + (self.frame - Duration::from_nanos(behind as u64))
                } else {
                    next + self.frame
                };
                self.phase = Phase::Measured { next, end };
                if self.talk.next_frame() {
                    self.speak(now, &mut step);
                }
            }
            _ => {}
        }
        step
    }

    /// Stops early (an interrupt): whatever the uplink holds goes out at
    /// once, in the order it was due, so that no logged packet counts as
    /// lost for want of sending.
    pub fn stop(&mut self) -> Vec<Datagram> {
        self.phase = Phase::Draining;
        self.uplink.drain().into_iter().map(|(d, _)| d).collect()
    }

    /// What it sent.
    pub fn into_log(self) -> SendLog {
        self.log
    }

    fn warm_up(&mut self, now: Instant, step: &mut Step) {
        let sequence = self.warm_seq;
        self.warm_seq = self.warm_seq.wrapping_add(1);
        if let Some(d) = self.datagram(now, sequence, true) {
            step.send.push(d);
        }
    }

    fn speak(&mut self, now: Instant, step: &mut Step) {
        let Some(datagram) = self.datagram(now, self.measured, false) else {
            return;
        };
        self.measured += 1;
        match &mut self.log {
            SendLog::Count(n) => *n += 1,
            SendLog::Times(t) => t.push(datagram.sent_us),
        }
        step.made += 1;
        // A packet the network loses was still numbered.
        if !self.uplink.send(now, datagram, &mut step.send) {
            step.lost += 1;
        }
    }

    /// The probe `sequence` sent at `now`, next in voice-level sequence;
    /// `None` (and done) if it cannot be encoded, which validated sizes
    /// always are.
    fn datagram(&mut self, now: Instant, sequence: u32, warmup: bool) -> Option<Datagram> {
        let sent_us = micros_between(self.epoch, now);
        let probe = Probe {
            sender: self.index,
            sequence,
            sent_us,
            warmup,
        };
        let Ok(payload) = probe.encode(self.payload_bytes) else {
            self.phase = Phase::Draining;
            return None;
        };
        let voice_sequence = self.sequence;
        self.sequence = self.sequence.wrapping_add(1);
        Some(Datagram {
            sequence: voice_sequence,
            timestamp_ms: timestamp_ms(sent_us),
            sent_us,
            payload,
        })
    }
}

/// The voice timestamp of a packet sent at `sent_us`: a steady millisecond
/// clock, wrapping as the protocol allows.
fn timestamp_ms(sent_us: u64) -> u32 {
    (sent_us / 1_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::plan::TalkSpec;

    fn plan() -> VoicePlan {
        let mut plan = VoicePlan::new("127.0.0.1:1", "t");
        plan.duration = Duration::from_secs(2);
        plan
    }

    /// Polls at every wake until `until` or the end; returns every step
    /// with its instant.
    fn run(speaker: &mut Speaker, until: Instant) -> Vec<(Instant, Step)> {
        let mut steps = Vec::new();
        while let Some(at) = speaker.next_wake()
            && at <= until
        {
            steps.push((at, speaker.poll(at)));
        }
        steps
    }

    fn probes(steps: &[(Instant, Step)]) -> Vec<Probe> {
        steps
            .iter()
            .flat_map(|(_, s)| &s.send)
            .map(|d| Probe::decode(&d.payload).unwrap())
            .collect()
    }

    fn count(log: SendLog) -> u64 {
        match log {
            SendLog::Count(n) => n,
            SendLog::Times(t) => t.len() as u64,
        }
    }

    #[test]
    fn warms_up_every_frame_until_go() {
        let t0 = Instant::now();
        let mut s = Speaker::new(3, &plan(), false, t0, t0);
        let steps = run(&mut s, t0 + Duration::from_millis(99));
        let warm = probes(&steps);
        assert_eq!(warm.len(), 5, "0, 20, 40, 60, 80 ms");
        assert!(warm.iter().all(|p| p.warmup && p.sender == 3));
        assert_eq!(
            warm.iter().map(|p| p.sequence).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        // A late frame is not made up for: the next one is a frame later.
        let late = t0 + Duration::from_millis(150);
        assert_eq!(s.poll(late).send.len(), 1);
        assert_eq!(s.next_wake(), Some(late + Duration::from_millis(20)));
        assert_eq!(count(s.into_log()), 0);
    }

    #[test]
    fn sends_at_the_configured_pps_and_stops_at_the_end() {
        let t0 = Instant::now();
        let mut s = Speaker::new(0, &plan(), false, t0, t0);
        let _ = s.poll(t0);
        let go = t0 + Duration::from_millis(10);
        s.start(go);
        let steps = run(&mut s, go + Duration::from_secs(10));
        let measured = probes(&steps);
        assert_eq!(measured.len(), 100, "50 pps for 2 s");
        assert!(measured.iter().all(|p| !p.warmup));
        let first = steps.iter().find(|(_, s)| s.made > 0).unwrap().0;
        let last = steps.iter().rev().find(|(_, s)| s.made > 0).unwrap().0;
        assert!(first >= go && first < go + Duration::from_millis(20));
        assert_eq!(last - first, Duration::from_millis(20 * 99));
        // Done: no wake after the end.
        assert_eq!(s.next_wake(), None);
        // Voice sequences continue from the warm-up's without a gap.
        let seqs: Vec<u32> = steps
            .iter()
            .flat_map(|(_, s)| &s.send)
            .map(|d| d.sequence)
            .collect();
        assert_eq!(seqs, (1..=100).collect::<Vec<u32>>());
        assert_eq!(count(s.into_log()), 100);
    }

    #[test]
    fn behind_schedule_it_skips_frames_rather_than_burst() {
        let t0 = Instant::now();
        let mut s = Speaker::new(0, &plan(), false, t0, t0);
        s.start(t0);
        let first = s.next_wake().unwrap();
        assert_eq!(s.poll(first).made, 1);
        // 70 ms late: one packet now, the next on the schedule's grid.
        let late = first + Duration::from_millis(90);
        assert_eq!(s.poll(late).made, 1);
        assert_eq!(s.next_wake(), Some(first + Duration::from_millis(100)));
    }

    #[test]
    fn talk_spurts_leave_silences() {
        let t0 = Instant::now();
        let mut p = plan();
        p.duration = Duration::from_secs(20);
        p.talk = Some(TalkSpec {
            spurt: Duration::from_millis(500),
            silence: Duration::from_millis(500),
        });
        let mut s = Speaker::new(0, &p, true, t0, t0);
        s.start(t0);
        let steps = run(&mut s, t0 + Duration::from_secs(30));
        let made: u64 = steps.iter().map(|(_, s)| s.made).sum();
        assert!((200..800).contains(&made), "about half of 1000: {made}");
        let SendLog::Times(times) = s.into_log() else {
            panic!("keeps times");
        };
        assert_eq!(times.len() as u64, made);
        // A silence shows as a gap of more than one frame.
        assert!(times.windows(2).any(|w| w[1] - w[0] > 20_000));
    }

    #[test]
    fn the_uplink_loses_delays_and_flushes_on_stop() {
        let t0 = Instant::now();
        let mut p = plan();
        p.uplink.loss = 0.3;
        p.uplink.delay = Duration::from_millis(100);
        let mut s = Speaker::new(0, &p, false, t0, t0);
        s.start(t0);
        let until = t0 + Duration::from_millis(1_000);
        let steps = run(&mut s, until);
        let made: u64 = steps.iter().map(|(_, s)| s.made).sum();
        let lost: u64 = steps.iter().map(|(_, s)| s.lost).sum();
        let sent = probes(&steps).len() as u64;
        assert!(lost > 0 && lost < made, "{lost} of {made}");
        // Held 100 ms: what was made in the last 100 ms is still held.
        let held = s.stop();
        assert!(!held.is_empty());
        assert_eq!(sent + held.len() as u64 + lost, made);
        assert_eq!(s.next_wake(), None);
        assert!(held.windows(2).all(|w| w[0].sequence < w[1].sequence));
    }
}
