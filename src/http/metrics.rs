//! `/metrics`: the `/status` figures in the Prometheus text format (0.0.4).
//!
//! A per-daemon [`Registry`] (no global state) holds one [`Collector`] that reads the same
//! shared atomics `/status` reads, at scrape time; `prometheus-client` does the exposition.
//! Names follow Prometheus conventions: `sgcache_…_total` counters, `_seconds` histograms,
//! `_bytes` and `_timestamp_seconds` gauges, labels for actor, method, reason and type.
use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::actors::ActorSnapshot;
use crate::actors::event_poller::KindCounts;
use crate::api3::method::ApiMethod;
use crate::http::status::{ActorsStatus, StatusDocument, StatusSources};
use crate::metrics::{HistogramSnapshot, Served};

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

/// What one scrape reads: the `/status` document and the request latencies.
struct Scrape {
    doc: StatusDocument,
    latency: Vec<(&'static str, Served, HistogramSnapshot)>,
}

/// The series of one family at a scrape.
enum Series {
    Counters(Vec<(Labels, u64)>),
    Gauges(Vec<(Labels, f64)>),
    Histograms(Vec<(Labels, HistogramSnapshot)>),
}

/// One family: `(name, help, its series at a scrape)`; the name of a counter is without
/// `_total` (the encoder adds it). `None` leaves the family out altogether.
type Family = (&'static str, &'static str, fn(&Scrape) -> Option<Series>);

impl Collector for StatusCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let scrape = Scrape {
            doc: self.sources.render(),
            latency: self.sources.requests.metrics.latency(),
        };
        for (name, help, series) in FAMILIES {
            if let Some(series) = series(&scrape) {
                series.encode(&mut enc, (name, help))?;
            }
        }
        Ok(())
    }
}

impl Series {
    fn encode(
        self,
        enc: &mut DescriptorEncoder,
        desc: (&str, &str),
    ) -> Result<(), std::fmt::Error> {
        match self {
            Series::Counters(s) => {
                family(enc, desc, MetricType::Counter, map(s, ConstCounter::new))
            }
            Series::Gauges(s) => family(enc, desc, MetricType::Gauge, map(s, ConstGauge::new)),
            Series::Histograms(s) => family(enc, desc, MetricType::Histogram, map(s, Histogram)),
        }
    }
}

