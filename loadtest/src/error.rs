//! Why a load test could not run (as opposed to what went wrong for single
//! clients, which is counted in the report, not returned as an error).

use std::path::PathBuf;

use tonic::Status;

use crate::tally::describe_status;

/// Opening the connection pool failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address does not make a valid URI.
    #[error("`{addr}` is not a usable address")]
    BadAddress {
        /// The address as given.
        addr: String,
        /// What the URI parser said.
        #[source]
        source: tonic::transport::Error,
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

/// The `sessions` scenario could not run or could not write its report.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    /// The connection pool could not be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Channels or the member token could not be made.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// A token cannot be sent as gRPC metadata.
    #[error("the token cannot be sent as gRPC metadata")]
    BadToken,
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

impl SessionsError {
    /// Whether the run's deadline, rather than a failure, stopped it.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            SessionsError::Connect(ConnectError::TimedOut { .. })
                | SessionsError::Setup(SetupError::TimedOut)
        )
    }
}
