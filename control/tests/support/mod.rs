//! What the control plane's integration tests share: an in-process control
//! plane on `127.0.0.1:0`, clients that carry a token, sessions with their
//! event streams, and assertions on the contract's error statuses.
//!
//! Every wait here is bounded by [`WAIT`]; nothing sleeps to wait for
//! something that can be awaited.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    fmt::Debug,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use openspeak_control::{ControlPlane, ServeError};
use openspeak_shared::{Reason, config::Config, metadata, pb};
pub use openspeak_testkit::{WAIT, random_secret, test_config, within, within_for};
use pb::{
    auth_service_client::AuthServiceClient, channel_service_client::ChannelServiceClient,
    event::Event as Ev, presence_service_client::PresenceServiceClient,
    voice_service_client::VoiceServiceClient,
};
use tempfile::TempDir;
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{Code, Request, Status, Streaming, metadata::MetadataValue, transport::Channel};
use tonic_types::StatusExt;

/// Most events a wait looks at before giving up (a second bound besides time).
const MAX_EVENTS_PER_WAIT: usize = 100_000;

/// A control plane serving in this test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The internal link for data planes (`cluster.listen`).
    pub cluster_addr: SocketAddr,
    /// The bootstrap admin token (`auth.bootstrap_token`), when one was set.
    pub admin_token: String,
    pub config: Config,
    /// Kept so the state directory lives as long as the server.
    data_dir: Option<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    serve: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    /// A fresh control plane with the default test configuration.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A fresh control plane whose test configuration `adjust` may change.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let token = random_secret("test");
        let mut config = test_config(dir.path(), Some(&token));
        adjust(&mut config);
        let admin_token = config.auth.bootstrap_token.clone().unwrap_or_default();
        let mut server = Self::serve(config).await;
        server.admin_token = admin_token;
        server.data_dir = Some(dir);
        server
    }

    /// Binds and serves `config` as given (for restarts on the same data dir).
    pub async fn serve(config: Config) -> TestServer {
        let cp = ControlPlane::bind(config.clone())
            .await
            .expect("the control plane binds");
        let addr = cp.local_addr();
        let cluster_addr = cp.cluster_addr();
        assert!(addr.ip().is_loopback(), "tests serve on loopback only");
        let (tx, rx) = oneshot::channel::<()>();
        let serve = tokio::spawn(cp.serve(async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            cluster_addr,
            admin_token: config.auth.bootstrap_token.clone().unwrap_or_default(),
            config,
            data_dir: None,
            shutdown: Some(tx),
            serve: Some(serve),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.storage.data_dir.clone()
    }

    /// Takes the temporary state directory out, so that it outlives this
    /// server (for a restart).
    pub fn take_data_dir(&mut self) -> Option<TempDir> {
        self.data_dir.take()
    }

    /// A new HTTP/2 connection to the server.
    pub async fn connection(&self) -> Channel {
        connect_to(self.addr).await
    }

    /// A client with the bootstrap admin token on a new connection.
    pub async fn admin(&self) -> Client {
        Client::new(self.connection().await, &self.admin_token)
    }

    /// Asks the server to shut down, as SIGTERM would.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `serve` to return, for at most `limit`; returns how long it took.
    pub async fn join(&mut self, limit: Duration) -> Duration {
        let started = Instant::now();
        let handle = self.serve.take().expect("serve is joined once");
        let result = within_for(limit, "serve to return", handle)
            .await
            .expect("the serve task does not panic");
        result.expect("serve returns Ok after a shutdown");
        started.elapsed()
    }

    /// Triggers shutdown and waits (bounded) for `serve` to return.
    pub async fn stop(&mut self) -> Duration {
        self.trigger_shutdown();
        self.join(WAIT).await
    }
}

/// A new HTTP/2 connection to `addr` (always a loopback address in tests).
pub async fn connect_to(addr: SocketAddr) -> Channel {
    assert!(addr.ip().is_loopback(), "tests talk to loopback only");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid endpoint");
    within("a connection to the server", endpoint.connect())
        .await
        .expect("the server accepts connections")
}

/// Adds `authorization: Bearer <token>` to a request.
pub fn with_token<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        metadata::AUTHORIZATION,
        MetadataValue::try_from(format!("Bearer {token}")).expect("tokens are ASCII"),
    );
    request
}

