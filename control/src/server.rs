//! Starting, serving and stopping the control plane.
//!
//! [`ControlPlane::bind`] opens the store (tokens, channels, session ids,
//! bans), creates the bootstrap admin token on first start and binds the
//! listener, so that every start-up error is reported before anything is
//! served.
//! [`ControlPlane::serve`] runs until its shutdown future resolves, then
//! drains as the contract says: stop accepting, health NOT_SERVING,
//! `server_shutdown` to every session, wait up to `server.shutdown_grace`
//! for streams to close, close the rest.

use std::{
    fs, io,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use openspeak_shared::{
    config::Config,
    gate,
    identity::{CertError, SelfSigned, TlsIdentity},
    ops::OpsListener,
    pb, persist,
    ticket::{TicketError, TicketIssuer, TicketKey},
};
use tokio::{net::TcpListener, sync::oneshot};
use tonic::{
    server::NamedService,
    service::interceptor::InterceptedService,
    transport::{Identity, Server, ServerTlsConfig},
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::{info, warn};

use crate::{
    authenticator::Authenticator,
    ban_list::{BanList, MAX_BAN},
    broker::Broker,
    channels::{ChannelError, ChannelTree},
    cluster::{AttachGuard, ClusterApi, Registry},
    cluster_ca,
    data_lock::{DataLock, LockError},
    edge::EdgeLayer,
    hub::Hub,
    metrics::{self, Refusals},
    provision::{self, ProvisionError},
    request_rate::RequestRate,
    service::{AdminApi, AuthApi, ChannelApi, PresenceApi, Shared, VoiceApi},
    session_ids::SessionIds,
    state_files::StateError,
    store::{self, OpenError, Store, StoreError},
    tokens::{Role, TokenStore},
};

/// How often the hub's clock advances (idle marks, token expiry, temporary
/// channels). The contract allows temporary channels ±5 s.
const TICK: Duration = Duration::from_secs(1);

/// Events go out in bursts at most this often (see `Broker::run_flusher`):
/// a session then wakes and writes one HTTP/2 frame per burst, not per
/// event. 2 ms is nothing next to a person's reaction, and measured (see
/// BENCHMARKS.md) it cut the control plane's CPU per delivered event.
const FLUSH_WINDOW: Duration = Duration::from_millis(2);

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("invalid internal-link TLS configuration (cluster.tls_*): {0}")]
    ClusterTls(tonic::transport::Error),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot restore the channels in {path}: {source}")]
    Channels { path: PathBuf, source: ChannelError },
    #[error("auth.bootstrap_token is set but empty")]
    EmptyBootstrapToken,
    #[error("cannot write the bootstrap admin token to {path}: {source}")]
    BootstrapFile { path: PathBuf, source: io::Error },
    #[error("cannot read {what} {path}: {source}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid TLS configuration: {0}")]
    Tls(tonic::transport::Error),
    #[error("server.tls_self_signed: {0}")]
    SelfSigned(#[from] CertError),
    #[error("invalid listen address {0:?}")]
    Address(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("metrics.listen `{0}` is not an IP address and port")]
    MetricsAddress(String),
    #[error("cannot serve metrics on {addr} (metrics.listen): {source}")]
    Metrics { addr: SocketAddr, source: io::Error },
    #[error("cannot generate the voice ticket key: {0}")]
    TicketKey(TicketError),
    #[error(
        "cluster.secret has {len} characters; at least {min} are required (a random \
         string such as `openssl rand -hex 16` gives 32)"
    )]
    ClusterSecretTooShort { len: usize, min: usize },
}

