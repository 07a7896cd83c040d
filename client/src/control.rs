//! [`Client`]: one HTTP/2 connection to the control plane's public gRPC API
//! and the token its calls carry; the calls that need no session (tokens,
//! channels, who is online) and [`Client::start_session`].
//!
//! Every call is bounded by the client's request timeout and every failure
//! is a [`ClientError`]; nothing the network says is unwrapped. Requests
//! and answers are the protobuf types of the public contract
//! (`proto/openspeak/v1`), re-exported as [`crate::pb`], except where a
//! plain Rust argument reads better ([`NewChannel`], `Option<Duration>`).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use openspeak_shared::{metadata, pb};
use pb::{
    auth_service_client::AuthServiceClient, channel_service_client::ChannelServiceClient,
    event::Event as Ev, presence_service_client::PresenceServiceClient,
};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response};

use crate::error::{ClientError, within};
use crate::session::Session;

/// How long [`Client::connect`] may take to open the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call may take by default (see
/// [`Client::with_request_timeout`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Client::start_session`] waits for `session_started`.
pub const SESSION_START_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 pings while the connection is idle: a control plane whose host
/// vanished without a word is noticed in interval + timeout, and a session's
/// event stream then ends instead of waiting for ever.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to dial the control plane at `addr`: plaintext for `http://`; for
/// `https://`, TLS trusting the public authorities plus, when given, the
/// authority (or self-signed certificate) in `ca_pem`. For a caller that
/// opens its own connections (a load generator's pool); [`Client`] dials
/// with it.
pub fn endpoint(addr: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, ClientError> {
    let invalid = |source| ClientError::InvalidAddress {
        addr: addr.to_owned(),
        source,
    };
    let endpoint = Endpoint::from_shared(addr.to_owned()).map_err(invalid)?;
    if !addr.starts_with("https://") {
        return Ok(endpoint);
    }
    let mut tls = ClientTlsConfig::new().with_webpki_roots();
    if let Some(pem) = ca_pem {
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    endpoint.tls_config(tls).map_err(invalid)
}

/// A connection to the control plane plus the token its calls carry.
///
/// Cheap to clone: clones share the connection (tonic multiplexes calls
/// over it). [`with_token`](Self::with_token) gives the same connection
/// another identity.
#[derive(Clone)]
pub struct Client {
    /// The HTTP/2 connection; tonic redials it if it drops.
    channel: Channel,
    /// The address as given, for error messages.
    addr: String,
    /// `Bearer <token>`, checked once, at construction.
    authorization: AsciiMetadataValue,
    /// Bound on each unary call.
    request_timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: never in a log line.
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the control plane at `addr` (`http://host:port`, or
    /// `https://` when it serves TLS with a certificate from a public
    /// authority) with `token`, the plaintext of an access token. Bounded
    /// by [`CONNECT_TIMEOUT`].
    pub async fn connect(addr: &str, token: &str) -> Result<Client, ClientError> {
        Self::connect_trusting(addr, token, None).await
    }

    /// [`connect`](Self::connect) to a control plane whose TLS certificate
    /// is signed by the authority in `ca_pem` (PEM), or is itself that
    /// certificate: a private authority, or the one
    /// `server.tls_self_signed` made. `addr` must be `https://`; the name
    /// in it must be one the certificate names.
    pub async fn connect_with_ca(
        addr: &str,
        token: &str,
        ca_pem: &[u8],
    ) -> Result<Client, ClientError> {
        if !addr.starts_with("https://") {
            return Err(ClientError::TlsNeedsHttps {
                addr: addr.to_owned(),
            });
        }
        Self::connect_trusting(addr, token, Some(ca_pem)).await
    }

    async fn connect_trusting(
        addr: &str,
        token: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<Client, ClientError> {
        let authorization = bearer(token)?;
        let endpoint = endpoint(addr, ca_pem)?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        // tonic's own connect timeout covers the TCP dial; this one also
        // covers a TLS or HTTP/2 handshake that never finishes.
        let channel = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect())
            .await
            .map_err(|_| ClientError::ConnectTimeout {
                addr: addr.to_owned(),
                after: CONNECT_TIMEOUT,
            })?
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Client {
            channel,
            addr: addr.to_owned(),
            authorization,
            request_timeout: REQUEST_TIMEOUT,
        })
    }

    /// The same connection, with calls carrying `token` instead.
    pub fn with_token(&self, token: &str) -> Result<Client, ClientError> {
        Ok(Client {
            authorization: bearer(token)?,
            ..self.clone()
        })
    }

    /// The same client with another bound on each call.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Client {
        self.request_timeout = timeout;
        self
    }

    /// The control plane's address, as given to [`connect`](Self::connect).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    // ----- tokens ---------------------------------------------------------

    /// The caller's own token.
    pub async fn whoami(&self) -> Result<pb::TokenInfo, ClientError> {
        let call = "AuthService.WhoAmI";
        let request = self.request(pb::WhoAmIRequest {});
        self.finish(call, self.auth().who_am_i(request)).await
    }

    /// Admin: creates a token; returns its plaintext (shown only now) and
    /// its info.
    pub async fn create_token(
        &self,
        label: &str,
        role: pb::Role,
        lifetime: TokenLifetime,
    ) -> Result<(String, pb::TokenInfo), ClientError> {
        let call = "AuthService.CreateToken";
        let request = self.request(pb::CreateTokenRequest {
            label: label.to_owned(),
            role: role.into(),
            ttl_seconds: match lifetime {
                TokenLifetime::ServerDefault => None,
                // 0 is "never" on the wire.
                TokenLifetime::Never => Some(0),
                TokenLifetime::For(ttl) => Some(ttl_seconds(ttl)),
            },
        });
        let response = self.finish(call, self.auth().create_token(request)).await?;
        let info = response.info.ok_or_else(|| missing(call, "info"))?;
        Ok((response.token, info))
    }

    /// Admin: revokes the token with id `token_id`; its sessions end.
    pub async fn revoke_token(&self, token_id: &str) -> Result<(), ClientError> {
        let call = "AuthService.RevokeToken";
        let request = self.request(pb::RevokeTokenRequest {
            token_id: token_id.to_owned(),
        });
        self.finish(call, self.auth().revoke_token(request))
            .await
            .map(drop)
    }

    /// Admin: every token that is not revoked.
    pub async fn list_tokens(&self) -> Result<Vec<pb::TokenInfo>, ClientError> {
        let call = "AuthService.ListTokens";
        let request = self.request(pb::ListTokensRequest {});
        let response = self.finish(call, self.auth().list_tokens(request)).await?;
        Ok(response.tokens)
    }

    // ----- channels -------------------------------------------------------

    /// Creates a plain top-level channel named `name`.
    pub async fn create_channel(&self, name: &str) -> Result<pb::Channel, ClientError> {
        self.create_channel_with(NewChannel::new(name)).await
    }

    /// Creates the channel `channel` describes.
    pub async fn create_channel_with(
        &self,
        channel: NewChannel,
    ) -> Result<pb::Channel, ClientError> {
        let call = "ChannelService.CreateChannel";
        let request = self.request(channel.into_request());
        self.finish(call, self.channels().create_channel(request))
            .await
    }

    /// One channel by id.
    pub async fn get_channel(&self, channel_id: &str) -> Result<pb::Channel, ClientError> {
        let call = "ChannelService.GetChannel";
        let request = self.request(pb::GetChannelRequest {
            channel_id: channel_id.to_owned(),
        });
        self.finish(call, self.channels().get_channel(request))
            .await
    }

    /// Every channel, parents before their children.
    pub async fn list_channels(&self) -> Result<Vec<pb::Channel>, ClientError> {
        let call = "ChannelService.ListChannels";
        let request = self.request(pb::ListChannelsRequest {});
        let response = self
            .finish(call, self.channels().list_channels(request))
            .await?;
        Ok(response.channels)
    }

    /// Admin: deletes a channel and its subchannels; their members move to
    /// its parent (or the default channel).
    pub async fn delete_channel(&self, channel_id: &str) -> Result<(), ClientError> {
        let call = "ChannelService.DeleteChannel";
        let request = self.request(pb::DeleteChannelRequest {
            channel_id: channel_id.to_owned(),
        });
        self.finish(call, self.channels().delete_channel(request))
            .await
            .map(drop)
    }

    /// Admin: moves another session into `channel_id`, regardless of its
    /// password and capacity.
    pub async fn move_member(&self, session_id: u32, channel_id: &str) -> Result<(), ClientError> {
        let call = "ChannelService.MoveMember";
        let request = self.request(pb::MoveMemberRequest {
            session_id,
            channel_id: channel_id.to_owned(),
        });
        self.finish(call, self.channels().move_member(request))
            .await
            .map(drop)
    }

    // ----- operating (admin) ---------------------------------------------

    /// Admin: sessions, channels and attached data planes now.
    pub async fn server_status(&self) -> Result<pb::ServerStatus, ClientError> {
        let call = "AdminService.GetStatus";
        let request = self.request(pb::GetStatusRequest {});
        self.finish(call, self.admin().get_status(request)).await
    }

    /// Admin: the addresses refused now for failed authentications or by
    /// an admin.
    pub async fn list_bans(&self) -> Result<Vec<pb::Ban>, ClientError> {
        let call = "AdminService.ListBans";
        let request = self.request(pb::ListBansRequest {});
        let response = self.finish(call, self.admin().list_bans(request)).await?;
        Ok(response.bans)
    }

    /// Admin: refuses `address` for `duration` (`None`: the server's
    /// `auth.ban_duration`).
    pub async fn add_ban(
        &self,
        address: &str,
        duration: Option<Duration>,
    ) -> Result<pb::Ban, ClientError> {
        let call = "AdminService.AddBan";
        let request = self.request(pb::AddBanRequest {
            address: address.to_owned(),
            duration_seconds: duration.map_or(0, ttl_seconds),
        });
        self.finish(call, self.admin().add_ban(request)).await
    }

    /// Admin: lets `address` in again; whether it was refused.
    pub async fn remove_ban(&self, address: &str) -> Result<bool, ClientError> {
        let call = "AdminService.RemoveBan";
        let request = self.request(pb::RemoveBanRequest {
            address: address.to_owned(),
        });
        let response = self.finish(call, self.admin().remove_ban(request)).await?;
        Ok(response.removed)
    }

    // ----- presence -------------------------------------------------------

    /// Every online session.
    pub async fn list_online(&self) -> Result<Vec<pb::UserPresence>, ClientError> {
        let call = "PresenceService.ListOnline";
        let request = self.request(pb::ListOnlineRequest {});
        let response = self
            .finish(call, self.presence().list_online(request))
            .await?;
        Ok(response.users)
    }

    /// The sessions in `channel_id`.
    pub async fn list_channel_members(
        &self,
        channel_id: &str,
    ) -> Result<Vec<pb::UserPresence>, ClientError> {
        let call = "PresenceService.ListChannelMembers";
        let request = self.request(pb::ListChannelMembersRequest {
            channel_id: channel_id.to_owned(),
        });
        let response = self
            .finish(call, self.presence().list_channel_members(request))
            .await?;
        Ok(response.users)
    }

    /// Starts a session (`PresenceService.Connect`) named `display_name`
    /// and waits, for at most [`SESSION_START_TIMEOUT`], for its first
    /// event, `session_started`. The session lives until the [`Session`]
    /// is dropped or the server ends it.
    pub async fn start_session(&self, display_name: &str) -> Result<Session, ClientError> {
        let call = "PresenceService.Connect";
        let request = self.request(pb::ConnectRequest {
            display_name: display_name.to_owned(),
        });
        let mut presence = self.presence();
        let start = async {
            let mut events = presence
                .connect(request)
                .await
                .map_err(|s| ClientError::status(call, s))?
                .into_inner();
            let first = events
                .message()
                .await
                .map_err(|s| ClientError::status(call, s))?
                .ok_or_else(|| ClientError::Unexpected {
                    call,
                    what: "the stream closed before session_started".into(),
                })?;
            let started = match first.event {
                Some(Ev::SessionStarted(started)) => started,
                other => {
                    return Err(ClientError::Unexpected {
                        call,
                        what: format!("the first event is not session_started: {other:?}"),
                    });
                }
            };
            if started.session_id == 0 {
                return Err(ClientError::Unexpected {
                    call,
                    what: "session_started names session 0".into(),
                });
            }
            Ok((started, first.sequence, events))
        };
        let (started, sequence, events) =
            within(SESSION_START_TIMEOUT, "session_started", start).await??;
        Ok(Session::new(self.clone(), started, sequence, events))
    }

    // ----- plumbing shared with `Session` ---------------------------------

    /// `message` with the token. No `grpc-timeout`: the same request shape
    /// opens the event stream, which must outlive any call deadline; unary
    /// calls are bounded on this side, in [`finish`](Self::finish).
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(metadata::AUTHORIZATION, self.authorization.clone());
        request
    }

    /// `message` with the token and `openspeak-session: <session_id>`.
    pub(crate) fn session_request<T>(&self, session_id: u32, message: T) -> Request<T> {
        let mut request = self.request(message);
        request
            .metadata_mut()
            .insert(metadata::SESSION, MetadataValue::from(session_id));
        request
    }

    /// Awaits a unary call for at most the request timeout; its answer, or
    /// the server's status as a [`ClientError`].
    pub(crate) async fn finish<R>(
        &self,
        call: &'static str,
        response: impl Future<Output = Result<Response<R>, tonic::Status>>,
    ) -> Result<R, ClientError> {
        match within(self.request_timeout, call, response).await? {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(ClientError::status(call, status)),
        }
    }

    pub(crate) fn admin(&self) -> pb::admin_service_client::AdminServiceClient<Channel> {
        pb::admin_service_client::AdminServiceClient::new(self.channel.clone())
    }

    pub(crate) fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel.clone())
    }

    pub(crate) fn channels(&self) -> ChannelServiceClient<Channel> {
        ChannelServiceClient::new(self.channel.clone())
    }

    pub(crate) fn presence(&self) -> PresenceServiceClient<Channel> {
        PresenceServiceClient::new(self.channel.clone())
    }

    pub(crate) fn voice(&self) -> pb::voice_service_client::VoiceServiceClient<Channel> {
        pb::voice_service_client::VoiceServiceClient::new(self.channel.clone())
    }
}