/// Adds the token and `openspeak-session: <id>` to a request.
pub fn with_session<T>(token: &str, session: u32, message: T) -> Request<T> {
    let mut request = with_token(token, message);
    request
        .metadata_mut()
        .insert(metadata::SESSION, MetadataValue::from(session));
    request
}

/// A connection plus the token its calls carry.
#[derive(Clone)]
pub struct Client {
    pub channel: Channel,
    pub token: String,
}

impl Client {
    pub fn new(channel: Channel, token: &str) -> Client {
        Client {
            channel,
            token: token.to_owned(),
        }
    }

    /// The same connection with another token.
    pub fn with(&self, token: &str) -> Client {
        Client::new(self.channel.clone(), token)
    }

    pub fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel.clone())
    }

    pub fn channels(&self) -> ChannelServiceClient<Channel> {
        ChannelServiceClient::new(self.channel.clone())
    }

    pub fn presence(&self) -> PresenceServiceClient<Channel> {
        PresenceServiceClient::new(self.channel.clone())
    }

    pub fn voice(&self) -> VoiceServiceClient<Channel> {
        VoiceServiceClient::new(self.channel.clone())
    }

    /// `message` with this client's token.
    pub fn req<T>(&self, message: T) -> Request<T> {
        with_token(&self.token, message)
    }

    /// `message` with this client's token and `session`.
    pub fn sreq<T>(&self, session: u32, message: T) -> Request<T> {
        with_session(&self.token, session, message)
    }

    // ----- calls used by many tests; each panics if the call fails -------

    /// Creates a token (the client must be an admin); returns its plaintext and info.
    pub async fn create_token(&self, label: &str, role: pb::Role) -> (String, pb::TokenInfo) {
        let response = within(
            "CreateToken",
            self.auth().create_token(self.req(pb::CreateTokenRequest {
                label: label.into(),
                role: role as i32,
                ttl_seconds: None,
            })),
        )
        .await
        .expect("CreateToken succeeds")
        .into_inner();
        (
            response.token,
            response.info.expect("CreateToken returns info"),
        )
    }

    /// A client on the same connection with a new member token.
    pub async fn new_member(&self, label: &str) -> (Client, pb::TokenInfo) {
        let (token, info) = self.create_token(label, pb::Role::Member).await;
        (self.with(&token), info)
    }

    /// A client on the same connection with a new admin token.
    pub async fn new_admin(&self, label: &str) -> (Client, pb::TokenInfo) {
        let (token, info) = self.create_token(label, pb::Role::Admin).await;
        (self.with(&token), info)
    }

    /// Creates a channel from `request` (the client must be allowed to).
    pub async fn create_channel_with(&self, request: pb::CreateChannelRequest) -> pb::Channel {
        within(
            "CreateChannel",
            self.channels().create_channel(self.req(request)),
        )
        .await
        .expect("CreateChannel succeeds")
        .into_inner()
    }

    /// Creates a plain channel named `name` under `parent_id` ("" = top level).
    pub async fn create_channel(&self, name: &str, parent_id: &str) -> pb::Channel {
        self.create_channel_with(pb::CreateChannelRequest {
            name: name.into(),
            parent_id: parent_id.into(),
            ..Default::default()
        })
        .await
    }

    pub async fn get_channel(&self, id: &str) -> Result<pb::Channel, Status> {
        within(
            "GetChannel",
            self.channels().get_channel(self.req(pb::GetChannelRequest {
                channel_id: id.into(),
            })),
        )
        .await
        .map(tonic::Response::into_inner)
    }

    pub async fn list_channels(&self) -> Vec<pb::Channel> {
        within(
            "ListChannels",
            self.channels()
                .list_channels(self.req(pb::ListChannelsRequest {})),
        )
        .await
        .expect("ListChannels succeeds")
        .into_inner()
        .channels
    }

    pub async fn list_online(&self) -> Vec<pb::UserPresence> {
        within(
            "ListOnline",
            self.presence()
                .list_online(self.req(pb::ListOnlineRequest {})),
        )
        .await
        .expect("ListOnline succeeds")
        .into_inner()
        .users
    }

    pub async fn members(&self, channel_id: &str) -> Result<Vec<pb::UserPresence>, Status> {
        within(
            "ListChannelMembers",
            self.presence()
                .list_channel_members(self.req(pb::ListChannelMembersRequest {
                    channel_id: channel_id.into(),
                })),
        )
        .await
        .map(|r| r.into_inner().users)
    }

    /// Session ids of the members of `channel_id`, sorted.
    pub async fn member_ids(&self, channel_id: &str) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .members(channel_id)
            .await
            .expect("ListChannelMembers succeeds")
            .iter()
            .map(|u| u.session_id)
            .collect();
        ids.sort_unstable();
        ids
    }

    pub async fn move_member(&self, session_id: u32, channel_id: &str) -> Result<(), Status> {
        within(
            "MoveMember",
            self.channels().move_member(self.req(pb::MoveMemberRequest {
                session_id,
                channel_id: channel_id.into(),
            })),
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_channel(&self, id: &str) -> Result<(), Status> {
        within(
            "DeleteChannel",
            self.channels()
                .delete_channel(self.req(pb::DeleteChannelRequest {
                    channel_id: id.into(),
                })),
        )
        .await
        .map(|_| ())
    }

    pub async fn who_am_i(&self) -> Result<pb::TokenInfo, Status> {
        within(
            "WhoAmI",
            self.auth().who_am_i(self.req(pb::WhoAmIRequest {})),
        )
        .await
        .map(tonic::Response::into_inner)
    }

    pub async fn revoke(&self, token_id: &str) -> Result<(), Status> {
        within(
            "RevokeToken",
            self.auth().revoke_token(self.req(pb::RevokeTokenRequest {
                token_id: token_id.into(),
            })),
        )
        .await
        .map(|_| ())
    }

    /// Opens a session; fails with the server's status.
    pub async fn try_connect(&self, display_name: &str) -> Result<Session, Status> {
        let response = within(
            "Connect",
            self.presence().connect(self.req(pb::ConnectRequest {
                display_name: display_name.into(),
            })),
        )
        .await?;
        let mut stream = response.into_inner();
        let first = within("session_started", stream.message())
            .await?
            .expect("a session stream starts with an event");
        let started_seq = first.sequence;
        let Some(Ev::SessionStarted(started)) = first.event.clone() else {
            panic!("the first event of a session is session_started, got {first:?}");
        };
        assert_ne!(started.session_id, 0, "session ids are non-zero");
        Ok(Session {
            id: started.session_id,
            client: self.clone(),
            started,
            started_seq,
            last_seq: started_seq,
            stream: Some(stream),
            log: vec![first],
            ended: None,
        })
    }

    /// Opens a session; panics if the server refuses.
    pub async fn connect(&self, display_name: &str) -> Session {
        self.try_connect(display_name)
            .await
            .expect("Connect succeeds")
    }
}

/// How a session's event stream ended.
#[derive(Debug, Clone)]
pub enum StreamEnd {
    /// The server closed it cleanly.
    Closed,
    /// The server ended it with this status.
    Error(Status),
}

/// One session: its id, the snapshot it started with, and its event stream.
pub struct Session {
    pub id: u32,
    pub client: Client,
    pub started: pb::SessionStarted,
    /// The sequence number of `session_started`.
    pub started_seq: u64,
    last_seq: u64,
    stream: Option<Streaming<pb::Event>>,
    /// Every event received so far, `session_started` first.
    pub log: Vec<pb::Event>,
    /// Set once the stream has ended.
    pub ended: Option<StreamEnd>,
}

impl Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("started_seq", &self.started_seq)
            .field("events", &self.log.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// `message` with this session's token and id.
    pub fn req<T>(&self, message: T) -> Request<T> {
        self.client.sreq(self.id, message)
    }

    /// The next event, or how the stream ended. Checks that sequence numbers
    /// strictly increase.
    pub async fn next(&mut self) -> Result<pb::Event, StreamEnd> {
        if let Some(end) = &self.ended {
            return Err(end.clone());
        }
        let stream = self.stream.as_mut().expect("the stream is open");
        let end = match within("the next event", stream.message()).await {
            Ok(Some(event)) => {
                assert!(
                    event.sequence > self.last_seq,
                    "session {}: sequence numbers must strictly increase: {} after {}",
                    self.id,
                    event.sequence,
                    self.last_seq
                );
                self.last_seq = event.sequence;
                self.log.push(event.clone());
                return Ok(event);
            }
            Ok(None) => StreamEnd::Closed,
            Err(status) => StreamEnd::Error(status),
        };
        self.ended = Some(end.clone());
        self.stream = None;
        Err(end)
    }

    /// Reads events until one matches `pred`, and returns it. Panics when
    /// the stream ends first or nothing matches within [`WAIT`].
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Ev) -> bool) -> pb::Event {
        let id = self.id;
        within(&format!("session {id}: {what}"), async {
            for _ in 0..MAX_EVENTS_PER_WAIT {
                match self.next().await {
                    Ok(event) => {
                        if event.event.as_ref().is_some_and(&pred) {
                            return event;
                        }
                    }
                    Err(end) => panic!("session {id}: stream ended ({end:?}) before {what}"),
                }
            }
            panic!("session {id}: no {what} within {MAX_EVENTS_PER_WAIT} events")
        })
        .await
    }

    /// Reads events until one matches `pred`; returns the events before it
    /// (not the `session_started` one) and the match.
    pub async fn events_until(
        &mut self,
        what: &str,
        pred: impl Fn(&Ev) -> bool,
    ) -> (Vec<pb::Event>, pb::Event) {
        let from = self.log.len();
        let found = self.wait_for(what, pred).await;
        let before = self.log[from..self.log.len() - 1].to_vec();
        (before, found)
    }

    /// Reads events until the stream ends; returns how it ended.
    pub async fn wait_end(&mut self) -> StreamEnd {
        let id = self.id;
        within(&format!("session {id}: the end of the stream"), async {
            for _ in 0..MAX_EVENTS_PER_WAIT {
                if let Err(end) = self.next().await {
                    return end;
                }
            }
            panic!("session {id}: the stream did not end within {MAX_EVENTS_PER_WAIT} events")
        })
        .await
    }

    /// Closes the stream from the client side (the session then ends).
    pub fn hang_up(&mut self) {
        self.stream = None;
        self.ended = Some(StreamEnd::Closed);
    }

    /// Takes the raw stream out, e.g. to read it in another task.
    pub fn take_stream(&mut self) -> Streaming<pb::Event> {
        self.stream.take().expect("the stream is open")
    }

    /// Every event received, by kind, without the sequence number.
    pub fn kinds(&self) -> Vec<Ev> {
        self.log.iter().filter_map(|e| e.event.clone()).collect()
    }

    pub async fn join(&self, channel_id: &str, password: &str) -> Result<pb::Channel, Status> {
        within(
            "JoinChannel",
            self.client
                .channels()
                .join_channel(self.req(pb::JoinChannelRequest {
                    channel_id: channel_id.into(),
                    password: password.into(),
                })),
        )
        .await
        .map(|r| {
            r.into_inner()
                .channel
                .expect("JoinChannel returns the channel")
        })
    }

    pub async fn leave(&self) -> Result<(), Status> {
        within(
            "LeaveChannel",
            self.client
                .channels()
                .leave_channel(self.req(pb::LeaveChannelRequest {})),
        )
        .await
        .map(|_| ())
    }

    pub async fn update_presence(
        &self,
        request: pb::UpdatePresenceRequest,
    ) -> Result<pb::UserPresence, Status> {
        within(
            "UpdatePresence",
            self.client.presence().update_presence(self.req(request)),
        )
        .await
        .map(tonic::Response::into_inner)
    }

    pub async fn open_voice(&self) -> Result<pb::OpenVoiceResponse, Status> {
        within(
            "OpenVoice",
            self.client
                .voice()
                .open_voice(self.req(pb::OpenVoiceRequest {})),
        )
        .await
        .map(tonic::Response::into_inner)
    }
}

