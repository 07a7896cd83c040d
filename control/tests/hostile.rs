//! Hostile and careless input: what a client that does not follow the
//! rules gets back, and that it cannot hurt anyone else.
//!
//! - undecodable protobuf is the contract's `INVALID_REQUEST`, with a
//!   plain message that does not echo the decoder;
//! - errors do not echo unbounded input;
//! - look-alike and invisible names are refused, and names are compared
//!   in their normalised form;
//! - the internal link refuses wrong secrets, logs and throttles them, and
//!   a control plane with a short `cluster.secret` does not start;
//! - the channel tree is capped so that `session_started` always fits in
//!   a gRPC message.

mod support;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use openspeak_control::{ControlPlane, StartError};
use openspeak_shared::pb::cluster::{ControlMessage, control_message::Kind};
use openspeak_shared::{Reason, pb};
use support::{
    ClientExt, TestServer, assert_status, attach_dataplane, expect_reason, random_secret, register,
    test_config, within,
};
use tonic::{
    Code, Request, Status,
    client::Grpc,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::MetadataValue,
    transport::Channel,
};

/// The longest error message these tests accept for any input, however
/// long the input was.
const MESSAGE_LIMIT: usize = 1024;

// ----- raw bytes over gRPC -------------------------------------------------

/// A codec that sends its bytes as they are and reads answers as bytes,
/// so that a test can send what no generated client would.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A new connection, ready, for a call of `path` with `bytes` as its
/// request and the admin token.
async fn raw_call(
    server: &TestServer,
    path: &'static str,
    bytes: &[u8],
) -> (Grpc<Channel>, Request<Bytes>, PathAndQuery) {
    let mut grpc = Grpc::new(server.connection().await);
    within("the connection to be ready", grpc.ready())
        .await
        .expect("the connection is ready");
    let request = authorized(&server.admin_token, Bytes::copy_from_slice(bytes));
    (grpc, request, PathAndQuery::from_static(path))
}

/// `bytes` as the request of the unary `path`, with the admin token.
async fn raw_unary(server: &TestServer, path: &'static str, bytes: &[u8]) -> Status {
    let (mut grpc, request, path) = raw_call(server, path, bytes).await;
    match within(path.as_str(), grpc.unary(request, path.clone(), RawCodec)).await {
        Ok(response) => panic!("{path}: undecodable bytes were accepted: {response:?}"),
        Err(status) => status,
    }
}

/// `bytes` as the request of the server-streaming `path`, with the admin
/// token; the status the call (or its stream's first item) ends with.
async fn raw_streaming(server: &TestServer, path: &'static str, bytes: &[u8]) -> Status {
    let (mut grpc, request, path) = raw_call(server, path, bytes).await;
    let call = grpc.server_streaming(request, path.clone(), RawCodec);
    match within(path.as_str(), call).await {
        Ok(response) => {
            let mut stream = response.into_inner();
            match within("the first streamed item", stream.message()).await {
                Ok(item) => panic!("{path}: undecodable bytes started a stream: {item:?}"),
                Err(status) => status,
            }
        }
        Err(status) => status,
    }
}

fn authorized(token: &str, bytes: Bytes) -> Request<Bytes> {
    let mut request = Request::new(bytes);
    request.metadata_mut().insert(
        openspeak_shared::metadata::AUTHORIZATION,
        MetadataValue::try_from(format!("Bearer {token}")).expect("tokens are ASCII"),
    );
    request
}

/// Bytes no protobuf message decodes from: a length-delimited field 1
/// that claims far more bytes than follow, then a field with the invalid
/// wire type 7.
const GARBAGE: [&[u8]; 2] = [&[0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01], &[0x0f, 0x01, 0x02]];

fn assert_plain_invalid_request(status: &Status, what: &str) {
    assert_status(status, Reason::InvalidRequest, Code::InvalidArgument);
    let message = status.message().to_lowercase();
    for internal in ["decodeerror", "protobuf", "buffer underflow", "wire type"] {
        assert!(
            !message.contains(internal),
            "{what}: the message echoes the decoder ({internal:?}): {status:?}"
        );
    }
}

#[tokio::test]
async fn undecodable_protobuf_is_an_invalid_request_on_every_kind_of_call() {
    let server = TestServer::start().await;
    let unary = [
        "/openspeak.v1.AuthService/WhoAmI",
        "/openspeak.v1.AuthService/CreateToken",
        "/openspeak.v1.ChannelService/CreateChannel",
        "/openspeak.v1.ChannelService/GetChannel",
        "/openspeak.v1.PresenceService/ListOnline",
        "/openspeak.v1.VoiceService/OpenVoice",
    ];
    for path in unary {
        for bytes in GARBAGE {
            let status = raw_unary(&server, path, bytes).await;
            assert_plain_invalid_request(&status, path);
        }
    }
    for bytes in GARBAGE {
        let path = "/openspeak.v1.PresenceService/Connect";
        let status = raw_streaming(&server, path, bytes).await;
        assert_plain_invalid_request(&status, path);
    }
    // The server carries on: a well-formed call on a new connection works.
    let admin = server.admin().await;
    assert_eq!(admin.list_channels().await.unwrap().len(), 1);
}

