//! Shotgun application-level faults (`{"exception": true, ...}` on HTTP 200).

use serde_json::{Value, json};
use std::fmt;

/// Error code used for authentication failures (the client raises `AuthenticationFault`).
pub const AUTH_FAILED: i64 = 102;
/// Error code used by the mock for every other fault (invented by the original sgcache; real codes are undocumented).
pub const CLIENT_FAULT: i64 = 103;

/// A Shotgun fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub error_code: i64,
    pub message: String,
}

impl Fault {
    pub fn new(message: impl Into<String>) -> Fault {
        Fault {
            error_code: CLIENT_FAULT,
            message: message.into(),
        }
    }

    pub fn auth(message: impl Into<String>) -> Fault {
        Fault {
            error_code: AUTH_FAILED,
            message: message.into(),
        }
    }

    /// The JSON body sent to the client.
    pub fn to_body(&self) -> Value {
        json!({"exception": true, "error_code": self.error_code, "message": self.message})
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fault {}: {}", self.error_code, self.message)
    }
}

impl std::error::Error for Fault {}

/// Render a JSON value the way Shotgun's Rails back end quotes request fragments in messages
/// (`{"values"=>["x"], "path"=>"code", "relation"=>"is"}`).
pub fn ruby_inspect(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{:?}=>{}", k, ruby_inspect(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(ruby_inspect).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Null => "nil".into(),
        other => other.to_string(),
    }
}