/// Asserts that `status` is the contract's error: `code`, `reason`, an
/// `ErrorInfo` with domain `openspeak`, and a message for a person.
pub fn assert_status(status: &Status, reason: Reason, code: Code) {
    assert_eq!(
        status.code(),
        code,
        "expected {code:?} ({reason}), got {status:?}"
    );
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("every error carries an ErrorInfo; got {status:?}"));
    assert_eq!(info.domain, "openspeak", "ErrorInfo domain in {status:?}");
    assert_eq!(
        info.reason,
        reason.as_str(),
        "ErrorInfo reason in {status:?}"
    );
    assert_eq!(Reason::of(status), Some(reason));
    assert!(
        !status.message().trim().is_empty(),
        "an error has a message fit for a person: {status:?}"
    );
}

/// Asserts that `result` failed with `reason` and `code`; returns the status.
#[track_caller]
pub fn expect_err<T: Debug>(result: Result<T, Status>, reason: Reason, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {reason} ({code:?}), but the call succeeded: {value:?}"),
        Err(status) => {
            assert_status(&status, reason, code);
            status
        }
    }
}

/// The contract's pair for a reason with one code.
#[track_caller]
pub fn expect_reason<T: Debug>(result: Result<T, Status>, reason: Reason) -> Status {
    expect_err(result, reason, reason.code())
}

