//! The admin commands of `openspeak-control`: tokens, channels, bans and
//! status, on a running server or a stopped one.
//!
//! Which one is decided by the data directory's lock (`data_lock`): when a
//! control plane holds it, the commands go to that server's API with an
//! admin token, so that a change takes effect at once (a revoked token's
//! sessions end, a new channel is announced); when nobody holds it, the
//! commands take the lock themselves and work on the store, so that a
//! server cannot start on the state half-way through. `--server` always
//! talks to the API. Both ways give the same answers, printed as a table
//! or, with `--json`, as one JSON document.

mod offline;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use openspeak_client::{Client, ClientError, NewChannel, TokenLifetime, pb};
use openspeak_shared::config::{Config, ConfigError};

use crate::data_lock::{DataLock, LockError};
use crate::server::SELF_SIGNED_CERT_FILE;
use offline::Offline;
pub use output::Printed;

/// An admin command.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create, list and revoke access tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create, list and delete channels
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Refuse addresses, list them and let them in again
    #[command(subcommand)]
    Ban(BanCommand),
    /// Sessions, channels, bans and data planes at a glance
    Status(Reach),
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its plaintext is shown this once
    Create {
        /// What the token is for, e.g. a person's name
        #[arg(long)]
        label: String,
        /// What the token may do
        #[arg(long, value_parser = ["member", "admin"], default_value = "member")]
        role: String,
        /// Lifetime in seconds; 0: never expires [default: auth.token_ttl]
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
        #[command(flatten)]
        reach: Reach,
    },
    /// List the tokens that are not revoked (never their secrets)
    List(Reach),
    /// Revoke a token by id; on a running server its sessions end at once
    Revoke {
        /// The token's id, as `token list` shows it
        id: String,
        #[command(flatten)]
        reach: Reach,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ChannelCommand {
    /// Create a permanent channel
    Create {
        #[command(flatten)]
        channel: ChannelArgs,
        #[command(flatten)]
        reach: Reach,
    },
    /// List every channel, parents first
    List(Reach),
    /// Delete a channel and its subchannels; their members move up
    Delete {
        /// The channel's id, as `channel list` shows it
        id: String,
        #[command(flatten)]
        reach: Reach,
    },
}

/// A channel to create.
#[derive(Debug, Clone, Args)]
pub struct ChannelArgs {
    /// Its name
    name: String,
    /// The id of the channel to put it under [default: top level]
    #[arg(long, value_name = "ID")]
    parent: Option<String>,
    /// A description shown to users
    #[arg(long, default_value = "")]
    description: String,
    /// A password members must give to join
    #[arg(long, default_value = "")]
    password: String,
    /// How many may be in it at once; 0: no limit
    #[arg(long, default_value_t = 0)]
    max_members: u32,
}

impl ChannelArgs {
    /// The channel as the client library sends it; the offline path turns
    /// its request into the core's `NewChannel` as the service does.
    fn new_channel(&self) -> NewChannel {
        let mut new = NewChannel::new(self.name.as_str())
            .description(self.description.as_str())
            .password(self.password.as_str())
            .max_members(self.max_members);
        if let Some(parent) = &self.parent {
            new = new.parent(parent.as_str());
        }
        new
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum BanCommand {
    /// Refuse an address for a while (an address banned already gets the
    /// new end)
    Add {
        /// An IPv4 or IPv6 address
        address: String,
        /// How long, in seconds (0: auth.ban_duration), at most a century
        /// [default: auth.ban_duration]
        #[arg(long, value_name = "SECONDS")]
        duration: Option<u64>,
        #[command(flatten)]
        reach: Reach,
    },
    /// List the addresses refused now (bans from failed authentications
    /// included)
    List(Reach),
    /// Let an address in again at once
    Remove {
        /// The address
        address: String,
        #[command(flatten)]
        reach: Reach,
    },
}

/// How to reach the server and how to answer; every admin command takes
/// these.
#[derive(Debug, Clone, Default, Args)]
pub struct Reach {
    /// Print one JSON document instead of a table
    #[arg(long)]
    pub json: bool,
    /// Talk to the server at this URL (http:// or https://) even if its
    /// data directory is not here [default: the configured server.host and
    /// server.port, when the server holds the data directory]
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// An admin token for a running server [default: auth.bootstrap_token,
    /// else the auth.bootstrap_token_file]
    #[arg(long, env = "OPENSPEAK_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the authority to trust over TLS [default: the
    /// self-signed certificate with server.tls_self_signed, else
    /// server.tls_cert]
    #[arg(long, value_name = "PATH")]
    pub ca: Option<PathBuf>,
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(
        "the control plane is running (it holds {}); give an admin token with --token or \
         OPENSPEAK_ADMIN_TOKEN",
        lock.display()
    )]
    NoToken { lock: PathBuf },
    #[error("cannot read the CA file {}: {source}", path.display())]
    Ca {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Server(String),
    #[error(
        "no control plane state in {} (storage.data_dir); give --data-dir or --config",
        .0.display()
    )]
    NoState(PathBuf),
    // On a stopped server's state:
    #[error(transparent)]
    Open(#[from] crate::store::OpenError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Provision(#[from] crate::provision::ProvisionError),
    #[error("the stored channels cannot be read: {0}")]
    Channels(#[from] crate::channels::ChannelError),
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
    #[error(transparent)]
    Revoke(#[from] crate::tokens::RevokeError),
    #[error("`{0}` is not an IP address")]
    Address(String),
}

impl From<ClientError> for AdminError {
    /// The server's reason and message, which name the problem, else the
    /// client's whole chain.
    fn from(e: ClientError) -> Self {
        match (e.reason(), e.message()) {
            (Some(reason), Some(message)) => AdminError::Server(format!("{reason}: {message}")),
            _ => AdminError::Server(chain(&e)),
        }
    }
}

impl Command {
    /// Whether the command changes the state (list and status do not).
    fn changes(&self) -> bool {
        !matches!(
            self,
            Command::Token(TokenCommand::List(_))
                | Command::Channel(ChannelCommand::List(_))
                | Command::Ban(BanCommand::List(_))
                | Command::Status(_)
        )
    }

    fn reach(&self) -> &Reach {
        match self {
            Command::Token(
                TokenCommand::Create { reach, .. }
                | TokenCommand::List(reach)
                | TokenCommand::Revoke { reach, .. },
            )
            | Command::Channel(
                ChannelCommand::Create { reach, .. }
                | ChannelCommand::List(reach)
                | ChannelCommand::Delete { reach, .. },
            )
            | Command::Ban(
                BanCommand::Add { reach, .. }
                | BanCommand::List(reach)
                | BanCommand::Remove { reach, .. },
            )
            | Command::Status(reach) => reach,
        }
    }
}

/// Runs `command` with `config` and prints its answer; the binary's
/// `main` for an admin command.
pub fn main(program: &str, command: &Command, config: Result<Config, ConfigError>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = config
        .map_err(AdminError::from)
        .and_then(|config| runtime.block_on(run(command, &config)));
    let json = command.reach().json;
    openspeak_shared::cli::exit_code(program, result.map(|printed| printed.print(json)))
}

/// Where the commands go.
enum Target {
    Online(Client),
    Offline(Box<Offline>),
}

/// Runs `command` against the running server, or the stopped one's store.
pub async fn run(command: &Command, config: &Config) -> Result<Printed, AdminError> {
    let target = target(command, config).await?;
    match target {
        Target::Online(client) => online(command, &client).await,
        Target::Offline(mut offline) => offline.run(command),
    }
}

async fn target(command: &Command, config: &Config) -> Result<Target, AdminError> {
    let reach = command.reach();
    let dir = &config.storage.data_dir;
    // Reading a directory that is not there would make an empty state in
    // it (a typo in --data-dir); only a change may start one, as it may
    // before a server's first start.
    if reach.server.is_none() && !command.changes() && !dir.exists() {
        return Err(AdminError::NoState(dir.clone()));
    }
    if reach.server.is_none() {
        match DataLock::try_acquire(&config.storage.data_dir) {
            Ok(lock) => return Ok(Target::Offline(Box::new(Offline::open(config, lock)?))),
            Err(LockError::Held { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let url = reach.server.clone().unwrap_or_else(|| server_url(config));
    let token = admin_token(reach, config).ok_or_else(|| AdminError::NoToken {
        lock: config.storage.data_dir.join(crate::data_lock::LOCK_FILE),
    })?;
    let ca = match ca_file(reach, config) {
        Some(path) => Some(std::fs::read(&path).map_err(|source| AdminError::Ca { path, source })?),
        None => None,
    };
    let client = match (&ca, url.starts_with("https://")) {
        (Some(pem), true) => Client::connect_with_ca(&url, &token, pem).await?,
        _ => Client::connect(&url, &token).await?,
    };
    Ok(Target::Online(client))
}

/// The configured public listener as a client dials it: a wildcard
/// address becomes the loopback one of its family.
fn server_url(config: &Config) -> String {
    let server = &config.server;
    let host = match server.host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "[::1]".to_owned(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_owned(),
    };
    let tls = server.tls_cert.is_some() || server.tls_self_signed;
    // The self-signed certificate names localhost, not every address.
    let host = if server.tls_self_signed && host == "127.0.0.1" {
        "localhost".to_owned()
    } else {
        host
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}:{}", server.port)
}

fn admin_token(reach: &Reach, config: &Config) -> Option<String> {
    reach
        .token
        .clone()
        .or_else(|| config.auth.bootstrap_token.clone())
        .or_else(|| std::fs::read_to_string(config.bootstrap_token_file()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn ca_file(reach: &Reach, config: &Config) -> Option<PathBuf> {
    reach.ca.clone().or_else(|| {
        if config.server.tls_self_signed {
            Some(config.storage.data_dir.join(SELF_SIGNED_CERT_FILE))
        } else {
            config.server.tls_cert.clone()
        }
    })
}

async fn online(command: &Command, client: &Client) -> Result<Printed, AdminError> {
    Ok(match command {
        Command::Token(TokenCommand::Create {
            label, role, ttl, ..
        }) => {
            let lifetime = match ttl {
                None => TokenLifetime::ServerDefault,
                Some(0) => TokenLifetime::Never,
                Some(secs) => TokenLifetime::For(Duration::from_secs(*secs)),
            };
            let (plaintext, info) = client
                .create_token(label, wire_role(role), lifetime)
                .await?;
            Printed::NewToken(plaintext, info)
        }
        Command::Token(TokenCommand::List(_)) => Printed::Tokens(client.list_tokens().await?),
        Command::Token(TokenCommand::Revoke { id, .. }) => {
            client.revoke_token(id).await?;
            Printed::Revoked(id.clone())
        }
        Command::Channel(ChannelCommand::Create { channel, .. }) => Printed::Channels(vec![
            client.create_channel_with(channel.new_channel()).await?,
        ]),
        Command::Channel(ChannelCommand::List(_)) => {
            Printed::Channels(client.list_channels().await?)
        }
        Command::Channel(ChannelCommand::Delete { id, .. }) => {
            client.delete_channel(id).await?;
            Printed::Deleted(id.clone())
        }
        Command::Ban(BanCommand::Add {
            address, duration, ..
        }) => {
            let ban = client
                .add_ban(address, duration.map(Duration::from_secs))
                .await?;
            Printed::Bans(vec![ban])
        }
        Command::Ban(BanCommand::List(_)) => Printed::Bans(client.list_bans().await?),
        Command::Ban(BanCommand::Remove { address, .. }) => Printed::Unbanned {
            removed: client.remove_ban(address).await?,
            address: address.clone(),
        },
        Command::Status(_) => {
            let status = client.server_status().await?;
            let bans = client.list_bans().await?.len();
            Printed::Status {
                running: true,
                status,
                bans,
            }
        }
    })
}

fn wire_role(role: &str) -> pb::Role {
    if role == "admin" {
        pb::Role::Admin
    } else {
        pb::Role::Member
    }
}

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
