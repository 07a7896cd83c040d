//! Why a load test could not run (as opposed to what went wrong for single
//! clients, which is counted in the report, not returned as an error).

use std::path::PathBuf;

use tonic::Status;

use crate::common::tally::describe_status;

/// Opening the connection pool failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address does not make a valid URI, or TLS cannot be set up
    /// for it.
    #[error("`{addr}` is not a usable address")]
    BadAddress {
        /// The address as given.
        addr: String,
        /// What the client library said.
        #[source]
        source: openspeak_client::ClientError,
    },
    /// The `--ca` file cannot be read.
    #[error("cannot read the CA file {}", path.display())]
    Ca {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TCP or HTTP/2 connection could not be made.
    #[error("cannot connect to {addr}")]
    Unreachable {
        /// The address dialled.
        addr: String,
        /// The transport's reason.
        #[source]
        source: tonic::transport::Error,
    },
    /// Connecting took longer than the run's timeout allowed.
    #[error("timed out connecting to {addr}")]
    TimedOut {
        /// The address dialled.
        addr: String,
    },
}

/// Preparing the run with the admin token failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The server refused the admin token or could not say who it is.
    #[error("the server at {addr} refused the token: {}", describe_status(.status))]
    WhoAmI {
        /// The server's address.
        addr: String,
        /// The server's answer.
        status: Status,
    },
    /// The token is valid but not an admin token.
    #[error("the token is not an admin token (role {role}); channels and tokens need one")]
    NotAdmin {
        /// The role the server reported.
        role: String,
    },
    /// Creating one of the run's channels failed.
    #[error("cannot create channel `{name}`: {}", describe_status(.status))]
    CreateChannel {
        /// The channel's name.
        name: String,
        /// The server's answer.
        status: Status,
    },
    /// Creating the clients' member token failed.
    #[error("cannot create the member token: {}", describe_status(.status))]
    CreateToken {
        /// The server's answer.
        status: Status,
    },
    /// The setup calls took longer than the run's timeout allowed.
    #[error("timed out during setup")]
    TimedOut,
}

/// The `voice` flags contradict each other or ask for the impossible.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Clients, channels or speakers of zero.
    #[error("--clients, --channels and --speakers must be at least 1")]
    Zero,
    /// Packets per second out of range.
    #[error("--pps must be 1 to 1000, not {0}")]
    Pps(u32),
    /// A send phase of no length.
    #[error("--duration must be at least 1 second")]
    Duration,
    /// A payload that cannot hold the probe header, or too long for voice.
    #[error("--payload-bytes must be {min} to 1000, not {given}")]
    PayloadBytes {
        /// The size given.
        given: usize,
        /// The probe header's size.
        min: usize,
    },
    /// Some channel would stay empty.
    #[error("{channels} channels need at least as many clients, not {clients}")]
    MoreChannelsThanClients {
        /// `--channels`.
        channels: u32,
        /// `--clients`.
        clients: u32,
    },
    /// More speakers than the smallest channel has members.
    #[error(
        "--speakers {speakers} is more than the {members} clients the smallest channel gets \
         (--clients / --channels)"
    )]
    TooManySpeakers {
        /// `--speakers`.
        speakers: u32,
        /// The smallest channel's members.
        members: u32,
    },
    /// Churn with every client speaking: only listeners churn.
    #[error("churn needs clients that only listen: raise --clients above --channels x --speakers")]
    NobodyToChurn,
    /// A churn period too short for a leave and a rejoin.
    #[error("a churn period of {0:?} is too short (at least 500 ms)")]
    ChurnTooFast(std::time::Duration),
    /// Talk spurts shorter than a frame, or silences of zero.
    #[error(
        "--talk-spurt-ms must be at least one frame (1000 / --pps ms) and --silence-ms above 0"
    )]
    Talk,
    /// An impairment setting is impossible.
    #[error(transparent)]
    Impairment(#[from] crate::voice::impairment::ImpairmentError),
    /// `--metrics` is not an address to scrape.
    #[error("--metrics must be HOST:PORT or http://HOST:PORT, not `{0}`")]
    MetricsAddress(String),
    /// `--control-metrics` is not an address to scrape.
    #[error("--control-metrics must be HOST:PORT or http://HOST:PORT, not `{0}`")]
    ControlMetricsAddress(String),
    /// `--warm-up` or `--control-metrics` without a timeline to use them.
    #[error("--warm-up and --control-metrics need --timeline (or --scenario soak)")]
    NeedsTimeline,
    /// A timeline of fewer than two rows: nothing after the warm-up.
    #[error(
        "--timeline {every}s leaves no row after the warm-up of a {duration}s send phase: \
         --timeline must be shorter than --duration, and --warm-up shorter than \
         --duration minus one --timeline interval"
    )]
    TimelineTooCoarse {
        /// `--timeline`, seconds.
        every: u64,
        /// `--duration`, seconds.
        duration: u64,
    },
}

