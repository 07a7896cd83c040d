//! The flags of the `voice` scenario, as clap parses them, and how a
//! `--scenario` preset fills in the ones not given.
//!
//! Flags a preset may set are `Option`s here, so that "not given" is
//! visible: the value then comes from the preset, else from the defaults
//! of [`VoicePlan::new`]. [`VoiceArgs::plan`] does that and checks the
//! result.

use std::time::Duration;

use clap::Args;

use crate::common::error::PlanError;
use crate::common::flags::RunFlags;
use crate::common::task::random_seed;
use crate::metrics::scrape::metrics_authority;
use crate::voice::impairment::{JitterDist, LossModel};
use crate::voice::plan::{Preset, TalkSpec, VoicePlan};

/// The voice transport to the data plane, named in reports in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Transport {
    /// QUIC with DATAGRAM frames.
    Quic,
    /// Plain UDP sealed with the session key.
    Udp,
}

/// Where `--delay-ms`, `--jitter-ms`, `--reorder` and `--duplicate` apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImpairWhere {
    /// On the way to the data plane (exercises its jitter buffer).
    Uplink,
    /// On the way back to the listener.
    Downlink,
    /// Both ways, drawn independently.
    Both,
}

/// `openspeak-loadtest voice`: speakers send voice through the data plane,
/// every listener measures what arrives.
#[derive(Debug, Clone, Args)]
pub struct VoiceArgs {
    #[command(flatten)]
    pub run: RunFlags,

    /// A named scenario; flags given explicitly override its values.
    #[arg(long, value_name = "NAME")]
    pub scenario: Option<Preset>,

    /// Number of clients (sessions) [default: 10].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub clients: Option<u32>,

    /// Number of channels; client i joins channel i % C [default: 2].
    #[arg(long, value_name = "C",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub channels: Option<u32>,

    /// Speakers per channel; the others only listen [default: 1].
    #[arg(long, value_name = "S",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub speakers: Option<u32>,

    /// Packets per second per speaker while talking [default: 50].
    #[arg(long, value_name = "PPS",
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub pps: Option<u32>,

    /// Bytes per voice payload, at least 18 (the probe header) [default: 80].
    #[arg(long, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(18..=1_000))]
    pub payload_bytes: Option<u32>,

    /// Length of the send phase, seconds [default: 10].
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration: Option<u64>,

    /// Mean talk spurt, ms (with --silence-ms; default: talk without pause).
    #[arg(long, value_name = "MS", requires = "silence_ms",
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub talk_spurt_ms: Option<u64>,

    /// Mean silence between talk spurts, ms (with --talk-spurt-ms).
    #[arg(long, value_name = "MS", requires = "talk_spurt_ms",
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub silence_ms: Option<u64>,

    /// The listeners' playout delay after a stream's first packet: a packet
    /// arriving after its playout time counts as late [default: 60].
    #[arg(long, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub playout_ms: Option<u64>,

    /// Voice transport: QUIC, or plain UDP sealed with the session key.
    #[arg(long, value_enum, default_value_t = Transport::Quic)]
    pub transport: Transport,

    /// Seeds every random choice (impairments, talk spurts, churn)
    /// [default: random, printed in the report].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Fraction of packets lost on the way to the data plane (0 to <1).
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    pub uplink_loss: Option<f64>,

    /// Fraction of packets lost on the way to the listener (0 to <1).
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    pub downlink_loss: Option<f64>,

    /// How losses are spread [default: bernoulli].
    #[arg(long, value_name = "MODEL")]
    pub loss_model: Option<LossModel>,

    /// Gilbert: mean loss burst length, packets (>= 1) [default: 3].
    #[arg(long, value_name = "PACKETS", value_parser = parse_burst_len)]
    pub burst_len: Option<f64>,

    /// Fixed delay added to each packet, ms [default: 0].
    #[arg(long, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub delay_ms: Option<u64>,

