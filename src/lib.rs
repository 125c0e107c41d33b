//! sgcache: a caching proxy for the Shotgun (ShotGrid / Flow Production Tracking) JSON API.
//!
//! [`Daemon::start`] wires everything together; the binary and the integration tests both
//! call it with a listener they bound (port 0 in tests).
pub mod actors;
pub mod api3;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod metrics;
pub mod query;
pub mod schema;
pub mod state;
pub mod telemetry;
pub mod time;
pub mod upstream;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Arbiter};
use actix_web::{App, HttpServer, dev::ServerHandle, web};
use tracing::{info, warn};

use crate::actors::calibrator::{Calibrator, CalibratorStats};
use crate::actors::event_poller::EventPollerStats;
use crate::actors::leader::{Election, ElectionHandle, ElectionParts};
use crate::actors::leader_duties::DaemonDuties;
use crate::actors::scanner::ScannerStats;
use crate::actors::schema_loader::{SchemaLoader, SchemaLoaderStats};
use crate::actors::site_info::{SiteInfo, SiteInfoState};
use crate::actors::verifier::{Verifier, VerifierStats};
use crate::actors::write_back::{WriteBack, WriteBackStats};
use crate::actors::{ActorFailure, Stop, Supervisor};
use crate::cluster::ClusterState;
use crate::cluster::file_lock::{InstanceLock, InstanceLockError};
use crate::cluster::follow::Follower;
use crate::config::Config;
use crate::db::writer::DbWriterHandle;
use crate::db::{Pools, StoreError};
use crate::http::api3::{Api3State, RequestStats};
use crate::http::auth::AuthGate;
use crate::http::files::FileProxy;
use crate::http::status::StatusSources;
use crate::state::CacheState;
use crate::upstream::passthrough::PassThrough;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
    #[error(transparent)]
    InstanceLock(#[from] InstanceLockError),
}

/// A running daemon: its address, its parts, and a way to stop it.
pub struct Daemon {
    pub addr: SocketAddr,
    pub pools: Pools,
    pub cache: Arc<CacheState>,
    pub writer: DbWriterHandle,
    /// This instance's role among the instances sharing the database.
    pub cluster: Arc<ClusterState>,
    pub schema_loader_stats: Arc<SchemaLoaderStats>,
    pub scanner_stats: Arc<ScannerStats>,
    pub event_poller_stats: Arc<EventPollerStats>,
    /// `None` when `verify.mode` is off or no site is configured.
    pub verifier: Option<Addr<Verifier>>,
    pub verifier_stats: Arc<VerifierStats>,
    /// Where the actors report failures; a fatal one stops [`Daemon::run_until_stopped`].
    pub supervisor: Supervisor,
    /// `None` when `calibration.enabled` is false or no site is configured.
    pub calibrator: Option<Addr<Calibrator>>,
    pub calibrator_stats: Arc<CalibratorStats>,
    server: Option<actix_web::rt::task::JoinHandle<std::io::Result<()>>>,
    handle: ServerHandle,
    /// Runs the leader-only actors while this instance leads (see [`actors::leader`]).
    election: Option<ElectionHandle>,
    schema_loader: actors::leader_duties::Current<SchemaLoader>,
    /// SQLite: held while serving, so a second instance on the same file refuses to start.
    _instance_lock: Option<InstanceLock>,
    writer_arbiter: Arbiter,
    request_stats: Arc<RequestStats>,
    write_back_stats: Arc<WriteBackStats>,
    shutdown_timeout: Duration,
}

