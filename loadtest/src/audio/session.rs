//! One real client in one channel's voice, as `talk` and `record` need it:
//! a session through the client library, the channel found by id or name,
//! the join, the ticket and the QUIC connection; and the way out again.
//!
//! Unlike the scenarios, which make their own channels and tokens, these
//! subcommands act as one person would, in a channel that already exists
//! (or, with `--create`, one they make), so that a person can listen to
//! what another sends.

use std::time::Duration;

use openspeak_client::pb::event::Event as Ev;
use openspeak_client::{Client, ClientError, Session, VoiceClient, pb};

use crate::common::error::JoinVoiceError;
use crate::common::flags::ServerFlags;

/// Bound on waiting for the session's own `member_joined`.
const JOIN_EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A session in a channel with its voice connection open.
pub(crate) struct AudioSession {
    /// The session: it ends when this is dropped. Its events are read
    /// while voice runs, so the server never has to queue them.
    pub session: Session,
    /// The voice connection to the data plane.
    pub voice: VoiceClient,
    /// The channel it is in, as the join answered.
    pub channel: pb::Channel,
}

impl AudioSession {
    /// Connects to the control plane `server` names (over TLS when it
    /// says so), starts a session named `name`, joins the channel
    /// `channel` names (an id, else an exact name; with `create`, a new
    /// channel of that name when none matches) and gets into voice there.
    pub async fn enter(
        server: &ServerFlags,
        name: &str,
        channel: &str,
        create: bool,
    ) -> Result<AudioSession, JoinVoiceError> {
        let ca = server.ca_pem().map_err(JoinVoiceError::Ca)?;
        let connected = match ca {
            Some(pem) => Client::connect_with_ca(&server.uri(), &server.token, &pem).await,
            None => Client::connect(&server.uri(), &server.token).await,
        };
        let client = connected.map_err(JoinVoiceError::Connect)?;
        let target = find_channel(&client, channel, create).await?;
        let mut session = client
            .start_session(name)
            .await
            .map_err(JoinVoiceError::StartSession)?;
        let me = session.id();
        let join_error = |source| JoinVoiceError::Join {
            channel: target.name.clone(),
            source,
        };
        let joined = session.join(&target.id, "").await.map_err(join_error)?;
        let already_there = session
            .started()
            .users
            .iter()
            .any(|u| u.session_id == me && u.channel_id == target.id);
        if !already_there {
            // The data plane learns of the join from the same event feed;
            // waiting for our own event makes it very likely that it has
            // before the first packet, which it would otherwise drop.
            session
                .wait_for(
                    |e| matches!(e, Ev::MemberJoined(m) if m.session_id == me && m.channel_id == target.id),
                    JOIN_EVENT_TIMEOUT,
                )
                .await
                .map_err(join_error)?;
        }
        let grant = session
            .open_voice()
            .await
            .map_err(JoinVoiceError::OpenVoice)?;
        let voice = grant
            .connect()
            .await
            .map_err(JoinVoiceError::VoiceConnect)?;
        Ok(AudioSession {
            session,
            voice,
            channel: joined,
        })
    }

    /// Closes voice, then ends the session (by hanging up its stream).
    pub async fn leave(self) {
        self.voice.close().await;
        drop(self.session);
    }
}

/// The channel whose id is `given`, else the one whose name is exactly
/// `given`; with `create`, a new top-level channel of that name when none
/// matches.
async fn find_channel(
    client: &Client,
    given: &str,
    create: bool,
) -> Result<pb::Channel, JoinVoiceError> {
    let channels = client
        .list_channels()
        .await
        .map_err(JoinVoiceError::ListChannels)?;
    match pick_channel(channels, given) {
        Err(JoinVoiceError::NoSuchChannel { .. }) if create => client
            .create_channel(given)
            .await
            .map_err(|source: ClientError| JoinVoiceError::CreateChannel {
                name: given.to_owned(),
                source,
            }),
        other => other,
    }
}

/// Picks `given` among `channels`: ids first, because a name may look like
/// an id but an id is never ambiguous.
fn pick_channel(channels: Vec<pb::Channel>, given: &str) -> Result<pb::Channel, JoinVoiceError> {
    if let Some(c) = channels.iter().find(|c| c.id == given) {
        return Ok(c.clone());
    }
    let mut named: Vec<pb::Channel> = channels
        .iter()
        .filter(|c| c.name == given)
        .cloned()
        .collect();
    match named.len() {
        1 => Ok(named.remove(0)),
        0 => Err(JoinVoiceError::NoSuchChannel {
            given: given.to_owned(),
            known: channels
                .into_iter()
                .map(|c| format!("`{}`", c.name))
                .collect(),
        }),
        _ => Err(JoinVoiceError::AmbiguousName {
            name: given.to_owned(),
            ids: named.into_iter().map(|c| c.id).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(id: &str, name: &str) -> pb::Channel {
        pb::Channel {
            id: id.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_channel_is_found_by_id_then_by_exact_name() {
        let all = vec![
            channel("c1", "Lobby"),
            channel("c2", "Radio check"),
            channel("c3", "c2"),
            channel("c4", "Twice"),
            channel("c5", "Twice"),
        ];
        assert_eq!(pick_channel(all.clone(), "c2").unwrap().id, "c2");
        assert_eq!(pick_channel(all.clone(), "Radio check").unwrap().id, "c2");
        assert!(matches!(
            pick_channel(all.clone(), "radio check"),
            Err(JoinVoiceError::NoSuchChannel { .. })
        ));
        match pick_channel(all.clone(), "Twice") {
            Err(e @ JoinVoiceError::AmbiguousName { .. }) => {
                assert!(e.to_string().contains("c4, c5"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let e = pick_channel(all, "Nowhere").unwrap_err();
        assert!(e.to_string().contains("`Radio check`"), "{e}");
    }
}
