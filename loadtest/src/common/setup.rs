//! What the admin token prepares before a run and removes after it: the
//! run's channels and the clients' member tokens (one for every
//! `CLIENTS_PER_TOKEN` clients).

use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use openspeak_shared::pb;
use openspeak_shared::pb::auth_service_client::AuthServiceClient;
use openspeak_shared::pb::channel_service_client::ChannelServiceClient;
use openspeak_shared::pb::presence_service_client::PresenceServiceClient;
use tokio::time::{Instant, timeout_at};
use tonic::transport::Channel;

use crate::common::credentials::{ClientTokens, Credentials};
use crate::common::error::{RunError, SetupError};
use crate::common::flags::{RunFlags, ServerFlags};
use crate::common::pool::Pool;
use crate::common::tally::describe_status;
use crate::common::task::random_run_id;

/// Setup calls in flight at once (channel creation can be many calls).
const SETUP_CONCURRENCY: usize = 16;

/// Time for deleting channels and revoking the tokens.
pub const CLEANUP_GRACE: Duration = Duration::from_secs(10);

/// How long the member tokens outlive the run's bound, should the run fail
/// to revoke them.
pub const TOKEN_SPARE_LIFE: Duration = Duration::from_secs(600);

/// The label of the member tokens a run creates.
pub const TOKEN_LABEL: &str = "loadtest";

/// What a run made and must clean up.
#[derive(Debug, Default)]
pub struct Fixtures {
    /// The run's channel ids, in order (client i joins `channel_ids[i % C]`).
    pub channel_ids: Vec<String>,
    /// The member tokens' ids and plaintexts; none when the clients use
    /// the admin token.
    pub member_tokens: Vec<(String, String)>,
}

/// The admin's view of the server.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The connection to use.
    channel: Channel,
    /// The admin token.
    creds: Credentials,
    /// For error messages.
    addr: String,
}

/// A scenario's run once [`Admin::set_up_run`] set it up.
#[derive(Debug)]
pub struct RunSetup {
    /// `--run-id`, else a random one.
    pub run_id: String,
    /// The clients' connections.
    pub pool: Pool,
    /// The admin, for the checks during the run and the cleanup.
    pub admin: Admin,
    /// What the run made and must clean up.
    pub fixtures: Fixtures,
    /// The credentials the clients use.
    pub creds: ClientTokens,
    /// `--keep`: [`clean_up`](Self::clean_up) leaves the fixtures.
    keep: bool,
}

impl RunSetup {
    /// Deletes the run's channels and revokes its member tokens, unless
    /// `--keep`; what went wrong, as warnings for the report.
    pub async fn clean_up(&self) -> Vec<String> {
        if self.keep {
            return Vec::new();
        }
        self.admin
            .clean_up(&self.fixtures, Instant::now() + CLEANUP_GRACE)
            .await
    }
}

/// The name of channel `i` of run `run_id`.
pub fn channel_name(run_id: &str, i: u32) -> String {
    format!("load-{run_id}-{i}")
}

impl Admin {
    /// How every scenario of many clients starts, before `deadline`: names
    /// the run, opens `size` connections, checks the admin token
    /// ([`connect`](Self::connect)), then makes the run's `channels`
    /// channels and, with `member_ttl`, the member tokens for its
    /// `clients` clients ([`prepare`](Self::prepare), which keeps what it
    /// made on a failure only with `--keep`).
    pub async fn set_up_run(
        run: &RunFlags,
        size: u32,
        channels: u32,
        clients: u32,
        member_ttl: Option<Duration>,
        deadline: Instant,
    ) -> Result<RunSetup, RunError> {
        let run_id = run.run_id.clone().unwrap_or_else(random_run_id);
        let (pool, admin) = Admin::connect(&run.server, size, deadline).await?;
        let (fixtures, creds) = admin
            .prepare(&run_id, channels, clients, member_ttl, run.keep, deadline)
            .await?;
        Ok(RunSetup {
            run_id,
            pool,
            admin,
            fixtures,
            creds,
            keep: run.keep,
        })
    }

