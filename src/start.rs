//! The steps of [`Daemon::start`](crate::Daemon::start), in the order they run: the database
//! and the DbWriter ([`open_storage`]), the leader election and its duties ([`start_election`]),
//! the actors every instance runs ([`start_local_actors`]), their supervision ([`supervise`]),
//! the request and `/status` state ([`api3_state`], [`status_sources`]) and the HTTP server
//! ([`serve`]).
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, Addr, Arbiter};
use actix_web::{App, HttpServer, dev::ServerHandle, web};

use crate::actors::Supervisor;
use crate::actors::calibrator::CalibratorStats;
use crate::actors::event_poller::EventPollerStats;
use crate::actors::leader::{Election, ElectionHandle, ElectionParts};
use crate::actors::leader_duties::{Current, DaemonDuties};
use crate::actors::scanner::ScannerStats;
use crate::actors::schema_loader::{SchemaLoader, SchemaLoaderStats};
use crate::actors::site_info::{SiteInfo, SiteInfoState};
use crate::actors::verifier::{Verifier, VerifierHandle, VerifierStats};
use crate::actors::write_back::{WriteBack, WriteBackStats};
use crate::cluster::ClusterState;
use crate::cluster::file_lock::InstanceLock;
use crate::cluster::follow::Follower;
use crate::config::{self, Config};
use crate::db::writer::DbWriterHandle;
use crate::db::{self, Pools};
use crate::http::api3::{Api3State, RequestStats};
use crate::http::auth::AuthGate;
use crate::http::files::FileProxy;
use crate::http::status::StatusSources;
use crate::state::CacheState;
use crate::upstream::passthrough::PassThrough;
use crate::{StartError, cluster, http, metrics, schema, time};

/// The database side of a daemon: the pools, the cache state loaded from them, this
/// instance's role and the DbWriter.
pub(crate) struct Storage {
    /// SQLite: held while serving, so a second instance on the same file refuses to start.
    pub instance_lock: Option<InstanceLock>,
    pub pools: Pools,
    pub cache: Arc<CacheState>,
    pub cluster: Arc<ClusterState>,
    pub writer: DbWriterHandle,
    pub writer_arbiter: Arbiter,
}

/// Connects and migrates the database, loads the complete types and the calibrated rules,
/// and starts the DbWriter. The database comes first: if it is unreachable nothing has
/// started yet.
pub(crate) async fn open_storage(config: &Config, addr: SocketAddr) -> Result<Storage, StartError> {
    let instance_lock = db::sqlite_file(&config.database.url)
        .map(InstanceLock::acquire)
        .transpose()?;
    let pools = db::open(&config.database).await?;

    let cache = CacheState::new();
    cache.set_complete(db::writer::load_complete(&pools.reader).await?);
    cache.set_rules(
        config
            .calibration
            .pinned(db::rules::load_rules(&pools.reader).await?),
    );
    let cluster = Arc::new(match pools.backend {
        schema::Backend::Sqlite => ClusterState::single(cluster::instance_id(addr)),
        schema::Backend::Postgres => ClusterState::elected(cluster::instance_id(addr)),
    });
    let (writer, writer_arbiter) = DbWriterHandle::start_in_cluster(
        pools.writer.clone(),
        pools.backend,
        cache.clone(),
        cluster.clone(),
    );
    Ok(Storage {
        instance_lock,
        pools,
        cache,
        cluster,
        writer,
        writer_arbiter,
    })
}

/// The leader election and the figures of the leader-only actors it starts and stops.
pub(crate) struct LeaderParts {
    pub election: ElectionHandle,
    pub schema_loader: Current<SchemaLoader>,
    pub loader_stats: Arc<SchemaLoaderStats>,
    pub scanner_stats: Arc<ScannerStats>,
    pub event_poller_stats: Arc<EventPollerStats>,
    pub calibrator_stats: Arc<CalibratorStats>,
}

/// Starts the election. The schema loader (DDL), the scanner, the event poller and the
/// calibrator run on the leader only; followers take the schema, the complete types and the
/// calibrated rules from the database.
pub(crate) fn start_election(config: &Arc<Config>, storage: &Storage) -> LeaderParts {
    let loader_stats = Arc::new(SchemaLoaderStats::default());
    let duties = DaemonDuties::new(
        config.clone(),
        storage.pools.clone(),
        storage.writer.clone(),
        storage.cache.clone(),
        loader_stats.clone(),
    );
    let (scanner_stats, event_poller_stats, calibrator_stats, schema_loader) = (
        duties.scanner.clone(),
        duties.event_poller.clone(),
        duties.calibrator.clone(),
        duties.current_loader.clone(),
    );
    let follower = Follower::new(
        config.clone(),
        storage.pools.clone(),
        storage.cache.clone(),
        loader_stats.clone(),
    );
    let election = Election::start(ElectionParts {
        config: config.clone(),
        cluster: storage.cluster.clone(),
        pools: storage.pools.clone(),
        writer: storage.writer.clone(),
        cache: storage.cache.clone(),
        follower,
        duties,
    });
    LeaderParts {
        election,
        schema_loader,
        loader_stats,
        scanner_stats,
        event_poller_stats,
        calibrator_stats,
    }
}

/// The actors every instance runs, leader or follower, and their figures.
pub(crate) struct LocalActors {
    pub site_info: Arc<SiteInfoState>,
    pub write_back: Addr<WriteBack>,
    pub write_back_stats: Arc<WriteBackStats>,
    /// `None` when `verify.mode` is off or no site is configured.
    pub verifier: Option<Addr<Verifier>>,
    pub verifier_handle: Option<VerifierHandle>,
    pub verifier_stats: Arc<VerifierStats>,
}