/// Why serving stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A control plane that is bound and ready to serve.
pub struct ControlPlane {
    config: Config,
    /// The public gRPC listener (`server.host`, `server.port`).
    public: Endpoint,
    broker: Arc<Broker>,
    tokens: Arc<RwLock<TokenStore>>,
    /// The bans kept across the last restart, put back.
    bans: BanList,
    store: Arc<dyn Store>,
    /// The internal link's listener (`cluster.listen`); its TLS
    /// (`cluster.tls_*`) is mutual when a CA is set.
    cluster: Endpoint,
    /// Seals voice tickets; sent to every data plane. One key for the
    /// process's life until rotation exists.
    ticket_key: TicketKey,
    /// `/metrics`, `/healthz`, `/readyz`; `None` when `metrics.listen` is
    /// empty.
    ops: Option<OpsListener>,
    /// The data directory's lock, held while this control plane lives.
    lock: DataLock,
}

/// A listener bound at start, and the TLS it is to serve (`None`:
/// plaintext). The public one and the internal link's are bound alike.
struct Endpoint {
    listener: TcpListener,
    /// The address actually bound.
    addr: SocketAddr,
    tls: Option<ServerTlsConfig>,
}

impl Endpoint {
    /// Binds `socket`; an error names it as configured, `addr`.
    async fn bind(
        socket: SocketAddr,
        addr: String,
        tls: Option<ServerTlsConfig>,
    ) -> Result<Self, StartError> {
        let listener = TcpListener::bind(socket)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: socket.to_string(),
            source,
        })?;
        Ok(Self {
            listener,
            addr,
            tls,
        })
    }
}

/// A gRPC server serving `tls` (`None`: plaintext) with the configured
/// HTTP/2 keepalive and stream limits (`server.*`), which the public
/// listener and the internal link's share.
fn grpc_server(config: &Config, tls: Option<ServerTlsConfig>) -> Server {
    let server = Server::builder()
        .http2_keepalive_interval(Some(config.server.keepalive_interval.get()))
        .http2_keepalive_timeout(Some(config.server.keepalive_timeout.get()))
        .max_concurrent_streams(config.server.max_concurrent_streams);
    match tls {
        Some(tls) => server
            .tls_config(tls)
            .expect("the TLS configuration was checked at bind"),
        None => server,
    }
}

impl ControlPlane {
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        check_cluster_secret(&config)?;
        let now = Instant::now();
        let data_dir = &config.storage.data_dir;
        let lock = DataLock::try_acquire(data_dir)?;
        let store::Opened {
            store,
            state,
            fresh,
        } = store::open(&config)?;
        let mut tokens = provision::open_tokens(&config, store.clone())?;
        if tokens.is_empty() {
            bootstrap(&config, &mut tokens)?;
        }
        let mut ids = SessionIds::open(store.clone())?;
        let saved = store.channels()?;
        let nothing_saved = saved.is_empty();
        let tree =
            ChannelTree::restore(&config.channels.default, saved, now).map_err(|source| {
                StartError::Channels {
                    path: store.channels_location().to_owned(),
                    source,
                }
            })?;
        // Every kind of state is stored from the first start on, so that
        // the marker can tell a lost file from one never written.
        ids.ensure_written()?;
        if nothing_saved {
            store.save_channels(&tree.records())?;
        }
        if state.missing()?.is_empty() {
            state.seal()?;
        }
        if fresh {
            info!(data_dir = %data_dir.display(), "a new data directory: state files created");
        }
        let bans = restore_bans(&config, &*store)?;
        let hub = Hub::new(tree, config.presence.idle_timeout.get())
            .with_session_cap(config.auth.max_sessions_per_token);
        let broker = Arc::new(Broker::new(
            hub,
            ids,
            store.clone(),
            config.presence.event_queue,
        ));
        let tls = tls_config(&config)?;
        let cluster_tls = cluster_tls_config(&config)?;

