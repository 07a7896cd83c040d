//! `AdminService`: a running server's state at a glance, and the addresses
//! refused for failed authentications, for operators (admin tokens only).

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use openspeak_shared::{Reason, pb};
use tonic::{Request, Response, Status};
use tracing::info;

use super::{Shared, internal};
use crate::{
    authenticator::Caller,
    ban_list::{BanList, ban_length},
    convert, limits,
    store::Store,
};

pub struct AdminApi {
    pub shared: Arc<Shared>,
    /// The list the authenticator checks every call against.
    pub bans: Arc<Mutex<BanList>>,
    /// Where bans are kept across restarts.
    pub store: Arc<dyn Store>,
    /// When serving began, for the uptime.
    pub started: Instant,
}

impl AdminApi {
    fn bans(&self) -> std::sync::MutexGuard<'_, BanList> {
        self.bans.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The wall-clock time of a monotonic `instant` (bans are kept in both).
fn wall(instant: Instant, now: Instant) -> SystemTime {
    SystemTime::now() + instant.saturating_duration_since(now)
}

fn address(given: &str) -> Result<IpAddr, Status> {
    given.trim().parse().map_err(|_| {
        Reason::InvalidRequest.status(format!("`{}` is not an IP address", limits::Echo(given)))
    })
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for AdminApi {
    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::ServerStatus>, Status> {
        Caller::admin_of(&request, "GetStatus")?;
        let (sessions, channels) = self
            .shared
            .broker
            .read(|hub| (hub.session_count(), hub.channel_count()));
        // What the store remembers of them; a failing read leaves the
        // dates out rather than the status.
        let known = self.store.dataplanes().unwrap_or_default();
        let dataplanes = self
            .shared
            .registry
            .samples()
            .into_iter()
            .map(|plane| pb::DataplaneStatus {
                first_seen: known.iter().find(|k| k.id == plane.id).map(|k| {
                    convert::timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(k.first_seen))
                }),
                id: plane.id,
                sessions: plane.sessions,
                forwarded: plane.forwarded,
                cert_sha256: plane.cert_sha256,
            })
            .collect();
        Ok(Response::new(pb::ServerStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            sessions: u32::try_from(sessions).unwrap_or(u32::MAX),
            channels: u32::try_from(channels).unwrap_or(u32::MAX),
            dataplanes,
        }))
    }

    async fn list_bans(
        &self,
        request: Request<pb::ListBansRequest>,
    ) -> Result<Response<pb::ListBansResponse>, Status> {
        Caller::admin_of(&request, "ListBans")?;
        let now = Instant::now();
        let bans = self
            .bans()
            .banned(now)
            .into_iter()
            .map(|(addr, until)| pb::Ban {
                address: addr.to_string(),
                until: Some(convert::timestamp(wall(until, now))),
            })
            .collect();
        Ok(Response::new(pb::ListBansResponse { bans }))
    }

    async fn add_ban(
        &self,
        request: Request<pb::AddBanRequest>,
    ) -> Result<Response<pb::Ban>, Status> {
        let caller = Caller::admin_of(&request, "AddBan")?;
        let req = request.into_inner();
        let addr = address(&req.address)?;
        let duration = ban_length(req.duration_seconds, self.bans().ban_duration());
        // Kept first: an acknowledged ban survives a restart.
        let wall_now = crate::authenticator::unix_now();
        self.store
            .put_ban(addr, wall_now.saturating_add(duration.as_secs()), wall_now)
            .map_err(internal)?;
        let now = Instant::now();
        self.bans().ban(addr, now + duration);
        info!(peer = %addr, ban_secs = duration.as_secs(), by = %caller.token.id, "address banned by an admin");
        Ok(Response::new(pb::Ban {
            address: addr.to_string(),
            until: Some(convert::timestamp(SystemTime::now() + duration)),
        }))
    }

    async fn remove_ban(
        &self,
        request: Request<pb::RemoveBanRequest>,
    ) -> Result<Response<pb::RemoveBanResponse>, Status> {
        let caller = Caller::admin_of(&request, "RemoveBan")?;
        let addr = address(&request.into_inner().address)?;
        // A ban that ends now is a ban lifted, in the store as in memory.
        let wall_now = crate::authenticator::unix_now();
        self.store
            .put_ban(addr, wall_now, wall_now)
            .map_err(internal)?;
        let removed = self.bans().lift(addr, Instant::now());
        if removed {
            info!(peer = %addr, by = %caller.token.id, "ban lifted by an admin");
        }
        Ok(Response::new(pb::RemoveBanResponse { removed }))
    }
}
