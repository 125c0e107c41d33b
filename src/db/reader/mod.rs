//! Reads in the database: everything that runs SELECTs on the reader pool and decodes rows.
//!
//! [`page::execute`] runs a read compiled by [`crate::query`]; [`decode`] turns result rows
//! back into the site's JSON by field kind, so both backends give identical output.
pub mod decode;
pub mod page;

pub use page::execute;
