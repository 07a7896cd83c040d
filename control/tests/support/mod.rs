//! What the control plane's integration tests share: an in-process control
//! plane on `127.0.0.1:0`, sessions whose events are checked as they are
//! read, assertions on the contract's error statuses, and a model of the
//! server's state rebuilt from events.
//!
//! The tests call the server through the project's client library,
//! `openspeak-client`, as a real client would; this module adds only what
//! tests need on top of it. [`Raw`] is for what the library does not send:
//! metadata of a test's own (a malformed `authorization` or session header,
//! a request id), protobuf values no Rust enum holds, a refused `Connect`
//! seen as the call's own answer, and `UpdateChannel`, which the library
//! does not offer.
//!
//! Every wait here is bounded by [`WAIT`] (a library client's calls by its
//! request timeout, set to [`WAIT`]); nothing sleeps to wait for something
//! that can be awaited.

// Each test file uses its own part of this module (the re-exports too).
#![allow(dead_code, unused_imports)]

use std::{
    collections::BTreeMap,
    fmt::Debug,
    net::SocketAddr,
    ops::Deref,
    time::{Duration, Instant},
};

use openspeak_client::{Client, ClientError, TokenLifetime};
use openspeak_control::{ControlPlane, ServeError};
use openspeak_shared::{Reason, config::Config, metadata, pb};
pub use openspeak_testkit::{WAIT, random_secret, test_config, within, within_for};
use pb::cluster::{
    ControlMessage, DataplaneMessage, Register, cluster_service_client::ClusterServiceClient,
    dataplane_message::Kind as Report,
};
use pb::{
    auth_service_client::AuthServiceClient, channel_service_client::ChannelServiceClient,
    event::Event as Ev, presence_service_client::PresenceServiceClient,
    voice_service_client::VoiceServiceClient,
};
use tempfile::TempDir;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Status, Streaming, metadata::MetadataValue, transport::Channel};
use tonic_types::StatusExt;

/// Most events a wait looks at before giving up (a second bound besides time).
const MAX_EVENTS_PER_WAIT: usize = 100_000;

