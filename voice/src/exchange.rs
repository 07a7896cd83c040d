//! The ticket exchange: how a client presents its voice ticket on a new
//! QUIC connection, and how the data plane answers.
//!
//! It runs on the first bidirectional stream the client opens. All
//! integers are big-endian:
//!
//! ```text
//! client → server  version (u8, = 1) | ticket_len (u16) | ticket, then FIN
//! server → client  accepted: 0 (u8) | session_id (u32), then FIN
//!                  rejected: code (u8) | reason_len (u16) | reason (UTF-8),
//!                  then FIN, and the connection is closed with error code
//!                  `code`
//! ```
//!
//! The ticket itself is opaque here: the control plane seals it and the
//! data plane opens it. Both sides of the framing live in this one file so
//! that the server's parser and the client's encoder cannot drift apart.

use std::time::Duration;

use thiserror::Error;

/// The version byte of the ticket exchange.
pub const EXCHANGE_VERSION: u8 = 1;

/// How long a client has, from the end of the handshake, to present its
/// ticket before the data plane closes the connection with
/// [`RejectCode::Timeout`].
pub const TICKET_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest ticket the exchange can carry: its length is a `u16`.
pub const MAX_TICKET_LEN: usize = u16::MAX as usize;

/// The longest valid request: version, length and the longest ticket. A
/// server reads no more than this (plus one byte, to tell "too long").
pub const MAX_REQUEST: usize = 1 + 2 + MAX_TICKET_LEN;

/// The longest answer a data plane sends: a reject code, a length and a
/// short reason. A client reads no more than this.
pub const MAX_ANSWER: usize = 1024;

/// Why a connection was refused or closed; the value is both the reject
/// code on the ticket stream and the QUIC application error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RejectCode {
    /// The request or the ticket does not parse.
    Malformed = 1,
    /// The ticket's key is not one this data plane holds.
    UnknownKey = 2,
    /// The ticket failed authentication.
    Forged = 3,
    /// The ticket has expired.
    Expired = 4,
    /// The same ticket is in use by another live connection.
    InUse = 5,
    /// No complete ticket arrived within [`TICKET_TIMEOUT`].
    Timeout = 6,
    /// The request's version byte is not [`EXCHANGE_VERSION`].
    UnsupportedVersion = 7,
    /// A newer ticket for the same session took over (a reconnect).
    Replaced = 8,
    /// The control plane ended the session, or moved it off this data plane.
    Removed = 9,
}

impl RejectCode {
    /// Every code, in order of value.
    pub const ALL: [RejectCode; 9] = [
        RejectCode::Malformed,
        RejectCode::UnknownKey,
        RejectCode::Forged,
        RejectCode::Expired,
        RejectCode::InUse,
        RejectCode::Timeout,
        RejectCode::UnsupportedVersion,
        RejectCode::Replaced,
        RejectCode::Removed,
    ];

    /// The reason sent with the code, for people.
    pub fn reason(self) -> &'static str {
        match self {
            RejectCode::Malformed => "malformed ticket",
            RejectCode::UnknownKey => "unknown ticket key",
            RejectCode::Forged => "forged ticket",
            RejectCode::Expired => "expired ticket",
            RejectCode::InUse => "ticket already in use",
            RejectCode::Timeout => "no ticket within 5 s",
            RejectCode::UnsupportedVersion => "unsupported version",
            RejectCode::Replaced => "replaced",
            RejectCode::Removed => "removed",
        }
    }

    /// The code with value `code`, if there is one.
    pub fn from_u8(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u8 == code)
    }
}

/// The ticket is longer than the exchange can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("ticket of {0} bytes is too long")]
pub struct TicketTooLong(pub usize);

/// The request a client sends: version, length, ticket.
pub fn encode_request(ticket: &[u8]) -> Result<Vec<u8>, TicketTooLong> {
    let len = u16::try_from(ticket.len()).map_err(|_| TicketTooLong(ticket.len()))?;
    let mut request = Vec::with_capacity(3 + ticket.len());
    request.push(EXCHANGE_VERSION);
    request.extend_from_slice(&len.to_be_bytes());
    request.extend_from_slice(ticket);
    Ok(request)
}