// ----- errors do not echo unbounded input ----------------------------------

/// Asserts the error is `reason` and its message (and so its details,
/// which repeat it) stays short however long the input was.
#[track_caller]
fn expect_short<T: std::fmt::Debug>(result: Result<T, Status>, reason: Reason, what: &str) {
    let status = expect_reason(result, reason);
    assert!(
        status.message().len() < MESSAGE_LIMIT,
        "{what}: a {} byte error message for a long input",
        status.message().len()
    );
    assert!(
        status.details().len() < 2 * MESSAGE_LIMIT,
        "{what}: {} bytes of details for a long input",
        status.details().len()
    );
}

/// [`expect_short`] on the answer to `call`, awaited for a bounded time.
async fn expect_short_within<T: std::fmt::Debug>(
    call: impl Future<Output = Result<T, Status>>,
    reason: Reason,
    what: &str,
) {
    expect_short(within(what, call).await, reason, what);
}

#[tokio::test]
async fn errors_do_not_echo_a_huge_id() {
    // Above the default limit, so that the id reaches the handlers.
    let server = TestServer::start_with(|c| c.server.max_message_bytes = 1024 * 1024).await;
    let huge = "x".repeat(100_000);
    let admin = server.admin().await;
    let session = admin.session("echo").await;
    let raw = server.raw(&server.admin_token).await;
    let (mut channels, mut presence, mut auth) = (raw.channels(), raw.presence(), raw.auth());
    let id = || huge.clone();

    let get = channels.get_channel(raw.req(pb::GetChannelRequest { channel_id: id() }));
    expect_short_within(get, Reason::ChannelNotFound, "GetChannel").await;

    let join = channels.join_channel(raw.sreq(
        session.id(),
        pb::JoinChannelRequest {
            channel_id: id(),
            password: String::new(),
        },
    ));
    expect_short_within(join, Reason::ChannelNotFound, "JoinChannel").await;

    let moved = channels.move_member(raw.req(pb::MoveMemberRequest {
        session_id: session.id(),
        channel_id: id(),
    }));
    expect_short_within(moved, Reason::ChannelNotFound, "MoveMember").await;

    let update = raw.update_channel(pb::UpdateChannelRequest {
        channel_id: id(),
        description: Some("d".into()),
        ..Default::default()
    });
    expect_short(update.await, Reason::ChannelNotFound, "UpdateChannel");

    let delete = channels.delete_channel(raw.req(pb::DeleteChannelRequest { channel_id: id() }));
    expect_short_within(delete, Reason::ChannelNotFound, "DeleteChannel").await;

    let create = channels.create_channel(raw.req(pb::CreateChannelRequest {
        name: "Child".into(),
        parent_id: id(),
        ..Default::default()
    }));
    expect_short_within(create, Reason::ChannelNotFound, "CreateChannel").await;

    let members =
        presence.list_channel_members(raw.req(pb::ListChannelMembersRequest { channel_id: id() }));
    expect_short_within(members, Reason::ChannelNotFound, "ListChannelMembers").await;

    let revoke = auth.revoke_token(raw.req(pb::RevokeTokenRequest { token_id: id() }));
    expect_short_within(revoke, Reason::TokenNotFound, "RevokeToken").await;

    // Over-long text fields are refused by length, not quoted back.
    let named = channels.create_channel(raw.req(pb::CreateChannelRequest {
        name: id(),
        ..Default::default()
    }));
    expect_short_within(named, Reason::InvalidRequest, "a huge name").await;
    let connect = presence.connect(raw.req(pb::ConnectRequest { display_name: id() }));
    expect_short(
        within("Connect", connect).await.map(|_| ()),
        Reason::InvalidRequest,
        "a huge display name",
    );
}

// ----- names ---------------------------------------------------------------

/// Names that would look like another name, look like nothing, or turn
/// the text around them: each is refused as a display or channel name.
const BAD_NAMES: [&str; 9] = [
    "ad\u{200B}min",            // zero-width space
    "a\u{200D}b",               // zero-width joiner
    "\u{FEFF}Lobby",            // byte order mark
    "x\u{2060}y",               // word joiner
    "\u{202E}nimda",            // right-to-left override
    "\u{2066}name\u{2069}",     // isolates
    "bell\u{0007}",             // a control character
    "\u{200B}\u{200C}\u{FEFF}", // invisible only
    " \u{3000}\t ",             // white space only (ideographic space)
];