/// What the event `e` is, in a word, for messages.
pub fn kind(e: &Ev) -> &'static str {
    match e {
        Ev::SessionStarted(_) => "session_started",
        Ev::UserOnline(_) => "user_online",
        Ev::UserOffline(_) => "user_offline",
        Ev::ChannelCreated(_) => "channel_created",
        Ev::ChannelUpdated(_) => "channel_updated",
        Ev::ChannelDeleted(_) => "channel_deleted",
        Ev::MemberJoined(_) => "member_joined",
        Ev::MemberLeft(_) => "member_left",
        Ev::PresenceChanged(_) => "presence_changed",
        Ev::SpeakingChanged(_) => "speaking_changed",
        Ev::Kicked(_) => "kicked",
        Ev::ServerShutdown(_) => "server_shutdown",
    }
}

/// Whether `e` announces a channel named `name`.
pub fn is_channel_created(e: &Ev, name: &str) -> bool {
    matches!(e, Ev::ChannelCreated(c) if c.channel.as_ref().is_some_and(|c| c.name == name))
}

/// The server's state as a client rebuilds it from `session_started` and
/// the events after it: every user's presence and every channel, with
/// member counts kept from the membership events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub users: BTreeMap<u32, pb::UserPresence>,
    pub channels: BTreeMap<String, pb::Channel>,
}