/// A channel to create: a name and, optionally, where and how.
///
/// ```
/// # use openspeak_client::NewChannel;
/// let squad = NewChannel::new("Squad")
///     .parent("some-channel-id")
///     .password("hunter2")
///     .max_members(5)
///     .temporary(true);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewChannel {
    request: pb::CreateChannelRequest,
}

impl NewChannel {
    /// A top-level channel named `name`, with no password, limit or
    /// description, that stays when empty.
    pub fn new(name: impl Into<String>) -> NewChannel {
        NewChannel {
            request: pb::CreateChannelRequest {
                name: name.into(),
                ..Default::default()
            },
        }
    }

    /// Under the channel with id `parent_id` (empty: top level).
    pub fn parent(mut self, parent_id: impl Into<String>) -> NewChannel {
        self.request.parent_id = parent_id.into();
        self
    }

    /// With a description (up to 1,024 characters).
    pub fn description(mut self, description: impl Into<String>) -> NewChannel {
        self.request.description = description.into();
        self
    }

    /// Members must give this password to join (admins need not).
    pub fn password(mut self, password: impl Into<String>) -> NewChannel {
        self.request.password = password.into();
        self
    }

    /// At most `max_members` sessions (0: no limit).
    pub fn max_members(mut self, max_members: u32) -> NewChannel {
        self.request.max_members = max_members;
        self
    }