/// The message names the field, so a person knows what to change.
#[track_caller]
fn expect_bad_name<T: std::fmt::Debug>(result: Result<T, Status>, field: &str, name: &str) {
    let status = expect_reason(result, Reason::InvalidRequest);
    assert!(
        status.message().contains(field),
        "{name:?}: the message names {field}: {status:?}"
    );
}

#[tokio::test]
async fn invisible_and_direction_changing_names_are_refused() {
    let server = TestServer::start().await;
    let raw = server.raw(&server.admin_token).await;
    let (mut channels, mut presence) = (raw.channels(), raw.presence());
    let games = server
        .admin()
        .await
        .create_channel("Games")
        .await
        .expect("a plain name is fine");
    for name in BAD_NAMES {
        let connect = presence.connect(raw.req(pb::ConnectRequest {
            display_name: name.into(),
        }));
        expect_bad_name(
            within("Connect", connect).await.map(|_| ()),
            "display_name",
            name,
        );

        let create = channels.create_channel(raw.req(pb::CreateChannelRequest {
            name: name.into(),
            ..Default::default()
        }));
        expect_bad_name(within("CreateChannel", create).await, "name", name);

        let rename = raw.update_channel(pb::UpdateChannelRequest {
            channel_id: games.id.clone(),
            name: Some(name.into()),
            ..Default::default()
        });
        expect_bad_name(rename.await, "name", name);
    }
    // Nothing was created or renamed.
    let names: Vec<_> = raw
        .list_channels()
        .await
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["Lobby", "Games"]);
}

#[tokio::test]
async fn names_are_stored_in_nfkc_and_compared_that_way() {
    let (_server, admin, raw) = TestServer::start_with_raw_admin().await;
    let mut channels = raw.channels();

    // Fullwidth letters are the same name as their ASCII forms.
    let lobby = channels.create_channel(raw.req(pb::CreateChannelRequest {
        name: "Ｌｏｂｂｙ".into(),
        ..Default::default()
    }));
    let status = expect_reason(within("CreateChannel", lobby).await, Reason::InvalidRequest);
    assert!(status.message().contains("Lobby"), "{status:?}");

    let games = admin
        .create_channel("Ｇａｍｅｓ　Ｎｉｇｈｔ")
        .await
        .expect("a fullwidth name is fine");
    assert_eq!(games.name, "Games Night", "stored in NFKC");
    let again = channels.create_channel(raw.req(pb::CreateChannelRequest {
        name: "games night".into(),
        ..Default::default()
    }));
    expect_reason(within("CreateChannel", again).await, Reason::InvalidRequest);

    let session = admin.session("Ａｌｉｃｅ").await;
    let me = admin.list_online().await.unwrap();
    let alice = me.iter().find(|u| u.session_id == session.id()).unwrap();
    assert_eq!(alice.display_name, "Alice");
    // Letters of other scripts and emoji are names like any other.
    admin.session("Zoë 🎧 東京").await;
}

// ----- the internal link's secret ------------------------------------------

/// Attaches a data plane with `secret`; the first message when it is let in.
async fn attach(server: &TestServer, secret: &str) -> Result<ControlMessage, Status> {
    let cert = "ab".repeat(32);
    let (_reports, mut messages) =
        attach_dataplane(server, secret, register("dp-hostile", &cert, 10)).await?;
    let first = within("the first control message", messages.message()).await?;
    Ok(first.expect("the stream starts with a message"))
}

#[tokio::test]
async fn wrong_cluster_secrets_are_refused_then_the_address_is_throttled() {
    let secret = random_secret("cluster");
    let server = TestServer::start_with({
        let secret = secret.clone();
        move |c| c.cluster.secret = Some(secret)
    })
    .await;
    let first = attach(&server, &secret)
        .await
        .expect("the right secret attaches");
    assert!(matches!(first.kind, Some(Kind::Snapshot(_))), "{first:?}");

    // Ten wrong secrets within a minute: each refused as unauthorised.
    for attempt in 0..10 {
        let wrong = random_secret("wrong");
        let status = attach(&server, &wrong).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "attempt {attempt}: {status:?}"
        );
        assert_eq!(Reason::of(&status), Some(Reason::Unauthorized));
    }
    // The eleventh is refused without its secret being looked at.
    let status = attach(&server, &secret).await.unwrap_err();
    assert_status(&status, Reason::RateLimited, Code::ResourceExhausted);
    // The public side is another matter: it still serves this address.
    server.admin().await.list_channels().await.unwrap();
}

