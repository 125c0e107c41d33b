//! Three in-process daemons on one PostgreSQL database and one mock site: one leader follows
//! the site, every instance serves, a dead leader is replaced within the bound and nothing is
//! lost or applied twice, a schema change reaches every instance.
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use sgcache::Daemon;
use sgcache::cluster::Fence;
use sgcache::config::Config;
use sgcache::db::registry;
use sgcache_mock_site::{MockSite, Schema};

use super::{pg_db, terminate};
use crate::support::{
    TestDb, eventually, every_type_complete, first_difference, json_of, listener, status_of,
    test_config, wait_primed,
};
use crate::writes::{results, seed};

/// `events.poll_interval` of these tests; a takeover must happen within 2 × this + a few s.
const POLL: Duration = Duration::from_millis(200);
const TYPES: [&str; 4] = ["Project", "Sequence", "Shot", "Asset"];

pub(super) fn config(test_db: &TestDb, site: &MockSite) -> Config {
    let mut config = test_config(test_db, Some(site));
    config.schema.include = TYPES.iter().map(|t| (*t).to_owned()).collect();
    config.events.poll_interval = POLL;
    config.scanner.interval = Duration::from_secs(1);
    config.server.write_back_wait = Duration::from_secs(10);
    config
}

/// `n` daemons started at the same moment on one database.
pub(super) async fn start_all(config: &Config, n: usize) -> Vec<Daemon> {
    let starts = (0..n).map(|_| Daemon::start(config.clone(), listener()));
    futures_util::future::join_all(starts)
        .await
        .into_iter()
        .map(|d| d.expect("every instance starts"))
        .collect()
}

fn leaders(daemons: &[Daemon]) -> Vec<usize> {
    (0..daemons.len())
        .filter(|i| daemons[*i].cluster.is_leader())
        .collect()
}

/// Waits for exactly one leader among `daemons`, checks it stays alone for a while.
pub(super) async fn one_leader(daemons: &[Daemon]) -> usize {
    let leader = eventually(Duration::from_secs(10), "a leader", || {
        let found = leaders(daemons);
        async move { (found.len() == 1).then(|| found[0]) }
    })
    .await;
    actix_web::rt::time::sleep(POLL * 3).await;
    assert_eq!(leaders(daemons), vec![leader], "exactly one leader");
    leader
}

/// Every instance is ready, knows `leader`, and serves every type locally.
async fn all_serving(daemons: &[Daemon], leader: usize) {
    wait_primed(&daemons[leader], Duration::from_secs(60)).await;
    let name = daemons[leader].cluster.instance.clone();
    for daemon in daemons {
        eventually(Duration::from_secs(30), "a ready follower", || async {
            let ready = awc::Client::default()
                .get(format!("{}/readyz", daemon.url()))
                .send()
                .await
                .ok()?
                .status()
                .is_success();
            let s = status_of(daemon).await;
            (ready && every_type_complete(&s) && s["cluster"]["leader"] == name.as_str())
                .then_some(())
        })
        .await;
    }
}

fn read_args(id: i64, fields: &[&str]) -> Value {
    json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": [
        {"path": "id", "relation": "is", "values": [id]}]},
        "return_fields": fields, "return_only": "active",
        "paging": {"entities_per_page": 1, "current_page": 1}})
}

/// Reads `field` of Shot `id` through `daemon`: the value, and whether the cache answered.
async fn read_counted(daemon: &Daemon, id: i64, field: &str) -> (Value, bool) {
    let local = |s: Value| s["requests"]["served_locally"].as_u64().unwrap_or(0);
    let before = local(status_of(daemon).await);
    let read = results(&daemon.url(), "read", read_args(id, &[field])).await;
    let answered_locally = local(status_of(daemon).await) == before + 1;
    (read["entities"][0][field].clone(), answered_locally)
}

/// Reads `field` of Shot `id` through `daemon`, checking it was answered from the cache.
async fn read_locally(daemon: &Daemon, id: i64, field: &str) -> Value {
    let (value, answered_locally) = read_counted(daemon, id, field).await;
    assert!(
        answered_locally,
        "{} answered locally",
        daemon.cluster.instance
    );
    value
}

fn event_reads(site: &MockSite) -> usize {
    site.requests()
        .iter()
        .filter(|r| r.method == "read" && r.entity_type.as_deref() == Some("EventLogEntry"))
        .count()
}

fn polls(daemon: &Daemon) -> u64 {
    daemon.event_poller_stats.snapshot().polls
}

/// Events every instance counted as applied, ignored or failed (each committed page once).
fn events_counted(daemons: &[Daemon]) -> u64 {
    daemons
        .iter()
        .map(|d| {
            let s = d.event_poller_stats.snapshot();
            [s.applied, s.ignored, s.failed]
                .iter()
                .flat_map(|m| m.values())
                .sum::<u64>()
        })
        .sum()
}

async fn stored_checkpoint(daemon: &Daemon) -> i64 {
    registry::event_cursor(&daemon.pools.reader)
        .await
        .expect("cursor")
        .map_or(0, |c| c.last_event_id)
}

