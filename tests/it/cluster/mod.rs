//! Several instances on one PostgreSQL database (issue 14): the election itself
//! ([`election`]) and whole daemons side by side ([`instances`]). PostgreSQL only: skipped
//! loudly without SGCACHE_TEST_PG_URL. SQLite's single-instance lock is tested in [`sqlite`].
mod calibration;
mod election;
mod instances;
mod processes;
mod sqlite;
mod writes;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sgcache::db::{self, Pools};

use crate::support::{TestDb, pg_url, test_config};

/// A fresh PostgreSQL database, or `None` (noted loudly) when PostgreSQL is not configured.
async fn pg_db() -> Option<TestDb> {
    Some(TestDb::postgres(&pg_url()?).await)
}

async fn pools(db: &TestDb) -> Pools {
    let config = test_config(db, None);
    db::connect(&config.database).await.expect("connect")
}

/// Ends a PostgreSQL session from outside, as a dead leader host or a DBA would.
async fn terminate(pools: &Pools, pid: i32) {
    let row = pools
        .reader
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_terminate_backend($1) AS done",
            [pid.into()],
        ))
        .await
        .expect("pg_terminate_backend")
        .expect("a row");
    assert!(
        row.try_get::<bool>("", "done").expect("done"),
        "no session {pid}"
    );
}