    /// Opens `size` connections to the control plane and checks that the
    /// token is an admin token, before `deadline`.
    pub async fn connect(
        server: &ServerFlags,
        size: u32,
        deadline: Instant,
    ) -> Result<(Pool, Admin), RunError> {
        let creds = Credentials::new(&server.token)?;
        let pool = Pool::connect(server, size, deadline).await?;
        let admin = Admin {
            channel: pool.any(),
            creds,
            addr: server.addr.clone(),
        };
        admin.check(deadline).await?;
        Ok((pool, admin))
    }

    /// Makes the run's `channels` channels and, with `member_ttl`, member
    /// tokens for its `clients` clients, before `deadline`; returns them
    /// and the credentials the clients use (the admin's without member
    /// tokens). A setup that fails half-way removes what it made, unless
    /// `keep`.
    pub async fn prepare(
        &self,
        run_id: &str,
        channels: u32,
        clients: u32,
        member_ttl: Option<Duration>,
        keep: bool,
        deadline: Instant,
    ) -> Result<(Fixtures, ClientTokens), RunError> {
        let mut fixtures = Fixtures::default();
        let made = async {
            self.create_channels(run_id, channels, &mut fixtures, deadline)
                .await?;
            if let Some(ttl) = member_ttl {
                for _ in 0..ClientTokens::needed(clients) {
                    let token = self.create_member_token(ttl, deadline).await?;
                    fixtures.member_tokens.push(token);
                }
            }
            Ok::<_, SetupError>(())
        }
        .await;
        let creds = if fixtures.member_tokens.is_empty() {
            Ok(ClientTokens::new(vec![self.creds.clone()]))
        } else {
            fixtures
                .member_tokens
                .iter()
                .map(|(_, token)| Credentials::new(token))
                .collect::<Result<Vec<_>, _>>()
                .map(ClientTokens::new)
        };
        match made.map_err(RunError::from).and(creds) {
            Ok(creds) => Ok((fixtures, creds)),
            Err(e) => {
                self.abandon(&fixtures, keep).await;
                Err(e)
            }
        }
    }

    /// Checks that the token is an admin token, so that a wrong token fails
    /// with a clear message before anything is created.
    async fn check(&self, deadline: Instant) -> Result<(), SetupError> {
        let mut auth = AuthServiceClient::new(self.channel.clone());
        let info = timeout_at(
            deadline,
            auth.who_am_i(self.creds.request(pb::WhoAmIRequest {})),
        )
        .await
        .map_err(|_| SetupError::TimedOut)?
        .map_err(|status| SetupError::WhoAmI {
            addr: self.addr.clone(),
            status,
        })?
        .into_inner();
        if info.role != pb::Role::Admin as i32 {
            let role = pb::Role::try_from(info.role)
                .map(|r| r.as_str_name().to_owned())
                .unwrap_or_else(|_| info.role.to_string());
            return Err(SetupError::NotAdmin { role });
        }
        Ok(())
    }

