//! What the periodic actors (schema loader, scanner, event poller) share: the daemon's parts
//! they work with, and their runs, one at a time, with a back-off after failures in a row.
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ActorStats;
use crate::config::Config;
use crate::db::Pools;
use crate::db::writer::DbWriterHandle;
use crate::state::CacheState;
use crate::upstream::{UpstreamClient, backoff_delay};

/// The daemon's parts a periodic actor works with.
#[derive(Clone)]
pub struct Parts {
    pub config: Arc<Config>,
    pub pools: Pools,
    pub writer: DbWriterHandle,
    pub cache: Arc<CacheState>,
}

impl Parts {
    pub fn new(
        config: Arc<Config>,
        pools: Pools,
        writer: DbWriterHandle,
        cache: Arc<CacheState>,
    ) -> Parts {
        Parts {
            config,
            pools,
            writer,
            cache,
        }
    }

    /// A client of the configured site, or `None` when `shotgun.url` is not set.
    pub fn site_client(&self) -> Option<Rc<UpstreamClient>> {
        UpstreamClient::configured(&self.config.shotgun).map(Rc::new)
    }
}

/// An actor's runs: one at a time (a tick while one is in flight is skipped), and the
/// failures in a row that set the back-off before the next try.
#[derive(Debug, Default)]
pub struct Runs {
    in_flight: bool,
    failures: u32,
}

impl Runs {
    /// Is a run in flight? Then this tick is skipped, and counted on `stats` (`/status`
    /// `skipped_ticks`) when `counted`.
    pub fn skip(&self, stats: &ActorStats, counted: bool) -> bool {
        if self.in_flight && counted {
            stats.skipped_ticks.fetch_add(1, Ordering::Relaxed);
        }
        self.in_flight
    }

    pub fn start(&mut self) {
        self.in_flight = true;
    }

    pub fn end(&mut self) {
        self.in_flight = false;
    }

    /// The run succeeded: no failure in a row.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// One more failure in a row: the back-off (from `base`) before the next try.
    pub fn failed(&mut self, base: Duration) -> Duration {
        self.failures += 1;
        backoff_delay(base, self.failures)
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_during_a_run_is_skipped_and_failures_in_a_row_count_until_a_success() {
        let stats = ActorStats::default();
        let mut runs = Runs::default();
        assert!(!runs.skip(&stats, true));
        runs.start();
        assert!(runs.skip(&stats, false));
        assert!(runs.skip(&stats, true));
        assert_eq!(stats.skipped_ticks.load(Ordering::Relaxed), 1);
        runs.end();
        assert!(!runs.skip(&stats, true));
        let base = Duration::from_millis(100);
        assert!(runs.failed(base) < Duration::from_millis(200));
        assert!(runs.failed(base) >= Duration::from_millis(150));
        assert_eq!(runs.failures(), 2);
        runs.succeeded();
        assert_eq!(runs.failures(), 0);
    }
}