/// The `sessions` or `voice` scenario could not run or could not write its
/// report.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The `voice` plan is invalid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The connection pool could not be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Channels or the member token could not be made.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// A token cannot be sent as gRPC metadata.
    #[error("the token cannot be sent as gRPC metadata")]
    BadToken,
    /// The shared QUIC sockets (`voice --sockets`) could not be opened.
    #[error("cannot open the shared QUIC sockets")]
    Sockets(#[source] openspeak_client::voice::VoiceError),
    /// The JSON report could not be written.
    #[error("cannot write the JSON report to {}", path.display())]
    WriteJson {
        /// Where it was to go.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// Whether the run's (for `voice`, the setup's) deadline, rather than a
    /// failure, stopped it.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            RunError::Connect(ConnectError::TimedOut { .. })
                | RunError::Setup(SetupError::TimedOut)
        )
    }
}

/// `talk` or `record` could not get into voice in the channel.
#[derive(Debug, thiserror::Error)]
pub enum JoinVoiceError {
    /// The control plane could not be reached (the client's message says
    /// where, so it is passed on as it is).
    #[error(transparent)]
    Connect(openspeak_client::ClientError),
    /// The `--ca` file cannot be read.
    #[error(transparent)]
    Ca(ConnectError),
    /// `ListChannels` failed.
    #[error("cannot list the channels")]
    ListChannels(#[source] openspeak_client::ClientError),
    /// No channel has this id or name.
    #[error("no channel has the id or name `{given}` (channels: {})", known.join(", "))]
    NoSuchChannel {
        /// `--channel` as given.
        given: String,
        /// The names of the channels there are, for the message.
        known: Vec<String>,
    },
    /// Several channels have this name.
    #[error("{} channels are named `{name}`; give an id instead: {}", ids.len(), ids.join(", "))]
    AmbiguousName {
        /// `--channel` as given.
        name: String,
        /// The ids of the channels of that name.
        ids: Vec<String>,
    },
    /// `--create` and the channel could not be created.
    #[error("cannot create channel `{name}`")]
    CreateChannel {
        /// The name asked for.
        name: String,
        /// The server's answer.
        #[source]
        source: openspeak_client::ClientError,
    },
    /// `PresenceService.Connect` failed.
    #[error("cannot start a session")]
    StartSession(#[source] openspeak_client::ClientError),
    /// `JoinChannel` failed, or its event never came.
    #[error("cannot join channel `{channel}`")]
    Join {
        /// The channel's name.
        channel: String,
        /// The server's answer.
        #[source]
        source: openspeak_client::ClientError,
    },
    /// `OpenVoice` failed (`NO_DATAPLANE`: no data plane is attached).
    #[error("cannot open voice")]
    OpenVoice(#[source] openspeak_client::ClientError),
    /// The QUIC connection to the data plane failed.
    #[error("cannot connect to the data plane")]
    VoiceConnect(#[source] openspeak_client::ClientError),
}

/// `talk` could not run.
#[derive(Debug, thiserror::Error)]
pub enum TalkError {
    /// The file is missing, unreadable or not Ogg Opus.
    #[error(transparent)]
    File(#[from] crate::audio::opus_file::OpusFileError),
    /// The file holds no audio packet.
    #[error("{}: no audio packets to send", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A packet is longer than a voice datagram may carry.
    #[error(
        "{}: Opus packet {index} is {len} bytes; voice carries at most {max} (encode at a lower \
         bitrate or with shorter frames)",
        path.display()
    )]
    PacketTooLong {
        /// The file.
        path: PathBuf,
        /// Which packet, from 0.
        index: usize,
        /// Its length.
        len: usize,
        /// The protocol's limit.
        max: usize,
    },
    /// Getting into voice failed.
    #[error(transparent)]
    JoinVoice(#[from] JoinVoiceError),
    /// The server ended the session while it talked (a shutdown, a kick).
    #[error("the session ended while talking")]
    SessionEnded(#[source] openspeak_client::ClientError),
    /// A packet could not be sent (the connection was lost).
    #[error("cannot send packet {index}")]
    Send {
        /// Which packet, from 0.
        index: usize,
        /// Why.
        #[source]
        source: openspeak_client::voice::VoiceError,
    },
}

/// `record` could not run, or could not write its file.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The output file could not be created or written.
    #[error("cannot write {}", path.display())]
    Write {
        /// `--out`.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Getting into voice failed.
    #[error(transparent)]
    JoinVoice(#[from] JoinVoiceError),
}
