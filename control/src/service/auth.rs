//! `AuthService`: who am I, and token management for admins.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use openspeak_shared::{Reason, pb};
use tonic::{Request, Response, Status};
use tracing::info;

use super::{Shared, internal};
use crate::{authenticator::Caller, convert, event::KickCause, limits, tokens::RevokeError};

pub struct AuthApi(pub Arc<Shared>);

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::TokenInfo>, Status> {
        let caller = Caller::of(&request)?;
        Ok(Response::new(convert::token_info(&caller.token)))
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = Caller::admin_of(&request, "CreateToken")?;
        let req = request.into_inner();
        let label = limits::text("label", &req.label, limits::SHORT_TEXT_MAX)
            .map_err(|e| Reason::InvalidRequest.status(e.to_string()))?;
        let role = convert::role_from_wire(req.role)?;
        let ttl = match req.ttl_seconds {
            None => self.0.token_ttl,
            Some(0) => None,
            Some(secs) => Some(Duration::from_secs(secs)),
        };
        let (token, info) = self
            .0
            .tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .create(&label, role, ttl, SystemTime::now())
            .map_err(internal)?;
        info!(token_id = %info.id, label = %info.label, role = ?info.role, by = %caller.token.id, "token created");
        Ok(Response::new(pb::CreateTokenResponse {
            token,
            info: Some(convert::token_info(&info)),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = Caller::admin_of(&request, "RevokeToken")?;
        let id = request.into_inner().token_id;
        let revoked = self
            .0
            .tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .revoke(&id, SystemTime::now());
        match revoked {
            Ok(_) => {}
            Err(RevokeError::NotFound(_)) => {
                return Err(Reason::TokenNotFound.status(format!(
                    "no live token has id {} (unknown, or already revoked)",
                    limits::Echo(&id)
                )));
            }
            Err(RevokeError::Store(e)) => return Err(internal(e)),
        }
        // Sessions opened with the token end now, not at their next call.
        let ended = self
            .0
            .broker
            .update(|hub| hub.kick_token(&id, KickCause::TokenRevoked, "your token was revoked"));
        info!(token_id = %id, by = %caller.token.id, sessions_ended = ended, "token revoked");
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        Caller::admin_of(&request, "ListTokens")?;
        let tokens = self
            .0
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .list()
            .iter()
            .map(convert::token_info)
            .collect();
        Ok(Response::new(pb::ListTokensResponse { tokens }))
    }
}
