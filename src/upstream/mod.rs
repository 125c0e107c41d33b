//! The client for the real Shotgun site's JSON-RPC endpoint (`/api3/json`), built on awc.
//!
//! awc's client is `!Send`: create one [`UpstreamClient`] per arbiter/actor and drive its
//! futures there (`ctx.spawn`, `into_actor`), never with `tokio::spawn`.
//!
//! Idempotent calls (the daemon's own reads) are retried on transport errors, timeouts,
//! 5xx and 429 with exponential back-off and jitter, at most `shotgun.max_attempts` times.
//! Shotgun faults (`{"exception": true, ...}`) become [`UpstreamError::Fault`] and are not
//! retried: asking again would give the same answer.
pub mod fetch;
pub mod passthrough;
pub mod refresh;

use std::time::Duration;

use actix_web::http::StatusCode;
use rand::Rng;
use serde_json::{Value as Json, json};
use tracing::{debug, warn};

use crate::config::{ShotgunConfig, SiteUrl};

/// Largest reply accepted from the site (a big site's `schema_read` is a few MiB).
pub(crate) const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach the Shotgun site: {0}")]
    Transport(String),
    #[error("the Shotgun site did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the Shotgun site answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("the Shotgun site returned a fault (error_code {code:?}): {message}")]
    Fault { code: Option<i64>, message: String },
    #[error("the Shotgun site answered something that is not a JSON-RPC reply: {0}")]
    Decode(String),
}

impl UpstreamError {
    /// Worth asking again (for idempotent calls).
    pub fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Transport(_) | UpstreamError::Timeout(_) => true,
            UpstreamError::Http { status, .. } => *status == 429 || *status >= 500,
            UpstreamError::Fault { .. } | UpstreamError::Decode(_) => false,
        }
    }

    /// The site itself could not be reached or did not answer (as opposed to a fault).
    pub fn is_unreachable(&self) -> bool {
        self.is_transient()
    }
}

/// Talks to one site with one set of script credentials.
pub struct UpstreamClient {
    client: awc::Client,
    endpoint: String,
    auth: Json,
    timeout: Duration,
    max_attempts: u32,
    backoff: Duration,
}

impl UpstreamClient {
    pub fn new(config: &ShotgunConfig) -> UpstreamClient {
        let client = awc::Client::builder()
            .timeout(config.timeout)
            .connector(awc::Connector::new().timeout(config.timeout.min(Duration::from_secs(10))))
            .finish();
        UpstreamClient {
            client,
            endpoint: site_endpoint(config.url.as_ref()),
            auth: json!({
                "script_name": config.script_name,
                "script_key": config.api_key.expose(),
            }),
            timeout: config.timeout,
            max_attempts: config.max_attempts.max(1),
            backoff: config.retry_backoff,
        }
    }