        let addr = format!("{}:{}", config.server.host, config.server.port);
        let socket: SocketAddr =
            format!("{}:{}", bracket_v6(&config.server.host), config.server.port)
                .parse()
                .map_err(|_| StartError::Address(addr.clone()))?;
        let public = Endpoint::bind(socket, addr, tls).await?;
        let cluster_socket: SocketAddr = config
            .cluster
            .listen
            .parse()
            .map_err(|_| StartError::Address(config.cluster.listen.clone()))?;
        let cluster =
            Endpoint::bind(cluster_socket, config.cluster.listen.clone(), cluster_tls).await?;
        // A random key id per start: a ticket sealed by an earlier run then
        // fails as "unknown key", which says what happened, not "forged".
        let ticket_key =
            TicketKey::generate(rand::random::<u32>().max(1)).map_err(StartError::TicketKey)?;
        let ops = match config.metrics.addr() {
            Ok(Some(addr)) => Some(
                OpsListener::bind(addr, "metrics")
                    .await
                    .map_err(|source| StartError::Metrics { addr, source })?,
            ),
            Ok(None) => None,
            Err(_) => return Err(StartError::MetricsAddress(config.metrics.listen.clone())),
        };
        Ok(Self {
            config,
            public,
            broker,
            tokens: Arc::new(RwLock::new(tokens)),
            bans,
            store,
            cluster,
            ticket_key,
            ops,
            lock,
        })
    }

    /// The address actually bound (the port differs from the configured
    /// one when that was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.public.addr
    }

    /// The internal link's address actually bound (`cluster.listen`).
    pub fn cluster_addr(&self) -> SocketAddr {
        self.cluster.addr
    }

    /// The operators' listener's address actually bound (`metrics.listen`);
    /// `None` when that is empty.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(OpsListener::local_addr)
    }

    /// Serves until `shutdown` resolves, then drains and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let ControlPlane {
            config,
            public,
            broker,
            tokens,
            bans,
            store,
            cluster: link,
            ticket_key,
            ops,
            lock: _held_until_served,
        } = self;
        let registry = Arc::new(Registry::default());
        let refusals = Arc::new(Refusals::default());
        let shared = Arc::new(Shared {
            registry: registry.clone(),
            tickets: TicketIssuer::new(ticket_key.clone()),
            broker: broker.clone(),
            tokens: tokens.clone(),
            token_ttl: Some(config.auth.token_ttl.get()).filter(|d| !d.is_zero()),
            members_can_create: config.channels.members_can_create,
            refusals: refusals.clone(),
        });
        let bans = Arc::new(std::sync::Mutex::new(bans));
        let link_store = store.clone();
        let admin = AdminApi {
            shared: shared.clone(),
            bans: bans.clone(),
            store: store.clone(),
            started: Instant::now(),
        };
        let auth = Authenticator::new(
            tokens,
            bans,
            store,
            RequestRate::new(config.auth.requests_per_second, config.auth.request_burst),
            refusals.clone(),
        );
        let max = config.server.max_message_bytes;

        let (health_reporter, health) = tonic_health::server::health_reporter();
        set_health(&health_reporter, ServingStatus::Serving).await;
        let reflection_v1 = reflection()
            .build_v1()
            .expect("the embedded descriptor sets are valid");
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .expect("the embedded descriptor sets are valid");

        let tls_on = public.tls.is_some();
        let router = grpc_server(&config, public.tls)
            .layer(EdgeLayer)
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(InterceptedService::new(
                pb::auth_service_server::AuthServiceServer::new(AuthApi(shared.clone()))
                    .max_decoding_message_size(max),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                pb::admin_service_server::AdminServiceServer::new(admin)
                    .max_decoding_message_size(max),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                pb::channel_service_server::ChannelServiceServer::new(ChannelApi(shared.clone()))
                    .max_decoding_message_size(max),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                pb::fanout::presence_service_server::PresenceServiceServer::new(PresenceApi(
                    shared.clone(),
                ))
                .max_decoding_message_size(max),
                auth.clone(),
            ))
            .add_service(InterceptedService::new(
                pb::voice_service_server::VoiceServiceServer::new(VoiceApi(shared.clone()))
                    .max_decoding_message_size(max),
                auth,
            ));

        let flusher = tokio::spawn(broker.clone().run_flusher(FLUSH_WINDOW));
        let ticker = tokio::spawn({
            let broker = broker.clone();
            async move {
                let mut interval = tokio::time::interval(TICK);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    broker.tick(Instant::now(), SystemTime::now());
                }
            }
        });

        let secret = config.cluster.secret.clone().filter(|s| !s.is_empty());
        if secret.is_none() {
            warn!(
                "cluster.secret is not set: every data plane will be refused and voice is \
                 unavailable; set cluster.secret on both planes"
            );
        }
        let (cluster_incoming, cluster_gate) =
            gate::open(link.listener, config.server.gate_limits(), "cluster");
        let link_transport = match (&link.tls, config.cluster.tls_ca.is_some()) {
            (None, _) => "plaintext",
            (Some(_), false) => "TLS",
            (Some(_), true) => "mutual TLS",
        };
        let cluster = grpc_server(&config, link.tls)
            .add_service(
                pb::cluster::cluster_service_server::ClusterServiceServer::new(ClusterApi {
                    broker: broker.clone(),
                    registry: registry.clone(),
                    key: ticket_key,
                    secret,
                    guard: AttachGuard::default(),
                    instance: format!("{:016x}", rand::random::<u64>()),
                    store: link_store,
                })
                .max_decoding_message_size(max),
            )
            .serve_with_incoming(cluster_incoming);
        // Its streams last as long as the data planes run, so a graceful
        // stop would wait for ever: it is aborted once the public side has
        // drained.
        let cluster = tokio::spawn(cluster);
        // Not a "listening" line with `addr=`: tools look for the public one.
        info!(cluster_addr = %link.addr, transport = link_transport, "accepting data planes on the internal link");

        let (stop_accepting, stop_rx) = oneshot::channel::<()>();
        // Connections that never speak are closed, and there is a cap on
        // how many are open (`openspeak_shared::gate`).
        let (incoming, grpc_gate) =
            gate::open(public.listener, config.server.gate_limits(), "grpc");
        let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        }));
        let scheme = if tls_on { "TLS" } else { "plaintext" };
        info!(addr = %public.addr, transport = scheme, "control plane listening for gRPC");

        let draining = Arc::new(AtomicBool::new(false));
        let (stop_ops, ops_stopped) = oneshot::channel::<()>();
        let ops = ops.map(|ops| {
            info!(addr = %ops.local_addr(), "serving /metrics, /healthz and /readyz");
            let source = metrics::Source {
                broker: broker.clone(),
                registry: registry.clone(),
                refusals,
                gates: [("grpc", grpc_gate), ("cluster", cluster_gate)],
                draining: draining.clone(),
            };
            tokio::spawn(ops.serve(metrics::routes(source), async {
                let _ = ops_stopped.await;
            }))
        });

        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                cluster.abort();
                let _ = stop_ops.send(());
                ticker.abort();
                flusher.abort();
                return match result {
                    Ok(result) => result.map_err(ServeError::from),
                    Err(join) => panic!("gRPC server task failed: {join}"),
                };
            }
        }

        let sessions = broker.read(|hub| hub.session_count());
        info!(
            sessions,
            "shutting down: no new connections; telling sessions"
        );
        draining.store(true, Ordering::Relaxed);
        set_health(&health_reporter, ServingStatus::NotServing).await;
        let _ = stop_accepting.send(());
        broker.update(|hub| hub.shutdown("the server is shutting down"));

        let grace = config.server.shutdown_grace.get();
        if tokio::time::timeout(grace, &mut server).await.is_err() {
            let left = broker.read(|hub| hub.session_count());
            warn!(
                sessions = left,
                grace_secs = grace.as_secs(),
                "grace period over; closing the remaining sessions"
            );
            broker.close();
            // Closed streams end their calls; give connections a moment to
            // say goodbye, then drop whatever is left.
            if tokio::time::timeout(Duration::from_secs(2), &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
        // Aborting the server task leaves the connections it spawned
        // serving; ending the streams is what tells the data planes.
        cluster.abort();
        registry.detach_all();
        ticker.abort();
        flusher.abort();
        let _ = stop_ops.send(());
        if let Some(ops) = ops {
            let _ = ops.await;
        }
        info!("control plane stopped");
        Ok(())
    }
}

