//! The database briefly unavailable: every PostgreSQL connection of the daemon is killed (as
//! a PostgreSQL restart would); requests keep being answered, the DbWriter's work is retried
//! on fresh connections, nothing accepted is lost, and the daemon recovers by itself.
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
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
    let (test_db, daemon) = shots_on_postgres(&admin_url, &site).await;
    let base = daemon.url();
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
    assert!(
        terminate_all(&admin_url, &test_db.url).await > 0,
        "the daemon had connections"
    );

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
    let reads = PgReads::new(options, 1, &test_db.url);
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

/// PostgreSQL reads by id share one pipelined connection per HTTP worker thread: many at
/// once all answer what the site answers (an `id is` with counts, an `id in`, a retired
/// row), most on the pipelined connections, and when those connections are killed the reads
/// are still answered and are pipelined again on new connections.
#[actix_web::test]
async fn reads_by_id_are_pipelined_and_outlive_their_connection() {
    let Some(admin_url) = pg_url() else { return };
    let site = MockSite::start();
    let ids = site.seed("Shot", 120, |i| {
        json!({"code": format!("sh{i:03}"), "sg_status_list": if i % 2 == 0 {"ip"} else {"fin"}})
    });
    let (test_db, daemon) = shots_on_postgres(&admin_url, &site).await;
    let base = daemon.url();
    let by_id = |filters: Value, counts: bool| {
        json!({"method_name": "read", "params": [auth(), {"type": "Shot",
            "filters": filters, "return_fields": ["code", "sg_status_list"],
            "return_only": "active", "paging": {"entities_per_page": 50, "current_page": 1},
            "return_paging_info_without_counts": !counts}]})
    };
    let is = |id: i64| {
        json!({"logical_operator": "and", "conditions": [
            {"path": "id", "relation": "is", "values": [id]}]})
    };
    let reads: Vec<Value> = ids
        .iter()
        .take(40)
        .map(|&id| by_id(is(id), id % 2 == 0))
        .chain([by_id(
            json!({"logical_operator": "and", "conditions": [
                {"path": "id", "relation": "in", "values": [ids[3], ids[5], ids[90]]}]}),
            true,
        )])
        .collect();
    let site_url = site.url();
    check_all(&base, &site_url, &reads, "first").await;
    let first = pipelined_reads(&status_of(&daemon).await);
    assert!(first > 0, "reads by id were pipelined");

    // A retired row is gone from reads by id at once.
    let retired =
        json!({"method_name": "delete", "params": [auth(), {"type": "Shot", "id": ids[0]}]});
    assert_eq!(post(&base, &retired).await["results"], json!(true));
    let reply = post(&base, &by_id(is(ids[0]), true)).await;
    assert_eq!(reply["results"]["entities"], json!([]), "{reply}");
    assert_eq!(
        reply["results"]["paging_info"]["entity_count"], 0,
        "{reply}"
    );

    // Every connection of the daemon killed, pipelined ones included.
    assert!(terminate_all(&admin_url, &test_db.url).await > 0);
    let reads: Vec<Value> = reads.into_iter().skip(1).collect();
    check_all(&base, &site_url, &reads, "after the kill").await;
    eventually(
        Duration::from_secs(10),
        "reads by id pipelined again",
        || {
            let (daemon, base, site_url, reads) = (&daemon, &base, &site_url, &reads);
            async move {
                let before = pipelined_reads(&status_of(daemon).await);
                check_all(base, site_url, reads, "again").await;
                (pipelined_reads(&status_of(daemon).await) > before).then_some(())
            }
        },
    )
    .await;
    daemon.stop().await;
}

