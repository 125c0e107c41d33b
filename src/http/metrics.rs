//! `/metrics`: the `/status` figures in the Prometheus text format (0.0.4).
//!
//! A per-daemon [`Registry`] (no global state) holds one [`Collector`] that reads the same
//! shared atomics `/status` reads, at scrape time; `prometheus-client` does the exposition.
//! Names follow Prometheus conventions: `sgcache_…_total` counters, `_seconds` histograms,
//! `_bytes` and `_timestamp_seconds` gauges, labels for actor, method, reason and type.
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use actix_web::{HttpResponse, web};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::actors::ActorStats;
use crate::http::status::StatusSources;
use crate::metrics::HistogramSnapshot;

type Labels = Vec<(&'static str, String)>;

/// The daemon's registry, shared by the HTTP workers.
pub struct MetricsRegistry(Registry);

impl MetricsRegistry {
    pub fn new(sources: Arc<StatusSources>) -> MetricsRegistry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(StatusCollector { sources }));
        MetricsRegistry(registry)
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.0)?;
        Ok(out)
    }
}

pub async fn metrics(
    registry: web::Data<MetricsRegistry>,
    sources: web::Data<StatusSources>,
) -> HttpResponse {
    sources.measure_sizes().await;
    match registry.encode() {
        Ok(text) => HttpResponse::Ok()
            .content_type(prometheus_client::encoding::prometheus_text::CONTENT_TYPE)
            .body(text),
        Err(_) => HttpResponse::InternalServerError()
            .content_type("text/plain; charset=utf-8")
            .body("encoding the metrics failed"),
    }
}

/// Reads [`StatusSources`] at each scrape.
struct StatusCollector {
    sources: Arc<StatusSources>,
}

impl std::fmt::Debug for StatusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusCollector")
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn load_i(a: &AtomicI64) -> i64 {
    a.load(Ordering::Relaxed)
}