/// Starts the site-info keeper, the write-back and the verifier.
pub(crate) fn start_local_actors(config: &Arc<Config>, storage: &Storage) -> LocalActors {
    let Storage {
        pools,
        cache,
        writer,
        ..
    } = storage;
    // The site's `info`, kept for answering `info` while the site is down.
    let site_info = Arc::new(SiteInfoState::default());
    SiteInfo::new(config, site_info.clone(), pools.clone(), writer.clone()).start();
    // Caches what clients' writes and passed-through reads return.
    let write_back_stats = Arc::new(WriteBackStats::default());
    let write_back = WriteBack::new(
        config,
        writer.clone(),
        cache.clone(),
        pools.reader.clone(),
        write_back_stats.clone(),
    )
    .start();
    // Re-runs locally answered reads against the site and compares (see actors::verifier).
    let verifier_stats = Arc::new(VerifierStats::default());
    let (verifier, verifier_handle) =
        if config.verify.mode != config::VerifyMode::Off && config.shotgun.url.is_some() {
            let (actor, handle) = Verifier::new(
                config,
                writer.clone(),
                cache.clone(),
                verifier_stats.clone(),
            );
            (Some(actor.start()), Some(handle))
        } else {
            (None, None)
        };
    LocalActors {
        site_info,
        write_back,
        write_back_stats,
        verifier,
        verifier_handle,
        verifier_stats,
    }
}

/// The state the `api3` handlers share.
pub(crate) fn api3_state(
    config: &Config,
    storage: &Storage,
    local: &mut LocalActors,
    request_stats: &Arc<RequestStats>,
) -> Api3State {
    Api3State {
        cache: storage.cache.clone(),
        site_info: local.site_info.clone(),
        pools: storage.pools.clone(),
        max_body_bytes: config.server.max_body_bytes,
        write_back_wait: config.server.write_back_wait,
        write_back: local.write_back.clone(),
        write_back_stats: local.write_back_stats.clone(),
        stats: request_stats.clone(),
        auth: Arc::new(AuthGate::new(config)),
        verifier: local.verifier_handle.take(),
        schema_replies: Default::default(),
        projects: config.scanner.projects.clone(),
    }
}

/// Has the actors report their failures to `supervisor`.
pub(crate) fn supervise(supervisor: &Supervisor, leader: &LeaderParts, local: &LocalActors) {
    leader
        .loader_stats
        .actor
        .supervise("schema_loader", supervisor);
    leader.scanner_stats.actor.supervise("scanner", supervisor);
    leader
        .event_poller_stats
        .actor
        .supervise("event_poller", supervisor);
    local
        .write_back_stats
        .actor
        .supervise("write_back", supervisor);
    local.verifier_stats.actor.supervise("verifier", supervisor);
    local.site_info.stats.supervise("site_info", supervisor);
}

/// What `/status`, its page and `/metrics` read.
pub(crate) fn status_sources(
    config: &Config,
    storage: &Storage,
    supervisor: &Supervisor,
    leader: &LeaderParts,
    local: &LocalActors,
    request_stats: &Arc<RequestStats>,
) -> StatusSources {
    StatusSources {
        supervisor: supervisor.clone(),
        started: Instant::now(),
        started_at: time::now(),
        backend: storage.pools.backend,
        database_url: config.database.url.clone(),
        site_url: config
            .shotgun
            .url
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        cache: storage.cache.clone(),
        writer: storage.writer.stats().clone(),
        schema_loader: leader.loader_stats.clone(),
        scanner: leader.scanner_stats.clone(),
        event_poller: leader.event_poller_stats.clone(),
        requests: request_stats.clone(),
        write_back: local.write_back_stats.clone(),
        verifier: local.verifier_stats.clone(),
        calibrator: leader.calibrator_stats.clone(),
        site_info: local.site_info.clone(),
        pools: storage.pools.clone(),
        sizes: Arc::new(metrics::CacheSizes::default()),
        cluster: storage.cluster.clone(),
    }
}

/// The running HTTP server.
pub(crate) struct Server {
    pub task: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    pub handle: ServerHandle,
}

/// Serves HTTP on `listener`.
pub(crate) fn serve(
    config: &Config,
    listener: TcpListener,
    sources: StatusSources,
    api3_state: Api3State,
) -> Result<Server, StartError> {
    let sources = Arc::new(sources);
    // `/metrics`: a registry of this daemon's own (several daemons may share a process).
    let registry = web::Data::new(http::metrics::MetricsRegistry::new(sources.clone()));
    let sources = web::Data::from(sources);
    let api3_state = web::Data::new(api3_state);
    let max_body = config.server.max_body_bytes;
    let shotgun = config.shotgun.clone();
    let mut server = HttpServer::new(move || {
        // awc clients are `!Send`: one pass-through pair per worker.
        App::new()
            .app_data(sources.clone())
            .app_data(registry.clone())
            .app_data(api3_state.clone())
            .app_data(web::Data::new(PassThrough::new(&shotgun)))
            .app_data(web::Data::new(FileProxy::new(&shotgun)))
            .app_data(web::PayloadConfig::new(max_body))
            .configure(http::configure)
    })
    // Signals are handled in `run_until_stopped` (actix-web would stop abruptly on SIGINT);
    // in-flight requests get `server.shutdown_timeout` to finish.
    .disable_signals()
    .shutdown_timeout(config.server.shutdown_timeout.as_secs().max(1))
    .listen(listener)?;
    if config.server.workers > 0 {
        server = server.workers(config.server.workers);
    }
    let server = server.run();
    let handle = server.handle();
    let task = actix_web::rt::spawn(server);
    Ok(Server { task, handle })
}