impl Model {
    /// The snapshot, checked for consistency: its member counts match its users.
    pub fn from_started(started: &pb::SessionStarted) -> Model {
        let model = Model {
            users: started
                .users
                .iter()
                .map(|u| (u.session_id, u.clone()))
                .collect(),
            channels: started
                .channels
                .iter()
                .map(|c| (c.id.clone(), c.clone()))
                .collect(),
        };
        assert_eq!(
            model.users.len(),
            started.users.len(),
            "no user twice in a snapshot"
        );
        for channel in model.channels.values() {
            assert_eq!(
                channel.member_count as usize,
                model.count(&channel.id),
                "snapshot of session {}: member_count of {channel:?}",
                started.session_id
            );
        }
        for user in model.users.values() {
            assert!(
                user.channel_id.is_empty() || model.channels.contains_key(&user.channel_id),
                "snapshot: {user:?} is in a known channel"
            );
        }
        model
    }

    fn count(&self, channel: &str) -> usize {
        self.users
            .values()
            .filter(|u| u.channel_id == channel)
            .count()
    }

    /// Adds `delta` to the member count of `channel` ("" = none).
    fn add_member(&mut self, channel: &str, delta: i64) {
        if channel.is_empty() {
            return;
        }
        let c = self
            .channels
            .get_mut(channel)
            .unwrap_or_else(|| panic!("membership of an unknown channel {channel}"));
        c.member_count = u32::try_from(i64::from(c.member_count) + delta)
            .expect("member counts never go below zero");
    }

