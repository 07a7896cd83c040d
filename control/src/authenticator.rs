//! Who is calling: checks the bearer token of every public RPC.
//!
//! Runs as a tonic interceptor in front of each OpenSpeak service (health
//! and reflection stay open). A caller that passes gets a [`Caller`] in the
//! request's extensions; one that fails gets UNAUTHENTICATED, and the
//! failure counts against its IP address in the [`BanList`]; a ban is kept
//! in the store too. A member
//! token calling faster than its [`RequestRate`] allows gets RATE_LIMITED.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, RwLock},
    time::{Instant, SystemTime},
};

use openspeak_shared::{Reason, metadata};
use tonic::{Request, Status, service::Interceptor};
use tracing::{Span, warn};

use crate::{
    ban_list::BanList,
    metrics::Refusals,
    request_rate::RequestRate,
    store::Store,
    tokens::{TokenInfo, TokenStore},
};

/// The authenticated caller of an RPC.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: TokenInfo,
    pub peer: Option<SocketAddr>,
}

impl Caller {
    /// The caller from the request extensions; a missing one means the
    /// service was mounted without the interceptor, a bug.
    pub fn of<T>(request: &Request<T>) -> Result<Caller, Status> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| {
                tracing::error!("request reached a service without passing the authenticator");
                Reason::InternalError.status("internal error")
            })
    }

    /// The caller of an admin-only RPC: [`of`](Self::of), refused unless
    /// it is an admin.
    pub fn admin_of<T>(request: &Request<T>, what: &str) -> Result<Caller, Status> {
        let caller = Self::of(request)?;
        caller.require_admin(what)?;
        Ok(caller)
    }

    /// Refuses callers that are not admins.
    pub fn require_admin(&self, what: &str) -> Result<(), Status> {
        if self.token.is_admin() {
            Ok(())
        } else {
            Err(Reason::denied(format!("{what} needs an admin token")))
        }
    }
}

#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<RwLock<TokenStore>>,
    bans: Arc<Mutex<BanList>>,
    /// Where each new ban is kept, so that a restart does not lift it.
    store: Arc<dyn Store>,
    rate: Arc<RequestRate>,
    refusals: Arc<Refusals>,
}

impl Authenticator {
    pub fn new(
        tokens: Arc<RwLock<TokenStore>>,
        bans: Arc<Mutex<BanList>>,
        store: Arc<dyn Store>,
        rate: RequestRate,
        refusals: Arc<Refusals>,
    ) -> Self {
        Self {
            tokens,
            bans,
            store,
            rate: Arc::new(rate),
            refusals,
        }
    }

    fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let peer = request.remote_addr();
        let now = Instant::now();
        if let Some(addr) = peer
            && let Err(ban) = lock(&self.bans).check(addr.ip(), now)
        {
            let secs = ban.until.saturating_duration_since(now).as_secs() + 1;
            return Err(Reason::RateLimited.status(format!(
                "too many failed authentications from {}; try again in {secs} s",
                addr.ip()
            )));
        }

        let Some(value) = request.metadata().get(metadata::AUTHORIZATION) else {
            return Err(
                Reason::Unauthorized.status("missing `authorization: Bearer <token>` metadata")
            );
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = token else {
            return Err(self.failure(peer, now, "malformed authorization metadata"));
        };

        let result = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .authenticate(token, SystemTime::now());
        match result {
            Ok(token) => {
                Span::current().record("token_id", token.id.as_str());
                Ok(Caller { token, peer })
            }
            Err(why) => Err(self.failure(peer, now, &why.to_string())),
        }
    }

    /// Audits and counts a bad token; the client is not told which check
    /// failed, so probing learns nothing.
    fn failure(&self, peer: Option<SocketAddr>, now: Instant, why: &str) -> Status {
        let peer_text = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        warn!(peer = %peer_text, reason = why, "authentication failed");
        self.refusals
            .auth_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let banned = peer.and_then(|addr| {
            let ban = lock(&self.bans).record_failure(addr.ip(), now)?;
            Some((addr.ip(), ban))
        });
        if let Some((addr, ban)) = banned {
            let secs = ban.until.saturating_duration_since(now).as_secs();
            warn!(
                peer = %addr,
                ban_secs = secs,
                "too many failed authentications; address refused for a while"
            );
            // Outside the ban list's lock: other addresses need not wait
            // for the disk. A ban that cannot be kept still holds until
            // the next restart, so the failure is logged, not answered.
            let wall = unix_now();
            if let Err(error) = self.store.put_ban(addr, wall.saturating_add(secs), wall) {
                tracing::error!(%error, peer = %addr, "cannot save a ban; a restart would lift it");
            }
        }
        Reason::Unauthorized.status("invalid, expired or revoked token")
    }
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.authenticate(&request)?;
        if !caller.token.is_admin()
            && let Err(refused) = self.rate.check(&caller.token.id)
        {
            self.refusals
                .rate_limited
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(refused);
        }
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The wall clock in Unix seconds: bans are kept in wall time, since the
/// monotonic clock starts over with the process.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
