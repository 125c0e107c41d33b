//! `/status`: one JSON document saying what the daemon is, what it caches and how each actor
//! is doing. Built from shared atomics and the cache view; it never waits on an actor.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::actors::ActorSnapshot;
use crate::actors::calibrator::{CalibrationSnapshot, CalibratorStats};
use crate::actors::event_poller::{EventPollerSnapshot, EventPollerStats};
use crate::actors::scanner::{ScannerSnapshot, ScannerStats};
use crate::actors::schema_loader::{SchemaLoaderSnapshot, SchemaLoaderStats};
use crate::actors::site_info::SiteInfoState;
use crate::actors::verifier::{VerifierSnapshot, VerifierStats};
use crate::actors::write_back::{WriteBackSnapshot, WriteBackStats};
use crate::cluster::{ClusterState, ClusterStatus};
use crate::db::Pools;
use crate::db::writer::{WriterSnapshot, WriterStats};
use crate::http::api3::{RequestStats, RequestsSnapshot};
use crate::metrics::{CacheSizes, LatencySummary, Served};
use crate::schema::{Backend, ColumnLayout};
use crate::state::{CacheState, CacheView};

/// Everything `/status` reads, shared with the running actors.
pub struct StatusSources {
    /// Where the actors report failures (the last ones are shown).
    pub supervisor: crate::actors::Supervisor,
    pub started: Instant,
    pub started_at: String,
    pub backend: Backend,
    pub database_url: String,
    pub site_url: String,
    pub cache: Arc<CacheState>,
    pub writer: Arc<WriterStats>,
    pub schema_loader: Arc<SchemaLoaderStats>,
    pub scanner: Arc<ScannerStats>,
    pub event_poller: Arc<EventPollerStats>,
    pub requests: Arc<RequestStats>,
    pub write_back: Arc<WriteBackStats>,
    /// The verifier's figures (`mode` off: nothing is verified).
    pub verifier: Arc<VerifierStats>,
    /// The calibrator's figures; the rules themselves are in the cache view.
    pub calibrator: Arc<CalibratorStats>,
    pub site_info: Arc<SiteInfoState>,
    /// The reader pool: row counts and the database size ([`CacheSizes`]), `/readyz`.
    pub pools: Pools,
    pub sizes: Arc<CacheSizes>,
    /// This instance's role (leader or follower) and the leader's identity.
    pub cluster: Arc<ClusterState>,
}

