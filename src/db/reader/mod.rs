//! Reads in the database: everything that runs SELECTs on the reader pool and decodes rows.
//!
//! [`page::execute`] runs a read compiled by [`crate::query`]; [`rows`] holds the other row
//! reads (stored links, active ids, whole rows for the verifier); [`sizes`] counts rows and
//! bytes. [`decode`] is the one decoder: columns back to the site's JSON by field kind, so
//! both backends give identical output. On SQLite the page reads run on rusqlite ([`sqlite`]); on
//! PostgreSQL on sqlx directly ([`postgres`]), except reads by id, which run on one pipelined
//! tokio-postgres connection per thread ([`pipelined`]).
pub mod decode;
pub mod page;
pub mod pipelined;
pub mod postgres;
pub mod rows;
pub mod sizes;
pub mod sqlite;

pub use page::{Body, execute, execute_body};