/// Fewest characters in `cluster.secret`. The secret is the internal
/// link's only credential, and a short one falls to guessing even through
/// the link's throttle (see `cluster::AttachGuard`).
pub const CLUSTER_SECRET_MIN: usize = 16;

/// Refuses a `cluster.secret` that is set but short. Checked here, not in
/// the shared configuration, so that the rule is the control plane's (the
/// planes that present the secret get it from the same file anyway). An
/// unset secret is allowed: the control plane then refuses every data
/// plane, and says so at start.
fn check_cluster_secret(config: &Config) -> Result<(), StartError> {
    match &config.cluster.secret {
        Some(secret) if secret.chars().count() < CLUSTER_SECRET_MIN => {
            Err(StartError::ClusterSecretTooShort {
                len: secret.chars().count(),
                min: CLUSTER_SECRET_MIN,
            })
        }
        _ => Ok(()),
    }
}

/// The ban list, with the bans the store kept that have not ended yet.
fn restore_bans(config: &Config, store: &dyn Store) -> Result<BanList, StoreError> {
    let mut bans = BanList::new(
        config.auth.max_failures,
        config.auth.failure_window.get(),
        config.auth.ban_duration.get(),
    );
    let (now, wall) = (Instant::now(), crate::authenticator::unix_now());
    for (addr, until) in store.bans()? {
        // The store may hold any end (an older build, a hand edit).
        let left = Duration::from_secs(until.saturating_sub(wall)).min(MAX_BAN);
        bans.restore(addr, now + left, now);
    }
    Ok(bans)
}

