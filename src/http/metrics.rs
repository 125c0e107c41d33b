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

/// Writes one family of series of one kind (`name` of a counter without `_total`: the encoder
/// adds it).
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

/// Writes one series without labels.
fn scalar<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    value: M,
) -> Result<(), std::fmt::Error> {
    value.encode(enc.encode_descriptor(name, help, None, value.metric_type())?)
}

fn counters(series: impl IntoIterator<Item = (Labels, u64)>) -> Vec<(Labels, ConstCounter<u64>)> {
    series
        .into_iter()
        .map(|(l, v)| (l, ConstCounter::new(v)))
        .collect()
}

fn gauges(series: impl IntoIterator<Item = (Labels, f64)>) -> Vec<(Labels, ConstGauge<f64>)> {
    series
        .into_iter()
        .map(|(l, v)| (l, ConstGauge::new(v)))
        .collect()
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

impl Collector for StatusCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let doc = self.sources.render();
        let enc = &mut enc;
        self.encode_requests(enc, &doc)?;
        encode_actors(enc, &doc.actors)?;
        encode_scalars(enc, &doc)?;
        encode_cache(enc, &doc)
    }
}

impl StatusCollector {
    fn encode_requests(
        &self,
        enc: &mut DescriptorEncoder,
        doc: &StatusDocument,
    ) -> Result<(), std::fmt::Error> {
        let latency = self.sources.requests.metrics.latency();
        let method_served = |m: &str, served: Served| {
            vec![
                ("method", m.to_owned()),
                ("served", served.label().to_owned()),
            ]
        };
        family(
            enc,
            (
                "sgcache_requests",
                "api3 requests answered, by method and by how they were served (local or pass_through).",
            ),
            MetricType::Counter,
            counters(
                latency
                    .iter()
                    .map(|(m, served, h)| (method_served(m, *served), h.count)),
            ),
        )?;
        let mut received = BTreeMap::<&str, u64>::new();
        for (m, n) in &doc.requests.by_method {
            *received.entry(ApiMethod::parse(m).label()).or_default() += n;
        }
        family(
            enc,
            (
                "sgcache_requests_received",
                "api3 requests received, by method as the client named it (before any fault).",
            ),
            MetricType::Counter,
            counters(received.into_iter().map(|(m, n)| (labels("method", m), n))),
        )?;
        family(
            enc,
            (
                "sgcache_pass_through",
                "Requests passed through to the site, by reason.",
            ),
            MetricType::Counter,
            counters(
                doc.requests
                    .pass_through_reasons
                    .iter()
                    .map(|(r, n)| (labels("reason", *r), *n)),
            ),
        )?;
        family(
            enc,
            (
                "sgcache_request_duration_seconds",
                "api3 request latency, by method and by how it was served.",
            ),
            MetricType::Histogram,
            latency
                .into_iter()
                .map(|(m, served, h)| (method_served(m, served), Histogram(h)))
                .collect(),
        )
    }
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

fn encode_actors(
    enc: &mut DescriptorEncoder,
    actors: &ActorsStatus,
) -> Result<(), std::fmt::Error> {
    let rows = actor_rows(actors);
    family(
        enc,
        (
            "sgcache_actor_messages_handled",
            "Messages (requests, for the request handler) each actor handled.",
        ),
        MetricType::Counter,
        counters(
            rows.iter()
                .map(|(a, handled, _, _)| (labels("actor", *a), *handled)),
        ),
    )?;
    family(
        enc,
        ("sgcache_actor_errors", "Errors each actor reported."),
        MetricType::Counter,
        counters(
            rows.iter()
                .map(|(a, _, errors, _)| (labels("actor", *a), *errors)),
        ),
    )?;
    let mut last: Vec<(Labels, f64)> = rows
        .iter()
        .filter(|(_, _, _, ms)| *ms > 0)
        .map(|(a, _, _, ms)| (labels("actor", *a), *ms as f64 / 1000.0))
        .collect();
    last.sort_by(|a, b| a.0.cmp(&b.0));
    family(
        enc,
        (
            "sgcache_actor_last_activity_timestamp_seconds",
            "When each actor last did something (unix time).",
        ),
        MetricType::Gauge,
        gauges(last),
    )?;
    family(
        enc,
        (
            "sgcache_actor_mailbox_depth",
            "Messages waiting for an actor (the DbWriter's senders; requests in flight for the request handler).",
        ),
        MetricType::Gauge,
        gauges([
            (
                labels("actor", "db_writer"),
                actors.db_writer.mailbox_depth as f64,
            ),
            (
                labels("actor", "request_handler"),
                actors.request_handler.in_flight as f64,
            ),
        ]),
    )?;
    encode_event_kinds(enc, actors)
}

fn encode_event_kinds(
    enc: &mut DescriptorEncoder,
    actors: &ActorsStatus,
) -> Result<(), std::fmt::Error> {
    let ep = &actors.event_poller;
    for (name, help, kinds) in [
        (
            "sgcache_events_applied",
            "Events applied to the cache, by kind.",
            &ep.applied,
        ),
        (
            "sgcache_events_ignored",
            "Events ignored, by kind.",
            &ep.ignored,
        ),
        (
            "sgcache_events_failed",
            "Events that failed to apply, by kind.",
            &ep.failed,
        ),
    ] {
        let series = kinds.iter().map(|(k, n)| (labels("kind", k.clone()), *n));
        family(enc, (name, help), MetricType::Counter, counters(series))?;
    }
    Ok(())
}

/// A figure that is one number: `(name, help, value)`.
type Scalar<T> = (&'static str, &'static str, fn(&StatusDocument) -> T);

/// Counters without labels (`name` without `_total`).
const SCALAR_COUNTERS: &[Scalar<u64>] = &[
    (
        "sgcache_request_faults",
        "api3 requests sgcache itself answered with a fault (bad request, site unreachable...).",
        |d| d.requests.faults,
    ),
    (
        "sgcache_db_writer_transactions",
        "Transactions the DbWriter committed.",
        |d| d.actors.db_writer.transactions,
    ),
    (
        "sgcache_db_writer_rows_written",
        "Rows the DbWriter wrote.",
        |d| d.actors.db_writer.rows_written,
    ),
    (
        "sgcache_db_writer_retries",
        "Transactions the DbWriter retried.",
        |d| d.actors.db_writer.retries,
    ),
    ("sgcache_scanner_full_scans", "Full scans finished.", |d| {
        d.actors.scanner.full_scans
    }),
    (
        "sgcache_scanner_incremental_scans",
        "Incremental scans finished.",
        |d| d.actors.scanner.incremental_scans,
    ),
    (
        "sgcache_scanner_entities_written",
        "Entities the scanner wrote.",
        |d| d.actors.scanner.entities_written,
    ),
    (
        "sgcache_scanner_retries",
        "Scanner requests retried.",
        |d| d.actors.scanner.retries,
    ),
    (
        "sgcache_events_missing_declared",
        "Event ids declared never to appear.",
        |d| d.actors.event_poller.missing_declared,
    ),
    ("sgcache_events_polls", "Event log polls.", |d| {
        d.actors.event_poller.polls
    }),
    ("sgcache_events_pages", "Event log pages read.", |d| {
        d.actors.event_poller.pages
    }),
    (
        "sgcache_write_back_writes",
        "Client writes written back.",
        |d| d.actors.write_back.writes,
    ),
    (
        "sgcache_write_back_reads",
        "Passed-through reads written back.",
        |d| d.actors.write_back.passed_through_reads,
    ),
    (
        "sgcache_write_back_rows_refreshed",
        "Rows refreshed by write-backs.",
        |d| d.actors.write_back.rows_refreshed,
    ),
    (
        "sgcache_write_back_wait_exceeded",
        "Client writes answered before their write-back committed (server.write_back_wait).",
        |d| d.actors.write_back.wait_exceeded,
    ),
    (
        "sgcache_write_backs_sent",
        "Write-backs handed to the WriteBack actor.",
        |d| d.actors.request_handler.write_backs_sent,
    ),
    (
        "sgcache_cluster_elections_won",
        "Times this instance took the lead.",
        |d| d.cluster.elections_won,
    ),
    (
        "sgcache_cluster_leadership_lost",
        "Times this instance lost the lead while running (its lock connection died).",
        |d| d.cluster.leadership_lost,
    ),
];

/// Gauges without labels; `None` leaves the series out.
const SCALAR_GAUGES: &[Scalar<Option<f64>>] = &[
    (
        "sgcache_uptime_seconds",
        "Seconds since the daemon started.",
        |d| Some(d.uptime_seconds as f64),
    ),
    (
        "sgcache_upstream_reachable",
        "1 when the last request to the site got an answer.",
        |d| Some(flag(d.upstream.reachable)),
    ),
    (
        "sgcache_schema_loaded",
        "1 once a schema has been applied.",
        |d| Some(flag(d.schema.loaded)),
    ),
    (
        "sgcache_requests_in_flight",
        "api3 requests being handled.",
        |d| Some(d.requests.in_flight as f64),
    ),
    ("sgcache_scanner_running", "1 while a scan runs.", |d| {
        Some(flag(d.actors.scanner.running))
    }),
    (
        "sgcache_events_checkpoint",
        "Id of the last EventLogEntry applied.",
        |d| Some(d.actors.event_poller.checkpoint as f64),
    ),
    (
        "sgcache_events_newest_seen",
        "Id of the newest EventLogEntry seen.",
        |d| Some(d.actors.event_poller.newest_event_seen as f64),
    ),
    (
        "sgcache_events_lag_seconds",
        "Age of the newest applied event (how far the cache trails the site's event log).",
        |d| d.actors.event_poller.lag_seconds.map(|s| s as f64),
    ),
    (
        "sgcache_events_open_gaps",
        "Event ids skipped by the stream, still awaited.",
        |d| Some(d.actors.event_poller.open_gaps as f64),
    ),
    (
        "sgcache_database_size_bytes",
        "Size of the cache database.",
        |d| d.cache.database_bytes.map(|b| b as f64),
    ),
    (
        "sgcache_cluster_leader",
        "1 while this instance is the leader (follows the site's event log, scans, applies DDL).",
        |d| Some(flag(d.cluster.role == "leader")),
    ),
    (
        "sgcache_cluster_takeovers",
        "Leadership changes after the first leader of this database.",
        |d| Some(d.cluster.takeovers as f64),
    ),
    (
        "sgcache_cluster_leader_since_timestamp_seconds",
        "When the current leader took the lead.",
        |d| {
            let since = d.cluster.leader_since.as_deref()?;
            crate::time::parse(since).map(|t| t.timestamp() as f64)
        },
    ),
];

/// Every figure that is one number.
fn encode_scalars(
    enc: &mut DescriptorEncoder,
    doc: &StatusDocument,
) -> Result<(), std::fmt::Error> {
    for (name, help, value) in SCALAR_COUNTERS {
        scalar(enc, (name, help), ConstCounter::new(value(doc)))?;
    }
    for (name, help, value) in SCALAR_GAUGES {
        if let Some(value) = value(doc) {
            scalar(enc, (name, help), ConstGauge::new(value))?;
        }
    }
    family(
        enc,
        ("sgcache_build_info", "sgcache's version (always 1)."),
        MetricType::Gauge,
        gauges([(labels("version", doc.version), 1.0)]),
    )?;
    let cluster = &doc.cluster;
    let info = vec![
        ("instance", cluster.instance.clone()),
        ("role", cluster.role.to_owned()),
        ("leader", cluster.leader.clone().unwrap_or_default()),
    ];
    family(
        enc,
        (
            "sgcache_cluster_info",
            "This instance, its role and the leader it knows (always 1).",
        ),
        MetricType::Gauge,
        gauges([(info, 1.0)]),
    )
}

fn encode_cache(enc: &mut DescriptorEncoder, doc: &StatusDocument) -> Result<(), std::fmt::Error> {
    family(
        enc,
        (
            "sgcache_cache_type_complete",
            "1 when a cached type may be answered locally, 0 while it is priming.",
        ),
        MetricType::Gauge,
        gauges(
            doc.schema
                .types
                .iter()
                .map(|(t, s)| (labels("type", t.clone()), flag(s.complete))),
        ),
    )?;
    let mut rows = Vec::new();
    for (t, c) in &doc.cache.types {
        for (state, n) in [("active", c.active), ("retired", c.retired)] {
            if let Some(n) = n {
                rows.push((
                    vec![("type", t.clone()), ("state", state.to_owned())],
                    n as f64,
                ));
            }
        }
    }
    family(
        enc,
        (
            "sgcache_cache_rows",
            "Rows cached per type, active or retired (measured every few seconds).",
        ),
        MetricType::Gauge,
        gauges(rows),
    )?;
    Ok(())
}
