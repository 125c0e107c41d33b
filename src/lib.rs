//! sgcache: a caching proxy for the Shotgun (ShotGrid / Flow Production Tracking) JSON API.
//!
//! [`Daemon::start`] wires everything together; the binary and the integration tests both
//! call it with a listener they bound (port 0 in tests).
/// The daemon's allocator, for every program built on this crate (the binary, its tests and
/// benches): under find-by-id load glibc's `malloc`/`free` took ~15 % of the daemon's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
mod start;
pub mod state;
pub mod telemetry;
pub mod time;
pub mod upstream;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::{Addr, Arbiter};
use actix_web::dev::ServerHandle;
use tracing::{info, warn};

use crate::actors::calibrator::CalibratorStats;
use crate::actors::event_poller::EventPollerStats;
use crate::actors::leader::ElectionHandle;
use crate::actors::scanner::ScannerStats;
use crate::actors::schema_loader::{SchemaLoader, SchemaLoaderStats};
use crate::actors::verifier::{Verifier, VerifierStats};
use crate::actors::write_back::WriteBackStats;
use crate::actors::{ActorFailure, Stop, Supervisor};
use crate::cluster::ClusterState;
use crate::cluster::file_lock::{InstanceLock, InstanceLockError};
use crate::config::Config;
use crate::db::writer::DbWriterHandle;
use crate::db::{Pools, StoreError};
use crate::http::api3::RequestStats;
use crate::state::CacheState;

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
    /// The calibrator's counters. It runs only while this instance leads, and not at all when
    /// `calibration.enabled` is false or no site is configured.
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
        let storage = start::open_storage(&config, addr).await?;
        let supervisor = Supervisor::default();
        watch_writer(&storage.writer, &config.database.url, &supervisor);
        let leader = start::start_election(&config, &storage);
        let mut local = start::start_local_actors(&config, &storage);
        let request_stats = Arc::new(RequestStats::default());
        let api3_state = start::api3_state(&config, &storage, &mut local, &request_stats);
        start::supervise(&supervisor, &leader, &local);
        let sources = start::status_sources(
            &config,
            &storage,
            &supervisor,
            &leader,
            &local,
            &request_stats,
        );
        let server = start::serve(&config, listener, sources, api3_state)?;
        info!(%addr, backend = storage.pools.backend.name(), "sgcache is listening");
        Ok(Daemon {
            addr,
            pools: storage.pools,
            cache: storage.cache,
            writer: storage.writer,
            cluster: storage.cluster,
            schema_loader_stats: leader.loader_stats,
            scanner_stats: leader.scanner_stats,
            event_poller_stats: leader.event_poller_stats,
            verifier: local.verifier,
            verifier_stats: local.verifier_stats,
            supervisor,
            calibrator_stats: leader.calibrator_stats,
            server: Some(server.task),
            handle: server.handle,
            election: Some(leader.election),
            schema_loader: leader.schema_loader,
            _instance_lock: storage.instance_lock,
            writer_arbiter: storage.writer_arbiter,
            request_stats,
            write_back_stats: local.write_back_stats,
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
        self.pools.close_readers().await;
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
