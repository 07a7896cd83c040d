//! What a `voice` run will do, with every value settled: the flags after
//! the preset was applied, checked against each other.
//!
//! [`VoiceArgs`](crate::VoiceArgs) are what a person typed; a
//! [`VoicePlan`] is what the run uses. Tests build plans directly with
//! [`VoicePlan::new`], so the run never depends on a command line, and
//! [`VoicePlan::validate`] holds every rule that involves more than one
//! flag.

use std::time::Duration;

use serde::Serialize;

use crate::common::error::PlanError;
use crate::common::flags::RunFlags;
use crate::metrics::scrape::metrics_authority;
use crate::voice::flags::Transport;
use crate::voice::impairment::{Direction, ImpairmentSpec};
use crate::voice::layout::Layout;
use crate::voice::probe::HEADER_LEN;
use crate::voice::timeline::{row_count, warm_up_rows};

/// The named scenarios of `--scenario`, named in reports as on the command
/// line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum, strum::IntoStaticStr)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Preset {
    /// One channel of 50 clients, 5 of them speaking, for 30 s.
    Fanout,
    /// 2,000 clients in 400 channels of 5, one speaker each, for 30 s.
    ManyChannels,
    /// 100 clients in 10 channels, 2 speakers each; the listeners leave and
    /// rejoin every few seconds while the speakers talk.
    Churn,
    /// 5 % Gilbert-Elliott uplink loss in bursts of 3, 30 ms jitter, 2 %
    /// reordering.
    Impaired,
    /// 2,000 clients in 200 channels of 10, one speaker each, the listeners
    /// leaving and rejoining every few seconds, for 30 minutes with a
    /// timeline row a minute: memory, descriptors and latency over time.
    Soak,
}

/// Talk spurts and silences (both means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TalkSpec {
    /// Mean talk spurt.
    pub spurt: Duration,
    /// Mean silence.
    pub silence: Duration,
}

/// Every setting of a `voice` run.
#[derive(Debug, Clone)]
pub struct VoicePlan {
    /// The control plane, the admin token, the connections and what to do
    /// with the results, as `sessions` takes them.
    pub run: RunFlags,
    /// The preset the values came from, if any (for the report).
    pub preset: Option<Preset>,
    /// Clients (sessions).
    pub clients: u32,
    /// Channels; client `i` joins channel `i % channels`.
    pub channels: u32,
    /// Speakers per channel.
    pub speakers: u32,
    /// Packets per second per speaker while talking.
    pub pps: u32,
    /// Bytes of each voice payload.
    pub payload_bytes: usize,
    /// Length of the send phase.
    pub duration: Duration,
    /// Talk spurts; `None`: speakers talk without pause.
    pub talk: Option<TalkSpec>,
    /// The listeners' fixed playout delay after a stream's first packet.
    pub playout: Duration,
    /// Seeds every random choice of the run.
    pub seed: u64,
    /// What the network does on the way to the data plane.
    pub uplink: ImpairmentSpec,
    /// What the network does on the way back.
    pub downlink: ImpairmentSpec,
    /// Listeners that do not speak leave and rejoin about this often.
    pub churn_every: Option<Duration>,
    /// The voice transport.
    pub transport: Transport,
    /// UDP sockets the clients' QUIC connections share; 0: one per client,
    /// as real clients have.
    pub sockets: u32,
    /// Bound on the setup: connections, channels, sessions, voice.
    pub setup_timeout: Duration,
    /// How long listeners keep listening after the last packet was sent,
    /// beyond the longest simulated delay.
    pub drain_grace: Duration,
    /// The data plane's metrics listener (`HOST:PORT` or
    /// `http://HOST:PORT`), scraped before the send phase and after the
    /// drain for the data plane's own counts.
    pub metrics: Option<String>,
    /// The control plane's metrics listener (`metrics.listen`), scraped
    /// for each timeline row.
    pub control_metrics: Option<String>,
    /// A timeline row this often during the send phase (`--timeline`);
    /// `None`: no timeline and no soak verdict.
    pub timeline: Option<Duration>,
    /// The soak's warm-up (`--warm-up`); `None`: 20 % of the duration.
    pub warm_up: Option<Duration>,
    /// How far the soak's last p99 may exceed the first's, besides twice
    /// it (`--soak-p99-slack-ms`).
    pub soak_p99_slack: Duration,
}