impl Daemon {
    /// Connects and migrates the database, starts the actors and serves HTTP on `listener`.
    /// Must run inside an actix System.
    pub async fn start(config: Config, listener: TcpListener) -> Result<Daemon, StartError> {
        let addr = listener.local_addr()?;
        let config = Arc::new(config);
        // The database comes first: if it is unreachable nothing has started yet.
        let instance_lock = db::sqlite_file(&config.database.url)
            .map(InstanceLock::acquire)
            .transpose()?;
        let pools = db::open(&config.database).await?;

        let cache = CacheState::new();
        cache.set_complete(db::writer::load_complete(&pools.reader).await?);
        cache.set_rules(db::rules::load_rules(&pools.reader).await?);
        config.calibration.apply_pinned(&cache);
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
        let supervisor = Supervisor::default();
        watch_writer(&writer, &config.database.url, &supervisor);
        // The schema loader (DDL), the scanner and the event poller run on the leader only;
        // followers take the schema and the complete types from the database.
        let loader_stats = Arc::new(SchemaLoaderStats::default());
        let duties = DaemonDuties::new(
            config.clone(),
            pools.clone(),
            writer.clone(),
            cache.clone(),
            loader_stats.clone(),
        );
        let (scanner_stats, event_poller_stats, schema_loader) = (
            duties.scanner.clone(),
            duties.event_poller.clone(),
            duties.current_loader.clone(),
        );
        let follower = Follower::new(
            config.clone(),
            pools.clone(),
            cache.clone(),
            loader_stats.clone(),
        );
        let election = Election::start(ElectionParts {
            config: config.clone(),
            cluster: cluster.clone(),
            pools: pools.clone(),
            writer: writer.clone(),
            cache: cache.clone(),
            follower,
            duties,
        });

        // Learns the site's undocumented rules (see actors::calibrator).
        let calibrator_stats = Arc::new(CalibratorStats::default());
        let calibrator = (config.calibration.enabled && config.shotgun.url.is_some()).then(|| {
            Calibrator::new(
                config.clone(),
                pools.clone(),
                writer.clone(),
                cache.clone(),
                calibrator_stats.clone(),
            )
            .start()
        });
        // The site's `info`, kept for answering `info` while the site is down.
        let site_info = Arc::new(SiteInfoState::default());
        SiteInfo::new(&config, site_info.clone(), pools.clone(), writer.clone()).start();
        // Caches what clients' writes and passed-through reads return.
        let write_back_stats = Arc::new(WriteBackStats::default());
        let write_back = WriteBack::new(
            &config,
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
                    &config,
                    writer.clone(),
                    cache.clone(),
                    verifier_stats.clone(),
                );
                (Some(actor.start()), Some(handle))
            } else {
                (None, None)
            };
        let request_stats = Arc::new(RequestStats::default());
        let api3_state = web::Data::new(Api3State {
            cache: cache.clone(),
            site_info: site_info.clone(),
            pools: pools.clone(),
            max_body_bytes: config.server.max_body_bytes,
            write_back_wait: config.server.write_back_wait,
            write_back,
            write_back_stats: write_back_stats.clone(),
            stats: request_stats.clone(),
            auth: Arc::new(AuthGate::new(&config)),
            verifier: verifier_handle,
            schema_replies: Default::default(),
            projects: config.scanner.projects.clone(),
        });