    /// Spread of the delay, ms: uniform in delay ± jitter, or the standard
    /// deviation with --jitter-dist normal; never below 0 [default: 0].
    #[arg(long, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub jitter_ms: Option<u64>,

    /// The jitter's distribution [default: uniform].
    #[arg(long, value_name = "DIST")]
    pub jitter_dist: Option<JitterDist>,

    /// Fraction of packets held back one extra frame (0 to <1).
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    pub reorder: Option<f64>,

    /// Fraction of packets sent twice (0 to <1).
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    pub duplicate: Option<f64>,

    /// Which direction --delay-ms, --jitter-ms, --reorder and --duplicate
    /// act on [default: uplink].
    #[arg(long, value_name = "WHERE")]
    pub impair: Option<ImpairWhere>,

    /// Listeners that do not speak leave and rejoin about this often, ms
    /// (uniform in half to one and a half times it) [default: off; 3000
    /// with --scenario churn].
    #[arg(long, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(500..=3_600_000))]
    pub churn_every_ms: Option<u64>,

    /// UDP sockets the clients' QUIC connections share; 0 gives each
    /// client its own, as real clients have [default: 0; 64 with
    /// --scenario many-channels].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub sockets: Option<u32>,

    /// Bound on the setup, seconds: clients not in voice by then count as
    /// setup failures, and the run goes on with the others.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,

    /// The data plane's metrics listener (its `dataplane.metrics_listen`):
    /// scraped before the send phase and after the drain, the report puts
    /// the data plane's own counts (forwarded, received, dropped by reason,
    /// lost, reordered) next to the clients'.
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics)]
    pub metrics: Option<String>,

    /// The control plane's metrics listener (its `metrics.listen`,
    /// 127.0.0.1:9100 by default): its resident memory and open
    /// descriptors go into each --timeline row.
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics)]
    pub control_metrics: Option<String>,

    /// Every SECONDS of the send phase, a row: deliveries, losses, latency
    /// p50/p99/max of the interval, and each scraped process's memory and
    /// open descriptors; with it, the report's `soak` verdict [default:
    /// off; 60 with --scenario soak].
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeline: Option<u64>,

    /// The soak's warm-up, seconds: the timeline rows covering it are the
    /// baseline, not judged [default: 20 % of --duration, at least one
    /// row].
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub warm_up: Option<u64>,

    /// The soak's latency tolerance, ms: the last interval's p99 may reach
    /// twice the first's, or the first's plus this, whichever is more.
    /// Raise it only where the measurement's own noise is larger (debug
    /// builds on a busy host).
    #[arg(long, value_name = "MS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub soak_p99_slack_ms: u64,
}

/// The values a preset gives; `None` leaves the default.
#[derive(Debug, Default)]
struct PresetValues {
    clients: Option<u32>,
    channels: Option<u32>,
    speakers: Option<u32>,
    duration: Option<u64>,
    uplink_loss: Option<f64>,
    loss_model: Option<LossModel>,
    burst_len: Option<f64>,
    delay_ms: Option<u64>,
    jitter_ms: Option<u64>,
    reorder: Option<f64>,
    churn_every_ms: Option<u64>,
    sockets: Option<u32>,
    timeline: Option<u64>,
}

