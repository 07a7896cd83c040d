//! `VoiceService`: hands a session its ticket into a data plane.

use std::sync::Arc;

use openspeak_shared::{Reason, pb};
use tonic::{Request, Response, Status};

use super::Shared;
use crate::{authenticator::Caller, hub::HubError};

pub struct VoiceApi(pub Arc<Shared>);

#[tonic::async_trait]
impl pb::voice_service_server::VoiceService for VoiceApi {
    async fn open_voice(
        &self,
        request: Request<pb::OpenVoiceRequest>,
    ) -> Result<Response<pb::OpenVoiceResponse>, Status> {
        let caller = Caller::of(&request)?;
        self.0.with_session(&request, &caller, |hub, session| {
            let user = hub.session_of(session, &caller.token.id)?;
            if user.user.channel.is_none() {
                return Err(HubError::NotInChannel);
            }
            Ok(())
        })?;
        // No data plane can register yet: the internal link comes with the
        // data plane itself.
        Err(Reason::NoDataplane
            .status("no data plane is registered with this control plane, so voice is unavailable"))
    }
}
