//! Admission: where each QUIC connection is in the ticket exchange
//! (`openspeak_voice::exchange` has the framing), reading the request off
//! its stream, and checking the ticket.
//!
//! A connection is [`Stage::Admitting`] from its first packet: it has
//! [`TICKET_TIMEOUT`] from the end of the handshake to finish its request.
//! A refused one is [`Stage::Rejecting`] while the reason travels (closing
//! at once could discard it), then closed with the reject code.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openspeak_router::SessionId;
use openspeak_shared::ticket::{HEADER_LEN, KEY_LEN, NONCE_LEN, TicketError, TicketVerifier};
use openspeak_voice::exchange::{self, MAX_REQUEST};
use openspeak_voice::{RejectCode, TICKET_TIMEOUT};
use quinn_proto::{Dir, StreamId};

use super::sessions::TicketId;

/// How long a reject waits for the client to acknowledge the reason before
/// the connection is closed.
pub(super) const REJECT_LINGER: Duration = Duration::from_secs(1);

/// The ticket exchange of one connection.
pub(super) enum Stage {
    /// Handshaking or reading the request; refused with
    /// [`RejectCode::Timeout`] at `deadline`.
    Admitting {
        deadline: Instant,
        stream: Option<StreamId>,
        request: Vec<u8>,
    },
    /// Refused: the reason is on its way; the connection is closed with
    /// `code` once the client has it, or at `linger`.
    Rejecting {
        code: RejectCode,
        stream: StreamId,
        linger: Instant,
    },
    /// Voice flows.
    Admitted(SessionId),
    /// Closed by us; waiting for quinn to drain it.
    Closed,
}

impl Stage {
    /// A new connection, seen at `now`.
    pub(super) fn new(now: Instant) -> Self {
        Stage::Admitting {
            deadline: now + TICKET_TIMEOUT,
            stream: None,
            request: Vec::new(),
        }
    }

    /// The handshake finished at `now`: the client's time for its ticket
    /// runs from here, as documented.
    pub(super) fn connected(&mut self, now: Instant) {
        if let Stage::Admitting { deadline, .. } = self {
            *deadline = now + TICKET_TIMEOUT;
        }
    }

    /// When the exchange needs the driver next, if it does.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self {
            Stage::Admitting { deadline, .. } => Some(*deadline),
            Stage::Rejecting { linger, .. } => Some(*linger),
            Stage::Admitted(_) | Stage::Closed => None,
        }
    }

    /// The code to close the connection with at `now`, if its time for the
    /// exchange is up.
    pub(super) fn expired(&self, now: Instant) -> Option<RejectCode> {
        match *self {
            Stage::Admitting { deadline, .. } if deadline <= now => Some(RejectCode::Timeout),
            Stage::Rejecting { code, linger, .. } if linger <= now => Some(code),
            _ => None,
        }
    }

    /// The code to close with now that stream `id` is finished or stopped:
    /// the client has the reject's reason, or will not read it.
    pub(super) fn reject_delivered(&self, id: StreamId) -> Option<RejectCode> {
        match *self {
            Stage::Rejecting { code, stream, .. } if stream == id => Some(code),
            _ => None,
        }
    }
}

/// A ticket request read off its stream.
pub(super) enum Request {
    Complete { stream: StreamId, bytes: Vec<u8> },
    TooLong { stream: StreamId },
}

