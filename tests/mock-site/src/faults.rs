//! Injected faults: latency, HTTP error statuses, a "down" site and garbage replies.

use std::time::Duration;

/// What to do with the next request, decided under the state lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Answer normally.
    None,
    /// Answer this HTTP status with an HTML body.
    Status(u16),
    /// Answer 200 with a body that is not JSON.
    Garbage,
}

/// Fault configuration.
#[derive(Debug, Clone, Default)]
pub struct FaultState {
    pub latency: Duration,
    pub fail_next: u32,
    pub fail_status: u16,
    pub down: bool,
    pub garbage: bool,
    /// `read`s of these entity types get a 503 (every other request is answered).
    pub failing_reads: std::collections::BTreeSet<String>,
}

impl FaultState {
    /// Decide the fate of one request `body` (the parsed JSON, if it parsed): a `read` of a
    /// type in `failing_reads` fails, else as [`FaultState::decide`].
    pub fn decide_for(&mut self, body: Option<&serde_json::Value>) -> Injected {
        let read_type = body
            .filter(|b| b["method_name"] == "read")
            .and_then(|b| b["params"][1]["type"].as_str());
        if read_type.is_some_and(|t| self.failing_reads.contains(t)) {
            return Injected::Status(503);
        }
        self.decide()
    }

    /// Decide the fate of one request (consumes one `fail_next` credit).
    pub fn decide(&mut self) -> Injected {
        if self.down {
            return Injected::Status(503);
        }
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Injected::Status(self.fail_status);
        }
        if self.garbage {
            return Injected::Garbage;
        }
        Injected::None
    }
}

/// The HTML body sent with injected error statuses.
pub fn error_page(status: u16) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><title>{status}</title></head><body><h1>Error {status}</h1>\
         <p>The mock Shotgun site injected this failure.</p></body></html>\n"
    )
}