impl VoicePlan {
    /// A small clean run against `addr`: 10 clients in 2 channels, one
    /// speaker each, 50 packets/s of 80 bytes for 10 s, seed 1.
    pub fn new(addr: &str, token: &str) -> Self {
        let frame = Duration::from_millis(20);
        VoicePlan {
            run: RunFlags::new(addr, token),
            preset: None,
            clients: 10,
            channels: 2,
            speakers: 1,
            pps: 50,
            payload_bytes: 80,
            duration: Duration::from_secs(10),
            talk: None,
            playout: Duration::from_millis(60),
            seed: 1,
            uplink: ImpairmentSpec::clean(frame),
            downlink: ImpairmentSpec::clean(frame),
            churn_every: None,
            transport: Transport::Quic,
            sockets: 0,
            setup_timeout: Duration::from_secs(60),
            drain_grace: Duration::from_secs(1),
            metrics: None,
            control_metrics: None,
            timeline: None,
            warm_up: None,
            soak_p99_slack: Duration::from_micros(crate::voice::timeline::P99_SLACK_US),
        }
    }

    /// The soak's warm-up: `--warm-up`, else 20 % of the duration.
    pub fn effective_warm_up(&self) -> Duration {
        self.warm_up.unwrap_or(self.duration / 5)
    }

    /// How many timeline rows the warm-up takes (at least one); 0 without
    /// a timeline.
    pub fn warm_up_rows(&self) -> usize {
        self.timeline
            .map_or(0, |every| warm_up_rows(self.effective_warm_up(), every))
    }

    /// Who is where.
    pub fn layout(&self) -> Layout {
        Layout {
            clients: self.clients,
            channels: self.channels,
            speakers: self.speakers,
            churn: self.churn_every.is_some(),
        }
    }

    /// One packet interval.
    pub fn frame(&self) -> Duration {
        Duration::from_secs(1) / self.pps.max(1)
    }

    /// One direction's impairment, its frame set to this run's.
    pub fn link(&self, direction: Direction) -> ImpairmentSpec {
        let mut spec = match direction {
            Direction::Uplink => self.uplink.clone(),
            Direction::Downlink => self.downlink.clone(),
        };
        spec.frame = self.frame();
        spec
    }

    /// A sequence this high cannot be one of the run's: at most one packet
    /// per frame of the send phase, plus one for the tick at its start.
    pub fn seq_limit(&self) -> u32 {
        let frames = (self.duration.as_secs_f64() * f64::from(self.pps)).ceil() as u64 + 2;
        u32::try_from(frames).unwrap_or(u32::MAX)
    }

    /// How many HTTP/2 connections the run opens (as in `sessions`).
    pub fn effective_connections(&self) -> u32 {
        self.run.connections_for(self.clients)
    }

    /// Checks the rules that tie flags together.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.clients == 0 || self.channels == 0 || self.speakers == 0 {
            return Err(PlanError::Zero);
        }
        if self.pps == 0 || self.pps > 1_000 {
            return Err(PlanError::Pps(self.pps));
        }
        if self.duration.is_zero() {
            return Err(PlanError::Duration);
        }
        if !(HEADER_LEN..=openspeak_voice::datagram::MAX_PAYLOAD).contains(&self.payload_bytes) {
            return Err(PlanError::PayloadBytes {
                given: self.payload_bytes,
                min: HEADER_LEN,
            });
        }
        if self.channels > self.clients {
            return Err(PlanError::MoreChannelsThanClients {
                channels: self.channels,
                clients: self.clients,
            });
        }
        let layout = self.layout();
        if self.speakers > layout.min_members() {
            return Err(PlanError::TooManySpeakers {
                speakers: self.speakers,
                members: layout.min_members(),
            });
        }
        if self.churn_every.is_some() && self.clients <= self.channels * self.speakers {
            return Err(PlanError::NobodyToChurn);
        }
        if let Some(every) = self.churn_every
            && every < MIN_CHURN_EVERY
        {
            return Err(PlanError::ChurnTooFast(every));
        }
        if let Some(t) = self.talk
            && (t.spurt < self.frame() || t.silence.is_zero())
        {
            return Err(PlanError::Talk);
        }
        if let Some(given) = &self.metrics {
            metrics_authority(given).map_err(|_| PlanError::MetricsAddress(given.clone()))?;
        }
        if let Some(given) = &self.control_metrics {
            metrics_authority(given)
                .map_err(|_| PlanError::ControlMetricsAddress(given.clone()))?;
        }
        match self.timeline {
            None if self.warm_up.is_some() || self.control_metrics.is_some() => {
                return Err(PlanError::NeedsTimeline);
            }
            // The soak compares the end of the warm-up with a later row.
            Some(every)
                if every.is_zero() || self.warm_up_rows() >= row_count(self.duration, every) =>
            {
                return Err(PlanError::TimelineTooCoarse {
                    every: every.as_secs(),
                    duration: self.duration.as_secs(),
                });
            }
            _ => {}
        }
        self.uplink.validate("--uplink-loss")?;
        self.downlink.validate("--downlink-loss")?;
        Ok(())
    }
}

