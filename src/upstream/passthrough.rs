//! Forwarding a client's api3 request to the site unchanged (bytes in, bytes out).
//!
//! One [`PassThrough`] per HTTP worker (awc's client is `!Send`); connections are pooled and
//! kept alive by awc. The client's body and auth go through untouched; the site's status,
//! content type and body come back unchanged. When the site cannot be reached the client gets
//! a Shotgun fault naming the problem (HTTP 200), never a 502/504: the official client retries
//! those, which would repeat a write that may already have been applied.
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};

use crate::config::ShotgunConfig;
use crate::error::ApiError;

/// Request headers that matter to the site and are forwarded as they came.
const FORWARDED_HEADERS: &[&str] = &["content-type", "user-agent", "locale", "authorization"];

pub struct PassThrough {
    client: awc::Client,
    endpoint: String,
    timeout: Duration,
}

/// What the site answered, ready to send on.
pub struct Forwarded {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Forwarded {
    pub fn into_response(self) -> HttpResponse {
        let status = actix_web::http::StatusCode::from_u16(self.status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = HttpResponse::build(status);
        if let Some(ct) = self.content_type {
            response.insert_header((header::CONTENT_TYPE, ct));
        }
        response.body(self.body)
    }
}

impl PassThrough {
    pub fn new(config: &ShotgunConfig) -> PassThrough {
        let client = awc::Client::builder()
            .timeout(config.timeout)
            .connector(awc::Connector::new().timeout(config.timeout.min(Duration::from_secs(10))))
            .finish();
        PassThrough {
            client,
            endpoint: super::site_endpoint(config.url.as_ref()),
            timeout: config.timeout,
        }
    }

    /// Sends `body` to the site's `/api3/json` with the client's relevant headers.
    pub async fn forward(&self, req: &HttpRequest, body: Bytes) -> Result<Forwarded, ApiError> {
        let mut upstream = self.client.post(&self.endpoint);
        for name in FORWARDED_HEADERS {
            if let Some(value) = req.headers().get(*name) {
                upstream = upstream.insert_header((*name, value.clone()));
            }
        }
        let mut response = upstream.send_body(body).await.map_err(|e| match e {
            awc::error::SendRequestError::Timeout => ApiError::bad_request(format!(
                "sgcache: the Shotgun site did not answer within {}",
                humantime::format_duration(self.timeout)
            )),
            other => {
                ApiError::bad_request(format!("sgcache: cannot reach the Shotgun site: {other}"))
            }
        })?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .body()
            .limit(super::MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "sgcache: reading the Shotgun site's reply failed: {e}"
                ))
            })?;
        Ok(Forwarded {
            status,
            content_type,
            body,
        })
    }
}

/// What checking a caller's credentials with the site gave.
#[derive(Debug)]
pub enum Validation {
    Accepted,
    /// The site's own authentication fault (error_code 102, 106, 108 or 110).
    Rejected(ApiError),
    /// The site could not be asked.
    Unreachable(ApiError),
}

/// Authentication faults as the official client maps them (§1.4 of the API reference).
const AUTH_ERROR_CODES: &[i64] = &[102, 106, 108, 110];

impl PassThrough {
    /// Asks the site whether it accepts `auth` (a one-row read made with it).
    pub async fn validate(&self, auth: &serde_json::Value) -> Validation {
        let body = crate::http::auth::validation_request(auth);
        let mut response = match self
            .client
            .post(&self.endpoint)
            .insert_header(("content-type", "application/json; charset=utf-8"))
            .send_json(&body)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Validation::Unreachable(ApiError::bad_request(format!(
                    "sgcache: cannot reach the Shotgun site: {e}"
                )));
            }
        };
        let status = response.status();
        let bytes = match response.body().limit(1 << 20).await {
            Ok(b) => b,
            Err(e) => {
                return Validation::Unreachable(ApiError::bad_request(format!(
                    "sgcache: reading the Shotgun site's reply failed: {e}"
                )));
            }
        };
        match super::decode_reply(status, &bytes) {
            Ok(_) => Validation::Accepted,
            Err(super::UpstreamError::Fault {
                code: Some(code),
                message,
            }) if AUTH_ERROR_CODES.contains(&code) => {
                Validation::Rejected(ApiError::new(code, message))
            }
            // Any other fault means the site knew who was asking.
            Err(super::UpstreamError::Fault { .. }) => Validation::Accepted,
            Err(e) => Validation::Unreachable(ApiError::bad_request(format!("sgcache: {e}"))),
        }
    }
}
