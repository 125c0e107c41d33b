//! Figures that exist only for operators: request latency histograms, requests in flight,
//! write-backs handed to the WriteBack actor, and the measured size of the cache.
//!
//! Everything here is per daemon (no global registry), so several daemons in one process
//! (the tests) never mix their figures. `/status` (JSON and HTML) and `/metrics`
//! (Prometheus, see [`crate::http::metrics`]) read the same values.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api3::method::ApiMethod;
use crate::db::Pools;
use crate::schema::CachedSchema;

/// Upper bounds (seconds) of the latency buckets; an implicit `+Inf` bucket follows.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How a request was answered, the `served` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Served {
    Local,
    PassThrough,
}

impl Served {
    pub fn label(self) -> &'static str {
        match self {
            Served::Local => "local",
            Served::PassThrough => "pass_through",
        }
    }
}

/// A fixed-bucket histogram of durations (lock-free).
#[derive(Debug)]
pub struct LatencyHistogram {
    /// Non-cumulative counts; the last slot is the `+Inf` bucket.
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..=LATENCY_BUCKETS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

/// A latency summary on `/status` (milliseconds, estimated from the buckets).
#[derive(Clone, Debug, Default, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// A copy of a histogram's figures at one instant.
#[derive(Clone, Debug, Default)]
pub struct HistogramSnapshot {
    pub sum_seconds: f64,
    pub count: u64,
    /// Non-cumulative counts, one per [`LATENCY_BUCKETS`] entry plus `+Inf`.
    pub buckets: Vec<u64>,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            elapsed.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

impl HistogramSnapshot {
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; other.buckets.len()];
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_seconds += other.sum_seconds;
        self.count += other.count;
    }

    /// `(upper bound, count in that bucket alone)` pairs, `+Inf` last (what
    /// `prometheus-client`'s histogram encoder takes; it accumulates them).
    pub fn bucket_pairs(&self) -> Vec<(f64, u64)> {
        LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().copied())
            .collect()
    }

    /// `(upper bound, cumulative count)` pairs, `+Inf` last, as the exposition wants them.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.buckets)
            .map(|(bound, n)| {
                total += n;
                (bound, total)
            })
            .collect()
    }

    /// The `q` quantile (0..=1) estimated the way Prometheus' `histogram_quantile` does:
    /// linear interpolation inside the bucket that holds it. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                    // The +Inf bucket: the highest finite bound is all that can be said.
                    return LATENCY_BUCKETS.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lower + (upper - lower) * within);
            }
            below += n;
        }
        LATENCY_BUCKETS.last().copied()
    }

    /// `{count, mean_ms, p50_ms, p95_ms, p99_ms}` for `/status`.
    pub fn summary(&self) -> LatencySummary {
        let ms = |s: Option<f64>| s.map(|s| (s * 1e5).round() / 100.0);
        LatencySummary {
            count: self.count,
            mean_ms: ms((self.count > 0).then(|| self.sum_seconds / self.count as f64)),
            p50_ms: ms(self.quantile(0.50)),
            p95_ms: ms(self.quantile(0.95)),
            p99_ms: ms(self.quantile(0.99)),
        }
    }
}

/// The request handler's own figures (kept in [`crate::http::api3::RequestStats`]).
#[derive(Debug, Default)]
pub struct RequestMetrics {
    /// Requests being handled right now.
    pub in_flight: AtomicI64,
    /// When the last request arrived (unix ms; 0 = none yet).
    pub last_request_unix_ms: AtomicI64,
    /// Messages handed to the WriteBack actor (writes and passed-through reads). Shutdown waits
    /// until the WriteBack actor has finished as many.
    pub write_backs_sent: AtomicU64,
    latency: Mutex<BTreeMap<(&'static str, Served), Arc<LatencyHistogram>>>,
}

/// Decrements [`RequestMetrics::in_flight`] when the request is done (or dropped).
pub struct InFlight<'a>(&'a RequestMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestMetrics {
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.last_request_unix_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        InFlight(self)
    }

    /// Records one answered request: its method, how it was served and how long it took.
    pub fn observe(&self, method: &ApiMethod, served: Served, elapsed: Duration) {
        let key = (method.label(), served);
        let histogram = match self.latency.lock() {
            Ok(mut map) => map.entry(key).or_default().clone(),
            Err(_) => return,
        };
        histogram.observe(elapsed);
    }

    /// Every `(method, served)` series.
    pub fn latency(&self) -> Vec<(&'static str, Served, HistogramSnapshot)> {
        let map = self.latency.lock().map(|m| m.clone()).unwrap_or_default();
        map.into_iter()
            .map(|((method, served), h)| (method, served, h.snapshot()))
            .collect()
    }