#[tokio::test]
async fn a_short_cluster_secret_refuses_to_start() {
    for short in ["x", "fifteen-chars!!", ""] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path(), Some(&random_secret("admin")));
        config.cluster.secret = Some(short.into());
        let error = match ControlPlane::bind(config).await {
            Ok(_) => panic!("{short:?}: a control plane started with a short cluster.secret"),
            Err(error) => error,
        };
        assert!(
            matches!(error, StartError::ClusterSecretTooShort { .. }),
            "{short:?}: {error:?}"
        );
        assert!(error.to_string().contains("cluster.secret"), "{error}");
    }
    // Sixteen characters are enough.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path(), Some(&random_secret("admin")));
    config.cluster.secret = Some("sixteen-chars!!!".into());
    ControlPlane::bind(config)
        .await
        .expect("a 16-character secret is fine");
}

// ----- the size of session_started ------------------------------------------

/// Most channels the server keeps (docs/API.md), the default one included.
const MAX_CHANNELS: usize = 1000;

/// A control plane whose data directory already holds `count` top-level
/// channels with `description`, as an earlier run would have saved them:
/// filling the tree through the API would save it whole at every create,
/// which takes a minute; restoring it takes one read. The directory must
/// live as long as the server.
async fn server_with_channels(count: usize, description: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let channels: Vec<_> = (0..count)
        .map(|i| {
            serde_json::json!({
                "id": format!("{i:016x}"),
                "name": format!("stored {i}"),
                "description": description,
            })
        })
        .collect();
    let file = serde_json::json!({ "version": 1, "channels": channels });
    std::fs::write(dir.path().join("channels.json"), file.to_string()).unwrap();
    let config = test_config(dir.path(), Some(&random_secret("admin")));
    (TestServer::serve(config).await, dir)
}

#[tokio::test]
async fn the_channel_tree_is_capped_so_that_sessions_still_connect() {
    // The default channel and 989 stored ones, each with the longest
    // description there may be; the last ten through the API.
    let longest = "d".repeat(1024);
    let (server, _dir) = server_with_channels(MAX_CHANNELS - 11, &longest).await;
    let admin = server.admin().await;
    let raw = server.raw(&server.admin_token).await;
    let mut channels = raw.channels();
    let create = |i: usize, description: &str| pb::CreateChannelRequest {
        name: format!("channel {i}"),
        description: description.into(),
        ..Default::default()
    };
    for i in MAX_CHANNELS - 10..MAX_CHANNELS {
        let request = raw.req(create(i, &longest));
        within("CreateChannel", channels.create_channel(request))
            .await
            .unwrap_or_else(|e| panic!("channel {i} of {MAX_CHANNELS}: {e:?}"));
    }
    let one_more = channels.create_channel(raw.req(create(MAX_CHANNELS, "")));
    let status = expect_reason(
        within("CreateChannel", one_more).await,
        Reason::InvalidRequest,
    );
    assert!(status.message().contains("1000"), "{status:?}");

    // Everyone can still connect, and sees every channel.
    let mut session = admin.session("after the cap").await;
    assert_eq!(session.started().channels.len(), MAX_CHANNELS);
    // Deleting one makes room again.
    let last = admin.list_channels().await.unwrap().pop().unwrap();
    admin.delete_channel(&last.id).await.unwrap();
    admin.create_channel("room again").await.unwrap();
    session
        .wait_for("the new channel", |e| {
            matches!(e, pb::event::Event::ChannelCreated(c)
                if c.channel.as_ref().is_some_and(|c| c.name == "room again"))
        })
        .await;
}

#[tokio::test]
async fn wide_characters_meet_the_size_cap_before_the_count_cap() {
    // 1,024 four-byte characters: 4 KiB per description. 280 of them fit
    // in the budget (docs/API.md); the API adds until it refuses.
    let wide = "🎧".repeat(1024);
    let (server, _dir) = server_with_channels(280, &wide).await;
    let admin = server.admin().await;
    let raw = server.raw(&server.admin_token).await;
    let mut channels = raw.channels();
    let mut refused = None;
    for i in 281..MAX_CHANNELS {
        let request = raw.req(pb::CreateChannelRequest {
            name: format!("{}{i}", "🎧".repeat(60)),
            description: wide.clone(),
            ..Default::default()
        });
        if let Err(status) = within("CreateChannel", channels.create_channel(request)).await {
            refused = Some((i, status));
            break;
        }
    }
    let (at, status) = refused.expect("the size cap refuses before the count cap");
    assert_status(&status, Reason::InvalidRequest, Code::InvalidArgument);
    assert!(status.message().contains("bytes"), "{status:?}");
    // Every session still gets its snapshot, with every channel.
    let session = admin.session("after the size cap").await;
    assert_eq!(session.started().channels.len(), at);
}
