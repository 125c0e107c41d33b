//! sgcache's integration tests: one binary, modules by area. Each test runs on SQLite, and
//! also on PostgreSQL when SGCACHE_TEST_PG_URL is set (`.ci/run` always sets it).
mod support;

mod auth;
mod calibration;
mod cli;
mod cluster;
mod crash;
mod daemon;
mod db_faults;
mod ddl;
mod events;
mod explain;
mod hostile;
mod links;
mod ops;
mod pipeline;
mod priming;
mod python_client;
mod query;
mod relink;
mod scanner;
mod schema_calls;
mod supervision;
mod upstream;
mod verify;
mod writer;
mod writes;
