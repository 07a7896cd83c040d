//! [`Session`]: one `PresenceService.Connect` stream, the session it
//! stands for, and the session-scoped calls (join, leave, presence, voice),
//! which carry `openspeak-session: <id>`.
//!
//! The session lives as long as its stream: dropping the [`Session`] hangs
//! up and the server ends the session. When the stream ends, so does the
//! session, whatever the cause; [`ResumingSession`](crate::ResumingSession)
//! is the one that comes back after a control plane went away. Events are read only when asked
//! for ([`Session::next_event`]); the server queues them meanwhile, up to
//! its own limit.

use std::time::Duration;

use openspeak_shared::pb;
use pb::event::Event as Ev;
use tonic::Streaming;

use crate::call::{SessionRef, VoiceOpener};
use crate::control::{Client, missing};
use crate::error::{ClientError, within};
use crate::grant::VoiceGrant;

/// One session and its event stream.
#[derive(Debug)]
pub struct Session {
    /// The connection and token the session belongs to; session-scoped
    /// calls must carry the same token.
    client: Client,
    /// The session's id, from `session_started`.
    id: u32,
    /// The first event: the server as it was when the session began.
    started: pb::SessionStarted,
    /// The sequence number of `session_started`.
    started_sequence: u64,
    /// The event stream; `None` once it has ended, so that later reads
    /// say so again.
    events: Option<Streaming<pb::Event>>,
}

impl Session {
    pub(crate) fn new(
        client: Client,
        started: pb::SessionStarted,
        started_sequence: u64,
        events: Streaming<pb::Event>,
    ) -> Session {
        Session {
            client,
            id: started.session_id,
            started,
            started_sequence,
            events: Some(events),
        }
    }

    /// The session id; voice packets name speakers by it.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The first event, `session_started`: the channels and the users
    /// online (this session included) when the session began.
    pub fn started(&self) -> &pb::SessionStarted {
        &self.started
    }

    /// The sequence number of `session_started`; later events have larger
    /// ones.
    pub fn started_sequence(&self) -> u64 {
        self.started_sequence
    }

    /// The client (connection and token) the session belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    // ----- events ---------------------------------------------------------

    /// The next event of the server. Waits without bound: use
    /// [`next_event_within`](Self::next_event_within) or
    /// [`wait_for`](Self::wait_for) where a wait must end. Once the stream
    /// has ended, every call fails: [`ClientError::SessionEnded`] for a
    /// clean close, the server's status for an error.
    pub async fn next_event(&mut self) -> Result<pb::Event, ClientError> {
        let Some(events) = &mut self.events else {
            return Err(ClientError::SessionEnded {
                session_id: self.id,
            });
        };
        let next = events.message().await;
        match next {
            Ok(Some(event)) => Ok(event),
            Ok(None) => {
                self.events = None;
                Err(ClientError::SessionEnded {
                    session_id: self.id,
                })
            }
            Err(status) => {
                self.events = None;
                Err(ClientError::status("PresenceService.Connect", status))
            }
        }
    }

    /// The next event, if one comes within `limit`.
    pub async fn next_event_within(&mut self, limit: Duration) -> Result<pb::Event, ClientError> {
        // `Streaming::message` keeps its state in the stream, so giving up
        // on it half way loses no event.
        within(limit, "the next event", self.next_event()).await?
    }

    /// Reads events until one matches `matches`, for at most `limit`, and
    /// returns it; the events before it are consumed. Events of a kind
    /// this client does not know (a newer server) never match.
    pub async fn wait_for(
        &mut self,
        mut matches: impl FnMut(&Ev) -> bool,
        limit: Duration,
    ) -> Result<pb::Event, ClientError> {
        let wait = async {
            loop {
                let event = self.next_event().await?;
                if event.event.as_ref().is_some_and(&mut matches) {
                    return Ok(event);
                }
            }
        };
        within(limit, "a matching event", wait).await?
    }

