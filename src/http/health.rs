//! `/healthz` (liveness) and `/readyz` (readiness) for load balancers and orchestrators.
//!
//! Liveness only says the HTTP workers answer. Readiness says sgcache can do its job: a schema
//! is loaded (so reads can be planned) and the database answers `SELECT 1` on the reader
//! pool. Types still priming (cached but not complete) do not make sgcache unready, since their
//! reads pass through, but they are listed so a deploy script can wait for them.
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::http::status::StatusSources;

/// How long `/readyz` waits for the database before calling it unready.
const DB_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok")
}

pub async fn readyz(sources: web::Data<StatusSources>) -> HttpResponse {
    let schema_loaded = sources.schema_loader.loaded.load(Ordering::Relaxed);
    let reader = &sources.pools.reader;
    let probe = reader.query_one_raw(Statement::from_string(
        reader.get_database_backend(),
        "SELECT 1 AS ok",
    ));
    let database = match actix_web::rt::time::timeout(DB_PROBE_TIMEOUT, probe).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(DB_PROBE_TIMEOUT)
        )),
    };
    let view = sources.cache.view();
    let priming: Vec<&String> = view
        .schema
        .types
        .keys()
        .filter(|t| !view.complete.contains(*t))
        .collect();
    let ready = schema_loaded && database.is_ok();
    let body = json!({
        "ready": ready,
        "schema_loaded": schema_loaded,
        "database": match &database {
            Ok(()) => json!({"ok": true}),
            Err(e) => json!({"ok": false, "error": e}),
        },
        "upstream_reachable": sources.site_info.reachable(),
        "cached_types": view.schema.types.len(),
        "complete_types": view.complete.len(),
        "priming": priming,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
