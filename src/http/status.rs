//! `/status`: one JSON document saying what the daemon is, what it caches and how each actor
//! is doing. Built from shared atomics and the cache view; it never waits on an actor.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::actors::ActorSnapshot;
use crate::actors::event_poller::{EventPollerSnapshot, EventPollerStats};
use crate::actors::scanner::{ScannerSnapshot, ScannerStats};
use crate::actors::schema_loader::{SchemaLoaderSnapshot, SchemaLoaderStats};
use crate::actors::site_info::SiteInfoState;
use crate::actors::verifier::{VerifierSnapshot, VerifierStats};
use crate::actors::write_back::{WriteBackSnapshot, WriteBackStats};
use crate::db::Pools;
use crate::db::writer::{WriterSnapshot, WriterStats};
use crate::http::api3::{RequestStats, RequestsSnapshot};
use crate::metrics::{CacheSizes, LatencySummary, Served};
use crate::schema::{Backend, ColumnLayout};
use crate::state::{CacheState, CacheView};

/// Everything `/status` reads, shared with the running actors.
pub struct StatusSources {
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
    pub site_info: Arc<SiteInfoState>,
    /// The reader pool: row counts and the database size ([`CacheSizes`]), `/readyz`.
    pub pools: Pools,
    pub sizes: Arc<CacheSizes>,
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
    pub requests: RequestsSnapshot,
    pub latency: LatencyStatus,
    pub cache: CacheStatus,
    pub schema: SchemaStatus,
    pub actors: ActorsStatus,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DatabaseStatus {
    pub backend: &'static str,
    /// Any password masked.
    pub url: String,
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
    pub types: BTreeMap<String, SchemaTypeStatus>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SchemaTypeStatus {
    pub table: String,
    pub fields: usize,
    pub multi_entity_fields: usize,
    pub display_field: Option<String>,
    pub complete: bool,
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
        StatusDocument {
            service: "sgcache",
            version: env!("CARGO_PKG_VERSION"),
            started_at: self.started_at.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
            database: DatabaseStatus {
                backend: self.backend.name(),
                url: crate::config::mask_url_password(&self.database_url),
            },
            upstream: UpstreamStatus {
                url: self.site_url.clone(),
                reachable: self.site_info.reachable(),
            },
            latency: self.latency(),
            cache: self.cache_status(&view),
            schema: self.schema_status(&view),
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
            types,
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
