//! The api3 request envelope: `{"method_name": ..., "params": [auth, args]}`.
use serde_json::Value as Json;

use super::method::ApiMethod;
use crate::error::ApiError;

/// A parsed envelope.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub method: ApiMethod,
    /// `params` (`[auth, args]` for most methods).
    pub params: Vec<Json>,
}

impl Envelope {
    /// Checks the envelope: JSON, a `method_name` string, `params` a list.
    pub fn parse(body: &[u8]) -> Result<Envelope, ApiError> {
        let mut envelope: Json = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("sgcache: the request body is not valid JSON: {e}"))
        })?;
        let method = envelope
            .get("method_name")
            .and_then(Json::as_str)
            .map(ApiMethod::parse)
            .ok_or_else(|| {
                ApiError::bad_request("sgcache: the request has no method_name string")
            })?;
        // Taken, not cloned: the envelope is dropped here.
        let params = match envelope.get_mut("params").map(Json::take) {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(params)) => params,
            Some(_) => return Err(ApiError::bad_request("sgcache: params must be a list")),
        };
        Ok(Envelope { method, params })
    }

    /// `params[1]`, the method's arguments.
    pub fn args(&self) -> Option<&Json> {
        self.params.get(1)
    }
}
