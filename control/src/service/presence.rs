//! `PresenceService`: sessions, their event streams, and presence.

use std::{
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use futures::Stream;
use openspeak_shared::{Encoded, Reason, pb};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::Shared;
use crate::{
    authenticator::Caller,
    broker::{Broker, ChangeError, Dispatch, Started},
    convert,
    event::{Event, KickCause},
    hub::{HubError, PresencePatch},
    ids::SessionId,
};

pub struct PresenceApi(pub Arc<Shared>);

type EventStream = Pin<Box<dyn Stream<Item = Result<Encoded, Status>> + Send>>;

#[tonic::async_trait]
impl pb::fanout::presence_service_server::PresenceService for PresenceApi {
    type ConnectStream = EventStream;

    async fn connect(
        &self,
        request: Request<pb::ConnectRequest>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let caller = Caller::of(&request)?;
        let display_name = &request.get_ref().display_name;
        let started = self
            .0
            .broker
            .start_session(&caller.token, display_name, Instant::now())
            .inspect_err(|e| {
                if matches!(e, ChangeError::Hub(HubError::TooManySessions(_))) {
                    self.0.refusals.session_cap.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        let guard = SessionGuard {
            broker: self.0.broker.clone(),
            id: started.id,
        };
        // A revocation that ran between our authentication and the start
        // of the session could not see it; look again now that it exists.
        let live = self
            .0
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_live(&caller.token.id);
        if !live {
            return Err(Reason::Unauthorized.status("invalid, expired or revoked token"));
        }
        tracing::Span::current().record("session_id", started.id.0);
        info!(
            session_id = %started.id,
            display_name = %started.user.display_name,
            token_id = %caller.token.id,
            peer = ?caller.peer,
            "session connected"
        );
        Ok(Response::new(Box::pin(session_stream(started, guard))))
    }

    async fn update_presence(
        &self,
        request: Request<pb::UpdatePresenceRequest>,
    ) -> Result<Response<pb::UserPresence>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.get_ref();
        let patch = PresencePatch {
            status: req
                .status
                .map(convert::presence_status_from_wire)
                .transpose()?,
            status_text: req.status_text.clone(),
            self_mute: req.self_mute,
            self_deaf: req.self_deaf,
        };
        let user = self
            .0
            .with_session(&request, &caller, |hub, id| hub.update_presence(id, patch))?;
        info!(
            session_id = %user.id,
            status = ?user.status,
            self_mute = user.self_mute,
            self_deaf = user.self_deaf,
            "presence changed"
        );
        Ok(Response::new(convert::user(&user)))
    }

    async fn list_online(
        &self,
        request: Request<pb::ListOnlineRequest>,
    ) -> Result<Response<pb::ListOnlineResponse>, Status> {
        Caller::of(&request)?;
        let users = self
            .0
            .broker
            .read(|hub| hub.users())
            .iter()
            .map(convert::user)
            .collect();
        Ok(Response::new(pb::ListOnlineResponse { users }))
    }

    async fn list_channel_members(
        &self,
        request: Request<pb::ListChannelMembersRequest>,
    ) -> Result<Response<pb::ListChannelMembersResponse>, Status> {
        Caller::of(&request)?;
        let id = convert::channel_id("channel_id", &request.get_ref().channel_id)?;
        let users = self
            .0
            .broker
            .read(|hub| hub.members(id.as_str()))?
            .iter()
            .map(convert::user)
            .collect();
        Ok(Response::new(pb::ListChannelMembersResponse { users }))
    }
}

/// Ends the session when its stream goes, however it goes: the client
/// hung up, the connection died, or the server ended the stream.
struct SessionGuard {
    broker: Arc<Broker>,
    id: SessionId,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.broker.end_session(self.id) {
            info!(session_id = %self.id, "session disconnected");
        }
    }
}

/// `session_started`, then every event meant for this session, until it is
/// kicked, falls too far behind, or the client goes away.
fn session_stream(
    started: Started,
    guard: SessionGuard,
) -> impl Stream<Item = Result<Encoded, Status>> + Send {
    let Started {
        id,
        first,
        mut events,
        sequence: seen_through,
        ..
    } = started;
    async_stream::stream! {
        let _guard = guard;
        yield Ok(first);
        loop {
            let dispatch = match events.recv().await {
                Ok(dispatch) => dispatch,
                Err(RecvError::Lagged(missed)) => {
                    warn!(session_id = %id, missed, "session fell behind its event queue; ending it");
                    yield Err(Reason::RateLimited.status(format!(
                        "session ended: it fell {missed} events behind the server; \
                         read events faster, and reconnect for a fresh snapshot"
                    )));
                    break;
                }
                Err(RecvError::Closed) => break,
            };
            let (event, wire) = match &*dispatch {
                // Already in `session_started`.
                Dispatch::Event { sequence, .. } if *sequence <= seen_through => continue,
                Dispatch::Event { event, wire, .. } => (event, wire),
                // The shutdown grace period is over: end the stream cleanly;
                // the client already got `server_shutdown`.
                Dispatch::Close => break,
            };
            if event.target().is_some_and(|t| t != id) {
                continue;
            }
            yield Ok(wire.clone());
            if let Event::Kicked { cause, .. } = event {
                info!(session_id = %id, ?cause, "session kicked");
                let message = match cause {
                    KickCause::TokenRevoked => "session ended: its token was revoked",
                    KickCause::TokenExpired => "session ended: its token expired",
                };
                yield Err(Reason::Unauthorized.status(message));
                break;
            }
        }
    }
}