async fn caught_up(daemon: &Daemon, site: &MockSite) {
    let last = site.last_event_id();
    eventually(
        Duration::from_secs(30),
        "the checkpoint at the site's last event",
        || async { (stored_checkpoint(daemon).await >= last).then_some(()) },
    )
    .await;
}

/// Three daemons on `test_db` in front of a seeded mock site, started together: one leader
/// elected, every instance serving. Returns the site, the daemons and the leader's index.
async fn three_serving(test_db: &TestDb) -> (MockSite, Vec<Daemon>, usize) {
    let site = MockSite::start();
    seed(&site);
    let daemons = start_all(&config(test_db, &site), 3).await;
    let leader = one_leader(&daemons).await;
    all_serving(&daemons, leader).await;
    (site, daemons, leader)
}

pub(super) async fn stop_all(daemons: Vec<Daemon>) {
    for daemon in daemons {
        assert!(daemon.stop().await, "a clean stop");
    }
}

#[actix_web::test]
async fn three_instances_started_together_elect_one_leader_and_all_serve() {
    let Some(test_db) = pg_db().await else { return };
    let (site, daemons, leader) = three_serving(&test_db).await;

    // One event poller: the followers never poll, and the site's event reads are the leader's.
    site.clear_requests();
    let before: Vec<u64> = daemons.iter().map(polls).collect();
    actix_web::rt::time::sleep(POLL * 8).await;
    let leader_polls = polls(&daemons[leader]) - before[leader];
    let reads = event_reads(&site) as u64;
    assert!(leader_polls >= 3, "the leader polls: {leader_polls}");
    assert!(
        reads <= leader_polls + 1,
        "{reads} event reads for {leader_polls} polls of the leader"
    );
    for (i, daemon) in daemons.iter().enumerate() {
        if i != leader {
            assert_eq!(polls(daemon), 0, "follower {i} polled the event log");
        }
    }

    // A write through a follower is read back, locally, through every instance.
    let follower = (leader + 1) % daemons.len();
    results(
        &daemons[follower].url(),
        "update",
        json!({"type": "Shot", "id": 5, "fields": [{"field_name": "code", "value": "via a follower"}]}),
    )
    .await;
    let created = results(
        &daemons[leader].url(),
        "create",
        json!({"type": "Shot", "fields": [{"field_name": "code", "value": "made on the leader"}]}),
    )
    .await;
    let new_id = created["id"].as_i64().expect("id");
    for daemon in &daemons {
        assert_eq!(read_locally(daemon, 5, "code").await, "via a follower");
        assert_eq!(
            read_locally(daemon, new_id, "code").await,
            "made on the leader"
        );
    }
    let status = status_of(&daemons[follower]).await;
    assert_eq!(
        status["cluster"]["role"], "follower",
        "{}",
        status["cluster"]
    );
    assert_eq!(status["cluster"]["mode"], "elected");
    assert_eq!(status["cluster"]["takeovers"], 0);
    assert!(status["cluster"]["leader_since"].is_string());
    assert!(
        status["cluster"]["synced_at"].is_string(),
        "{}",
        status["cluster"]
    );
    assert_eq!(
        status["cluster"]["sync_failures"], 0,
        "{}",
        status["cluster"]
    );

    // A follower whose syncs fail says so on /status and keeps serving what its last good
    // sync gave; the next good sync clears it. (A newest schema snapshot that is not JSON.)
    let pools = super::pools(&test_db).await;
    pools
        .writer
        .execute_unprepared(
            "INSERT INTO sgcache_schema_snapshot (fetched_at, source, digest, schema_read) \
             VALUES ('2026-01-01T00:00:00Z', 'test', 'not json', 'not json')",
        )
        .await
        .expect("insert a snapshot that is not JSON");
    let failing = eventually(Duration::from_secs(10), "a failed sync on /status", || {
        let daemon = &daemons[follower];
        async move {
            let cluster = status_of(daemon).await["cluster"].take();
            (cluster["sync_failures"].as_u64() >= Some(1)).then_some(cluster)
        }
    })
    .await;
    let error = failing["sync_error"].as_str().unwrap_or_default();
    assert!(error.contains("sgcache_schema_snapshot"), "{failing}");
    assert_eq!(
        read_locally(&daemons[follower], 5, "code").await,
        "via a follower"
    );
    pools
        .writer
        .execute_unprepared("DELETE FROM sgcache_schema_snapshot WHERE digest = 'not json'")
        .await
        .expect("delete the snapshot that is not JSON");
    eventually(
        Duration::from_secs(10),
        "a good sync after the failed ones",
        || {
            let daemon = &daemons[follower];
            async move {
                let cluster = status_of(daemon).await["cluster"].take();
                (cluster["sync_failures"] == 0 && cluster["sync_error"].is_null()).then_some(())
            }
        },
    )
    .await;
    stop_all(daemons).await;
}