/// A control plane serving in this test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The internal link for data planes (`cluster.listen`).
    pub cluster_addr: SocketAddr,
    /// `/metrics`, `/healthz` and `/readyz` (`metrics.listen`).
    pub metrics_addr: Option<SocketAddr>,
    /// The bootstrap admin token (`auth.bootstrap_token`), when one was set.
    pub admin_token: String,
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
        let (dir, _, mut config) = openspeak_testkit::fresh_config();
        adjust(&mut config);
        let mut server = Self::serve(config).await;
        server.data_dir = Some(dir);
        server
    }

    /// A fresh control plane, a client with its admin token and one with a
    /// new member token: where most tests begin.
    pub async fn start_with_member() -> (TestServer, Client, Client) {
        Self::start().await.with_member().await
    }

    /// A fresh control plane, a library client with its admin token and raw
    /// clients with the same token: where the tests of what the library
    /// does not send (`UpdateChannel`, values no Rust enum holds) begin.
    pub async fn start_with_raw_admin() -> (TestServer, Client, Raw) {
        let server = Self::start().await;
        let admin = server.admin().await;
        let raw = server.raw(&server.admin_token).await;
        (server, admin, raw)
    }

    /// This server, a client with its admin token and one with a new
    /// member token.
    pub async fn with_member(self) -> (TestServer, Client, Client) {
        let admin = self.admin().await;
        let (member, _) = admin.new_member("m").await;
        (self, admin, member)
    }

    /// Binds and serves `config` as given (for restarts on the same data dir).
    pub async fn serve(config: Config) -> TestServer {
        let admin_token = config.auth.bootstrap_token.clone().unwrap_or_default();
        let cp = ControlPlane::bind(config)
            .await
            .expect("the control plane binds");
        let addr = cp.local_addr();
        let cluster_addr = cp.cluster_addr();
        let metrics_addr = cp.metrics_addr();
        assert!(addr.ip().is_loopback(), "tests serve on loopback only");
        let (tx, serve) = openspeak_testkit::spawn_serving(|shutdown| cp.serve(shutdown));
        TestServer {
            addr,
            cluster_addr,
            metrics_addr,
            admin_token,
            data_dir: None,
            shutdown: Some(tx),
            serve: Some(serve),
        }
    }

    /// A new HTTP/2 connection to the server.
    pub async fn connection(&self) -> Channel {
        connect_to(self.addr).await
    }

    /// A library client with `token` on a new connection.
    pub async fn client(&self, token: &str) -> Client {
        client_at(self.addr, token).await
    }

    /// A library client with the bootstrap admin token on a new connection.
    pub async fn admin(&self) -> Client {
        self.client(&self.admin_token).await
    }

    /// Raw tonic clients with `token` on a new connection.
    pub async fn raw(&self, token: &str) -> Raw {
        Raw {
            channel: self.connection().await,
            token: token.to_owned(),
        }
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

/// A library client with `token` on a new connection to `addr` (always a
/// loopback address in tests); each of its calls is bounded by [`WAIT`].
pub async fn client_at(addr: SocketAddr, token: &str) -> Client {
    assert!(addr.ip().is_loopback(), "tests talk to loopback only");
    within(
        "a connection to the server",
        Client::connect(&format!("http://{addr}"), token),
    )
    .await
    .expect("the server accepts connections")
    .with_request_timeout(WAIT)
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

/// A data plane's first message on the internal link: it registers as
/// `dataplane_id`, with `cert_sha256` and room for `capacity` sessions, at
/// fixed loopback endpoints (nothing listens there; these tests only
/// check what the control plane does with them).
pub fn register(dataplane_id: &str, cert_sha256: &str, capacity: u32) -> DataplaneMessage {
    DataplaneMessage {
        kind: Some(Report::Register(Register {
            dataplane_id: dataplane_id.into(),
            quic_endpoint: "127.0.0.1:50052".into(),
            udp_endpoint: "127.0.0.1:50053".into(),
            cert_sha256: cert_sha256.into(),
            capacity,
            channels: vec![],
        })),
    }
}

/// Attaches to `server`'s internal link as a data plane with `secret`,
/// sending `register` first; returns the sender for its further reports
/// and the control plane's messages, or the status it was refused with.
pub async fn attach_dataplane(
    server: &TestServer,
    secret: &str,
    register: DataplaneMessage,
) -> Result<(mpsc::Sender<DataplaneMessage>, Streaming<ControlMessage>), Status> {
    let (reports, rx) = mpsc::channel(16);
    reports.send(register).await.expect("room for the Register");
    let request = with_token(secret, ReceiverStream::new(rx));
    let mut client = ClusterServiceClient::new(connect_to(server.cluster_addr).await);
    let messages = within("Attach", client.attach(request)).await?.into_inner();
    Ok((reports, messages))
}

/// The generated tonic clients on one connection, and a token, for the
/// requests the library does not send (see the module's header).
#[derive(Clone)]
pub struct Raw {
    channel: Channel,
    token: String,
}

impl Raw {
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

    /// `message` with this token.
    pub fn req<T>(&self, message: T) -> Request<T> {
        with_token(&self.token, message)
    }

    /// `message` with this token and `openspeak-session: <session>`.
    pub fn sreq<T>(&self, session: u32, message: T) -> Request<T> {
        let mut request = self.req(message);
        request
            .metadata_mut()
            .insert(metadata::SESSION, MetadataValue::from(session));
        request
    }

    /// Every channel (`ListChannels` on this connection); panics if the
    /// call fails.
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

    /// `UpdateChannel`, which the library does not offer.
    pub async fn update_channel(
        &self,
        request: pb::UpdateChannelRequest,
    ) -> Result<pb::Channel, Status> {
        within(
            "UpdateChannel",
            self.channels().update_channel(self.req(request)),
        )
        .await
        .map(tonic::Response::into_inner)
    }
}

/// Shortcuts on the library's client that many tests take; each panics if
/// its call fails.
pub trait ClientExt {
    /// A client on the same connection with a new member token.
    async fn new_member(&self, label: &str) -> (Client, pb::TokenInfo);

    /// A new member token, for tests that also send raw requests with it.
    async fn member_token(&self, label: &str) -> String;

    /// Opens a session, whose events are then checked as they are read.
    async fn session(&self, display_name: &str) -> Session;

    /// Session ids of the members of `channel_id`, sorted.
    async fn member_ids(&self, channel_id: &str) -> Vec<u32>;

    /// Session ids of every online session, sorted.
    async fn online_ids(&self) -> Vec<u32>;
}

impl ClientExt for Client {
    async fn new_member(&self, label: &str) -> (Client, pb::TokenInfo) {
        let (token, info) = self
            .create_token(label, pb::Role::Member, TokenLifetime::ServerDefault)
            .await
            .expect("CreateToken succeeds");
        (self.with_token(&token).expect("tokens are ASCII"), info)
    }

    async fn member_token(&self, label: &str) -> String {
        let (token, _) = self
            .create_token(label, pb::Role::Member, TokenLifetime::ServerDefault)
            .await
            .expect("CreateToken succeeds");
        token
    }

    async fn session(&self, display_name: &str) -> Session {
        let inner = within("Connect", self.start_session(display_name))
            .await
            .expect("Connect succeeds");
        Session {
            last_seq: inner.started_sequence(),
            inner,
            log: Vec::new(),
            ended: None,
        }
    }

    async fn member_ids(&self, channel_id: &str) -> Vec<u32> {
        let members = self.list_channel_members(channel_id).await;
        sorted_ids(&members.expect("ListChannelMembers succeeds"))
    }

    async fn online_ids(&self) -> Vec<u32> {
        sorted_ids(&self.list_online().await.expect("ListOnline succeeds"))
    }
}

fn sorted_ids(users: &[pb::UserPresence]) -> Vec<u32> {
    let mut ids: Vec<u32> = users.iter().map(|u| u.session_id).collect();
    ids.sort_unstable();
    ids
}

/// How a session's event stream ended.
#[derive(Debug, Clone)]
pub enum StreamEnd {
    /// The server closed it cleanly.
    Closed,
    /// The server ended it with this status.
    Error(Status),
}

/// The library's session (its calls are reached through `Deref`) whose
/// events are read only through [`Session::next`], which checks that their
/// sequence numbers strictly increase and logs them. Dropping it hangs up.
pub struct Session {
    inner: openspeak_client::Session,
    last_seq: u64,
    /// Every event received after `session_started`.
    pub log: Vec<pb::Event>,
    /// Set once the stream has ended, so later reads say so again.
    ended: Option<StreamEnd>,
}

impl Deref for Session {
    type Target = openspeak_client::Session;

    fn deref(&self) -> &openspeak_client::Session {
        &self.inner
    }
}

impl Session {
    /// The next event, or how the stream ended. Checks that sequence numbers
    /// strictly increase.
    pub async fn next(&mut self) -> Result<pb::Event, StreamEnd> {
        if let Some(end) = &self.ended {
            return Err(end.clone());
        }
        let end = match within("the next event", self.inner.next_event()).await {
            Ok(event) => {
                assert!(
                    event.sequence > self.last_seq,
                    "session {}: sequence numbers must strictly increase: {} after {}",
                    self.id(),
                    event.sequence,
                    self.last_seq
                );
                self.last_seq = event.sequence;
                self.log.push(event.clone());
                return Ok(event);
            }
            Err(ClientError::SessionEnded { .. }) => StreamEnd::Closed,
            Err(error) => StreamEnd::Error(error.as_status().clone()),
        };
        self.ended = Some(end.clone());
        Err(end)
    }

    /// Reads events until one matches `pred`, and returns it. Panics when
    /// the stream ends first or nothing matches within [`WAIT`].
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Ev) -> bool) -> pb::Event {
        let id = self.id();
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
    /// and the match.
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
        let id = self.id();
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

    /// Every event received, by kind, without the sequence number.
    pub fn kinds(&self) -> Vec<Ev> {
        self.log.iter().filter_map(|e| e.event.clone()).collect()
    }
}

/// An error that should be a status the server returned: the library's
/// [`ClientError`] or a raw call's [`Status`].
pub trait AsStatus: Debug {
    /// The status; fails the test if the error is something else (no
    /// connection, a timeout, a malformed answer).
    fn as_status(&self) -> &Status;
}

impl AsStatus for Status {
    fn as_status(&self) -> &Status {
        self
    }
}

impl AsStatus for ClientError {
    #[track_caller]
    fn as_status(&self) -> &Status {
        self.grpc_status()
            .unwrap_or_else(|| panic!("expected a status from the server, got {self:?}"))
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
pub fn expect_err<T: Debug>(
    result: Result<T, impl AsStatus>,
    reason: Reason,
    code: Code,
) -> Status {
    match result {
        Ok(value) => panic!("expected {reason} ({code:?}), but the call succeeded: {value:?}"),
        Err(error) => {
            let status = error.as_status();
            assert_status(status, reason, code);
            status.clone()
        }
    }
}

/// The contract's pair for a reason with one code.
#[track_caller]
pub fn expect_reason<T: Debug>(result: Result<T, impl AsStatus>, reason: Reason) -> Status {
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

    /// The user of `session_id`, which `event` (whose detail is `what`)
    /// names: panics unless the model knows it.
    fn known_user(
        &mut self,
        session_id: u32,
        event: &str,
        what: &impl std::fmt::Debug,
    ) -> &mut pb::UserPresence {
        self.users
            .get_mut(&session_id)
            .unwrap_or_else(|| panic!("{event} of an unknown session {what:?}"))
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
                let user = self.known_user(m.session_id, "member_left", m);
                assert_eq!(
                    user.channel_id, m.channel_id,
                    "member_left names where it was"
                );
                user.channel_id.clear();
                self.add_member(&m.channel_id, -1);
            }
            Ev::MemberJoined(m) => {
                let user = self.known_user(m.session_id, "member_joined", m);
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
                let known = self.known_user(user.session_id, "presence_changed", &user);
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
                .expect("ListOnline succeeds")
                .into_iter()
                .map(|u| (u.session_id, u))
                .collect(),
            channels: admin
                .list_channels()
                .await
                .expect("ListChannels succeeds")
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect(),
        }
    }
}
