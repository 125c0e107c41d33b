//! The request handler's counters for `/status` (`requests`) and `/metrics`.
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::api3::method::ApiMethod;
use crate::metrics::RequestMetrics;
use crate::query::PassReason;

/// Request counters, shared by the HTTP workers.
#[derive(Debug, Default)]
pub struct RequestStats {
    pub total: AtomicU64,
    pub local: AtomicU64,
    pub passed_through: AtomicU64,
    pub faults: AtomicU64,
    /// Requests received, by method as the client named it.
    by_method: Mutex<BTreeMap<String, u64>>,
    /// Requests answered locally, by method label.
    local_by_method: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests passed through, by [`PassReason::label`].
    pass_reasons: Mutex<BTreeMap<&'static str, u64>>,
    /// Latency histograms, requests in flight, write-backs sent (`/metrics`, `/status`).
    pub metrics: RequestMetrics,
}

/// `/status` → `requests`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RequestsSnapshot {
    pub total: u64,
    pub served_locally: u64,
    pub passed_through: u64,
    pub faults: u64,
    pub by_method: BTreeMap<String, u64>,
    pub pass_through_reasons: BTreeMap<&'static str, u64>,
    pub in_flight: i64,
    /// Requests answered locally, by method (`info`, `read`, schema calls).
    pub served_locally_by_method: BTreeMap<&'static str, u64>,
    /// For `/status` → `actors.request_handler` and `/metrics`.
    #[serde(skip)]
    pub write_backs_sent: u64,
    #[serde(skip)]
    pub last_request_unix_ms: i64,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    if let Ok(mut map) = map.lock() {
        *map.entry(key).or_default() += 1;
    }
}

fn copy<K: Ord + Clone>(map: &Mutex<BTreeMap<K, u64>>) -> BTreeMap<K, u64> {
    map.lock().map(|m| m.clone()).unwrap_or_default()
}

impl RequestStats {
    pub fn received(&self, method: &ApiMethod) {
        bump(&self.by_method, method.name().to_owned());
    }

    pub fn answered_locally(&self, method: &ApiMethod) {
        self.local.fetch_add(1, Ordering::Relaxed);
        bump(&self.local_by_method, method.label());
    }

    pub fn passed(&self, reason: &PassReason) {
        self.passed_through.fetch_add(1, Ordering::Relaxed);
        bump(&self.pass_reasons, reason.label());
    }

    pub fn fault(&self) {
        self.faults.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RequestsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestsSnapshot {
            total: load(&self.total),
            served_locally: load(&self.local),
            passed_through: load(&self.passed_through),
            faults: load(&self.faults),
            by_method: copy(&self.by_method),
            pass_through_reasons: copy(&self.pass_reasons),
            in_flight: self.metrics.in_flight.load(Ordering::Relaxed).max(0),
            served_locally_by_method: copy(&self.local_by_method),
            write_backs_sent: load(&self.metrics.write_backs_sent),
            last_request_unix_ms: self.metrics.last_request_unix_ms.load(Ordering::Relaxed),
        }
    }
}
