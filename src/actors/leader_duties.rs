//! The daemon's leader-only actors, started and stopped by the election
//! ([`super::leader::Election`]): the schema loader (it applies DDL), the event poller, the
//! scanner and the calibrator (one instance probes the site's rules; followers read them from
//! the database, see `crate::cluster::follow`). Each new start reads its state from the database (the event checkpoint, the scan
//! cursors), which the fence guarantees includes everything a previous leader committed.
use std::sync::{Arc, Mutex};

use actix::{Actor, Addr};
use tracing::debug;

use super::Stop;
use super::calibrator::{Calibrator, CalibratorStats};
use super::event_poller::{EventPoller, EventPollerStats};
use super::leader::LeaderDuties;
use super::scanner::{Scanner, ScannerStats};
use super::schema_loader::{SchemaLoader, SchemaLoaderStats};
use crate::config::Config;
use crate::db::Pools;
use crate::db::writer::DbWriterHandle;
use crate::state::CacheState;

/// The address of an actor that runs only while this instance leads.
#[derive(Debug)]
pub struct Current<A: Actor>(Arc<Mutex<Option<Addr<A>>>>);

impl<A: Actor> Clone for Current<A> {
    fn clone(&self) -> Self {
        Current(self.0.clone())
    }
}

impl<A: Actor> Default for Current<A> {
    fn default() -> Self {
        Current(Arc::new(Mutex::new(None)))
    }
}

impl<A: Actor> Current<A> {
    pub fn get(&self) -> Option<Addr<A>> {
        self.0.lock().ok().and_then(|a| a.clone())
    }

    fn set(&self, addr: Option<Addr<A>>) {
        if let Ok(mut current) = self.0.lock() {
            *current = addr;
        }
    }
}

/// What the leader-only actors are built from, and their figures (kept across terms, so
/// `/status` counts everything this instance did as a leader).
pub struct DaemonDuties {
    pub config: Arc<Config>,
    pub pools: Pools,
    pub writer: DbWriterHandle,
    pub cache: Arc<CacheState>,
    pub schema_loader: Arc<SchemaLoaderStats>,
    pub scanner: Arc<ScannerStats>,
    pub event_poller: Arc<EventPollerStats>,
    pub calibrator: Arc<CalibratorStats>,
    /// The schema loader while leading (`Daemon::schema_loader`).
    pub current_loader: Current<SchemaLoader>,
    running: Option<Running>,
}

struct Running {
    schema_loader: Addr<SchemaLoader>,
    /// `None` when `scanner.enabled` is false or no site is configured.
    scanner: Option<Addr<Scanner>>,
    /// `None` when `events.enabled` is false or no site is configured.
    event_poller: Option<Addr<EventPoller>>,
    /// `None` when `calibration.enabled` is false or no site is configured.
    calibrator: Option<Addr<Calibrator>>,
}

impl DaemonDuties {
    pub fn new(
        config: Arc<Config>,
        pools: Pools,
        writer: DbWriterHandle,
        cache: Arc<CacheState>,
        schema_loader: Arc<SchemaLoaderStats>,
    ) -> DaemonDuties {
        DaemonDuties {
            config,
            pools,
            writer,
            cache,
            schema_loader,
            scanner: Arc::default(),
            event_poller: Arc::default(),
            calibrator: Arc::default(),
            current_loader: Current::default(),
            running: None,
        }
    }
}

impl LeaderDuties for DaemonDuties {
    fn start(&mut self) {
        if self.running.is_some() {
            return;
        }
        let site = self.config.shotgun.url.is_some();
        let schema_loader = SchemaLoader::new(
            self.config.clone(),
            self.pools.clone(),
            self.writer.clone(),
            self.cache.clone(),
            self.schema_loader.clone(),
        )
        .start();
        // Full scans of incomplete types and periodic incremental scans (waits for the schema).
        let scanner = (self.config.scanner.enabled && site).then(|| {
            Scanner::new(
                self.config.clone(),
                self.pools.clone(),
                self.writer.clone(),
                self.cache.clone(),
                self.scanner.clone(),
            )
            .start()
        });
        // Follows the EventLogEntry stream from the stored checkpoint (waits for the schema).
        let event_poller = (self.config.events.enabled && site).then(|| {
            EventPoller::new(
                self.config.clone(),
                self.pools.clone(),
                self.writer.clone(),
                self.cache.clone(),
                Some(schema_loader.clone()),
                self.event_poller.clone(),
            )
            .start()
        });
        // Learns the site's undocumented rules (see actors::calibrator).
        let calibrator = (self.config.calibration.enabled && site).then(|| {
            Calibrator::new(
                self.config.clone(),
                self.pools.clone(),
                self.writer.clone(),
                self.cache.clone(),
                self.calibrator.clone(),
            )
            .start()
        });
        self.current_loader.set(Some(schema_loader.clone()));
        self.running = Some(Running {
            schema_loader,
            scanner,
            event_poller,
            calibrator,
        });
    }

    /// Drops a poll, a scan page or a schema load in progress: each commits its changes with
    /// its checkpoint in one fenced transaction, so a stop at any point loses nothing.
    async fn stop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        self.current_loader.set(None);
        if let Some(poller) = &running.event_poller {
            let _ = poller.send(Stop).await;
        }
        if let Some(scanner) = &running.scanner {
            let _ = scanner.send(Stop).await;
        }
        // Drops a calibration in progress: a probe's rule is written after it settles.
        if let Some(calibrator) = &running.calibrator {
            let _ = calibrator.send(Stop).await;
        }
        let _ = running.schema_loader.send(Stop).await;
        debug!("leader-only actors stopped");
    }
}
