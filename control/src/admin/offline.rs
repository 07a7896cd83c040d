//! The admin commands on a stopped server: straight on its store, under
//! the data directory's lock, through the same core types the server uses
//! (`TokenStore`, the hub's channel rules), so that what a command accepts
//! or refuses is what the API would.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use openspeak_client::pb;
use openspeak_shared::config::Config;

use super::{AdminError, BanCommand, ChannelCommand, Command, Printed, TokenCommand};
use crate::authenticator::unix_now;
use crate::ban_list::ban_length;
use crate::channels::ChannelTree;
use crate::data_lock::DataLock;
use crate::hub::{Hub, HubError};
use crate::store::{self, Store};
use crate::tokens::{Role, TokenStore};
use crate::{convert, provision};

/// A stopped server's state, locked for this command.
pub struct Offline {
    config: Config,
    store: Arc<dyn Store>,
    tokens: TokenStore,
    _lock: DataLock,
}

impl Offline {
    /// Opens the store as the server would, provisioning file included,
    /// so that a token listed there is seen here too.
    pub fn open(config: &Config, lock: DataLock) -> Result<Offline, AdminError> {
        let opened = store::open(config)?;
        Ok(Offline {
            config: config.clone(),
            tokens: provision::open_tokens(config, opened.store.clone())?,
            store: opened.store,
            _lock: lock,
        })
    }

    pub fn run(&mut self, command: &Command) -> Result<Printed, AdminError> {
        let now = SystemTime::now();
        Ok(match command {
            Command::Token(TokenCommand::Create {
                label, role, ttl, ..
            }) => {
                let role = if role == "admin" {
                    Role::Admin
                } else {
                    Role::Member
                };
                let ttl = match ttl {
                    None => Some(self.config.auth.token_ttl.get()).filter(|d| !d.is_zero()),
                    Some(0) => None,
                    Some(secs) => Some(Duration::from_secs(*secs)),
                };
                let label = crate::limits::text("label", label, crate::limits::SHORT_TEXT_MAX)
                    .map_err(HubError::Invalid)?;
                let (plaintext, info) = self.tokens.create(&label, role, ttl, now)?;
                Printed::NewToken(plaintext, convert::token_info(&info))
            }
            Command::Token(TokenCommand::List(_)) => {
                Printed::Tokens(self.tokens.list().iter().map(convert::token_info).collect())
            }
            Command::Token(TokenCommand::Revoke { id, .. }) => {
                self.tokens.revoke(id, now)?;
                Printed::Revoked(id.clone())
            }
            Command::Channel(ChannelCommand::Create { channel, .. }) => {
                let new = convert::new_channel(channel.new_channel().into_request());
                let view = self.change_channels(|hub| hub.create_channel(new, Instant::now()))?;
                Printed::Channels(vec![convert::channel(&view)])
            }
            Command::Channel(ChannelCommand::List(_)) => {
                let hub = self.hub()?;
                Printed::Channels(hub.channels().iter().map(convert::channel).collect())
            }
            Command::Channel(ChannelCommand::Delete { id, .. }) => {
                self.change_channels(|hub| hub.delete_channel(id))?;
                Printed::Deleted(id.clone())
            }
            Command::Ban(BanCommand::Add {
                address, duration, ..
            }) => {
                let addr = address_of(address)?;
                let secs = ban_length(duration.unwrap_or(0), self.config.auth.ban_duration.get())
                    .as_secs();
                let wall = unix_now();
                let until = wall.saturating_add(secs);
                self.store.put_ban(addr, until, wall)?;
                Printed::Bans(vec![ban(addr, until)])
            }
            Command::Ban(BanCommand::List(_)) => Printed::Bans(self.bans()?),
            Command::Ban(BanCommand::Remove { address, .. }) => {
                let addr = address_of(address)?;
                let removed = self.bans()?.iter().any(|b| b.address == addr.to_string());
                // A ban that ends now is lifted.
                let wall = unix_now();
                self.store.put_ban(addr, wall, wall)?;
                Printed::Unbanned {
                    address: addr.to_string(),
                    removed,
                }
            }
            Command::Status(_) => {
                let channels = self.hub()?.channel_count();
                Printed::Status {
                    running: false,
                    status: pb::ServerStatus {
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        channels: u32::try_from(channels).unwrap_or(u32::MAX),
                        ..Default::default()
                    },
                    bans: self.bans()?.len(),
                }
            }
        })
    }

    /// The channel tree as the server would restore it.
    fn hub(&self) -> Result<Hub, AdminError> {
        let tree = ChannelTree::restore(
            &self.config.channels.default,
            self.store.channels()?,
            Instant::now(),
        )?;
        Ok(Hub::new(tree, self.config.presence.idle_timeout.get()))
    }

    /// Runs `change` on the channels and keeps the result.
    fn change_channels<R>(
        &self,
        change: impl FnOnce(&mut Hub) -> Result<R, HubError>,
    ) -> Result<R, AdminError> {
        let mut hub = self.hub()?;
        let result = change(&mut hub)?;
        self.store.save_channels(&hub.channel_records())?;
        Ok(result)
    }

    /// The bans in force now, soonest lifted first.
    fn bans(&self) -> Result<Vec<pb::Ban>, AdminError> {
        let now = unix_now();
        let mut bans: Vec<(IpAddr, u64)> = self
            .store
            .bans()?
            .into_iter()
            .filter(|&(_, until)| until > now)
            .collect();
        bans.sort_by_key(|&(addr, until)| (until, addr));
        Ok(bans.into_iter().map(|(a, u)| ban(a, u)).collect())
    }
}

fn ban(addr: IpAddr, until: u64) -> pb::Ban {
    pb::Ban {
        address: addr.to_string(),
        until: Some(prost_types::Timestamp {
            seconds: i64::try_from(until).unwrap_or(i64::MAX),
            nanos: 0,
        }),
    }
}

fn address_of(given: &str) -> Result<IpAddr, AdminError> {
    given
        .trim()
        .parse()
        .map_err(|_| AdminError::Address(given.to_owned()))
}
