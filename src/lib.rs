//! sgcache: a caching proxy for the Shotgun (ShotGrid / Flow Production Tracking) JSON API.
//!
//! [`Daemon::start`] wires everything together; the binary and the integration tests both
//! call it with a listener they bound (port 0 in tests).
pub mod actors;
pub mod api3;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod query;
pub mod schema;
pub mod state;
pub mod telemetry;
pub mod time;
pub mod upstream;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, Addr, Arbiter};
use actix_web::{App, HttpServer, dev::ServerHandle, web};
use tracing::info;

use crate::actors::schema_loader::{SchemaLoader, SchemaLoaderStats};
use crate::config::Config;
use crate::db::writer::DbWriterHandle;
use crate::db::{Pools, StoreError};
use crate::http::status::StatusSources;
use crate::state::CacheState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
}

/// A running daemon: its address, its parts, and a way to stop it.
pub struct Daemon {
    pub addr: SocketAddr,
    pub pools: Pools,
    pub cache: Arc<CacheState>,
    pub writer: DbWriterHandle,
    pub schema_loader: Addr<SchemaLoader>,
    server: Option<actix_web::rt::task::JoinHandle<std::io::Result<()>>>,
    handle: ServerHandle,
    writer_arbiter: Arbiter,
}

impl Daemon {
    /// Connects and migrates the database, starts the actors and serves HTTP on `listener`.
    /// Must run inside an actix System.
    pub async fn start(config: Config, listener: TcpListener) -> Result<Daemon, StartError> {
        let addr = listener.local_addr()?;
        let config = Arc::new(config);
        // The database comes first: if it is unreachable nothing has started yet.
        let pools = db::connect(&config.database).await?;
        db::migrate(&pools).await?;

        let cache = CacheState::new();
        cache.set_complete(db::writer::load_complete(&pools.reader).await?);
        let (writer, writer_arbiter) =
            DbWriterHandle::start(pools.writer.clone(), pools.backend, cache.clone());
        let loader_stats = Arc::new(SchemaLoaderStats::default());
        let schema_loader = SchemaLoader::new(
            config.clone(),
            pools.clone(),
            writer.clone(),
            cache.clone(),
            loader_stats.clone(),
        )
        .start();

        let sources = web::Data::new(StatusSources {
            started: Instant::now(),
            started_at: time::now(),
            backend: pools.backend,
            database_url: config.database.url.clone(),
            site_url: config.shotgun.url.clone(),
            cache: cache.clone(),
            writer: writer.stats().clone(),
            schema_loader: loader_stats,
        });
        let max_body = config.server.max_body_bytes;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(sources.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .configure(http::configure)
        })
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
            schema_loader,
            server: Some(server),
            handle,
            writer_arbiter,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until SIGINT/SIGTERM (actix-web stops accepting, finishes in-flight requests),
    /// then lets the DbWriter drain its mailbox and stops it.
    pub async fn run_until_stopped(mut self) -> std::io::Result<()> {
        let result = match self.server.take() {
            Some(server) => server
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        };
        self.shutdown_actors().await;
        result
    }

    /// Stops the HTTP server and the actors (tests and embedders).
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.shutdown_actors().await;
    }

    async fn shutdown_actors(&self) {
        // `stop` on the arbiter lets the DbWriter finish the message it is handling.
        self.writer_arbiter.stop();
        self.pools.reader.clone().close().await.ok();
    }
}