fn preset_values(preset: Option<Preset>) -> PresetValues {
    match preset {
        None => PresetValues::default(),
        Some(Preset::Fanout) => PresetValues {
            clients: Some(50),
            channels: Some(1),
            speakers: Some(5),
            duration: Some(30),
            ..PresetValues::default()
        },
        Some(Preset::ManyChannels) => PresetValues {
            clients: Some(2_000),
            channels: Some(400),
            speakers: Some(1),
            duration: Some(30),
            // 2,000 sockets and endpoint tasks would cost the load
            // generator more than the server; shared sockets keep the
            // measurement on the server's side.
            sockets: Some(64),
            ..PresetValues::default()
        },
        Some(Preset::Churn) => PresetValues {
            clients: Some(100),
            channels: Some(10),
            speakers: Some(2),
            duration: Some(30),
            churn_every_ms: Some(3_000),
            ..PresetValues::default()
        },
        Some(Preset::Impaired) => PresetValues {
            clients: Some(50),
            channels: Some(10),
            speakers: Some(1),
            duration: Some(30),
            uplink_loss: Some(0.05),
            loss_model: Some(LossModel::Gilbert),
            burst_len: Some(3.0),
            // Uniform 0 to 60 ms: a 30 ms mean and 30 ms of jitter, never
            // cut at zero.
            delay_ms: Some(30),
            jitter_ms: Some(30),
            reorder: Some(0.02),
            ..PresetValues::default()
        },
        Some(Preset::Soak) => PresetValues {
            clients: Some(2_000),
            channels: Some(200),
            speakers: Some(1),
            duration: Some(30 * 60),
            churn_every_ms: Some(3_000),
            // As many-channels: 2,000 sockets and endpoint tasks would cost
            // the load generator more than the server.
            sockets: Some(64),
            timeline: Some(60),
            ..PresetValues::default()
        },
    }
}

impl VoiceArgs {
    /// The run these flags describe: the preset's values where a flag was
    /// not given, defaults elsewhere, checked.
    pub fn plan(&self) -> Result<VoicePlan, PlanError> {
        let p = preset_values(self.scenario);
        let mut plan = VoicePlan::new(&self.run.server.addr, &self.run.server.token);
        plan.transport = self.transport;
        plan.preset = self.scenario;
        plan.clients = self.clients.or(p.clients).unwrap_or(plan.clients);
        plan.channels = self.channels.or(p.channels).unwrap_or(plan.channels);
        plan.speakers = self.speakers.or(p.speakers).unwrap_or(plan.speakers);
        plan.pps = self.pps.unwrap_or(plan.pps);
        plan.payload_bytes = self
            .payload_bytes
            .map_or(plan.payload_bytes, |b| b as usize);
        if let Some(secs) = self.duration.or(p.duration) {
            plan.duration = Duration::from_secs(secs);
        }
        if let (Some(spurt), Some(silence)) = (self.talk_spurt_ms, self.silence_ms) {
            plan.talk = Some(TalkSpec {
                spurt: Duration::from_millis(spurt),
                silence: Duration::from_millis(silence),
            });
        }
        if let Some(ms) = self.playout_ms {
            plan.playout = Duration::from_millis(ms);
        }
        plan.seed = self.seed.unwrap_or_else(random_seed);

        let model = self
            .loss_model
            .or(p.loss_model)
            .unwrap_or(LossModel::Bernoulli);
        let burst_len = self.burst_len.or(p.burst_len).unwrap_or(3.0);
        for (spec, loss) in [
            (&mut plan.uplink, self.uplink_loss.or(p.uplink_loss)),
            (&mut plan.downlink, self.downlink_loss),
        ] {
            spec.loss = loss.unwrap_or(0.0);
            spec.loss_model = model;
            spec.burst_len = burst_len;
        }
        let impair = self.impair.unwrap_or(ImpairWhere::Uplink);
        let delay = Duration::from_millis(self.delay_ms.or(p.delay_ms).unwrap_or(0));
        let jitter = Duration::from_millis(self.jitter_ms.or(p.jitter_ms).unwrap_or(0));
        let reorder = self.reorder.or(p.reorder).unwrap_or(0.0);
        let duplicate = self.duplicate.unwrap_or(0.0);
        let jitter_dist = self.jitter_dist.unwrap_or(JitterDist::Uniform);
        let (up, down) = match impair {
            ImpairWhere::Uplink => (true, false),
            ImpairWhere::Downlink => (false, true),
            ImpairWhere::Both => (true, true),
        };
        for (spec, on) in [(&mut plan.uplink, up), (&mut plan.downlink, down)] {
            if !on {
                continue;
            }
            spec.delay = delay;
            spec.jitter = jitter;
            spec.jitter_dist = jitter_dist;
            spec.reorder = reorder;
            spec.duplicate = duplicate;
        }

        plan.churn_every = self
            .churn_every_ms
            .or(p.churn_every_ms)
            .map(Duration::from_millis);
        plan.sockets = self.sockets.or(p.sockets).unwrap_or(0);
        plan.run = self.run.clone();
        plan.setup_timeout = Duration::from_secs(self.timeout);
        plan.metrics = self.metrics.clone();
        plan.control_metrics = self.control_metrics.clone();
        plan.timeline = self.timeline.or(p.timeline).map(Duration::from_secs);
        plan.warm_up = self.warm_up.map(Duration::from_secs);
        plan.soak_p99_slack = Duration::from_millis(self.soak_p99_slack_ms);
        plan.validate()?;
        Ok(plan)
    }
}

