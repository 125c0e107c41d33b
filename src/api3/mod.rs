//! Wire types of the api3 JSON-RPC protocol: the request envelope, read parameters and filters.

pub mod envelope;
pub mod filters;
pub mod method;
pub mod read;