    /// Deleted when its last member leaves, or 60 s after creation if
    /// nobody joined.
    pub fn temporary(mut self, temporary: bool) -> NewChannel {
        self.request.temporary = temporary;
        self
    }

    /// The request as it goes on the wire.
    pub fn into_request(self) -> pb::CreateChannelRequest {
        self.request
    }
}

/// `Bearer <token>` as a header value. Tokens are printable ASCII: a
/// header could carry other bytes, but no server would read them back as
/// the same token, so they are refused here rather than as UNAUTHENTICATED.
fn bearer(token: &str) -> Result<AsciiMetadataValue, ClientError> {
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ClientError::InvalidToken);
    }
    format!("Bearer {token}")
        .parse()
        .map_err(|_| ClientError::InvalidToken)
}

/// How long a created token is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLifetime {
    /// The server's `auth.token_ttl` (the request leaves `ttl_seconds` out).
    ServerDefault,
    /// It never expires.
    Never,
    /// This long, counted in whole seconds, rounded up (at least 1 s).
    For(Duration),
}

/// A lifetime in whole seconds, rounded up, at least 1 (0 means "never").
fn ttl_seconds(ttl: Duration) -> u64 {
    let whole = ttl.as_secs();
    let rounded = if ttl.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    };
    rounded.max(1)
}