/// A read by id that waits for a lock on its table gives up its place on the pipelined
/// connection: a read of another table sent after it on the same connection (one worker, so
/// one pipelined connection) answers while the lock is held, and the waiting read answers as
/// the site does once the lock is released, on a connection of its own.
#[actix_web::test]
async fn a_read_waiting_for_a_lock_does_not_hold_up_the_pipeline() {
    let Some(admin_url) = pg_url() else { return };
    let site = MockSite::start();
    let shots = site.seed("Shot", 5, |i| json!({"code": format!("sh{i}")}));
    let assets = site.seed("Asset", 5, |i| json!({"code": format!("a{i}")}));
    let (test_db, daemon) = on_postgres(&admin_url, &site, &["Shot", "Asset"]).await;
    let base = daemon.url();
    let by_id = |entity_type: &str, id: i64| {
        json!({"method_name": "read", "params": [auth(), {"type": entity_type,
            "filters": [["id", "is", id]], "return_fields": ["code"],
            "return_only": "active", "paging": {"entities_per_page": 50, "current_page": 1}}]})
    };
    // The worker's pipelined connection is open.
    let warm = post(&base, &by_id("Asset", assets[0])).await;
    assert_eq!(warm["results"]["entities"][0]["code"], "a0", "{warm}");
    assert!(pipelined_reads(&status_of(&daemon).await) > 0);

    let admin = Database::connect(&test_db.url).await.expect("connect");
    let lock = admin.begin().await.expect("begin");
    lock.execute_unprepared("LOCK TABLE \"shot\" IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let shot_read = by_id("Shot", shots[1]);
    let waiting = actix_web::rt::spawn({
        let (base, read) = (base.clone(), shot_read.clone());
        async move { post(&base, &read).await }
    });
    actix_web::rt::time::sleep(Duration::from_millis(30)).await;
    let asset_read = by_id("Asset", assets[2]);
    let asset = actix_web::rt::time::timeout(Duration::from_secs(3), post(&base, &asset_read))
        .await
        .expect("the Asset read answers while the Shot table is locked");
    assert_eq!(
        asset["results"],
        post(&site.url(), &asset_read).await["results"]
    );
    assert!(!waiting.is_finished(), "the Shot read waits for the lock");
    lock.commit().await.expect("commit");
    let shot = waiting.await.expect("the Shot read");
    assert_eq!(
        shot["results"],
        post(&site.url(), &shot_read).await["results"]
    );
    let status = status_of(&daemon).await;
    assert!(
        database_count(&status, "pipelined_fallbacks") >= 1,
        "{}",
        status["database"]
    );
    daemon.stop().await;
}

/// A counter of `/status` → `database` (0 when absent).
fn database_count(status: &Value, key: &str) -> u64 {
    status["database"][key].as_u64().unwrap_or(0)
}

/// `/status` → `database.pipelined_reads`.
fn pipelined_reads(status: &Value) -> u64 {
    database_count(status, "pipelined_reads")
}

/// A daemon caching the site's Shots in a new PostgreSQL database (no event polling), primed.
async fn shots_on_postgres(admin_url: &str, site: &MockSite) -> (TestDb, Daemon) {
    on_postgres(admin_url, site, &["Shot"]).await
}

/// A daemon caching `types` of the site in a new PostgreSQL database (no event polling),
/// primed.
async fn on_postgres(admin_url: &str, site: &MockSite, types: &[&str]) -> (TestDb, Daemon) {
    let test_db = TestDb::postgres(admin_url).await;
    let mut config = test_config(&test_db, Some(site));
    config.schema.include = types.iter().map(|&t| t.to_owned()).collect();
    config.events.enabled = false;
    let daemon = Daemon::start(config, listener()).await.expect("daemon");
    wait_primed(&daemon, Duration::from_secs(30)).await;
    (test_db, daemon)
}

/// Terminates every connection to the database of `db_url` (what a PostgreSQL restart does to
/// the daemon); returns how many there were.
async fn terminate_all(admin_url: &str, db_url: &str) -> usize {
    let db_name = db_url
        .split('?')
        .next()
        .and_then(|s| s.rsplit('/').next())
        .expect("db name");
    let admin = Database::connect(admin_url).await.expect("admin");
    admin
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity \
                 WHERE datname = '{db_name}' AND pid <> pg_backend_pid()"
            ),
        ))
        .await
        .expect("terminate")
        .len()
}

/// Sends `reads` to sgcache all at once and each to the site: the answers are the same. A read
/// without counts is compared without `entity_count`: the mock site gives it anyway, sgcache
/// does not (and gives the site's answer when it passes the read through).
async fn check_all(base: &str, site: &str, reads: &[Value], round: &str) {
    let replies = futures_util::future::join_all(reads.iter().map(|r| post(base, r))).await;
    for (read, mut reply) in reads.iter().zip(replies) {
        let mut want = post(site, read).await;
        if read["params"][1]["return_paging_info_without_counts"] == json!(true) {
            for answer in [&mut reply, &mut want] {
                if let Some(paging) = answer["results"]["paging_info"].as_object_mut() {
                    paging.remove("entity_count");
                }
            }
        }
        assert_eq!(reply["results"], want["results"], "{round}: {read}");
    }
}