    /// Creates channels `load-<run_id>-0 ..` (top level, no limit), adding
    /// their ids to `fixtures` as they come so that a failure half-way still
    /// lets the caller remove what was made.
    async fn create_channels(
        &self,
        run_id: &str,
        count: u32,
        fixtures: &mut Fixtures,
        deadline: Instant,
    ) -> Result<(), SetupError> {
        let creations = stream::iter(0..count)
            .map(|i| {
                let mut client = ChannelServiceClient::new(self.channel.clone());
                let name = channel_name(run_id, i);
                let req = self.creds.request(pb::CreateChannelRequest {
                    name: name.clone(),
                    description: "openspeak-loadtest".into(),
                    max_members: 0,
                    ..Default::default()
                });
                async move {
                    match client.create_channel(req).await {
                        Ok(resp) => Ok((i, resp.into_inner().id)),
                        Err(status) => Err(SetupError::CreateChannel { name, status }),
                    }
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY);
        let mut made: Vec<(u32, String)> = Vec::with_capacity(count as usize);
        let result = timeout_at(deadline, async {
            let mut creations = std::pin::pin!(creations);
            while let Some((i, id)) = creations.try_next().await? {
                made.push((i, id));
            }
            Ok(())
        })
        .await
        .unwrap_or(Err(SetupError::TimedOut));
        made.sort();
        fixtures.channel_ids = made.into_iter().map(|(_, id)| id).collect();
        result
    }

    /// Creates a member token for the clients. It expires on its own a
    /// while after the run, in case the run cannot revoke it.
    async fn create_member_token(
        &self,
        ttl: Duration,
        deadline: Instant,
    ) -> Result<(String, String), SetupError> {
        let mut auth = AuthServiceClient::new(self.channel.clone());
        let req = self.creds.request(pb::CreateTokenRequest {
            label: TOKEN_LABEL.into(),
            role: pb::Role::Member as i32,
            ttl_seconds: Some(ttl.as_secs()),
        });
        let resp = timeout_at(deadline, auth.create_token(req))
            .await
            .map_err(|_| SetupError::TimedOut)?
            .map_err(|status| SetupError::CreateToken { status })?
            .into_inner();
        let id = resp.info.map(|i| i.id).unwrap_or_default();
        Ok((id, resp.token))
    }

    /// How many of `sessions` the server still lists as online.
    pub async fn still_online(&self, sessions: &[u32]) -> Result<usize, tonic::Status> {
        let mut presence = PresenceServiceClient::new(self.channel.clone());
        let users = presence
            .list_online(self.creds.request(pb::ListOnlineRequest {}))
            .await?
            .into_inner()
            .users;
        let ours: std::collections::HashSet<u32> = sessions.iter().copied().collect();
        Ok(users
            .iter()
            .filter(|u| ours.contains(&u.session_id))
            .count())
    }

    /// Removes what a setup that failed half-way made (unless `keep`), with
    /// its warnings on stderr: there is no report to carry them.
    async fn abandon(&self, fixtures: &Fixtures, keep: bool) {
        if keep {
            return;
        }
        for w in self
            .clean_up(fixtures, Instant::now() + CLEANUP_GRACE)
            .await
        {
            eprintln!("warning: {w}");
        }
    }

    /// Deletes the run's channels and revokes its tokens, before `deadline`.
    /// Returns warnings; a failed cleanup does not fail the run.
    pub async fn clean_up(&self, fixtures: &Fixtures, deadline: Instant) -> Vec<String> {
        let deletions = stream::iter(fixtures.channel_ids.iter().cloned())
            .map(|channel_id| {
                let mut client = ChannelServiceClient::new(self.channel.clone());
                let req = self.creds.request(pb::DeleteChannelRequest {
                    channel_id: channel_id.clone(),
                });
                async move {
                    client.delete_channel(req).await.err().map(|s| {
                        format!(
                            "cannot delete channel {channel_id}: {}",
                            describe_status(&s)
                        )
                    })
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .filter_map(|w| async move { w });
        let mut warnings: Vec<String> = match timeout_at(deadline, deletions.collect()).await {
            Ok(w) => w,
            Err(_) => vec!["timed out deleting the run's channels".into()],
        };
        for (id, _) in &fixtures.member_tokens {
            let mut auth = AuthServiceClient::new(self.channel.clone());
            let req = self.creds.request(pb::RevokeTokenRequest {
                token_id: id.clone(),
            });
            match timeout_at(deadline, auth.revoke_token(req)).await {
                Ok(Ok(_)) => {}
                Ok(Err(s)) => warnings.push(format!(
                    "cannot revoke the member token {id}: {}",
                    describe_status(&s)
                )),
                Err(_) => {
                    warnings.push("timed out revoking the member tokens".into());
                    break;
                }
            }
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_fit_the_limit() {
        let name = channel_name("0123456789abcdef0123456789abcdef", 99_999);
        assert_eq!(name, "load-0123456789abcdef0123456789abcdef-99999");
        assert!(name.chars().count() <= 64);
    }
}