    /// Every series of `served`, optionally only `method`, merged.
    pub fn merged(&self, method: Option<&str>, served: Served) -> HistogramSnapshot {
        let mut total = HistogramSnapshot::default();
        for (m, s, h) in self.latency() {
            if s == served && method.is_none_or(|want| want == m) {
                total.merge(&h);
            }
        }
        total
    }
}

/// Rows of one cached type.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TypeRows {
    pub active: u64,
    pub retired: u64,
}

/// The measured size of the cache.
#[derive(Clone, Debug, Serialize)]
pub struct SizeSnapshot {
    #[serde(skip)]
    pub taken: Instant,
    pub measured_at: String,
    pub types: BTreeMap<String, TypeRows>,
    pub database_bytes: Option<u64>,
    pub error: Option<String>,
    /// The cached types when measured: a schema change measures again at once.
    #[serde(skip)]
    pub schema_types: Vec<String>,
}

/// Row counts per cached type and the database size, measured at most every `max_age`
/// (counting rows is not free on large tables, and the status page refreshes every 5 s).
#[derive(Debug)]
pub struct CacheSizes {
    last: Mutex<Option<SizeSnapshot>>,
    measuring: AtomicBool,
    pub max_age: Duration,
}

impl Default for CacheSizes {
    fn default() -> Self {
        CacheSizes {
            last: Mutex::new(None),
            measuring: AtomicBool::new(false),
            max_age: Duration::from_secs(15),
        }
    }
}

impl CacheSizes {
    pub fn snapshot(&self) -> Option<SizeSnapshot> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Makes sure a measurement of the current schema exists: without one the call waits for
    /// it (at most `wait`); otherwise a new one starts in the background when the last is
    /// older than `max_age`.
    pub async fn refresh(
        self: &Arc<Self>,
        pools: &Pools,
        schema: Arc<CachedSchema>,
        wait: Duration,
    ) {
        // `None`: nothing usable (no measurement, or one of another schema): wait for one.
        let stale = match self.snapshot() {
            Some(s) if s.schema_types.iter().eq(schema.types.keys()) => {
                Some(s.taken.elapsed() > self.max_age)
            }
            _ => None,
        };
        if stale == Some(false) || self.measuring.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        let pools = pools.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let job = async move {
            // Clears `measuring` even if the job is dropped half-way.
            let _guard = MeasuringGuard(this.clone());
            let snapshot = measure(&pools, &schema).await;
            if let Ok(mut last) = this.last.lock() {
                *last = Some(snapshot);
            }
            let _ = done_tx.send(());
        };
        // On the System's arbiter, not the HTTP worker's: a worker that stops must not drop a
        // database query half-way (dropping a connection outside a runtime panics).
        if !actix_web::rt::System::current().arbiter().spawn(job) {
            self.measuring.store(false, Ordering::Release);
            return;
        }
        if stale.is_none() {
            let _ = actix_web::rt::time::timeout(wait, done_rx).await;
        }
    }
}

/// Resets [`CacheSizes::measuring`] when a measurement ends, however it ends.
struct MeasuringGuard(Arc<CacheSizes>);

impl Drop for MeasuringGuard {
    fn drop(&mut self) {
        self.0.measuring.store(false, Ordering::Release);
    }
}

async fn measure(pools: &Pools, schema: &CachedSchema) -> SizeSnapshot {
    use crate::db::reader::sizes;
    let mut types = BTreeMap::new();
    let mut error = None;
    for (name, entity) in &schema.types {
        match sizes::table_rows(pools, &entity.table).await {
            Ok((active, total)) => {
                let retired = total.saturating_sub(active);
                types.insert(name.clone(), TypeRows { active, retired });
            }
            Err(e) => error = Some(format!("counting {name}: {e}")),
        }
    }
    let database_bytes = match sizes::database_bytes(pools).await {
        Ok(bytes) => bytes,
        Err(e) => {
            error.get_or_insert_with(|| format!("database size: {e}"));
            None
        }
    };
    SizeSnapshot {
        taken: Instant::now(),
        measured_at: crate::time::now(),
        types,
        database_bytes,
        error,
        schema_types: schema.types.keys().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let h = LatencyHistogram::default();
        assert_eq!(h.snapshot().quantile(0.5), None);
        for _ in 0..100 {
            h.observe(Duration::from_micros(1500)); // (0.001, 0.0025]
        }
        let s = h.snapshot();
        let p50 = s.quantile(0.5).unwrap();
        assert!(p50 > 0.001 && p50 <= 0.0025, "{p50}");
        h.observe(Duration::from_secs(100)); // +Inf
        assert_eq!(h.snapshot().quantile(1.0), Some(60.0));
        assert_eq!(s.cumulative().last(), Some(&(f64::INFINITY, 100)));
    }
}
