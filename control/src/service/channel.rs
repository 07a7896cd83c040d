//! `ChannelService`: the channel tree and moving sessions through it.

use std::{sync::Arc, time::Instant};

use openspeak_shared::{Reason, pb};
use tonic::{Request, Response, Status};
use tracing::info;

use super::Shared;
use crate::{
    authenticator::Caller,
    channels::ChannelPatch,
    convert,
    event::ChannelView,
    hub::{Hub, HubError},
    ids::SessionId,
    limits,
};

pub struct ChannelApi(pub Arc<Shared>);

impl ChannelApi {
    /// Makes `change` to the channel tree, logs the channel as `done` by
    /// `caller`, and answers with the channel as it now is.
    fn change_channel(
        &self,
        caller: &Caller,
        done: &str,
        change: impl FnOnce(&mut Hub) -> Result<ChannelView, HubError>,
    ) -> Result<Response<pb::Channel>, Status> {
        let view = self.0.broker.change_channels(change)?;
        info!(channel_id = %view.id, name = %view.name, by = %caller.token.id, "channel {done}");
        Ok(Response::new(convert::channel(&view)))
    }
}

#[tonic::async_trait]
impl pb::channel_service_server::ChannelService for ChannelApi {
    async fn create_channel(
        &self,
        request: Request<pb::CreateChannelRequest>,
    ) -> Result<Response<pb::Channel>, Status> {
        let caller = Caller::of(&request)?;
        if !self.0.members_can_create {
            caller.require_admin("CreateChannel")?;
        }
        let new = convert::new_channel(request.into_inner());
        self.change_channel(&caller, "created", |hub| {
            hub.create_channel(new, Instant::now())
        })
    }

    async fn get_channel(
        &self,
        request: Request<pb::GetChannelRequest>,
    ) -> Result<Response<pb::Channel>, Status> {
        Caller::of(&request)?;
        let id = convert::channel_id("channel_id", &request.get_ref().channel_id)?;
        let view = self.0.broker.read(|hub| hub.channel(id.as_str()))?;
        Ok(Response::new(convert::channel(&view)))
    }

    async fn list_channels(
        &self,
        request: Request<pb::ListChannelsRequest>,
    ) -> Result<Response<pb::ListChannelsResponse>, Status> {
        Caller::of(&request)?;
        let channels = self
            .0
            .broker
            .read(|hub| hub.channels())
            .iter()
            .map(convert::channel)
            .collect();
        Ok(Response::new(pb::ListChannelsResponse { channels }))
    }

    async fn update_channel(
        &self,
        request: Request<pb::UpdateChannelRequest>,
    ) -> Result<Response<pb::Channel>, Status> {
        let caller = Caller::admin_of(&request, "UpdateChannel")?;
        let req = request.into_inner();
        let id = convert::channel_id("channel_id", &req.channel_id)?;
        let patch = ChannelPatch {
            name: req.name,
            parent: req.parent_id.as_deref().map(convert::parent_id),
            description: req.description,
            max_members: req.max_members,
            password: req.password,
            temporary: req.temporary,
        };
        self.change_channel(&caller, "updated", |hub| {
            hub.update_channel(id.as_str(), patch, Instant::now())
        })
    }

    async fn delete_channel(
        &self,
        request: Request<pb::DeleteChannelRequest>,
    ) -> Result<Response<pb::DeleteChannelResponse>, Status> {
        let caller = Caller::admin_of(&request, "DeleteChannel")?;
        let id = convert::channel_id("channel_id", &request.get_ref().channel_id)?;
        self.0
            .broker
            .update(|hub| hub.delete_channel(id.as_str()))?;
        info!(channel_id = %id, by = %caller.token.id, "channel deleted");
        Ok(Response::new(pb::DeleteChannelResponse {}))
    }

    async fn join_channel(
        &self,
        request: Request<pb::JoinChannelRequest>,
    ) -> Result<Response<pb::JoinChannelResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = convert::channel_id("channel_id", &request.get_ref().channel_id)?;
        let password = &request.get_ref().password;
        limits::check_length("password", password, limits::SHORT_TEXT_MAX)
            .map_err(|e| Reason::InvalidRequest.status(e.to_string()))?;
        let view = self.0.with_session(&request, &caller, |hub, session| {
            hub.join(session, id.as_str(), password)
        })?;
        Ok(Response::new(pb::JoinChannelResponse {
            channel: Some(convert::channel(&view)),
        }))
    }

    async fn leave_channel(
        &self,
        request: Request<pb::LeaveChannelRequest>,
    ) -> Result<Response<pb::LeaveChannelResponse>, Status> {
        let caller = Caller::of(&request)?;
        self.0
            .with_session(&request, &caller, |hub, session| hub.leave(session))?;
        Ok(Response::new(pb::LeaveChannelResponse {}))
    }

    async fn move_member(
        &self,
        request: Request<pb::MoveMemberRequest>,
    ) -> Result<Response<pb::MoveMemberResponse>, Status> {
        let caller = Caller::admin_of(&request, "MoveMember")?;
        let req = request.into_inner();
        let channel = convert::channel_id("channel_id", &req.channel_id)?;
        let session = SessionId(req.session_id);
        self.0
            .broker
            .update(|hub| hub.move_member(session, channel.as_str()))?;
        info!(session_id = %session, channel_id = %channel, by = %caller.token.id, "member moved");
        Ok(Response::new(pb::MoveMemberResponse {}))
    }
}
