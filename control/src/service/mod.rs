//! The gRPC edge: one file per public service.
//!
//! Handlers authenticate (via [`Caller`]), convert the request into core
//! types, run one step on the [`Broker`] and convert the answer back. Core
//! errors become statuses with the contract's reasons here, and nowhere else.

mod admin;
mod auth;
mod channel;
mod presence;
mod voice;

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use openspeak_shared::{Reason, metadata, ticket::TicketIssuer};
use tonic::{Request, Status};
use tracing::Span;

pub use self::{
    admin::AdminApi, auth::AuthApi, channel::ChannelApi, presence::PresenceApi, voice::VoiceApi,
};
use crate::{
    authenticator::Caller,
    broker::{Broker, ChangeError},
    channels::ChannelError,
    cluster::Registry,
    hub::{Hub, HubError},
    ids::SessionId,
    metrics::Refusals,
    tokens::TokenStore,
};

/// What every service needs.
pub struct Shared {
    pub broker: Arc<Broker>,
    pub tokens: Arc<RwLock<TokenStore>>,
    /// Lifetime of created tokens whose request names none.
    pub token_ttl: Option<Duration>,
    pub members_can_create: bool,
    /// The attached data planes and where channels are placed.
    pub registry: Arc<Registry>,
    /// Seals voice tickets with the key the data planes hold.
    pub tickets: TicketIssuer,
    /// Refusals counted for `/metrics`.
    pub refusals: Arc<Refusals>,
}

impl Shared {
    /// Runs `f` for the caller's session named in the request metadata,
    /// after noting its activity; publishes what `f` changed.
    fn with_session<T, R>(
        &self,
        request: &Request<T>,
        caller: &Caller,
        f: impl FnOnce(&mut Hub, SessionId) -> Result<R, HubError>,
    ) -> Result<R, Status> {
        let id = session_id(request)?;
        self.broker
            .update(|hub| {
                hub.session_of(id, &caller.token.id)?;
                hub.touch(id, Instant::now());
                f(hub, id)
            })
            .map_err(Status::from)
    }
}

/// The session named by `openspeak-session` metadata (decimal, non-zero).
fn session_id<T>(request: &Request<T>) -> Result<SessionId, Status> {
    let value = request.metadata().get(metadata::SESSION).ok_or_else(|| {
        Reason::SessionRequired.status(
            "this call needs `openspeak-session: <session_id>` metadata (from session_started)",
        )
    })?;
    let id = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&id| id != 0)
        .ok_or_else(|| {
            Reason::SessionRequired
                .status("`openspeak-session` must be a non-zero decimal session id")
        })?;
    Span::current().record("session_id", id);
    Ok(SessionId(id))
}

impl From<HubError> for Status {
    fn from(error: HubError) -> Self {
        let message = error.to_string();
        match error {
            HubError::SessionRequired(_) => Reason::SessionRequired.status(format!(
                "{message}: connect with PresenceService.Connect and send its session id"
            )),
            HubError::UserNotFound(_) => Reason::UserNotFound.status(message),
            HubError::NotInChannel => Reason::NotInChannel.status(message),
            HubError::ChannelFull(_) => Reason::ChannelFull.status(message),
            HubError::WrongPassword(_) => Reason::WrongPassword.status(message),
            HubError::Channel(ChannelError::NotFound(_) | ChannelError::ParentNotFound(_)) => {
                Reason::ChannelNotFound.status(message)
            }
            HubError::Channel(_) | HubError::Invalid(_) => Reason::InvalidRequest.status(message),
            HubError::TooManySessions(_) => Reason::RateLimited.status(message),
        }
    }
}

impl From<ChangeError> for Status {
    fn from(error: ChangeError) -> Self {
        match error {
            ChangeError::Hub(e) => e.into(),
            ChangeError::Store(e) => internal(e),
        }
    }
}

/// Logs the detail, tells the client only that something broke.
pub(crate) fn internal(error: impl std::fmt::Display) -> Status {
    tracing::error!(%error, "internal error");
    Reason::InternalError.status("internal error; the server log has the details")
}
