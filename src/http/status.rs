//! `/status`: one JSON document saying what the daemon is, what it caches and how each actor
//! is doing. Built from shared atomics and the cache view; it never waits on an actor.
use std::sync::Arc;
use std::time::Instant;

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value as Json, json};

use crate::actors::event_poller::EventPollerStats;
use crate::actors::scanner::ScannerStats;
use crate::actors::schema_loader::SchemaLoaderStats;
use crate::actors::site_info::SiteInfoState;
use crate::actors::write_back::WriteBackStats;
use crate::http::api3::RequestStats;
use crate::db::writer::WriterStats;
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
    pub site_info: Arc<SiteInfoState>,
}

impl StatusSources {
    pub fn render(&self) -> Json {
        let view = self.cache.view();
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
            "requests": self.requests.snapshot(),
            "schema": {
                "loaded": self.schema_loader.loaded.load(std::sync::atomic::Ordering::Relaxed),
                "cached_types": view.schema.types.len(),
                "complete_types": view.complete.len(),
                "types": types,
            },
            "actors": {
                "db_writer": self.writer.snapshot(),
                "schema_loader": self.schema_loader.snapshot(),
                "scanner": self.scanner.snapshot(),
                "event_poller": self.event_poller.snapshot(),
                "write_back": self.write_back.snapshot(),
                "site_info": self.site_info.stats.snapshot(),
            },
        })
    }
}

pub async fn status(sources: web::Data<StatusSources>) -> HttpResponse {
    HttpResponse::Ok().json(sources.render())
}
