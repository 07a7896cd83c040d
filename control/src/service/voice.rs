//! `VoiceService`: hands a session its ticket into a data plane.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use openspeak_shared::{
    Reason, pb,
    ticket::{KEY_LEN, TICKET_LIFETIME, Ticket},
};
use rand::RngCore;
use tonic::{Request, Response, Status};

use super::{Shared, internal};
use crate::{authenticator::Caller, convert, hub::HubError};

pub struct VoiceApi(pub Arc<Shared>);

#[tonic::async_trait]
impl pb::voice_service_server::VoiceService for VoiceApi {
    async fn open_voice(
        &self,
        request: Request<pb::OpenVoiceRequest>,
    ) -> Result<Response<pb::OpenVoiceResponse>, Status> {
        let caller = Caller::of(&request)?;
        // `with_session` has already checked that the session is the caller's.
        let (session, channel) = self.0.with_session(&request, &caller, |hub, session| {
            let channel = hub.user(session).and_then(|u| u.channel.clone());
            Ok((session, channel.ok_or(HubError::NotInChannel)?))
        })?;
        let endpoints = self.0.registry.place(&channel, session).ok_or_else(|| {
            Reason::NoDataplane.status(
                "no data plane attached to this control plane can take the channel, so voice is unavailable",
            )
        })?;
        let mut session_key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut session_key);
        // Whole seconds, as the ticket encodes it, so that the response and
        // the ticket name the same instant.
        let expires_at = UNIX_EPOCH
            + Duration::from_secs(
                (SystemTime::now() + TICKET_LIFETIME)
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            );
        let ticket = self
            .0
            .tickets
            .issue(&Ticket {
                session_id: session.0,
                channel: channel.0,
                expires_at,
                session_key,
            })
            .map_err(internal)?;
        Ok(Response::new(pb::OpenVoiceResponse {
            session_id: session.0,
            quic_endpoint: endpoints.quic,
            udp_endpoint: endpoints.udp,
            cert_sha256: endpoints.cert_sha256,
            ticket,
            session_key: session_key.to_vec(),
            expires_at: Some(convert::timestamp(expires_at)),
        }))
    }
}
