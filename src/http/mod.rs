//! The HTTP surface: `/api3/json`, file traffic and browser redirects, `/ping`, `/status`
//! (JSON, or the HTML status page for browsers), `/metrics`, `/healthz`, `/readyz`, and
//! `POST /explain` (what sgcache would do with a request, see [`explain`]).
pub mod api3;
pub mod auth;
pub mod explain;
pub mod files;
pub mod health;
pub mod metrics;
pub mod page;
pub mod status;

use actix_web::{HttpResponse, web};

/// Registers every route; the daemon and the tests call this same function.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ping", web::get().to(ping))
        .route("/status", web::get().to(status::status))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/explain", web::post().to(explain::handler))
        .route("/api3/json", web::post().to(api3::api3))
        .route("/{prefix:.*}/api3/json", web::post().to(api3::api3))
        .route("/upload/{tail:.*}", web::route().to(files::proxy))
        .route("/file_serve/{tail:.*}", web::route().to(files::proxy))
        .route("/thumbnail/{tail:.*}", web::route().to(files::proxy))
        .route("/", web::get().to(files::redirect))
        .route("/detail/{tail:.*}", web::get().to(files::redirect))
        .route("/page/{tail:.*}", web::get().to(files::redirect));
}

/// `pong`, as clients that probe for a cache expect.
async fn ping() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("pong")
}
