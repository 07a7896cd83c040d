//! Counting what failed, by reason and by step.
//!
//! A failed call is counted under its OpenSpeak reason (`CHANNEL_FULL`, …)
//! when the status carries one, else under `grpc:<CODE>`; failures the tool
//! detects itself have lowercase names (`stream_ended`, `protocol`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use openspeak_shared::Reason;
use serde::Serialize;
use tonic::{Code, Status};

use crate::common::task::lock;

/// The client step during which something failed, named in the report in
/// snake case (`open_voice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum Step {
    /// The `Connect` call itself.
    Connect,
    /// Waiting for the stream's first event, `session_started`.
    SessionStarted,
    /// `JoinChannel`.
    Join,
    /// `UpdatePresence`.
    Presence,
    /// The event stream broke or ended before the client closed it.
    Stream,
    /// `VoiceService.OpenVoice`.
    OpenVoice,
    /// The QUIC connection and ticket exchange with the data plane.
    VoiceConnect,
    /// Sending voice datagrams.
    VoiceSend,
    /// The voice connection while listening.
    VoiceRecv,
    /// `LeaveChannel` (churn).
    Leave,
    /// A client's whole setup, when it did not finish in time.
    Setup,
}

/// What went wrong, as a report key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ErrorKind(String);

impl ErrorKind {
    /// The stream ended (cleanly) although the client had not closed it.
    pub fn stream_ended() -> ErrorKind {
        ErrorKind("stream_ended".into())
    }

    /// The server broke the protocol (say, a first event that is not
    /// `session_started`).
    pub fn protocol() -> ErrorKind {
        ErrorKind("protocol".into())
    }

    /// A failure the tool names itself (`timed_out`, `bad_endpoint`), or
    /// how the server ended a session (`kicked`, `server_shutdown`).
    pub fn named(name: &str) -> ErrorKind {
        ErrorKind(name.into())
    }

    /// A voice connection's failure over either transport.
    pub fn conn(e: &crate::voice::conn::ConnError) -> ErrorKind {
        use crate::voice::conn::ConnError;
        match e {
            ConnError::Quic(e) => Self::voice(e),
            ConnError::Udp(e) => Self::udp_voice(e),
        }
    }

    /// A plain-UDP voice failure: `udp:<what>`, with the reject or close
    /// code when there is one (`udp:rejected:3`, `udp:closed:9`).
    pub fn udp_voice(e: &openspeak_client::udp::UdpVoiceError) -> ErrorKind {
        use openspeak_client::udp::UdpVoiceError as U;
        ErrorKind(match e {
            U::BadKey(_) => "udp:bad_key".into(),
            U::TicketTooLong(_) => "udp:ticket_too_long".into(),
            U::Bind { .. } => "udp:bind".into(),
            U::Rejected { code, .. } => format!("udp:rejected:{code}"),
            U::Timeout { .. } => "udp:timed_out".into(),
            U::Closed { code } => format!("udp:closed:{code}"),
            U::Packet(_) => "udp:packet".into(),
            U::Io(_) => "udp:io".into(),
        })
    }

    /// A voice connection's failure: `voice:<what>`, with the reject or
    /// close code when there is one (`voice:rejected:5`).
    pub fn voice(e: &openspeak_client::voice::VoiceError) -> ErrorKind {
        use openspeak_client::voice::VoiceError as V;
        ErrorKind(match e {
            V::MalformedPin(_) => "voice:malformed_pin".into(),
            V::Config(_) => "voice:config".into(),
            V::Bind(_) => "voice:bind".into(),
            V::Connect { .. } => "voice:connect".into(),
            V::PinMismatch { .. } => "voice:pin_mismatch".into(),
            V::Handshake { .. } => "voice:handshake".into(),
            V::Rejected { code, .. } => format!("voice:rejected:{code}"),
            V::BadAnswer { .. } => "voice:bad_answer".into(),
            V::TicketTooLong(_) => "voice:ticket_too_long".into(),
            V::Timeout => "voice:timed_out".into(),
            V::ConnectionLost { code: Some(c), .. } => format!("voice:closed:{c}"),
            V::ConnectionLost { code: None, .. } => "voice:connection_lost".into(),
            V::Stream(_) => "voice:stream".into(),
            V::Packet(_) => "voice:packet".into(),
            V::Datagram(_) => "voice:datagram".into(),
        })
    }

