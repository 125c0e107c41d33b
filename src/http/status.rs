//! `/status`: one JSON document saying what the daemon is, what it caches and how each actor
//! is doing. Built from shared atomics and the cache view; it never waits on an actor.
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value as Json, json};

use crate::actors::event_poller::EventPollerStats;
use crate::actors::scanner::ScannerStats;
use crate::actors::schema_loader::SchemaLoaderStats;
use crate::actors::site_info::SiteInfoState;
use crate::actors::verifier::VerifierStats;
use crate::actors::write_back::WriteBackStats;
use crate::db::Pools;
use crate::db::writer::WriterStats;
use crate::http::api3::RequestStats;
use crate::metrics::{CacheSizes, Served};
use crate::schema::{Backend, ColumnLayout};
use crate::state::CacheState;

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

impl StatusSources {
    pub fn render(&self) -> Json {
        let view = self.cache.view();
        let sizes = self.sizes.snapshot();
        let mut types = Map::new();
        for (name, entity) in &view.schema.types {
            let multi = entity
                .fields
                .values()
                .filter(|f| matches!(f.layout, ColumnLayout::MultiEntity { .. }))
                .count();
            types.insert(
                name.clone(),
                json!({
                    "table": entity.table,
                    "fields": entity.fields.len(),
                    "multi_entity_fields": multi,
                    "display_field": entity.display_field,
                    "complete": view.complete.contains(name),
                }),
            );
        }
        let mut requests = self.requests.snapshot();
        let ops = &self.requests.metrics;
        if let Some(map) = requests.as_object_mut() {
            map.insert(
                "in_flight".into(),
                ops.in_flight.load(Ordering::Relaxed).max(0).into(),
            );
        }
        let latency = json!({
            "read": {
                "local": ops.merged(Some("read"), Served::Local).summary(),
                "pass_through": ops.merged(Some("read"), Served::PassThrough).summary(),
            },
            "all": {
                "local": ops.merged(None, Served::Local).summary(),
                "pass_through": ops.merged(None, Served::PassThrough).summary(),
            },
        });
        let mut size_types = Map::new();
        for name in view.schema.types.keys() {
            let rows = sizes.as_ref().and_then(|s| s.types.get(name));
            size_types.insert(
                name.clone(),
                json!({
                    "active": rows.map(|r| r.active),
                    "retired": rows.map(|r| r.retired),
                    "complete": view.complete.contains(name),
                }),
            );
        }
        let priming: Vec<&String> = view
            .schema
            .types
            .keys()
            .filter(|t| !view.complete.contains(*t))
            .collect();
        let last_request = ops.last_request_unix_ms.load(Ordering::Relaxed);
        let request_handler = json!({
            "handled": self.requests.total.load(Ordering::Relaxed),
            "errors": self.requests.faults.load(Ordering::Relaxed),
            "in_flight": ops.in_flight.load(Ordering::Relaxed).max(0),
            "write_backs_sent": ops.write_backs_sent.load(Ordering::Relaxed),
            "last_activity_at": (last_request > 0)
                .then(|| chrono::DateTime::from_timestamp_millis(last_request).map(crate::time::format))
                .flatten(),
        });
        json!({
            "service": "sgcache",
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": self.started_at,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "database": {
                "backend": self.backend.name(),
                "url": crate::config::mask_url_password(&self.database_url),
            },
            "upstream": { "url": self.site_url, "reachable": self.site_info.reachable() },
            "requests": requests,
            "latency": latency,
            "cache": {
                "measured_at": sizes.as_ref().map(|s| s.measured_at.clone()),
                "database_bytes": sizes.as_ref().and_then(|s| s.database_bytes),
                "error": sizes.as_ref().and_then(|s| s.error.clone()),
                "types": size_types,
            },
            "schema": {
                "loaded": self.schema_loader.loaded.load(std::sync::atomic::Ordering::Relaxed),
                "cached_types": view.schema.types.len(),
                "complete_types": view.complete.len(),
                "priming": priming,
                "types": types,
            },
            "actors": {
                "request_handler": request_handler,
                "db_writer": self.writer.snapshot(),
                "schema_loader": self.schema_loader.snapshot(),
                "scanner": self.scanner.snapshot(),
                "event_poller": self.event_poller.snapshot(),
                "write_back": self.write_back.snapshot(),
                "site_info": self.site_info.stats.snapshot(),
                "verifier": self.verifier.snapshot(),
            },
        })
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