        loader_stats.actor.supervise("schema_loader", &supervisor);
        scanner_stats.actor.supervise("scanner", &supervisor);
        event_poller_stats
            .actor
            .supervise("event_poller", &supervisor);
        write_back_stats.actor.supervise("write_back", &supervisor);
        verifier_stats.actor.supervise("verifier", &supervisor);
        site_info.stats.supervise("site_info", &supervisor);
        let sources = Arc::new(StatusSources {
            supervisor: supervisor.clone(),
            started: Instant::now(),
            started_at: time::now(),
            backend: pools.backend,
            database_url: config.database.url.clone(),
            site_url: config
                .shotgun
                .url
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            cache: cache.clone(),
            writer: writer.stats().clone(),
            schema_loader: loader_stats.clone(),
            scanner: scanner_stats.clone(),
            event_poller: event_poller_stats.clone(),
            requests: request_stats.clone(),
            write_back: write_back_stats.clone(),
            verifier: verifier_stats.clone(),
            calibrator: calibrator_stats.clone(),
            site_info,
            pools: pools.clone(),
            sizes: Arc::new(metrics::CacheSizes::default()),
            cluster: cluster.clone(),
        });
        // `/metrics`: a registry of this daemon's own (several daemons may share a process).
        let registry = web::Data::new(http::metrics::MetricsRegistry::new(sources.clone()));
        let sources = web::Data::from(sources);
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
        let server = actix_web::rt::spawn(server);
        info!(%addr, backend = pools.backend.name(), "sgcache is listening");
        Ok(Daemon {
            addr,
            pools,
            cache,
            writer,
            cluster,
            schema_loader_stats: loader_stats,
            scanner_stats,
            event_poller_stats,
            verifier,
            verifier_stats,
            supervisor,
            calibrator,
            calibrator_stats,
            server: Some(server),
            handle,
            election: Some(election),
            schema_loader,
            _instance_lock: instance_lock,
            writer_arbiter,
            request_stats,
            write_back_stats,
            shutdown_timeout: config.server.shutdown_timeout,
        })
    }

    /// The schema loader, while this instance leads (it runs on the leader only).
    pub fn schema_loader(&self) -> Option<Addr<SchemaLoader>> {
        self.schema_loader.get()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until SIGTERM or SIGINT, then stops gracefully (see [`Daemon::stop`]). A second
    /// signal stops at once. Fails when the stop did not finish within `server.shutdown_timeout`.
    pub async fn run_until_stopped(mut self) -> std::io::Result<()> {
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let supervisor = self.supervisor.clone();
        let result = tokio::select! {
            result = &mut server => Some(result),
            failure = supervisor.fatal() => {
                warn!(actor = failure.actor, error = %failure.error,
                      "stopping: a part of the daemon failed fatally");
                self.handle.stop(true).await;
                let _ = server.await;
                self.shutdown_actors(Instant::now() + self.shutdown_timeout).await;
                return Err(fatal_error(&failure));
            }
            signal = shutdown_signal() => {
                info!(signal, timeout = %humantime::format_duration(self.shutdown_timeout),
                      "stopping: no new connections, finishing requests in flight");
                None
            }
        };
        let result = match result {
            // The server ended on its own (an I/O error): still drain what was accepted.
            Some(result) => result.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => {
                let deadline = Instant::now() + self.shutdown_timeout;
                let handle = self.handle.clone();
                let graceful = async {
                    handle.stop(true).await;
                    let _ = server.await;
                };
                tokio::select! {
                    () = graceful => {}
                    signal = shutdown_signal() => {
                        warn!(signal, "second signal: stopping now");
                        self.handle.stop(false).await;
                        self.shutdown_actors(Instant::now()).await;
                        return Ok(());
                    }
                }
                if !self.shutdown_actors(deadline).await {
                    return Err(std::io::Error::other(format!(
                        "the stop did not finish within server.shutdown_timeout ({})",
                        humantime::format_duration(self.shutdown_timeout)
                    )));
                }
                info!("stopped");
                return Ok(());
            }
        };
        self.shutdown_actors(Instant::now() + self.shutdown_timeout)
            .await;
        result
    }

    /// Stops gracefully (tests and embedders): stops accepting connections, lets in-flight
    /// requests finish, waits for the write-backs they handed over, stops the event poller and
    /// the scanner (checkpoints are committed with the changes they cover), lets the DbWriter
    /// apply what is in its mailbox, then stops it; all within `server.shutdown_timeout`.
    /// Returns false when something was still pending at the deadline.
    pub async fn stop(mut self) -> bool {
        let deadline = Instant::now() + self.shutdown_timeout;
        self.handle.stop(true).await;
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.shutdown_actors(deadline).await
    }

    async fn shutdown_actors(&mut self, deadline: Instant) -> bool {
        self.supervisor.set_stopping();
        let mut clean = true;
        // 1. Write-backs handed to the WriteBack actor by requests (a write answered after
        //    `server.write_back_wait` may still be re-reading from the site): wait for them, so
        //    no accepted write is missing from the cache after a restart.
        let sent = self
            .request_stats
            .metrics
            .write_backs_sent
            .load(Ordering::Relaxed);
        let finished = || {
            self.write_back_stats.writes.load(Ordering::Relaxed)
                + self.write_back_stats.reads.load(Ordering::Relaxed)
        };
        while finished() < sent && Instant::now() < deadline {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        if finished() < sent {
            warn!(
                pending = sent - finished(),
                "write-backs still running at the shutdown deadline"
            );
            clean = false;
        }
        // 2. Stops the leader-only actors (the schema loader; a poll or scan page in progress:
        //    its Apply, changes + checkpoint, committed or did not) and hands the lead over.
        if let Some(election) = self.election.take() {
            election.stop().await;
        }
        // Drops a verification in progress (verification is best effort).
        if let Some(calibrator) = &self.calibrator {
            let _ = calibrator.send(Stop).await;
        }
        if let Some(verifier) = &self.verifier {
            let _ = verifier.send(Stop).await;
        }
        // 3. The DbWriter handles its mailbox in order, one message at a time: once an empty
        //    Apply sent now is answered, everything queued before it has been applied.
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let barrier = self.writer.apply(db::writer::Apply {
            ops: Vec::new(),
            checkpoint: None,
        });
        match actix_web::rt::time::timeout(remaining, barrier).await {
            Ok(_) => {}
            Err(_) => {
                warn!(
                    queued = self.writer.stats().queued.load(Ordering::Relaxed),
                    "the DbWriter had not drained its mailbox at the shutdown deadline"
                );
                clean = false;
            }
        }
        // `stop` on the arbiter lets the DbWriter finish the message it is handling.
        self.writer_arbiter.stop();
        self.pools.reader.clone().close().await.ok();
        clean
    }
}

/// The error [`Daemon::run_until_stopped`] ends with after a fatal failure.
fn fatal_error(failure: &ActorFailure) -> std::io::Error {
    std::io::Error::other(format!(
        "stopped after a fatal failure of the {}: {}",
        failure.actor, failure.error
    ))
}

/// How often the DbWriter's liveness and the SQLite file are checked.
const WRITER_WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Reports a fatal `db_writer` failure when the DbWriter stops (its Arbiter or actor gone)
/// or the SQLite database file disappears, unless the daemon is stopping on purpose.
/// Retrying writes would not help in either case: every write after it would be lost.
fn watch_writer(writer: &DbWriterHandle, database_url: &str, supervisor: &Supervisor) {
    let writer = writer.clone();
    let file = db::sqlite_file(database_url).map(|path| {
        let path = path.to_path_buf();
        let identity = file_identity(&path);
        (path, identity)
    });
    let supervisor = supervisor.clone();
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(WRITER_WATCH_INTERVAL).await;
            if supervisor.is_stopping() {
                return;
            }
            let problem = if !writer.is_alive() {
                Some("the DbWriter stopped".to_owned())
            } else {
                file.as_ref()
                    .filter(|(path, identity)| file_identity(path) != *identity)
                    .map(|(path, _)| format!("the database file {} is gone", path.display()))
            };
            if let Some(problem) = problem {
                supervisor.report(ActorFailure::new("db_writer", problem, true));
                return;
            }
        }
    });
}

/// Which file `path` is: a new connection re-creates a deleted SQLite file, so the daemon
/// compares identities rather than checking that a file exists (`None`: no file).
fn file_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Some((0, 0))
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C), naming it.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