/// The error for an answer to `call` that lacks `field`.
pub(crate) fn missing(call: &'static str, field: &str) -> ClientError {
    ClientError::Unexpected {
        call,
        what: format!("the answer has no `{field}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_round_up_to_whole_seconds_and_never_to_zero() {
        assert_eq!(ttl_seconds(Duration::from_secs(60)), 60);
        assert_eq!(ttl_seconds(Duration::from_millis(60_001)), 61);
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::MAX), u64::MAX);
    }

    #[test]
    fn tokens_that_cannot_be_headers_are_refused() {
        assert!(bearer("abc_123").is_ok());
        assert!(matches!(bearer("a\nb"), Err(ClientError::InvalidToken)));
        assert!(matches!(bearer("é"), Err(ClientError::InvalidToken)));
        assert!(matches!(bearer("a b"), Err(ClientError::InvalidToken)));
    }

    #[test]
    fn a_new_channel_sets_every_field() {
        let request = NewChannel::new("Squad")
            .parent("p")
            .description("d")
            .password("pw")
            .max_members(5)
            .temporary(true)
            .into_request();
        assert_eq!(
            request,
            pb::CreateChannelRequest {
                name: "Squad".into(),
                parent_id: "p".into(),
                description: "d".into(),
                max_members: 5,
                password: "pw".into(),
                temporary: true,
            }
        );
    }
}
