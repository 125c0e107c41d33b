//! The HTTP surface: `/ping`, `/status` (and, with later features, `/api3/json`).
pub mod status;

use actix_web::{HttpResponse, web};

/// Registers every route; the daemon and the tests call this same function.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ping", web::get().to(ping))
        .route("/status", web::get().to(status::status));
}

/// `pong`, as clients that probe for a cache expect.
async fn ping() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("pong")
}