/// Writes one family of series of one kind.
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    kind: MetricType,
    series: Vec<(Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in &series {
        value.encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn map<T, M>(series: Vec<(Labels, T)>, metric: fn(T) -> M) -> Vec<(Labels, M)> {
    series.into_iter().map(|(l, v)| (l, metric(v))).collect()
}

fn counters(series: impl IntoIterator<Item = (Labels, u64)>) -> Option<Series> {
    Some(Series::Counters(series.into_iter().collect()))
}

fn gauges(series: impl IntoIterator<Item = (Labels, f64)>) -> Option<Series> {
    Some(Series::Gauges(series.into_iter().collect()))
}

/// A counter that is one number (no labels).
fn counter(value: u64) -> Option<Series> {
    counters([(Labels::new(), value)])
}

/// A gauge that is one number (no labels).
fn gauge(value: f64) -> Option<Series> {
    gauges([(Labels::new(), value)])
}

fn labels(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// The common figures of one actor: `(actor, handled, errors, last activity unix ms)`.
type ActorRow = (&'static str, u64, u64, i64);

fn actor_rows(actors: &ActorsStatus) -> [ActorRow; 7] {
    let row = |name, a: &ActorSnapshot| (name, a.handled, a.errors, a.last_activity_unix_ms);
    let (w, r) = (&actors.db_writer, &actors.request_handler);
    [
        row("schema_loader", &actors.schema_loader.actor),
        row("scanner", &actors.scanner.actor),
        row("event_poller", &actors.event_poller.actor),
        row("write_back", &actors.write_back.actor),
        row("site_info", &actors.site_info),
        ("db_writer", w.messages, w.errors, w.last_commit_unix_ms),
        (
            "request_handler",
            r.handled,
            r.errors,
            r.last_activity_unix_ms,
        ),
    ]
}

/// A histogram snapshot in the exposition.
struct Histogram(HistogramSnapshot);

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Histogram")
    }
}

impl EncodeMetric for Histogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let h = &self.0;
        encoder.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.bucket_pairs(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn method_served(method: &str, served: Served) -> Labels {
    vec![
        ("method", method.to_owned()),
        ("served", served.label().to_owned()),
    ]
}

/// Requests received by the method the client named, folded to the method labels.
fn received(s: &Scrape) -> Option<Series> {
    let mut received = BTreeMap::<&str, u64>::new();
    for (m, n) in &s.doc.requests.by_method {
        *received.entry(ApiMethod::parse(m).label()).or_default() += n;
    }
    counters(received.into_iter().map(|(m, n)| (labels("method", m), n)))
}

fn last_activity(s: &Scrape) -> Option<Series> {
    let mut last: Vec<(Labels, f64)> = actor_rows(&s.doc.actors)
        .iter()
        .filter(|(_, _, _, ms)| *ms > 0)
        .map(|(a, _, _, ms)| (labels("actor", *a), *ms as f64 / 1000.0))
        .collect();
    last.sort_by(|a, b| a.0.cmp(&b.0));
    gauges(last)
}

fn kinds(counts: &KindCounts) -> Option<Series> {
    counters(counts.iter().map(|(k, n)| (labels("kind", k.clone()), *n)))
}

fn cluster_info(s: &Scrape) -> Option<Series> {
    let cluster = &s.doc.cluster;
    let info = vec![
        ("instance", cluster.instance.clone()),
        ("role", cluster.role.to_owned()),
        ("leader", cluster.leader.clone().unwrap_or_default()),
    ];
    gauges([(info, 1.0)])
}

fn cache_rows(s: &Scrape) -> Option<Series> {
    let mut rows = Vec::new();
    for (t, c) in &s.doc.cache.types {
        for (state, n) in [("active", c.active), ("retired", c.retired)] {
            if let Some(n) = n {
                rows.push((
                    vec![("type", t.clone()), ("state", state.to_owned())],
                    n as f64,
                ));
            }
        }
    }
    gauges(rows)
}

/// Every family of `/metrics`, in the order of the exposition.
const FAMILIES: &[Family] = &[
    (
        "sgcache_requests",
        "api3 requests answered, by method and by how they were served (local or pass_through).",
        |s| {
            counters(
                s.latency
                    .iter()
                    .map(|(m, served, h)| (method_served(m, *served), h.count)),
            )
        },
    ),
    (
        "sgcache_requests_received",
        "api3 requests received, by method as the client named it (before any fault).",
        received,
    ),
    (
        "sgcache_pass_through",
        "Requests passed through to the site, by reason.",
        |s| {
            let reasons = &s.doc.requests.pass_through_reasons;
            counters(reasons.iter().map(|(r, n)| (labels("reason", *r), *n)))
        },
    ),
    (
        "sgcache_request_duration_seconds",
        "api3 request latency, by method and by how it was served.",
        |s| {
            Some(Series::Histograms(
                s.latency
                    .iter()
                    .map(|(m, served, h)| (method_served(m, *served), h.clone()))
                    .collect(),
            ))
        },
    ),
    (
        "sgcache_actor_messages_handled",
        "Messages (requests, for the request handler) each actor handled.",
        |s| {
            let rows = actor_rows(&s.doc.actors);
            counters(rows.map(|(a, handled, _, _)| (labels("actor", a), handled)))
        },
    ),
    ("sgcache_actor_errors", "Errors each actor reported.", |s| {
        let rows = actor_rows(&s.doc.actors);
        counters(rows.map(|(a, _, errors, _)| (labels("actor", a), errors)))
    }),
    (
        "sgcache_actor_last_activity_timestamp_seconds",
        "When each actor last did something (unix time).",
        last_activity,
    ),
    (
        "sgcache_actor_mailbox_depth",
        "Messages waiting for an actor (the DbWriter's senders; requests in flight for the request handler).",
        |s| {
            let actors = &s.doc.actors;
            gauges([
                (
                    labels("actor", "db_writer"),
                    actors.db_writer.mailbox_depth as f64,
                ),
                (
                    labels("actor", "request_handler"),
                    actors.request_handler.in_flight as f64,
                ),
            ])
        },
    ),
    (
        "sgcache_events_applied",
        "Events applied to the cache, by kind.",
        |s| kinds(&s.doc.actors.event_poller.applied),
    ),
    ("sgcache_events_ignored", "Events ignored, by kind.", |s| {
        kinds(&s.doc.actors.event_poller.ignored)
    }),
    (
        "sgcache_events_failed",
        "Events that failed to apply, by kind.",
        |s| kinds(&s.doc.actors.event_poller.failed),
    ),
    (
        "sgcache_request_faults",
        "api3 requests sgcache itself answered with a fault (bad request, site unreachable...).",
        |s| counter(s.doc.requests.faults),
    ),
    (
        "sgcache_db_writer_transactions",
        "Transactions the DbWriter committed.",
        |s| counter(s.doc.actors.db_writer.transactions),
    ),
    (
        "sgcache_db_writer_rows_written",
        "Rows the DbWriter wrote.",
        |s| counter(s.doc.actors.db_writer.rows_written),
    ),
    (
        "sgcache_db_writer_retries",
        "Transactions the DbWriter retried.",
        |s| counter(s.doc.actors.db_writer.retries),
    ),
    ("sgcache_scanner_full_scans", "Full scans finished.", |s| {
        counter(s.doc.actors.scanner.full_scans)
    }),
    (
        "sgcache_scanner_incremental_scans",
        "Incremental scans finished.",
        |s| counter(s.doc.actors.scanner.incremental_scans),
    ),
    (
        "sgcache_scanner_entities_written",
        "Entities the scanner wrote.",
        |s| counter(s.doc.actors.scanner.entities_written),
    ),
    (
        "sgcache_scanner_retries",
        "Scanner requests retried.",
        |s| counter(s.doc.actors.scanner.retries),
    ),
    (
        "sgcache_events_missing_declared",
        "Event ids declared never to appear.",
        |s| counter(s.doc.actors.event_poller.missing_declared),
    ),
    ("sgcache_events_polls", "Event log polls.", |s| {
        counter(s.doc.actors.event_poller.polls)
    }),
    ("sgcache_events_pages", "Event log pages read.", |s| {
        counter(s.doc.actors.event_poller.pages)
    }),
    (
        "sgcache_write_back_writes",
        "Client writes written back.",
        |s| counter(s.doc.actors.write_back.writes),
    ),
    (
        "sgcache_write_back_reads",
        "Passed-through reads written back.",
        |s| counter(s.doc.actors.write_back.passed_through_reads),
    ),
    (
        "sgcache_write_back_rows_refreshed",
        "Rows refreshed by write-backs.",
        |s| counter(s.doc.actors.write_back.rows_refreshed),
    ),
    (
        "sgcache_write_back_wait_exceeded",
        "Client writes answered before their write-back committed (server.write_back_wait).",
        |s| counter(s.doc.actors.write_back.wait_exceeded),
    ),
    (
        "sgcache_write_backs_sent",
        "Write-backs handed to the WriteBack actor.",
        |s| counter(s.doc.actors.request_handler.write_backs_sent),
    ),
    (
        "sgcache_cluster_elections_won",
        "Times this instance took the lead.",
        |s| counter(s.doc.cluster.elections_won),
    ),
    (
        "sgcache_cluster_leadership_lost",
        "Times this instance lost the lead while running (its lock connection died).",
        |s| counter(s.doc.cluster.leadership_lost),
    ),
    (
        "sgcache_uptime_seconds",
        "Seconds since the daemon started.",
        |s| gauge(s.doc.uptime_seconds as f64),
    ),
    (
        "sgcache_upstream_reachable",
        "1 when the last request to the site got an answer.",
        |s| gauge(flag(s.doc.upstream.reachable)),
    ),
    (
        "sgcache_schema_loaded",
        "1 once a schema has been applied.",
        |s| gauge(flag(s.doc.schema.loaded)),
    ),
    (
        "sgcache_requests_in_flight",
        "api3 requests being handled.",
        |s| gauge(s.doc.requests.in_flight as f64),
    ),
    ("sgcache_scanner_running", "1 while a scan runs.", |s| {
        gauge(flag(s.doc.actors.scanner.running))
    }),
    (
        "sgcache_events_checkpoint",
        "Id of the last EventLogEntry applied.",
        |s| gauge(s.doc.actors.event_poller.checkpoint as f64),
    ),
    (
        "sgcache_events_newest_seen",
        "Id of the newest EventLogEntry seen.",
        |s| gauge(s.doc.actors.event_poller.newest_event_seen as f64),
    ),
    (
        "sgcache_events_lag_seconds",
        "Age of the newest applied event (how far the cache trails the site's event log).",
        |s| gauge(s.doc.actors.event_poller.lag_seconds? as f64),
    ),
    (
        "sgcache_events_open_gaps",
        "Event ids skipped by the stream, still awaited.",
        |s| gauge(s.doc.actors.event_poller.open_gaps as f64),
    ),
    (
        "sgcache_database_pipelined_reads",
        "PostgreSQL reads by id answered on a thread's pipelined connection.",
        |s| counter(s.doc.database.pipelined_reads),
    ),
    (
        "sgcache_database_pipelined_fallbacks",
        "Reads by id whose pipelined attempt failed and ran again on a connection of their own.",
        |s| counter(s.doc.database.pipelined_fallbacks),
    ),
    (
        "sgcache_database_size_bytes",
        "Size of the cache database.",
        |s| gauge(s.doc.cache.database_bytes? as f64),
    ),
    (
        "sgcache_cluster_leader",
        "1 while this instance is the leader (follows the site's event log, scans, applies DDL).",
        |s| gauge(flag(s.doc.cluster.role == "leader")),
    ),
    (
        "sgcache_cluster_takeovers",
        "Leadership changes after the first leader of this database.",
        |s| gauge(s.doc.cluster.takeovers as f64),
    ),
    (
        "sgcache_cluster_sync_failures",
        "A follower's syncs from the database (the leader's schema, complete types and rules) that failed since the last one that worked.",
        |s| gauge(s.doc.cluster.sync_failures as f64),
    ),
    (
        "sgcache_cluster_leader_since_timestamp_seconds",
        "When the current leader took the lead.",
        |s| {
            let since = s.doc.cluster.leader_since.as_deref()?;
            gauge(crate::time::parse(since)?.timestamp() as f64)
        },
    ),
    ("sgcache_build_info", "sgcache's version (always 1).", |s| {
        gauges([(labels("version", s.doc.version), 1.0)])
    }),
    (
        "sgcache_cluster_info",
        "This instance, its role and the leader it knows (always 1).",
        cluster_info,
    ),
    (
        "sgcache_cache_type_complete",
        "1 when a cached type may be answered locally, 0 while it is priming.",
        |s| {
            let types = &s.doc.schema.types;
            gauges(
                types
                    .iter()
                    .map(|(t, st)| (labels("type", t.clone()), flag(st.complete))),
            )
        },
    ),
    (
        "sgcache_cache_rows",
        "Rows cached per type, active or retired (measured every few seconds).",
        cache_rows,
    ),
];
