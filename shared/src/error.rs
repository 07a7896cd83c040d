//! The public error reasons (`docs/API.md`, "Errors") and their gRPC form.
//!
//! Every error status OpenSpeak returns carries a `google.rpc.ErrorInfo`
//! with domain [`DOMAIN`] and one [`Reason`], in `grpc-status-details-bin`.
//! Servers build statuses with [`Reason::status`]; clients read the reason
//! back with [`Reason::of`].

use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every OpenSpeak error.
pub const DOMAIN: &str = "openspeak";

/// Why a call failed, as clients see it. Clients match on these names, so
/// they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A bad token (UNAUTHENTICATED) or a token without the right
    /// (PERMISSION_DENIED); the code tells which.
    Unauthorized,
    /// Malformed or out-of-limit input.
    InvalidRequest,
    /// No channel has that id (also an unknown `parent_id`).
    ChannelNotFound,
    /// The channel is at `max_members`.
    ChannelFull,
    /// The channel's password did not match.
    WrongPassword,
    /// No session has that id.
    UserNotFound,
    /// No live token has that id.
    TokenNotFound,
    /// The call needs a live session of the caller's token.
    SessionRequired,
    /// The session is in no channel.
    NotInChannel,
    /// No data plane can take the channel.
    NoDataplane,
    /// Too many failures or requests.
    RateLimited,
    /// Something broke on the server; details are only in its log.
    InternalError,
}

impl Reason {
    /// Every reason, for tests and documentation.
    pub const ALL: [Reason; 12] = [
        Reason::Unauthorized,
        Reason::InvalidRequest,
        Reason::ChannelNotFound,
        Reason::ChannelFull,
        Reason::WrongPassword,
        Reason::UserNotFound,
        Reason::TokenNotFound,
        Reason::SessionRequired,
        Reason::NotInChannel,
        Reason::NoDataplane,
        Reason::RateLimited,
        Reason::InternalError,
    ];

    /// The name carried in `ErrorInfo.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unauthorized => "UNAUTHORIZED",
            Reason::InvalidRequest => "INVALID_REQUEST",
            Reason::ChannelNotFound => "CHANNEL_NOT_FOUND",
            Reason::ChannelFull => "CHANNEL_FULL",
            Reason::WrongPassword => "WRONG_PASSWORD",
            Reason::UserNotFound => "USER_NOT_FOUND",
            Reason::TokenNotFound => "TOKEN_NOT_FOUND",
            Reason::SessionRequired => "SESSION_REQUIRED",
            Reason::NotInChannel => "NOT_IN_CHANNEL",
            Reason::NoDataplane => "NO_DATAPLANE",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The reason named `name`, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The gRPC code that goes with the reason. `Unauthorized` has two; this
    /// is the one for a bad token (see [`Reason::denied`] for the other).
    pub fn code(self) -> Code {
        match self {
            Reason::Unauthorized => Code::Unauthenticated,
            Reason::InvalidRequest => Code::InvalidArgument,
            Reason::ChannelNotFound | Reason::UserNotFound | Reason::TokenNotFound => {
                Code::NotFound
            }
            Reason::ChannelFull | Reason::RateLimited => Code::ResourceExhausted,
            Reason::WrongPassword => Code::PermissionDenied,
            Reason::SessionRequired | Reason::NotInChannel => Code::FailedPrecondition,
            Reason::NoDataplane => Code::Unavailable,
            Reason::InternalError => Code::Internal,
        }
    }

    /// A status with this reason's code, the message, and the `ErrorInfo`.
    pub fn status(self, message: impl Into<String>) -> Status {
        self.status_with_code(self.code(), message)
    }

    /// `UNAUTHORIZED` with PERMISSION_DENIED: a valid token without the right.
    pub fn denied(message: impl Into<String>) -> Status {
        Reason::Unauthorized.status_with_code(Code::PermissionDenied, message)
    }

    fn status_with_code(self, code: Code, message: impl Into<String>) -> Status {
        let details =
            ErrorDetails::with_error_info(self.as_str(), DOMAIN, std::collections::HashMap::new());
        Status::with_error_details(code, message, details)
    }

    /// The OpenSpeak reason a status carries, if any.
    pub fn of(status: &Status) -> Option<Reason> {
        let info = status.get_details_error_info()?;
        if info.domain != DOMAIN {
            return None;
        }
        Reason::from_name(&info.reason)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_a_status() {
        for reason in Reason::ALL {
            let status = reason.status("something went wrong");
            assert_eq!(status.code(), reason.code());
            assert_eq!(status.message(), "something went wrong");
            assert_eq!(Reason::of(&status), Some(reason));
        }
    }

    #[test]
    fn denied_is_unauthorized_with_permission_denied() {
        let status = Reason::denied("admins only");
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(Reason::of(&status), Some(Reason::Unauthorized));
    }

    #[test]
    fn a_status_without_details_has_no_reason() {
        assert_eq!(Reason::of(&Status::internal("boom")), None);
    }
}