/// Creates the first admin token on a store that never had one.
fn bootstrap(config: &Config, tokens: &mut TokenStore) -> Result<(), StartError> {
    let now = SystemTime::now();
    if let Some(token) = &config.auth.bootstrap_token {
        if token.trim().is_empty() {
            return Err(StartError::EmptyBootstrapToken);
        }
        tokens.insert(token.trim(), "bootstrap admin", Role::Admin, None, now)?;
        info!("created the bootstrap admin token from auth.bootstrap_token");
        return Ok(());
    }
    let (token, info) = tokens.create("bootstrap admin", Role::Admin, None, now)?;
    let path = config.bootstrap_token_file();
    persist::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600).map_err(|source| {
        StartError::BootstrapFile {
            path: path.clone(),
            source,
        }
    })?;
    // The token goes to the terminal once, never into the log: logs are
    // collected, shipped and kept where a credential has no business.
    info!(
        token_id = %info.id,
        file = %path.display(),
        "created the first admin token; it is printed once on stderr (not logged) and kept in the file"
    );
    eprintln!(
        "admin token: {token}  (printed once; also in {}, mode 0600)",
        path.display()
    );
    Ok(())
}

/// A TLS file's contents, or an error naming the key it came from.
fn read_tls_file(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, StartError> {
    fs::read(path).map_err(|source| StartError::TlsFile {
        what,
        path: path.clone(),
        source,
    })
}

/// The self-signed certificate's file name in the data directory.
pub const SELF_SIGNED_CERT_FILE: &str = "server_cert.pem";
/// Its private key's.
pub const SELF_SIGNED_KEY_FILE: &str = "server_key.pem";

fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>, StartError> {
    let identity = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Identity::from_pem(
            read_tls_file("server.tls_cert", cert)?,
            read_tls_file("server.tls_key", key)?,
        ),
        _ if config.server.tls_self_signed => {
            let dir = &config.storage.data_dir;
            let made = TlsIdentity::load_or_generate(dir, &self_signed(config))?;
            let cert = dir.join(SELF_SIGNED_CERT_FILE);
            // At every start, so that a user can compare the file they were
            // handed with what the server presents before trusting it.
            info!(
                cert = %cert.display(),
                sha256 = %made.fingerprint(),
                "public gRPC serves a self-signed certificate; clients trust this file"
            );
            Identity::from_pem(
                read_tls_file("the self-signed certificate", &cert)?,
                read_tls_file("the self-signed key", &dir.join(SELF_SIGNED_KEY_FILE))?,
            )
        }
        _ => {
            warn!(
                "serving gRPC without TLS: tokens and everything else cross the network in \
                 clear text; set server.tls_cert and server.tls_key (or server.tls_self_signed) \
                 unless a TLS proxy is in front"
            );
            return Ok(None);
        }
    };
    let tls = ServerTlsConfig::new().identity(identity);
    // Fail at start-up, not at the first handshake.
    Server::builder()
        .tls_config(tls.clone())
        .map_err(StartError::Tls)?;
    Ok(Some(tls))
}