/// The ticket inside a complete request, or the code to refuse it with.
pub fn parse_request(request: &[u8]) -> Result<&[u8], RejectCode> {
    match request {
        [] => Err(RejectCode::Malformed),
        [version, ..] if *version != EXCHANGE_VERSION => Err(RejectCode::UnsupportedVersion),
        [_, hi, lo, ticket @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == ticket.len() => {
            Ok(ticket)
        }
        _ => Err(RejectCode::Malformed),
    }
}

/// The answer that admits `session_id`.
pub fn encode_accept(session_id: u32) -> [u8; 5] {
    let mut accepted = [0u8; 5];
    accepted[1..].copy_from_slice(&session_id.to_be_bytes());
    accepted
}

/// The answer that refuses with `code`: code, reason length, reason.
pub fn encode_reject(code: RejectCode) -> Vec<u8> {
    let reason = code.reason().as_bytes();
    let mut message = Vec::with_capacity(3 + reason.len());
    message.push(code as u8);
    // Reasons are fixed, short strings.
    message.extend_from_slice(&(reason.len() as u16).to_be_bytes());
    message.extend_from_slice(reason);
    message
}

/// The data plane's answer to a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Admitted as this session.
    Accepted(u32),
    /// Refused. The code is kept as sent, so that a client can report a
    /// code newer than this crate.
    Rejected {
        /// The reject code, also the connection's close code.
        code: u8,
        /// The data plane's reason, for people (invalid UTF-8 replaced).
        reason: String,
    },
}

/// An answer that is neither form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("malformed ticket answer ({len} bytes)")]
pub struct MalformedAnswer {
    /// The answer's length.
    pub len: usize,
}

/// Reads the data plane's answer: `0 | u32 session` or
/// `code | u16 len | reason`.
pub fn parse_answer(answer: &[u8]) -> Result<Answer, MalformedAnswer> {
    match *answer {
        [0, a, b, c, d] => Ok(Answer::Accepted(u32::from_be_bytes([a, b, c, d]))),
        [code, hi, lo, ref reason @ ..]
            if code != 0 && usize::from(u16::from_be_bytes([hi, lo])) == reason.len() =>
        {
            Ok(Answer::Rejected {
                code,
                reason: String::from_utf8_lossy(reason).into_owned(),
            })
        }
        _ => Err(MalformedAnswer { len: answer.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        assert_eq!(encode_request(b"abc").unwrap(), [1, 0, 3, b'a', b'b', b'c']);
        let request = encode_request(b"abc").unwrap();
        assert_eq!(parse_request(&request), Ok(&b"abc"[..]));
        assert_eq!(encode_request(&vec![0; 70_000]), Err(TicketTooLong(70_000)));
        let longest = encode_request(&vec![7; MAX_TICKET_LEN]).unwrap();
        assert_eq!(longest.len(), MAX_REQUEST);
        assert_eq!(parse_request(&longest).map(<[u8]>::len), Ok(MAX_TICKET_LEN));
    }

    #[test]
    fn requests_parse() {
        assert_eq!(parse_request(&[]), Err(RejectCode::Malformed));
        assert_eq!(
            parse_request(&[2, 0, 0]),
            Err(RejectCode::UnsupportedVersion)
        );
        assert_eq!(parse_request(&[1, 0]), Err(RejectCode::Malformed));
        assert_eq!(parse_request(&[1, 0, 2, 9]), Err(RejectCode::Malformed));
        assert_eq!(parse_request(&[1, 0, 1, 9]), Ok(&[9u8][..]));
    }

    #[test]
    fn answers_round_trip() {
        assert_eq!(parse_answer(&encode_accept(258)), Ok(Answer::Accepted(258)));
        for code in RejectCode::ALL {
            assert_eq!(RejectCode::from_u8(code as u8), Some(code));
            let message = encode_reject(code);
            assert!(message.len() <= MAX_ANSWER);
            assert_eq!(
                parse_answer(&message),
                Ok(Answer::Rejected {
                    code: code as u8,
                    reason: code.reason().into()
                })
            );
        }
        assert_eq!(RejectCode::from_u8(0), None);
        assert_eq!(RejectCode::from_u8(10), None);
    }

    #[test]
    fn parses_answers() {
        assert_eq!(parse_answer(&[0, 0, 0, 1, 2]), Ok(Answer::Accepted(258)));
        assert_eq!(
            parse_answer(&[3, 0, 2, b'n', b'o']),
            Ok(Answer::Rejected {
                code: 3,
                reason: "no".into()
            })
        );
        for bad in [
            &[][..],
            &[0, 1],
            &[0, 0, 0, 0, 1, 9],
            &[3, 0, 5, b'x'],
            &[0, 0, 0],
        ] {
            assert_eq!(
                parse_answer(bad),
                Err(MalformedAnswer { len: bad.len() }),
                "{bad:?}"
            );
        }
    }
}