/// Reads the client's first bidirectional stream; the request once the
/// client has finished it (or sent more than a request can hold).
pub(super) fn read_request(
    quic: &mut quinn_proto::Connection,
    stage: &mut Stage,
) -> Option<Request> {
    let Stage::Admitting {
        stream, request, ..
    } = stage
    else {
        return None;
    };
    let id = match *stream {
        Some(id) => id,
        None => {
            let id = quic.streams().accept(Dir::Bi)?;
            *stream = Some(id);
            id
        }
    };
    let mut recv = quic.recv_stream(id);
    let mut chunks = recv.read(true).ok()?;
    let mut finished = false;
    loop {
        match chunks.next(MAX_REQUEST + 1 - request.len().min(MAX_REQUEST)) {
            Ok(Some(chunk)) => {
                request.extend_from_slice(&chunk.bytes);
                if request.len() > MAX_REQUEST {
                    break;
                }
            }
            Ok(None) => {
                finished = true;
                break;
            }
            // Blocked (more to come) or reset (the timeout will end it).
            Err(_) => break,
        }
    }
    let _ = chunks.finalize();
    if request.len() > MAX_REQUEST {
        Some(Request::TooLong { stream: id })
    } else if finished {
        Some(Request::Complete {
            stream: id,
            bytes: std::mem::take(request),
        })
    } else {
        None
    }
}

/// What an accepted ticket admits.
pub(super) struct Admitted {
    pub(super) session: SessionId,
    /// What identifies the ticket.
    pub(super) ticket: TicketId,
    /// The plain-UDP session key it carries.
    pub(super) key: [u8; KEY_LEN],
}

/// Opens the ticket in a complete request (the QUIC exchange's request,
/// or a UDP TICKET packet's body, which is the same bytes), or the code to
/// refuse it with.
pub(super) fn verify(
    verifier: &TicketVerifier,
    request: &[u8],
    wall: SystemTime,
) -> Result<Admitted, RejectCode> {
    let ticket = exchange::parse_request(request)?;
    let verified = verifier.verify(ticket, wall).map_err(|e| reject_code(&e))?;
    // A verified ticket is at least `MIN_TICKET_LEN` long, so this holds.
    let nonce = ticket
        .get(HEADER_LEN..HEADER_LEN + NONCE_LEN)
        .and_then(|n| n.try_into().ok())
        .ok_or(RejectCode::Malformed)?;
    let expires = verified
        .expires_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Admitted {
        session: SessionId(verified.session_id),
        ticket: TicketId { expires, nonce },
        key: verified.session_key,
    })
}

/// The reject code for a ticket that did not verify.
fn reject_code(e: &TicketError) -> RejectCode {
    match e {
        TicketError::UnknownKey(_) => RejectCode::UnknownKey,
        TicketError::Forged => RejectCode::Forged,
        TicketError::Expired => RejectCode::Expired,
        TicketError::Malformed(_) | TicketError::Random => RejectCode::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exchange_times_out_from_the_handshake() {
        let t0 = Instant::now();
        let mut stage = Stage::new(t0);
        assert_eq!(stage.deadline(), Some(t0 + TICKET_TIMEOUT));
        let handshake = t0 + Duration::from_secs(3);
        stage.connected(handshake);
        assert_eq!(stage.expired(t0 + TICKET_TIMEOUT), None);
        assert_eq!(
            stage.expired(handshake + TICKET_TIMEOUT),
            Some(RejectCode::Timeout)
        );
    }

    #[test]
    fn a_reject_lingers_until_delivered_or_its_time_is_up() {
        let t0 = Instant::now();
        let stream = StreamId::new(quinn_proto::Side::Client, Dir::Bi, 0);
        let other = StreamId::new(quinn_proto::Side::Client, Dir::Bi, 1);
        let stage = Stage::Rejecting {
            code: RejectCode::Forged,
            stream,
            linger: t0 + REJECT_LINGER,
        };
        assert_eq!(stage.deadline(), Some(t0 + REJECT_LINGER));
        assert_eq!(stage.reject_delivered(other), None);
        assert_eq!(stage.reject_delivered(stream), Some(RejectCode::Forged));
        assert_eq!(stage.expired(t0), None);
        assert_eq!(stage.expired(t0 + REJECT_LINGER), Some(RejectCode::Forged));
        // Admitted and closed connections have no exchange left to time.
        assert_eq!(Stage::Admitted(SessionId(1)).deadline(), None);
        assert_eq!(Stage::Closed.expired(t0 + REJECT_LINGER), None);
    }
}