#[actix_web::test]
async fn a_dead_leader_is_replaced_within_the_bound_and_no_event_is_lost_or_applied_twice() {
    let Some(test_db) = pg_db().await else { return };
    let (site, daemons, old) = three_serving(&test_db).await;
    caught_up(&daemons[old], &site).await;
    let checkpoint = stored_checkpoint(&daemons[old]).await;
    let counted = events_counted(&daemons);

    // A stream of site writes; in its middle the leader's lock session dies (the leader itself
    // keeps running: its in-flight writes must be fenced off).
    for round in 0..3i64 {
        for id in 1..=30i64 {
            site.update(
                "Shot",
                id,
                json!({"code": format!("r{round}-{id}"), "sg_cut_in": round * 100 + id}),
            );
            if id % 10 == 0 {
                actix_web::rt::time::sleep(Duration::from_millis(30)).await;
            }
        }
        if round == 1 {
            let Fence::Session(pid) = daemons[old].cluster.fence() else {
                panic!("the leader has no lock session");
            };
            terminate(&daemons[old].pools, pid).await;
        }
    }
    let killed = Instant::now();
    site.create("Shot", json!({"code": "after the failover"}));
    site.delete("Shot", 30);
    site.update("Shot", 29, json!({"assets": [{"type": "Asset", "id": 2}]}));

    let new = eventually(Duration::from_secs(10), "a new leader", || {
        let found = leaders(&daemons);
        async move { (found.len() == 1 && found[0] != old).then(|| found[0]) }
    })
    .await;
    let failover = killed.elapsed();
    assert!(
        failover <= POLL * 2 + Duration::from_secs(3),
        "{failover:?}"
    );
    assert_eq!(daemons[old].cluster.leadership_lost(), 1);
    assert_eq!(leaders(&daemons), vec![new]);

    caught_up(&daemons[new], &site).await;
    let schema = daemons[new].cache.view().schema;
    assert_eq!(
        first_difference(&daemons[new].pools, &schema, &site, &TYPES).await,
        None
    );
    // Nothing lost: the checkpoint reached the site's last event and the tables equal the
    // site. Nothing applied twice: no event is counted by two pollers. (A page the old leader
    // committed while it was being stopped is applied but counted by nobody: its poller was
    // dropped before it saw the reply, hence `<=`.)
    let applied = events_counted(&daemons) - counted;
    let expected = (site.last_event_id() - checkpoint) as u64;
    assert!(
        applied <= expected,
        "{applied} events counted for {expected}: some were applied twice"
    );
    let status = status_of(&daemons[old]).await;
    assert_eq!(status["cluster"]["role"], "follower");
    assert_eq!(status["cluster"]["takeovers"], 1, "{}", status["cluster"]);
    for daemon in &daemons {
        assert_eq!(read_locally(daemon, 29, "code").await, "r2-29");
    }
    stop_all(daemons).await;
}

/// The site's schema plus a text field `Shot.sg_cluster_note`.
fn with_new_field(site: &MockSite) -> Schema {
    let schema = site.schema();
    let mut read = schema.schema_read();
    let mut field = read["Shot"]["description"].clone();
    field["name"]["value"] = json!("Cluster note");
    read["Shot"]["sg_cluster_note"] = field;
    Schema::from_values(read, Some(schema.schema_entity_read())).expect("schema")
}

#[actix_web::test]
async fn a_schema_change_is_applied_once_and_served_by_every_instance() {
    let Some(test_db) = pg_db().await else { return };
    let (site, daemons, leader) = three_serving(&test_db).await;
    let snapshots = || async {
        use sea_orm::EntityTrait;
        sgcache::db::entities::schema_snapshot::Entity::find()
            .all(&daemons[leader].pools.reader)
            .await
            .expect("snapshots")
            .len()
    };
    let before = snapshots().await;

    let schema = Arc::new(with_new_field(&site));
    site.with_state(|s| s.store.schema = schema);
    site.update("Shot", 3, json!({"sg_cluster_note": "new column"}));
    site.create(
        "EventLogEntry",
        json!({"event_type": "Shotgun_DisplayColumn_New",
               "meta": {"type": "new_entity", "entity_type": "DisplayColumn", "entity_id": 9999}}),
    );
    for daemon in &daemons {
        eventually(Duration::from_secs(60), "the new field served", || async {
            let s = status_of(daemon).await;
            let shot = &s["schema"]["types"]["Shot"];
            (shot["complete"] == true
                && daemon.cache.view().schema.types["Shot"]
                    .fields
                    .contains_key("sg_cluster_note"))
            .then_some(())
        })
        .await;
        // A follower plans with the new schema from its next sync on (README: up to one tick
        // after the leader's DDL a read may still pass through): wait for a local answer.
        eventually(
            Duration::from_secs(30),
            "the new field answered locally",
            || async {
                let (note, answered_locally) = read_counted(daemon, 3, "sg_cluster_note").await;
                (answered_locally && note == "new column").then_some(())
            },
        )
        .await;
    }
    assert_eq!(snapshots().await, before + 1, "the new schema stored once");
    let loader =
        json_of(status_of(&daemons[(leader + 1) % 3]).await["actors"]["schema_loader"].clone());
    assert_eq!(loader["source"], "leader", "{loader}");
    stop_all(daemons).await;
}
