//! [`ClientError`]: why a call of the control-plane half of the client
//! failed.
//!
//! A refusal by the server keeps its gRPC code, its message and the
//! `ErrorInfo` reason of the contract (domain `openspeak`), so that callers
//! branch on [`ClientError::reason`] (`"NO_DATAPLANE"`, `"CHANNEL_FULL"`, ...)
//! rather than on text. Everything else (no connection, a wait that ran
//! out, an answer that lacks a field) is a variant of its own.

use std::io;
use std::time::Duration;

use openspeak_shared::DOMAIN;
use thiserror::Error;
use tonic::Code;
use tonic_types::StatusExt;

use crate::udp::UdpVoiceError;
use crate::voice::VoiceError;

/// Why a control-plane call, a wait for an event, or connecting to voice
/// failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The control plane's address is not a URI tonic can dial.
    #[error("invalid control plane address `{addr}`")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// tonic's reason.
        #[source]
        source: tonic::transport::Error,
    },
    /// A CA certificate was given for an address that is not `https://`.
    #[error("`{addr}` is not an https:// address: a CA certificate is only for TLS")]
    TlsNeedsHttps {
        /// The address as given.
        addr: String,
    },
    /// No connection to the control plane could be made.
    #[error("cannot connect to the control plane at {addr}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// What the transport said.
        #[source]
        source: tonic::transport::Error,
    },
    /// Connecting to the control plane took longer than allowed.
    #[error("connecting to the control plane at {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// The address dialled.
        addr: String,
        /// How long it waited.
        after: Duration,
    },
    /// The token is not printable ASCII, so no server would accept it.
    #[error("the token is not valid in an authorization header")]
    InvalidToken,
    /// The server answered a call with an error status.
    #[error("{call} failed: {code:?} {reason}: {message}", code = .status.code(), reason = .reason.as_deref().unwrap_or("(no reason)"), message = .status.message())]
    Status {
        /// The RPC, e.g. `ChannelService.JoinChannel`.
        call: &'static str,
        /// The `ErrorInfo.reason` when the status carries one of domain
        /// `openspeak`.
        reason: Option<String>,
        /// The status itself, boxed: it is large and errors travel far.
        status: Box<tonic::Status>,
    },
    /// A call or a wait did not finish in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long it waited.
        after: Duration,
    },
    /// The session's event stream was closed by the server without an
    /// error (after `kicked` or `server_shutdown`, or a clean shutdown).
    #[error("session {session_id} ended: its event stream closed")]
    SessionEnded {
        /// The session whose stream closed.
        session_id: u32,
    },
    /// The server's answer lacks something the contract promises.
    #[error("unexpected answer to {call}: {what}")]
    Unexpected {
        /// The RPC.
        call: &'static str,
        /// What was wrong with the answer.
        what: String,
    },
    /// The data plane endpoint of a voice grant does not resolve.
    #[error("cannot resolve the voice endpoint `{endpoint}`")]
    Resolve {
        /// The `host:port` from `OpenVoice`.
        endpoint: String,
        /// The resolver's reason (`NotFound` when it gave no address).
        #[source]
        source: io::Error,
    },
    /// Connecting to the data plane failed.
    #[error("voice connection failed")]
    Voice(#[from] VoiceError),
    /// The grant names no plain-UDP endpoint: its data plane offers none.
    #[error("the data plane offers no plain-UDP voice; use QUIC")]
    NoUdpEndpoint,
    /// Connecting to the data plane over plain UDP failed.
    #[error("plain-UDP voice failed")]
    UdpVoice(#[from] UdpVoiceError),
}

impl ClientError {
    /// The error for a status the server returned to `call`.
    pub(crate) fn status(call: &'static str, status: tonic::Status) -> Self {
        let reason = reason_of(&status);
        ClientError::Status {
            call,
            reason,
            status: Box::new(status),
        }
    }

    /// The contract's reason (`ErrorInfo.reason`, domain `openspeak`) of a
    /// status the server returned; `None` for other errors, and for a
    /// status without one (which a proxy in the way might send).
    pub fn reason(&self) -> Option<&str> {
        match self {
            ClientError::Status { reason, .. } => reason.as_deref(),
            _ => None,
        }
    }

    /// The gRPC code of a status the server returned.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// The server's message, fit for a person, of a status it returned.
    pub fn message(&self) -> Option<&str> {
        match self {
            ClientError::Status { status, .. } => Some(status.message()),
            _ => None,
        }
    }

    /// The status the server returned, if that is what this error is.
    pub fn grpc_status(&self) -> Option<&tonic::Status> {
        match self {
            ClientError::Status { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// The `openspeak` reason in `status`'s rich details, if any.
fn reason_of(status: &tonic::Status) -> Option<String> {
    let details = status.get_error_details();
    let info = details.error_info()?;
    (info.domain == DOMAIN).then(|| info.reason.clone())
}

/// Awaits `future` for at most `limit`: its output, or
/// [`ClientError::Timeout`] naming `what` when it takes longer.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &'static str,
    future: impl Future<Output = T>,
) -> Result<T, ClientError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| ClientError::Timeout { what, after: limit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openspeak_shared::Reason;
    use tonic_types::ErrorDetails;

    #[test]
    fn a_contract_status_exposes_code_reason_and_message() {
        let e = ClientError::status(
            "VoiceService.OpenVoice",
            Reason::NoDataplane.status("no data plane is attached"),
        );
        assert_eq!(e.reason(), Some("NO_DATAPLANE"));
        assert_eq!(e.code(), Some(Code::Unavailable));
        assert_eq!(e.message(), Some("no data plane is attached"));
        let text = e.to_string();
        assert!(text.contains("VoiceService.OpenVoice"), "{text}");
        assert!(text.contains("NO_DATAPLANE"), "{text}");
    }

    #[test]
    fn a_status_of_another_domain_or_none_has_no_reason() {
        let plain = ClientError::status("AuthService.WhoAmI", tonic::Status::internal("boom"));
        assert_eq!(plain.reason(), None);
        assert_eq!(plain.code(), Some(Code::Internal));

        let foreign = tonic::Status::with_error_details(
            Code::Unavailable,
            "busy",
            ErrorDetails::with_error_info(
                "NO_DATAPLANE",
                "example.org",
                std::collections::HashMap::new(),
            ),
        );
        let e = ClientError::status("VoiceService.OpenVoice", foreign);
        assert_eq!(e.reason(), None, "only the openspeak domain counts");
    }

    #[test]
    fn other_errors_have_no_status_parts() {
        let e = ClientError::Timeout {
            what: "session_started",
            after: Duration::from_secs(1),
        };
        assert_eq!((e.reason(), e.code(), e.message()), (None, None, None));
    }
}
