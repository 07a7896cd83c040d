//! The OpenSpeak load generator: many real gRPC clients against one control
//! plane, with a progress line, latency histograms and correctness checks.
//!
//! The binary (`src/main.rs`) only parses flags; each scenario lives here:
//! - [`sessions`](run_sessions): N clients connect, join channels, change
//!   presence and leave, while every client watches the server's event
//!   stream;
//! - [`voice`](run_voice): clients in channels get into voice through
//!   `OpenVoice` and the data plane, speakers send probe packets through a
//!   simulated network, and every listener measures delivery, loss, order
//!   and one-way delay;
//! - [`talk`](run_talk) and [`record`](run_record): real audio end to end.
//!   One client streams the Opus packets of an Ogg Opus file into a channel
//!   at their recorded pace; another writes what one speaker says into an
//!   Ogg Opus file, so a person can hear what went through, and a test can
//!   compare it byte for byte.
//!
//! `README.md` explains the flags and every number of the reports.
//!
//! The code is split the way the rest of OpenSpeak is: pure parts that take
//! `now` and values, and thin tokio drivers around them, in one folder per
//! subcommand and two shared ones:
//! - `common`: flag parsers, errors, the connection pool, credentials and
//!   the admin calls, failure tallies, statistics, the progress line and the
//!   report table;
//! - `sessions`, `voice`: the two scenarios;
//! - `audio`: `talk` and `record`;
//! - `metrics`: the planes' `/metrics` and the processes' CPU time.

mod audio;
mod common;
mod floor;
mod metrics;
mod sessions;
mod voice;

pub use audio::flags::{RecordArgs, TalkArgs};
pub use audio::opus_file::{
    OpusFileError, OpusHead, OpusStream, OpusWriter, SAMPLE_RATE, packet_samples,
    read_file as read_opus_file,
};
pub use audio::recorder::{RecordReport, RecordStarted, RecordStop, RecordTally, run_record};
pub use audio::talker::{TalkReport, TalkStarted, run_talk};
pub use common::error::{
    ConnectError, JoinVoiceError, PlanError, RecordError, RunError, SetupError, TalkError,
};
pub use common::flags::{RunFlags, ServerFlags, parse_addr};
pub use common::report::{JsonReport, Outcome};
pub use common::stats::LatencyPercentiles;
pub use common::task::error_chain;
pub use floor::{FloorArgs, FloorReport, Readers, run_floor};
pub use metrics::text::{DataplaneCounters, ProcessGauges};
pub use sessions::flags::SessionsArgs;
pub use sessions::report::{Report, ServerStats, Settled};
pub use sessions::run_sessions;
pub use voice::flags::{ImpairWhere, Transport, VoiceArgs};
pub use voice::impairment::{ImpairmentError, ImpairmentSpec, JitterDist, LossModel};
pub use voice::plan::{Preset, TalkSpec, VoicePlan};
pub use voice::probe::{HEADER_LEN as PROBE_HEADER_LEN, Probe, ProbeError};
pub use voice::report::{
    ChurnReport, ImpairmentReport, ServerDrops, VoiceReport, VoiceServerStats, WarmupReport,
};
pub use voice::run::{WARMUP_TIMEOUT, run_voice};
pub use voice::timeline::{
    IntervalCounts, IntervalLatency, MAX_FD_GROWTH, MAX_RSS_GROWTH_PCT, P99_MAX_RATIO,
    P99_SLACK_US, Plane, ProcessSample, SoakProcess, SoakReport, TimelineRow,
};