    /// A client for the configured site, or `None` when `shotgun.url` is not set.
    pub fn configured(config: &ShotgunConfig) -> Option<UpstreamClient> {
        config.url.as_ref().map(|_| UpstreamClient::new(config))
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `info` (sent without auth, as the official client does).
    pub async fn info(&self) -> Result<Json, UpstreamError> {
        self.call_idempotent(json!({"method_name": "info", "params": []}))
            .await
    }

    /// An idempotent method with sgcache's own credentials; returns `results`.
    pub async fn call(&self, method: &str, args: Option<Json>) -> Result<Json, UpstreamError> {
        let mut params = vec![self.auth.clone()];
        if let Some(args) = args {
            params.push(args);
        }
        self.call_idempotent(json!({"method_name": method, "params": params}))
            .await
    }

    /// `schema_read` and `schema_entity_read` (without a project: the whole site).
    pub async fn schema(&self) -> Result<(Json, Json), UpstreamError> {
        let fields = self.call("schema_read", None).await?;
        let entities = self.call("schema_entity_read", None).await?;
        Ok((fields, entities))
    }

    async fn call_idempotent(&self, body: Json) -> Result<Json, UpstreamError> {
        let mut attempt = 1;
        loop {
            match self.post_once(&body).await {
                Err(err) if err.is_transient() && attempt < self.max_attempts => {
                    let delay = backoff_delay(self.backoff, attempt);
                    warn!(error = %err, attempt, delay_ms = delay.as_millis() as u64, "upstream call failed, retrying");
                    actix_web::rt::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn post_once(&self, body: &Json) -> Result<Json, UpstreamError> {
        let method = body
            .get("method_name")
            .and_then(Json::as_str)
            .unwrap_or("?");
        debug!(method, "upstream call");
        let mut response = self
            .client
            .post(&self.endpoint)
            .insert_header(("content-type", "application/json; charset=utf-8"))
            .send_json(body)
            .await
            .map_err(|e| match e {
                awc::error::SendRequestError::Timeout => UpstreamError::Timeout(self.timeout),
                other => UpstreamError::Transport(other.to_string()),
            })?;
        let status = response.status();
        let bytes = response
            .body()
            .limit(MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| UpstreamError::Transport(format!("reading the reply: {e}")))?;
        decode_reply(status, &bytes)
    }
}

/// `https://site/` or `https://site/prefix/` → `https://site/api3/json`. The client library
/// drops a prefix without a trailing slash; sgcache keeps whatever path the URL has.
pub fn api_endpoint(site_url: &str) -> String {
    format!("{}/api3/json", site_url.trim_end_matches('/'))
}

/// The api3 endpoint of `site`. Without a site (clients built whatever the configuration, e.g.
/// one pass-through client per HTTP worker) the endpoint has no host: every request fails.
pub fn site_endpoint(site: Option<&SiteUrl>) -> String {
    api_endpoint(site.map_or("", SiteUrl::as_str))
}

/// Turns an HTTP reply into `results`, a typed fault, or an error.
pub fn decode_reply(status: StatusCode, body: &[u8]) -> Result<Json, UpstreamError> {
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(UpstreamError::Http {
            status: status.as_u16(),
            body: text,
        });
    }
    let value: Json = serde_json::from_slice(body).map_err(|e| {
        UpstreamError::Decode(format!(
            "{e}; body starts with {:?}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        ))
    })?;
    if value
        .get("exception")
        .is_some_and(|e| e.as_bool().unwrap_or(!e.is_null()))
    {
        return Err(UpstreamError::Fault {
            code: value.get("error_code").and_then(Json::as_i64),
            message: value
                .get("message")
                .and_then(Json::as_str)
                .unwrap_or("unknown error")
                .to_owned(),
        });
    }
    match value {
        Json::Object(mut map) if map.contains_key("results") => {
            Ok(map.remove("results").unwrap_or(Json::Null))
        }
        other => Ok(other),
    }
}

/// `base · 2^(attempt-1)`, capped at 30 s, with ±25 % jitter.
pub fn backoff_delay(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let capped = exp.min(Duration::from_secs(30));
    let jitter = rand::rng().random_range(0.75..1.25);
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_results_faults_and_errors() {
        let ok = decode_reply(StatusCode::OK, br#"{"results": {"a": 1}}"#).expect("ok");
        assert_eq!(ok, json!({"a": 1}));
        let fault = decode_reply(
            StatusCode::OK,
            br#"{"exception": true, "error_code": 102, "message": "Can't authenticate script 'x'"}"#,
        )
        .expect_err("fault");
        assert!(matches!(
            fault,
            UpstreamError::Fault {
                code: Some(102),
                ..
            }
        ));
        assert!(!fault.is_transient());
        let busy =
            decode_reply(StatusCode::SERVICE_UNAVAILABLE, b"<html>busy</html>").expect_err("503");
        assert!(busy.is_transient());
        let throttled = decode_reply(StatusCode::TOO_MANY_REQUESTS, b"").expect_err("429");
        assert!(throttled.is_transient());
        let garbage = decode_reply(StatusCode::OK, b"<html>").expect_err("garbage");
        assert!(matches!(garbage, UpstreamError::Decode(_)));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let first = backoff_delay(base, 1);
        assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(125));
        let fourth = backoff_delay(base, 4);
        assert!(fourth >= Duration::from_millis(600) && fourth <= Duration::from_millis(1000));
        assert!(backoff_delay(base, 30) <= Duration::from_millis(37_500));
    }

    #[test]
    fn endpoint_keeps_the_path() {
        assert_eq!(
            api_endpoint("https://site.example"),
            "https://site.example/api3/json"
        );
        assert_eq!(
            api_endpoint("https://site.example/"),
            "https://site.example/api3/json"
        );
        assert_eq!(
            api_endpoint("http://127.0.0.1:9/x/"),
            "http://127.0.0.1:9/x/api3/json"
        );
    }
}