/// The `/status` document (README: [/status](../../README.md#status)).
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatusDocument {
    pub service: &'static str,
    pub version: &'static str,
    pub started_at: String,
    pub uptime_seconds: u64,
    pub database: DatabaseStatus,
    pub upstream: UpstreamStatus,
    pub cluster: ClusterStatus,
    pub requests: RequestsSnapshot,
    pub latency: LatencyStatus,
    pub cache: CacheStatus,
    pub schema: SchemaStatus,
    /// The site's rules learned by calibration (see `actors::calibrator`).
    pub calibration: CalibrationSnapshot,
    pub actors: ActorsStatus,
    /// The last failures the actors reported, oldest first.
    pub failures: Vec<crate::actors::ActorFailure>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DatabaseStatus {
    pub backend: &'static str,
    /// Any password masked.
    pub url: String,
    /// PostgreSQL reads by id answered on a thread's pipelined connection (0 on SQLite).
    pub pipelined_reads: u64,
    /// Reads by id whose pipelined attempt failed and that were run again on a connection of
    /// their own.
    pub pipelined_fallbacks: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct UpstreamStatus {
    pub url: String,
    pub reachable: bool,
}

/// Latency summaries of reads and of every method, by how they were served.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LatencyStatus {
    pub read: ServedLatency,
    pub all: ServedLatency,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ServedLatency {
    pub local: LatencySummary,
    pub pass_through: LatencySummary,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheStatus {
    pub measured_at: Option<String>,
    pub database_bytes: Option<u64>,
    pub error: Option<String>,
    pub types: BTreeMap<String, CacheTypeStatus>,
}

/// Rows of one cached type (`None` until measured).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheTypeStatus {
    pub active: Option<u64>,
    pub retired: Option<u64>,
    pub complete: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SchemaStatus {
    pub loaded: bool,
    pub cached_types: usize,
    pub complete_types: usize,
    /// Cached types not complete yet.
    pub priming: Vec<String>,
    /// Types cached only thinly, as link targets (id, updated_at, display field).
    pub thin_types: Vec<String>,
    pub types: BTreeMap<String, SchemaTypeStatus>,
    /// Fields left uncached for one type because the site sent a value the cache cannot
    /// store (`crate::schema::marks`).
    pub uncached_fields: Vec<UncachedFieldStatus>,
}

/// One field left uncached for one type, and why.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UncachedFieldStatus {
    pub entity_type: String,
    pub field: String,
    pub reason: String,
    /// The JSON kind of the value that could not be stored.
    pub value_kind: String,
    pub since: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SchemaTypeStatus {
    pub table: String,
    pub fields: usize,
    pub multi_entity_fields: usize,
    pub display_field: Option<String>,
    pub complete: bool,
    /// Cached only as a link target (see `schema.thin_types`).
    pub thin: bool,
}

/// Each actor's section, in the order the page lists them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ActorsStatus {
    pub request_handler: RequestHandlerStatus,
    pub db_writer: WriterSnapshot,
    pub schema_loader: SchemaLoaderSnapshot,
    pub scanner: ScannerSnapshot,
    pub event_poller: EventPollerSnapshot,
    pub write_back: WriteBackSnapshot,
    pub site_info: ActorSnapshot,
    pub verifier: VerifierSnapshot,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RequestHandlerStatus {
    pub handled: u64,
    pub errors: u64,
    pub in_flight: i64,
    pub write_backs_sent: u64,
    pub last_activity_at: Option<String>,
    /// For `/metrics` (unix ms; 0 = never).
    #[serde(skip)]
    pub last_activity_unix_ms: i64,
}

impl StatusSources {
    pub fn render(&self) -> StatusDocument {
        let view = self.cache.view();
        let requests = self.requests.snapshot();
        let last_request = requests.last_request_unix_ms;
        let pipelines = self.pools.pg_reads.as_ref().map(|r| &r.pipelines);
        StatusDocument {
            service: "sgcache",
            version: env!("CARGO_PKG_VERSION"),
            started_at: self.started_at.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
            database: DatabaseStatus {
                backend: self.backend.name(),
                url: crate::config::mask_url_password(&self.database_url),
                pipelined_reads: pipelines.map_or(0, |p| p.reads()),
                pipelined_fallbacks: pipelines.map_or(0, |p| p.fallbacks()),
            },
            upstream: UpstreamStatus {
                url: self.site_url.clone(),
                reachable: self.site_info.reachable(),
            },
            cluster: self.cluster.snapshot(),
            latency: self.latency(),
            cache: self.cache_status(&view),
            schema: self.schema_status(&view),
            calibration: self.calibrator.snapshot(&view.rules),
            actors: ActorsStatus {
                request_handler: RequestHandlerStatus {
                    handled: requests.total,
                    errors: requests.faults,
                    in_flight: requests.in_flight,
                    write_backs_sent: requests.write_backs_sent,
                    last_activity_at: crate::time::format_unix_ms(last_request),
                    last_activity_unix_ms: last_request,
                },
                db_writer: self.writer.snapshot(),
                schema_loader: self.schema_loader.snapshot(),
                scanner: self.scanner.snapshot(),
                event_poller: self.event_poller.snapshot(),
                write_back: self.write_back.snapshot(),
                site_info: self.site_info.stats.snapshot(),
                verifier: self.verifier.snapshot(),
            },
            requests,
            failures: self.supervisor.recent(),
        }
    }

    fn latency(&self) -> LatencyStatus {
        let ops = &self.requests.metrics;
        let served = |method: Option<&str>| ServedLatency {
            local: ops.merged(method, Served::Local).summary(),
            pass_through: ops.merged(method, Served::PassThrough).summary(),
        };
        LatencyStatus {
            read: served(Some("read")),
            all: served(None),
        }
    }

    fn cache_status(&self, view: &CacheView) -> CacheStatus {
        let sizes = self.sizes.snapshot();
        let types = view
            .schema
            .types
            .keys()
            .map(|name| {
                let rows = sizes.as_ref().and_then(|s| s.types.get(name));
                let status = CacheTypeStatus {
                    active: rows.map(|r| r.active),
                    retired: rows.map(|r| r.retired),
                    complete: view.complete.contains(name),
                };
                (name.clone(), status)
            })
            .collect();
        CacheStatus {
            measured_at: sizes.as_ref().map(|s| s.measured_at.clone()),
            database_bytes: sizes.as_ref().and_then(|s| s.database_bytes),
            error: sizes.and_then(|s| s.error),
            types,
        }
    }

    fn schema_status(&self, view: &CacheView) -> SchemaStatus {
        let types = view
            .schema
            .types
            .iter()
            .map(|(name, entity)| {
                let multi = entity
                    .fields
                    .values()
                    .filter(|f| matches!(f.layout, ColumnLayout::MultiEntity { .. }))
                    .count();
                let status = SchemaTypeStatus {
                    table: entity.table.clone(),
                    fields: entity.fields.len(),
                    multi_entity_fields: multi,
                    display_field: entity.display_field.clone(),
                    complete: view.complete.contains(name),
                    thin: entity.thin,
                };
                (name.clone(), status)
            })
            .collect();
        SchemaStatus {
            loaded: self.schema_loader.loaded.load(Ordering::Relaxed),
            cached_types: view.schema.types.len(),
            complete_types: view.complete.len(),
            priming: view
                .schema
                .types
                .keys()
                .filter(|t| !view.complete.contains(*t))
                .cloned()
                .collect(),
            thin_types: view.schema.thin_types().map(str::to_owned).collect(),
            types,
            uncached_fields: view
                .schema
                .uncached_marks()
                .map(|m| UncachedFieldStatus {
                    entity_type: m.entity_type.clone(),
                    field: m.field.clone(),
                    reason: m.reason(),
                    value_kind: m.value_kind.clone(),
                    since: m.since.clone(),
                })
                .collect(),
        }
    }
}

/// JSON, or the HTML status page when the client prefers `text/html` (a browser).
pub async fn status(req: HttpRequest, sources: web::Data<StatusSources>) -> HttpResponse {
    sources.measure_sizes().await;
    let document = sources.render();
    if crate::http::page::wants_html(&req) {
        return HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header(("cache-control", "no-store"))
            .body(crate::http::page::render(&document));
    }
    HttpResponse::Ok().json(document)
}

impl StatusSources {
    /// Refreshes the row counts and database size when stale (see [`CacheSizes`]).
    pub async fn measure_sizes(&self) {
        let schema = self.cache.view().schema;
        self.sizes
            .refresh(&self.pools, schema, std::time::Duration::from_secs(5))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    /// Every `a.b.c` key path of the document (maps that are empty have none).
    fn paths(v: &Json, prefix: &str, out: &mut Vec<String>) {
        if let Json::Object(map) = v {
            for (k, v) in map {
                let path = format!("{prefix}{k}");
                paths(v, &format!("{path}."), out);
                out.push(path);
            }
        }
    }

    #[test]
    fn the_document_keeps_the_documented_shape() {
        let doc = serde_json::to_value(StatusDocument::default()).expect("serialises");
        let mut got = Vec::new();
        paths(&doc, "", &mut got);
        let actor = [
            "handled",
            "errors",
            "skipped_ticks",
            "last_activity_at",
            "last_error",
        ];
        let mut want: Vec<String> = [
            "service",
            "version",
            "started_at",
            "uptime_seconds",
            "database",
            "database.backend",
            "database.url",
            "database.pipelined_reads",
            "database.pipelined_fallbacks",
            "failures",
            "upstream",
            "upstream.url",
            "upstream.reachable",
            "cluster",
            "cluster.mode",
            "cluster.role",
            "cluster.instance",
            "cluster.leader",
            "cluster.leader_since",
            "cluster.leading_since",
            "cluster.term",
            "cluster.takeovers",
            "cluster.elections_won",
            "cluster.leadership_lost",
            "cluster.synced_at",
            "cluster.sync_failures",
            "cluster.sync_error",
            "requests",
            "requests.total",
            "requests.served_locally",
            "requests.passed_through",
            "requests.faults",
            "requests.by_method",
            "requests.pass_through_reasons",
            "requests.in_flight",
            "requests.served_locally_by_method",
            "latency",
            "cache",
            "cache.measured_at",
            "cache.database_bytes",
            "cache.error",
            "cache.types",
            "schema",
            "schema.loaded",
            "schema.cached_types",
            "schema.complete_types",
            "schema.priming",
            "schema.thin_types",
            "schema.types",
            "schema.uncached_fields",
            "calibration",
            "calibration.enabled",
            "calibration.runs",
            "calibration.requests",
            "calibration.last_run_at",
            "calibration.actor",
            "calibration.rules",
            "actors",
            "actors.request_handler",
            "actors.request_handler.handled",
            "actors.request_handler.errors",
            "actors.request_handler.in_flight",
            "actors.request_handler.write_backs_sent",
            "actors.request_handler.last_activity_at",
            "actors.db_writer",
            "actors.db_writer.mailbox_depth",
            "actors.db_writer.messages",
            "actors.db_writer.transactions",
            "actors.db_writer.rows_written",
            "actors.db_writer.errors",
            "actors.db_writer.retries",
            "actors.db_writer.last_commit_at",
            "actors.db_writer.last_error",
            "actors.schema_loader.loaded",
            "actors.scanner.running",
            "actors.scanner.full_scans",
            "actors.scanner.incremental_scans",
            "actors.scanner.reconciliations",
            "actors.scanner.reconciled_rows",
            "actors.scanner.entities_written",
            "actors.scanner.retries",
            "actors.scanner.next_run_at",
            "actors.scanner.current",
            "actors.scanner.types",
            "actors.scanner.last_run",
            "actors.scanner.failing_types",
            "actors.event_poller.checkpoint",
            "actors.event_poller.newest_event_seen",
            "actors.event_poller.lag_seconds",
            "actors.event_poller.applied",
            "actors.event_poller.ignored",
            "actors.event_poller.failed",
            "actors.event_poller.open_gaps",
            "actors.event_poller.missing_declared",
            "actors.event_poller.polls",
            "actors.event_poller.pages",
            "actors.event_poller.relinked",
            "actors.event_poller.relink_truncated",
            "actors.write_back.writes",
            "actors.write_back.passed_through_reads",
            "actors.write_back.rows_refreshed",
            "actors.write_back.wait_exceeded",
            "actors.verifier.enabled",
            "actors.verifier.mode",
            "actors.verifier.offered",
            "actors.verifier.queued",
            "actors.verifier.dropped",
            "actors.verifier.verified",
            "actors.verifier.matched",
            "actors.verifier.changed_since",
            "actors.verifier.mismatched",
            "actors.verifier.healed",
            "actors.verifier.quarantined",
            "actors.verifier.backoffs",
            "actors.verifier.by_type",
            "actors.verifier.recent_mismatches",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        for section in ["read", "all"] {
            want.push(format!("latency.{section}"));
            for served in ["local", "pass_through"] {
                want.push(format!("latency.{section}.{served}"));
                for k in ["count", "mean_ms", "p50_ms", "p95_ms", "p99_ms"] {
                    want.push(format!("latency.{section}.{served}.{k}"));
                }
            }
        }
        for a in [
            "schema_loader",
            "scanner",
            "event_poller",
            "write_back",
            "site_info",
            "verifier",
        ] {
            want.push(format!("actors.{a}"));
            want.extend(actor.iter().map(|k| format!("actors.{a}.{k}")));
        }
        want.extend(actor.iter().map(|k| format!("calibration.actor.{k}")));
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }
}
