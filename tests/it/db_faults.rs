//! The database briefly unavailable: every PostgreSQL connection of the daemon is killed (as
//! a PostgreSQL restart would); requests keep being answered, the DbWriter's work is retried
//! on fresh connections, nothing accepted is lost, and the daemon recovers by itself.
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::{Value, json};
use sgcache::Daemon;

use crate::support::{
    MockSite, TestDb, eventually, first_difference, listener, pg_url, status_of, test_config,
    wait_primed,
};

async fn post(base: &str, body: &Value) -> Value {
    let mut r = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .post(format!("{base}/api3/json"))
        .send_json(body)
        .await
        .expect("POST");
    r.json().limit(4 << 20).await.expect("json")
}

fn auth() -> Value {
    json!({"script_name": "sgcache", "script_key": "test-key"})
}

#[actix_web::test]
async fn killed_postgres_connections_are_recovered_without_losing_a_write() {
    let Some(admin_url) = pg_url() else { return };
    let site = MockSite::start();
    site.seed("Shot", 200, |i| json!({"code": format!("sh{i:03}")}));
    let test_db = TestDb::postgres(&admin_url).await;
    let db_name = test_db
        .url
        .split('?')
        .next()
        .and_then(|s| s.rsplit('/').next())
        .expect("db name")
        .to_owned();
    let mut config = test_config(&test_db, Some(&site));
    config.schema.include = vec!["Shot".into()];
    config.events.enabled = false;
    let daemon = Daemon::start(config, listener()).await.expect("daemon");
    let base = daemon.url();
    wait_primed(&daemon, Duration::from_secs(30)).await;
    let read = json!({"method_name": "read", "params": [auth(), {"type": "Shot",
        "filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "less_than", "values": [50]}]},
        "return_fields": ["code"], "return_only": "active", "paging": {"entities_per_page": 100, "current_page": 1}}]});
    assert_eq!(
        post(&base, &read).await["results"]["entities"]
            .as_array()
            .map(Vec::len),
        Some(49)
    );

    // What a PostgreSQL restart does to the daemon: every connection dies.
    let admin = Database::connect(&admin_url).await.expect("admin");
    let killed = admin
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity \
                 WHERE datname = '{db_name}' AND pid <> pg_backend_pid()"
            ),
        ))
        .await
        .expect("terminate");
    assert!(!killed.is_empty(), "the daemon had connections");

    // Reads are still answered (from fresh connections, or passed through meanwhile).
    for _ in 0..5 {
        let reply = post(&base, &read).await;
        assert_eq!(
            reply["results"]["entities"].as_array().map(Vec::len),
            Some(49),
            "{reply}"
        );
    }
    // ... and answered locally again once the dead connections are replaced.
    let local = |s: Value| s["requests"]["served_locally"].as_u64().unwrap_or(0);
    eventually(
        Duration::from_secs(10),
        "reads answered locally again",
        || {
            let (daemon, base, read) = (&daemon, &base, &read);
            async move {
                let before = local(status_of(daemon).await);
                let reply = post(base, read).await;
                let after = local(status_of(daemon).await);
                (after > before
                    && reply["results"]["entities"].as_array().map(Vec::len) == Some(49))
                .then_some(())
            }
        },
    )
    .await;
    // A write right after: its write-back lands on a fresh connection, and reads see it.
    let reply = post(
        &base,
        &json!({"method_name": "update", "params": [auth(), {"type": "Shot", "id": 7,
        "fields": [{"field_name": "code", "value": "after the restart"}]}]}),
    )
    .await;
    assert_eq!(reply["results"]["code"], "after the restart", "{reply}");
    let reply = post(&base, &read).await;
    assert_eq!(
        reply["results"]["entities"][6]["code"], "after the restart",
        "{reply}"
    );
    let schema = daemon.cache.view().schema;
    assert_eq!(
        first_difference(&daemon.pools, &schema, &site, &["Shot"]).await,
        None
    );
    daemon.stop().await;
}

/// The page reads' connections on PostgreSQL are given out again with no test round trip, so
/// a connection goes back to its pool only when the read that had it finished: one whose
/// read was cancelled half way (a client hung up) or failed is replaced, not reused.
#[actix_web::test]
async fn a_read_connection_is_reused_only_after_its_read_finished() {
    use sea_orm::sqlx::{self, Row, postgres::PgConnectOptions};
    use sgcache::db::reader::postgres::PgReads;

    let Some(admin_url) = pg_url() else { return };
    let test_db = TestDb::postgres(&admin_url).await;
    let options: PgConnectOptions = test_db.url.parse().expect("URL");
    // One connection per thread.
    let reads = PgReads::new(options, 1);
    async fn backend(conn: &mut sqlx::PgConnection) -> i32 {
        sqlx::query("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await
            .expect("pid")
            .get(0)
    }

    let mut conn = reads.get().await.expect("a connection");
    let first = backend(&mut conn).await;
    conn.done();
    drop(conn);
    let mut conn = reads.get().await.expect("a connection");
    assert_eq!(
        backend(&mut conn).await,
        first,
        "a finished read's connection is reused"
    );

    // Cancelled while PostgreSQL still runs the statement.
    let slow = sqlx::query("SELECT pg_sleep(5)").execute(&mut **conn);
    assert!(
        actix_web::rt::time::timeout(Duration::from_millis(200), slow)
            .await
            .is_err(),
        "the statement was still running"
    );
    drop(conn);
    let mut conn = reads.get().await.expect("a connection");
    let second = backend(&mut conn).await;
    assert_ne!(second, first, "a cancelled read's connection is not reused");

    // Failed.
    let failed = sqlx::query("SELECT 1 / 0").execute(&mut **conn).await;
    assert!(failed.is_err(), "division by zero fails");
    drop(conn);
    let mut conn = reads.get().await.expect("a connection");
    assert_ne!(
        backend(&mut conn).await,
        second,
        "a failed read's connection is not reused"
    );
    conn.done();
    drop(conn);
    reads.close().await;
}