/// The shortest churn period: a leave and a rejoin take several calls,
/// and a listener must stay long enough to hear something.
pub const MIN_CHURN_EVERY: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::impairment::LossModel;

    fn plan() -> VoicePlan {
        VoicePlan::new("127.0.0.1:1", "t")
    }

    #[test]
    fn the_default_plan_is_valid() {
        plan().validate().unwrap();
        assert_eq!(plan().frame(), Duration::from_millis(20));
        assert_eq!(plan().seq_limit(), 502);
        assert_eq!(
            plan().link(Direction::Uplink).frame,
            Duration::from_millis(20)
        );
    }

    #[test]
    fn rules_between_flags_are_checked() {
        let bad = [
            VoicePlan {
                speakers: 6,
                ..plan()
            },
            VoicePlan {
                channels: 11,
                ..plan()
            },
            VoicePlan { pps: 0, ..plan() },
            VoicePlan {
                payload_bytes: 17,
                ..plan()
            },
            VoicePlan {
                churn_every: Some(Duration::from_secs(2)),
                speakers: 5,
                ..plan()
            },
            VoicePlan {
                churn_every: Some(Duration::from_millis(100)),
                ..plan()
            },
            VoicePlan {
                metrics: Some("localhost".into()),
                ..plan()
            },
            VoicePlan {
                control_metrics: Some("localhost".into()),
                timeline: Some(Duration::from_secs(2)),
                ..plan()
            },
            // --control-metrics and --warm-up only serve a timeline.
            VoicePlan {
                control_metrics: Some("127.0.0.1:9100".into()),
                ..plan()
            },
            VoicePlan {
                warm_up: Some(Duration::from_secs(2)),
                ..plan()
            },
            // 10 s in rows of 10 s: one row, nothing after the warm-up.
            VoicePlan {
                timeline: Some(Duration::from_secs(10)),
                ..plan()
            },
            // 10 s in rows of 2 s, 8 s of them warm-up: nothing after it.
            VoicePlan {
                timeline: Some(Duration::from_secs(2)),
                warm_up: Some(Duration::from_secs(9)),
                ..plan()
            },
            VoicePlan {
                talk: Some(TalkSpec {
                    spurt: Duration::from_millis(5),
                    silence: Duration::from_millis(500),
                }),
                ..plan()
            },
        ];
        for p in bad {
            assert!(p.validate().is_err(), "{p:?}");
        }
        let mut p = plan();
        p.uplink.loss = 0.8;
        p.uplink.loss_model = LossModel::Gilbert;
        p.uplink.burst_len = 1.0;
        assert!(matches!(p.validate(), Err(PlanError::Impairment(_))));
    }

    #[test]
    fn a_timeline_warms_up_for_a_fifth_of_the_run_at_least_one_row() {
        let mut p = VoicePlan {
            timeline: Some(Duration::from_secs(2)),
            ..plan()
        };
        p.validate().unwrap();
        assert_eq!(p.effective_warm_up(), Duration::from_secs(2));
        assert_eq!(p.warm_up_rows(), 1);
        p.warm_up = Some(Duration::from_millis(7_500));
        p.validate().unwrap();
        assert_eq!(p.warm_up_rows(), 4, "of 5 rows");
        p.timeline = Some(Duration::from_secs(3));
        assert_eq!(p.warm_up_rows(), 3, "of 4 rows, the last one short");
        p.validate().unwrap();
        assert_eq!(plan().warm_up_rows(), 0);
    }

    #[test]
    fn connections_follow_the_sessions_rule() {
        let mut p = VoicePlan {
            clients: 2_000,
            ..plan()
        };
        p.run.connections = 4;
        assert_eq!(p.effective_connections(), 20);
        assert_eq!(plan().effective_connections(), 10);
    }
}
