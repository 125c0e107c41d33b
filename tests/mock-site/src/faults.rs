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
}

impl FaultState {
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
