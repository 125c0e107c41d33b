//! File traffic and browser links.
//!
//! `/upload/…`, `/file_serve/…` and `/thumbnail/…` are proxied to the site streaming in both
//! directions: request and response bodies flow through chunk by chunk and are never held
//! whole, so a 1 GiB upload does not grow sgcache's memory. `/`, `/detail/…` and `/page/…`
//! redirect a browser to the site. (The official client builds file URLs from the host only,
//! ignoring a `base_url` path prefix, so these routes live at the root.)
use std::time::Duration;

use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::config::ShotgunConfig;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones awc sets itself.
const NOT_FORWARDED: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn forwarded(name: &HeaderName) -> bool {
    !NOT_FORWARDED.contains(&name.as_str())
}

pub struct FileProxy {
    client: awc::Client,
    site: String,
}

impl FileProxy {
    /// Transfers can take long: no overall timeout, but connecting is bounded.
    pub fn new(config: &ShotgunConfig) -> FileProxy {
        let client = awc::Client::builder()
            .disable_timeout()
            .no_default_headers()
            .connector(awc::Connector::new().timeout(config.timeout.min(Duration::from_secs(10))))
            .finish();
        FileProxy {
            client,
            site: config
                .url
                .as_ref()
                .map(|url| site_root(url.as_str()))
                .unwrap_or_default(),
        }
    }
}

/// `https://site.example/prefix/` → `https://site.example`.
fn site_root(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.trim_end_matches('/').to_owned(),
    }
}

fn target(site: &str, req: &HttpRequest) -> String {
    match req.uri().query() {
        Some(q) => format!("{site}{}?{q}", req.path()),
        None => format!("{site}{}", req.path()),
    }
}

/// Streams the request to the site and the site's answer back.
pub async fn proxy(
    req: HttpRequest,
    payload: web::Payload,
    proxy: web::Data<FileProxy>,
) -> HttpResponse {
    let mut upstream = proxy
        .client
        .request(req.method().clone(), target(&proxy.site, &req));
    for (name, value) in req.headers() {
        if forwarded(name) {
            upstream = upstream.append_header((name.clone(), value.clone()));
        }
    }
    let response = match upstream.send_stream(payload).await {
        Ok(r) => r,
        Err(e) => {
            return HttpResponse::BadGateway()
                .content_type("text/plain; charset=utf-8")
                .body(format!("sgcache: cannot reach the Shotgun site: {e}"));
        }
    };
    let mut out = HttpResponse::build(response.status());
    for (name, value) in response.headers() {
        if forwarded(name) && name != header::CONTENT_LENGTH {
            out.append_header((name.clone(), value.clone()));
        }
    }
    match response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        // Keep the length the site announced (clients show progress with it).
        Some(len) => out.body(actix_web::body::SizedStream::new(len, response)),
        None => out.streaming(response),
    }
}

/// `/`, `/detail/…`, `/page/…`: to the site.
pub async fn redirect(req: HttpRequest, proxy: web::Data<FileProxy>) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, target(&proxy.site, &req)))
        .finish()
}