    fn member_count(&self, channel: &str) -> u32 {
        self.channels.get(channel).map_or(0, |c| c.member_count)
    }

    /// Applies one event; panics on an event that contradicts the model.
    pub fn apply(&mut self, event: &Ev) {
        match event {
            Ev::UserOnline(u) => {
                let user = u.user.clone().expect("user_online carries the user");
                let channel = user.channel_id.clone();
                let before = self.users.insert(user.session_id, user);
                assert!(
                    before.is_none(),
                    "user_online of a known session {before:?}"
                );
                self.add_member(&channel, 1);
            }
            Ev::UserOffline(u) => {
                let gone = self.users.remove(&u.session_id).unwrap_or_else(|| {
                    panic!("user_offline of an unknown session {}", u.session_id)
                });
                self.add_member(&gone.channel_id, -1);
            }
            Ev::MemberLeft(m) => {
                let user = self
                    .users
                    .get_mut(&m.session_id)
                    .unwrap_or_else(|| panic!("member_left of an unknown session {m:?}"));
                assert_eq!(
                    user.channel_id, m.channel_id,
                    "member_left names where it was"
                );
                user.channel_id.clear();
                self.add_member(&m.channel_id, -1);
            }
            Ev::MemberJoined(m) => {
                let user = self
                    .users
                    .get_mut(&m.session_id)
                    .unwrap_or_else(|| panic!("member_joined of an unknown session {m:?}"));
                assert_eq!(
                    user.channel_id, "",
                    "member_joined comes after member_left: {m:?}"
                );
                user.channel_id = m.channel_id.clone();
                assert!(
                    self.channels.contains_key(&m.channel_id),
                    "member_joined names a known channel: {m:?}"
                );
                self.add_member(&m.channel_id, 1);
            }
            Ev::PresenceChanged(p) => {
                let user = p.user.clone().expect("presence_changed carries the user");
                let known = self
                    .users
                    .get_mut(&user.session_id)
                    .unwrap_or_else(|| panic!("presence_changed of an unknown session {user:?}"));
                assert_eq!(
                    known.channel_id, user.channel_id,
                    "presence_changed agrees on the channel"
                );
                *known = user;
            }
            Ev::ChannelCreated(c) => {
                let channel = c.channel.clone().expect("channel_created carries it");
                assert_eq!(channel.member_count, 0, "a new channel is empty");
                let before = self.channels.insert(channel.id.clone(), channel);
                assert!(before.is_none(), "channel_created of a known channel");
            }
            Ev::ChannelUpdated(c) => {
                let channel = c.channel.clone().expect("channel_updated carries it");
                assert_eq!(
                    channel.member_count,
                    self.member_count(&channel.id),
                    "channel_updated counts the members the events put there"
                );
                assert!(
                    self.channels.insert(channel.id.clone(), channel).is_some(),
                    "channel_updated of a known channel"
                );
            }
            Ev::ChannelDeleted(c) => {
                let gone = self
                    .channels
                    .remove(&c.channel_id)
                    .unwrap_or_else(|| panic!("channel_deleted of an unknown channel {c:?}"));
                assert_eq!(
                    gone.member_count, 0,
                    "a deleted channel has no members left"
                );
                assert!(
                    self.channels
                        .values()
                        .all(|ch| ch.parent_id != c.channel_id),
                    "subchannels are deleted before their parent"
                );
            }
            _ => {}
        }
    }

    /// The server's state as `admin` lists it (ListOnline, ListChannels).
    pub async fn from_server(admin: &Client) -> Model {
        Model {
            users: admin
                .list_online()
                .await
                .into_iter()
                .map(|u| (u.session_id, u))
                .collect(),
            channels: admin
                .list_channels()
                .await
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect(),
        }
    }
}