/// A fraction in `[0, 1)`.
fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..1.0).contains(&f) => Ok(f),
        Ok(f) => Err(format!(
            "{f} is not a fraction from 0 to below 1 (0.05 = 5 %)"
        )),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// `--metrics`: `HOST:PORT` or `http://HOST:PORT[/metrics]`, kept as
/// given.
fn parse_metrics(s: &str) -> Result<String, String> {
    metrics_authority(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A mean burst length of at least one packet.
fn parse_burst_len(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f >= 1.0 && f.is_finite() => Ok(f),
        Ok(f) => Err(format!("{f} is shorter than one packet")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::flags::{assert_refused, parse_flags};

    fn parse(extra: &[&str]) -> Result<VoiceArgs, clap::Error> {
        parse_flags(extra)
    }

    fn plan(extra: &[&str]) -> Result<VoicePlan, PlanError> {
        parse(extra).expect("flags parse").plan()
    }

    #[test]
    fn out_of_range_flags_are_clap_errors() {
        assert_refused(
            parse,
            &[],
            &[
                &["--uplink-loss", "1.5"],
                &["--uplink-loss", "1"],
                &["--downlink-loss", "-0.1"],
                &["--reorder", "x"],
                &["--pps", "0"],
                &["--payload-bytes", "17"],
                &["--payload-bytes", "1001"],
                &["--burst-len", "0.5"],
                &["--clients", "0"],
                &["--duration", "0"],
                &["--churn-every-ms", "10"],
                &["--transport", "tcp"],
                &["--talk-spurt-ms", "400"],
                &["--loss-model", "markov"],
                &["--timeline", "0"],
                &["--control-metrics", "localhost"],
                &["--scenario", "marathon"],
            ],
        );
    }

    #[test]
    fn rules_between_flags_are_plan_errors() {
        assert!(matches!(
            plan(&["--clients", "10", "--channels", "5", "--speakers", "3"]),
            Err(PlanError::TooManySpeakers {
                speakers: 3,
                members: 2
            })
        ));
        assert!(matches!(
            plan(&["--clients", "3", "--channels", "4"]),
            Err(PlanError::MoreChannelsThanClients { .. })
        ));
        assert!(matches!(
            plan(&["--warm-up", "3"]),
            Err(PlanError::NeedsTimeline)
        ));
        assert!(matches!(
            plan(&["--control-metrics", "127.0.0.1:9100"]),
            Err(PlanError::NeedsTimeline)
        ));
        assert_eq!(
            plan(&["--transport", "udp"]).unwrap().transport,
            Transport::Udp
        );
        assert_eq!(plan(&[]).unwrap().transport, Transport::Quic);
        assert!(matches!(
            plan(&[
                "--loss-model",
                "gilbert",
                "--uplink-loss",
                "0.9",
                "--burst-len",
                "2"
            ]),
            Err(PlanError::Impairment(_))
        ));
    }

    #[test]
    fn presets_fill_in_and_flags_override() {
        let p = plan(&["--scenario", "fanout"]).unwrap();
        assert_eq!((p.clients, p.channels, p.speakers), (50, 1, 5));
        assert_eq!(p.duration, Duration::from_secs(30));
        let p = plan(&["--scenario", "fanout", "--clients", "20", "--duration", "2"]).unwrap();
        assert_eq!((p.clients, p.channels, p.speakers), (20, 1, 5));
        assert_eq!(p.duration, Duration::from_secs(2));

        let p = plan(&["--scenario", "many-channels"]).unwrap();
        assert_eq!((p.clients, p.channels, p.speakers), (2_000, 400, 1));
        assert_eq!(p.sockets, 64);

        let p = plan(&["--scenario", "churn"]).unwrap();
        assert_eq!(p.churn_every, Some(Duration::from_secs(3)));
        assert!(p.layout().churn);

        let p = plan(&["--scenario", "impaired", "--seed", "5"]).unwrap();
        assert_eq!(p.uplink.loss, 0.05);
        assert_eq!(p.uplink.loss_model, LossModel::Gilbert);
        assert_eq!(p.uplink.burst_len, 3.0);
        assert_eq!(p.uplink.jitter, Duration::from_millis(30));
        assert_eq!(p.uplink.reorder, 0.02);
        assert!(p.downlink.is_clean());
        assert_eq!(p.seed, 5);
        let p = plan(&["--scenario", "impaired", "--uplink-loss", "0"]).unwrap();
        assert_eq!(p.uplink.loss, 0.0);

        let p = plan(&["--scenario", "soak"]).unwrap();
        assert_eq!((p.clients, p.channels, p.speakers), (2_000, 200, 1));
        assert_eq!(p.layout().min_members(), 10);
        assert_eq!(p.duration, Duration::from_secs(1_800));
        assert_eq!(p.churn_every, Some(Duration::from_secs(3)));
        assert_eq!(p.timeline, Some(Duration::from_secs(60)));
        assert_eq!(p.effective_warm_up(), Duration::from_secs(360));
        assert_eq!(p.warm_up_rows(), 6);
        assert_eq!(p.sockets, 64);
        assert_eq!(p.control_metrics, None);
        // The CI version: a minute, rows of 10 s, the control plane scraped.
        let p = plan(&[
            "--scenario",
            "soak",
            "--duration",
            "60",
            "--timeline",
            "10",
            "--warm-up",
            "10",
            "--control-metrics",
            "127.0.0.1:9100",
        ])
        .unwrap();
        assert_eq!(p.timeline, Some(Duration::from_secs(10)));
        assert_eq!(p.warm_up_rows(), 1);
        assert_eq!(p.control_metrics.as_deref(), Some("127.0.0.1:9100"));
        // Too short for its own rows of a minute: refused, not run.
        assert!(matches!(
            plan(&["--scenario", "soak", "--duration", "60"]),
            Err(PlanError::TimelineTooCoarse { .. })
        ));
    }

    #[test]
    fn impairments_go_where_they_are_told() {
        let p = plan(&[
            "--delay-ms",
            "10",
            "--jitter-ms",
            "5",
            "--duplicate",
            "0.1",
            "--impair",
            "downlink",
            "--downlink-loss",
            "0.2",
            "--jitter-dist",
            "normal",
        ])
        .unwrap();
        assert!(p.uplink.is_clean());
        assert_eq!(p.downlink.delay, Duration::from_millis(10));
        assert_eq!(p.downlink.jitter_dist, JitterDist::Normal);
        assert_eq!(p.downlink.duplicate, 0.1);
        assert_eq!(p.downlink.loss, 0.2);
        let p = plan(&["--reorder", "0.1", "--impair", "both"]).unwrap();
        assert_eq!((p.uplink.reorder, p.downlink.reorder), (0.1, 0.1));
    }

    #[test]
    fn talk_spurts_need_both_flags() {
        let p = plan(&["--talk-spurt-ms", "1000", "--silence-ms", "1500"]).unwrap();
        assert_eq!(
            p.talk,
            Some(TalkSpec {
                spurt: Duration::from_secs(1),
                silence: Duration::from_millis(1500)
            })
        );
        assert_eq!(plan(&[]).unwrap().talk, None);
    }
}