/// Writes one family of counters (`name` without `_total`: the encoder adds it).
fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in &series {
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in &series {
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn histograms(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(Labels, HistogramSnapshot)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in &series {
        let buckets = h.bucket_pairs();
        metric
            .encode_family(labels)?
            .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &buckets, None)?;
    }
    Ok(())
}

fn actor_labels(actor: &'static str) -> Labels {
    vec![("actor", actor.to_owned())]
}

impl Collector for StatusCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &*self.sources;
        let enc = &mut enc;
        let view = s.cache.view();

        gauges(
            enc,
            "sgcache_build_info",
            "sgcache's version (always 1).",
            vec![(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], 1.0)],
        )?;
        gauge(
            enc,
            "sgcache_uptime_seconds",
            "Seconds since the daemon started.",
            s.started.elapsed().as_secs_f64(),
        )?;
        gauge(
            enc,
            "sgcache_upstream_reachable",
            "1 when the last request to the site got an answer.",
            f64::from(u8::from(s.site_info.reachable())),
        )?;
        gauge(
            enc,
            "sgcache_schema_loaded",
            "1 once a schema has been applied.",
            f64::from(u8::from(s.schema_loader.loaded.load(Ordering::Relaxed))),
        )?;

        // Requests.
        let ops = &s.requests.metrics;
        let latency = ops.latency();
        counters(
            enc,
            "sgcache_requests",
            "api3 requests answered, by method and by how they were served (local or pass_through).",
            latency
                .iter()
                .map(|(m, served, h)| {
                    (
                        vec![
                            ("method", (*m).to_owned()),
                            ("served", served.label().to_owned()),
                        ],
                        h.count,
                    )
                })
                .collect(),
        )?;
        counters(
            enc,
            "sgcache_requests_received",
            "api3 requests received, by method as the client named it (before any fault).",
            s.requests
                .by_method
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default()
                .into_iter()
                .fold(
                    std::collections::BTreeMap::<&str, u64>::new(),
                    |mut acc, (m, n)| {
                        *acc.entry(crate::metrics::method_label(&m)).or_default() += n;
                        acc
                    },
                )
                .into_iter()
                .map(|(m, n)| (vec![("method", m.to_owned())], n))
                .collect(),
        )?;
        counters(
            enc,
            "sgcache_pass_through",
            "Requests passed through to the site, by reason.",
            s.requests
                .pass_reasons
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|(reason, n)| (vec![("reason", reason)], n))
                .collect(),
        )?;
        counter(
            enc,
            "sgcache_request_faults",
            "api3 requests sgcache itself answered with a fault (bad request, site unreachable...).",
            load(&s.requests.faults),
        )?;
        gauge(
            enc,
            "sgcache_requests_in_flight",
            "api3 requests being handled.",
            load_i(&ops.in_flight).max(0) as f64,
        )?;
        histograms(
            enc,
            "sgcache_request_duration_seconds",
            "api3 request latency, by method and by how it was served.",
            latency
                .into_iter()
                .map(|(m, served, h)| {
                    (
                        vec![
                            ("method", m.to_owned()),
                            ("served", served.label().to_owned()),
                        ],
                        h,
                    )
                })
                .collect(),
        )?;

        // Actors: the common figures, one series per actor.
        let actors: [(&'static str, &ActorStats); 5] = [
            ("schema_loader", &s.schema_loader.actor),
            ("scanner", &s.scanner.actor),
            ("event_poller", &s.event_poller.actor),
            ("write_back", &s.write_back.actor),
            ("site_info", &s.site_info.stats),
        ];
        let mut handled: Vec<(Labels, u64)> = actors
            .iter()
            .map(|(name, a)| (actor_labels(name), load(&a.handled)))
            .collect();
        handled.push((actor_labels("db_writer"), load(&s.writer.messages)));
        handled.push((actor_labels("request_handler"), load(&s.requests.total)));
        counters(
            enc,
            "sgcache_actor_messages_handled",
            "Messages (requests, for the request handler) each actor handled.",
            handled,
        )?;
        let mut errors: Vec<(Labels, u64)> = actors
            .iter()
            .map(|(name, a)| (actor_labels(name), load(&a.errors)))
            .collect();
        errors.push((actor_labels("db_writer"), load(&s.writer.errors)));
        errors.push((actor_labels("request_handler"), load(&s.requests.faults)));
        counters(
            enc,
            "sgcache_actor_errors",
            "Errors each actor reported.",
            errors,
        )?;
        let mut last: Vec<(Labels, f64)> = actors
            .iter()
            .map(|(name, a)| (actor_labels(name), load_i(&a.last_activity_unix_ms)))
            .chain([
                (
                    actor_labels("db_writer"),
                    load_i(&s.writer.last_commit_unix_ms),
                ),
                (
                    actor_labels("request_handler"),
                    load_i(&ops.last_request_unix_ms),
                ),
            ])
            .filter(|(_, ms)| *ms > 0)
            .map(|(l, ms)| (l, ms as f64 / 1000.0))
            .collect();
        last.sort_by(|a, b| a.0.cmp(&b.0));
        gauges(
            enc,
            "sgcache_actor_last_activity_timestamp_seconds",
            "When each actor last did something (unix time).",
            last,
        )?;
        gauges(
            enc,
            "sgcache_actor_mailbox_depth",
            "Messages waiting for an actor (the DbWriter's senders; requests in flight for the request handler).",
            vec![
                (
                    actor_labels("db_writer"),
                    load_i(&s.writer.queued).max(0) as f64,
                ),
                (
                    actor_labels("request_handler"),
                    load_i(&ops.in_flight).max(0) as f64,
                ),
            ],
        )?;

        // DbWriter.
        counter(
            enc,
            "sgcache_db_writer_transactions",
            "Transactions the DbWriter committed.",
            load(&s.writer.transactions),
        )?;
        counter(
            enc,
            "sgcache_db_writer_rows_written",
            "Rows the DbWriter wrote.",
            load(&s.writer.rows),
        )?;
        counter(
            enc,
            "sgcache_db_writer_retries",
            "Transactions the DbWriter retried.",
            load(&s.writer.retries),
        )?;

        // Scanner.
        counter(
            enc,
            "sgcache_scanner_full_scans",
            "Full scans finished.",
            load(&s.scanner.full_scans),
        )?;
        counter(
            enc,
            "sgcache_scanner_incremental_scans",
            "Incremental scans finished.",
            load(&s.scanner.incremental_scans),
        )?;
        counter(
            enc,
            "sgcache_scanner_entities_written",
            "Entities the scanner wrote.",
            load(&s.scanner.entities_written),
        )?;
        counter(
            enc,
            "sgcache_scanner_retries",
            "Scanner requests retried.",
            load(&s.scanner.retries),
        )?;
        gauge(
            enc,
            "sgcache_scanner_running",
            "1 while a scan runs.",
            f64::from(u8::from(s.scanner.running.load(Ordering::Relaxed))),
        )?;

        // Event poller.
        let ep = &s.event_poller;
        gauge(
            enc,
            "sgcache_events_checkpoint",
            "Id of the last EventLogEntry applied.",
            load_i(&ep.checkpoint) as f64,
        )?;
        gauge(
            enc,
            "sgcache_events_newest_seen",
            "Id of the newest EventLogEntry seen.",
            load_i(&ep.newest_event_seen) as f64,
        )?;
        let newest = load_i(&ep.newest_applied_created_unix);
        if newest > 0 {
            gauge(
                enc,
                "sgcache_events_lag_seconds",
                "Age of the newest applied event (how far the cache trails the site's event log).",
                (chrono::Utc::now().timestamp() - newest).max(0) as f64,
            )?;
        }
        gauge(
            enc,
            "sgcache_events_open_gaps",
            "Event ids skipped by the stream, still awaited.",
            load(&ep.open_gaps) as f64,
        )?;
        counter(
            enc,
            "sgcache_events_missing_declared",
            "Event ids declared never to appear.",
            load(&ep.missing_declared),
        )?;
        counter(
            enc,
            "sgcache_events_polls",
            "Event log polls.",
            load(&ep.polls),
        )?;
        counter(
            enc,
            "sgcache_events_pages",
            "Event log pages read.",
            load(&ep.pages),
        )?;
        let kinds =
            |m: &std::sync::Mutex<crate::actors::event_poller::KindCounts>| -> Vec<(Labels, u64)> {
                m.lock()
                    .map(|m| m.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, n)| (vec![("kind", k)], n))
                    .collect()
            };
        counters(
            enc,
            "sgcache_events_applied",
            "Events applied to the cache, by kind.",
            kinds(&ep.applied),
        )?;
        counters(
            enc,
            "sgcache_events_ignored",
            "Events ignored, by kind.",
            kinds(&ep.ignored),
        )?;
        counters(
            enc,
            "sgcache_events_failed",
            "Events that failed to apply, by kind.",
            kinds(&ep.failed),
        )?;

        // Write-back.
        let wb = &s.write_back;
        counter(
            enc,
            "sgcache_write_back_writes",
            "Client writes written back.",
            load(&wb.writes),
        )?;
        counter(
            enc,
            "sgcache_write_back_reads",
            "Passed-through reads written back.",
            load(&wb.reads),
        )?;
        counter(
            enc,
            "sgcache_write_back_rows_refreshed",
            "Rows refreshed by write-backs.",
            load(&wb.rows_refreshed),
        )?;
        counter(
            enc,
            "sgcache_write_back_wait_exceeded",
            "Client writes answered before their write-back committed (server.write_back_wait).",
            load(&wb.wait_exceeded),
        )?;
        counter(
            enc,
            "sgcache_write_backs_sent",
            "Write-backs handed to the WriteBack actor.",
            load(&ops.write_backs_sent),
        )?;

        // The cache.
        gauges(
            enc,
            "sgcache_cache_type_complete",
            "1 when a cached type may be answered locally, 0 while it is priming.",
            view.schema
                .types
                .keys()
                .map(|t| {
                    (
                        vec![("type", t.clone())],
                        f64::from(u8::from(view.complete.contains(t))),
                    )
                })
                .collect(),
        )?;
        let sizes = s.sizes.snapshot();
        let mut rows = Vec::new();
        if let Some(sizes) = &sizes {
            for (t, r) in &sizes.types {
                rows.push((
                    vec![("type", t.clone()), ("state", "active".to_owned())],
                    r.active as f64,
                ));
                rows.push((
                    vec![("type", t.clone()), ("state", "retired".to_owned())],
                    r.retired as f64,
                ));
            }
        }
        gauges(
            enc,
            "sgcache_cache_rows",
            "Rows cached per type, active or retired (measured every few seconds).",
            rows,
        )?;
        if let Some(bytes) = sizes.and_then(|s| s.database_bytes) {
            gauge(
                enc,
                "sgcache_database_size_bytes",
                "Size of the cache database.",
                bytes as f64,
            )?;
        }
        Ok(())
    }
}