/// The internal link's TLS: the control plane's certificate, and with
/// `cluster.tls_ca` the authority every data plane's certificate must be
/// signed by. `None` when no certificate is set (plaintext).
fn cluster_tls_config(config: &Config) -> Result<Option<ServerTlsConfig>, StartError> {
    let cluster = &config.cluster;
    let (Some(cert), Some(key)) = (&cluster.tls_cert, &cluster.tls_key) else {
        if cluster.tls_ca.is_some() {
            warn!(
                "cluster.tls_ca is set without cluster.tls_cert and tls_key: the internal link stays plaintext"
            );
        }
        return Ok(None);
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read_tls_file("cluster.tls_cert", cert)?,
        read_tls_file("cluster.tls_key", key)?,
    ));
    if let Some(ca) = &cluster.tls_ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read_tls_file(
            "cluster.tls_ca",
            ca,
        )?));
    }
    Server::builder()
        .tls_config(tls.clone())
        .map_err(StartError::ClusterTls)?;
    Ok(Some(tls))
}

/// What a generated certificate of the public listener is valid for: the
/// loopback names, the machine's host name, and `server.host` when it
/// names one address, so that a client that checks names can dial any.
fn self_signed(config: &Config) -> SelfSigned<'static> {
    let bound = Some(config.server.host.clone()).filter(|bound| {
        bound
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| !ip.is_unspecified() && !ip.is_loopback())
    });
    SelfSigned {
        cert_file: SELF_SIGNED_CERT_FILE,
        key_file: SELF_SIGNED_KEY_FILE,
        common_name: "control plane",
        names: cluster_ca::loopback_and(host_name().into_iter().chain(bound)),
    }
}

/// The machine's host name, when the kernel gives a usable one.
fn host_name() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name != "localhost").then(|| name.to_owned())
}

/// Reflection over our services, health, and `google.rpc` (so that tools
/// like grpcurl can decode the `ErrorInfo` in every error's details).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    let names = [
        "",
        <pb::admin_service_server::AdminServiceServer<AdminApi> as NamedService>::NAME,
        <pb::auth_service_server::AuthServiceServer<AuthApi> as NamedService>::NAME,
        <pb::channel_service_server::ChannelServiceServer<ChannelApi> as NamedService>::NAME,
        <pb::fanout::presence_service_server::PresenceServiceServer<PresenceApi> as NamedService>::NAME,
        <pb::voice_service_server::VoiceServiceServer<VoiceApi> as NamedService>::NAME,
    ];
    for name in names {
        reporter.set_service_status(name, status).await;
    }
}

fn bracket_v6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}