    /// The OpenSpeak reason of a status, else its gRPC code.
    pub fn of(status: &Status) -> ErrorKind {
        match Reason::of(status) {
            Some(reason) => ErrorKind(reason.as_str().into()),
            None => ErrorKind(format!("grpc:{}", code_name(status.code()))),
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Failure counts, as every report gives them (flattened into it). Kept
/// behind one mutex: failures are rare next to events, so contention does
/// not matter, and one lock keeps the counts consistent.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct ErrorTally {
    /// Count per reason (an OpenSpeak reason, `grpc:<CODE>`, or the tool's own).
    pub errors: BTreeMap<String, u64>,
    /// All failures.
    pub errors_total: u64,
    /// Count per client step.
    pub errors_by_step: BTreeMap<String, u64>,
    /// The first message seen for each reason, to show a person.
    pub error_examples: BTreeMap<String, String>,
}

impl ErrorTally {
    /// Counts one failure.
    pub fn record(&mut self, step: Step, kind: &ErrorKind, message: &str) {
        *self.errors.entry(kind.as_str().to_owned()).or_default() += 1;
        self.errors_total += 1;
        *self.errors_by_step.entry(step.to_string()).or_default() += 1;
        self.error_examples
            .entry(kind.as_str().to_owned())
            .or_insert_with(|| format!("{step}: {message}"));
    }
}

/// A status for a person: reason (or code) and message.
pub fn describe_status(status: &Status) -> String {
    let kind = ErrorKind::of(status);
    if status.message().is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({})", status.message())
    }
}

/// The canonical upper-case name of a gRPC code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A run's failures, kept together so the two cannot drift apart: a live
/// count for the progress line and the tally by reason for the report.
#[derive(Debug, Default)]
pub struct FailureLog {
    /// Failures so far (the progress line's `errors`).
    pub count: AtomicU64,
    /// By reason and step, with an example of each (the report's).
    pub tally: Mutex<ErrorTally>,
}

/// Whatever a run's tasks share that holds its [`FailureLog`]; counting a
/// failure goes through here.
pub trait Failures {
    /// The run's failures.
    fn failures(&self) -> &FailureLog;

    /// Counts a failure.
    fn fail(&self, step: Step, kind: &ErrorKind, message: &str) {
        let log = self.failures();
        log.count.fetch_add(1, Ordering::Relaxed);
        lock(&log.tally).record(step, kind, message);
    }

    /// Counts a call the server refused.
    fn fail_status(&self, step: Step, status: &Status) {
        self.fail(step, &ErrorKind::of(status), status.message());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_keyed_by_reason_else_code() {
        let full = Reason::ChannelFull.status("no room");
        assert_eq!(ErrorKind::of(&full).as_str(), "CHANNEL_FULL");
        let bare = Status::unavailable("connection reset");
        assert_eq!(ErrorKind::of(&bare).as_str(), "grpc:UNAVAILABLE");
        assert_eq!(
            describe_status(&Reason::denied("admins only")),
            "UNAUTHORIZED (admins only)"
        );
    }

    #[test]
    fn tally_counts_by_reason_and_step() {
        let mut t = ErrorTally::default();
        let full = ErrorKind::of(&Reason::ChannelFull.status("x"));
        t.record(Step::Join, &full, "first");
        t.record(Step::Join, &full, "second");
        t.record(Step::Stream, &ErrorKind::stream_ended(), "eof");
        assert_eq!(t.errors_total, 3);
        assert_eq!(t.errors["CHANNEL_FULL"], 2);
        assert_eq!(t.errors_by_step["join"], 2);
        assert_eq!(t.errors_by_step["stream"], 1);
        assert_eq!(t.error_examples["CHANNEL_FULL"], "join: first");
    }
}