    // ----- session-scoped calls -------------------------------------------

    /// Joins `channel_id`, giving `password` ("" for none; admins need
    /// none). Returns the channel as it is after the join.
    pub async fn join(&self, channel_id: &str, password: &str) -> Result<pb::Channel, ClientError> {
        let call = "ChannelService.JoinChannel";
        let request = self.client.session_request(
            self.id,
            pb::JoinChannelRequest {
                channel_id: channel_id.to_owned(),
                password: password.to_owned(),
            },
        );
        let response = self
            .client
            .finish(call, self.client.channels().join_channel(request))
            .await?;
        response.channel.ok_or_else(|| missing(call, "channel"))
    }

    /// Leaves the current channel; the session is then in none.
    pub async fn leave(&self) -> Result<(), ClientError> {
        let call = "ChannelService.LeaveChannel";
        let request = self
            .client
            .session_request(self.id, pb::LeaveChannelRequest {});
        self.client
            .finish(call, self.client.channels().leave_channel(request))
            .await
            .map(drop)
    }

    /// Changes the fields `update` sets; returns the presence after it.
    pub async fn update_presence(
        &self,
        update: PresenceUpdate,
    ) -> Result<pb::UserPresence, ClientError> {
        let call = "PresenceService.UpdatePresence";
        let request = self.client.session_request(self.id, update.into_request());
        self.client
            .finish(call, self.client.presence().update_presence(request))
            .await
    }

    /// Asks for voice in the current channel: which data plane to dial and
    /// the ticket to present there. See [`VoiceGrant::connect`].
    pub async fn open_voice(&self) -> Result<VoiceGrant, ClientError> {
        self.voice_opener().open().await
    }

    /// What a [`Call`](crate::Call) needs to ask for this session's voice
    /// again, on its own.
    pub fn voice_opener(&self) -> VoiceOpener {
        VoiceOpener {
            client: self.client.clone(),
            session: SessionRef::Fixed(self.id),
        }
    }
}

/// A change of presence: only the fields set here change.
///
/// ```
/// # use openspeak_client::PresenceUpdate;
/// let deafened = PresenceUpdate::new().self_deaf(true).status_text("afk");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresenceUpdate {
    request: pb::UpdatePresenceRequest,
}

impl PresenceUpdate {
    /// A change of nothing yet.
    pub fn new() -> PresenceUpdate {
        PresenceUpdate::default()
    }

    /// Online, away or do-not-disturb.
    pub fn status(mut self, status: pb::Status) -> PresenceUpdate {
        self.request.status = Some(status.into());
        self
    }

    /// A short text (up to 128 characters; empty clears it).
    pub fn status_text(mut self, text: impl Into<String>) -> PresenceUpdate {
        self.request.status_text = Some(text.into());
        self
    }

    /// Mutes (or unmutes) oneself: the data plane drops one's voice.
    pub fn self_mute(mut self, mute: bool) -> PresenceUpdate {
        self.request.self_mute = Some(mute);
        self
    }

    /// Deafens (or undeafens) oneself: the data plane forwards nothing to
    /// one.
    pub fn self_deaf(mut self, deaf: bool) -> PresenceUpdate {
        self.request.self_deaf = Some(deaf);
        self
    }

    /// The request as it goes on the wire.
    pub fn into_request(self) -> pb::UpdatePresenceRequest {
        self.request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presence_update_sets_only_what_it_names() {
        assert_eq!(
            PresenceUpdate::new().into_request(),
            pb::UpdatePresenceRequest::default()
        );
        let request = PresenceUpdate::new()
            .self_deaf(true)
            .status(pb::Status::Away)
            .into_request();
        assert_eq!(request.self_deaf, Some(true));
        assert_eq!(request.self_mute, None);
        assert_eq!(request.status, Some(pb::Status::Away as i32));
        assert_eq!(request.status_text, None);
    }
}
