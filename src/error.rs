//! API errors in Shotgun's own fault shape: HTTP 200 with
//! `{"exception": true, "error_code": N, "message": "..."}`. This is the only place that maps
//! sgcache's failures to codes.
use actix_web::HttpResponse;
use serde_json::json;

/// Codes the official client knows (§1.4 of the API reference) plus the generic one.
pub mod codes {
    /// Bad script key, login/password or session token.
    pub const AUTHENTICATION: i64 = 102;
    /// Everything else the site reports as a plain `Fault` (bad field, bad filter, ...).
    pub const GENERIC: i64 = 103;
}

/// A fault to send back to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (error_code {code})")]
pub struct ApiError {
    pub code: i64,
    pub message: String,
}

impl ApiError {
    pub fn new(code: i64, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// A request the site would reject (malformed body, bad parameter, unknown field...).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(codes::GENERIC, message)
    }

    pub fn authentication(message: impl Into<String>) -> ApiError {
        ApiError::new(codes::AUTHENTICATION, message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"exception": true, "error_code": self.code, "message": self.message})
    }

    /// HTTP 200 with the fault body, as the site answers.
    pub fn response(&self) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("application/json; charset=utf-8")
            .json(self.body())
    }
}
