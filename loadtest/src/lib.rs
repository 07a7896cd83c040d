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
//! `now: Instant` and values, and thin tokio drivers around them.
//! - Pure: `observer` (one session's event stream: sequence check, which
//!   joins it saw, the event delays), `checks` (which events were owed and
//!   missing), `stats` (histograms, rates), `report` (table and JSON),
//!   `tally` (failures by reason).
//! - `process_stats`: the server's and the tool's own CPU time and memory,
//!   from `/proc` and `getrusage`; null, never an error, when unreadable.
//! - Shared state: `registry`, one slot per client that the clients publish
//!   facts in (session id, join instants, sequences) for each other.
//! - Drivers: `client` (one client's actor and event reader), `sessions`
//!   (the phases of the run), `setup` (the admin calls), `pool` (the
//!   HTTP/2 connections), `progress` (the line on stderr).
//! - Voice, pure: `probe` (what a payload carries), `impairment` (the
//!   simulated network's loss, delay, reordering and duplication, seeded),
//!   `delay_line` (packets the simulated network holds), `talk` (talk
//!   spurts), `delivery` (per-listener tallies and the totals), `layout`
//!   (who is in which channel and speaks), `plan` (the settled settings),
//!   `voice_report`.
//! - The data plane's view (`--metrics`): `metrics_text` (the Prometheus
//!   text format and the voice counters in it, pure), `metrics_scrape`
//!   (one `GET /metrics`).
//! - Voice, drivers: `voice` (the QUIC client, from `openspeak-client`),
//!   `voice_member` (one
//!   client's event reader, listener and speaker), `voice_run` (the
//!   phases), `voice_progress` (the line on stderr), `voice_args` (flags
//!   and presets).
//! - Real audio: `opus_file` (Ogg Opus files as packets, pure but for the
//!   file), `talker` (the pacing, pure, and `talk`'s driver), `recorder`
//!   (which packets to write, pure, and `record`'s driver),
//!   `audio_session` (one client in a channel's voice, through
//!   `openspeak-client`), `audio_args` (their flags).

mod args;
mod audio_args;
mod audio_session;
mod checks;
mod client;
mod credentials;
mod delay_line;
mod delivery;
mod error;
mod impairment;
mod layout;
mod metrics_scrape;
mod metrics_text;
mod observer;
mod opus_file;
mod plan;
mod pool;
mod probe;
mod process_stats;
mod progress;
mod recorder;
mod registry;
mod report;
mod sessions;
mod setup;
mod stats;
mod talk;
mod talker;
mod tally;
mod voice_args;
mod voice_member;
mod voice_progress;
mod voice_report;
mod voice_run;

pub use openspeak_client::voice;

pub use args::{SessionsArgs, parse_addr};
pub use audio_args::{RecordArgs, TalkArgs};
pub use error::{
    ConnectError, JoinVoiceError, PlanError, RecordError, SessionsError, SetupError, TalkError,
    VoiceRunError,
};
pub use impairment::{ImpairmentError, ImpairmentSpec, JitterDist, LossModel};
pub use metrics_text::DataplaneCounters;
pub use opus_file::{
    OpusFileError, OpusHead, OpusStream, OpusWriter, SAMPLE_RATE, packet_samples,
    read_file as read_opus_file,
};
pub use plan::{Preset, TalkSpec, VoicePlan};
pub use probe::{HEADER_LEN as PROBE_HEADER_LEN, Probe, ProbeError};
pub use recorder::{RecordReport, RecordStarted, RecordStop, RecordTally, run_record};
pub use report::{Outcome, Report, ServerStats, Settled};
pub use sessions::run_sessions;
pub use stats::{LatencyPercentiles, LatencySummary};
pub use talker::{TalkReport, TalkStarted, run_talk};
pub use voice_args::{ImpairWhere, Transport, VoiceArgs};
pub use voice_report::{
    ChurnReport, ImpairmentReport, ServerDrops, VoiceReport, VoiceServerStats, WarmupReport,
};
pub use voice_run::{WARMUP_TIMEOUT, run_voice};
