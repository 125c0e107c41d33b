//! The EventPoller against the mock site on both backends. The scanner is switched off so
//! that only events change the cache; the cache is primed directly from the site's rows.
//!
//! Covered: every event kind (New; scalar Change for text, number, date, date_time,
//! checkbox, list, status_list, entity; multi-entity add/remove and their back-references;
//! Retirement; Revival) reaches the cache; writes by a script without events are NOT seen by
//! the poller (the scanner's job); events committed out of order are all applied; a burnt
//! id is declared missing after the gap window; a daemon restarted mid-stream ends equal to
//! the site, applying each event exactly once; a site outage is retried without skipping.
use std::time::Duration;

use serde_json::{Map, Value, json};
use sgcache::Daemon;
use sgcache::config::Config;
use sgcache::db::registry;
use sgcache::db::writer::{Apply, UpsertMode, WriteOp};

use crate::support::{
    MockSite, TestDb, cache_rows, databases, eventually, first_difference, fixture_schema_config,
    listener, test_config,
};

const TYPES: [&str; 6] = ["Project", "Sequence", "Shot", "Asset", "Task", "HumanUser"];

fn poller_config(test_db: &TestDb, site: &MockSite) -> Config {
    let mut config = test_config(test_db, Some(site));
    fixture_schema_config(&mut config);
    config.scanner.enabled = false;
    config.events.enabled = true;
    config.events.poll_interval = Duration::from_millis(100);
    config.events.gap_window = Duration::from_secs(2);
    config
}

fn seed(site: &MockSite) {
    let projects = site.seed("Project", 1, |_| json!({"name": "Project A"}));
    let project = json!({"type": "Project", "id": projects[0]});
    let sequences = site.seed(
        "Sequence",
        2,
        |i| json!({"code": format!("sq{i}"), "project": project}),
    );
    let assets = site.seed(
        "Asset",
        3,
        |i| json!({"code": format!("asset{i}"), "project": project}),
    );
    site.seed("Shot", 3, |i| {
        json!({
            "code": format!("sh{i:03}"),
            "project": project,
            "sg_sequence": {"type": "Sequence", "id": sequences[i % 2]},
            "assets": [{"type": "Asset", "id": assets[i % 3]}],
            "sg_status_list": "wtg",
        })
    });
    site.seed(
        "Task",
        2,
        |i| json!({"content": format!("task{i}"), "project": project}),
    );
}

/// Starts a daemon and waits until the poller has its starting point.
async fn start(config: Config) -> Daemon {
    let daemon = Daemon::start(config, listener())
        .await
        .expect("daemon starts");
    let stats = daemon.event_poller_stats.clone();
    eventually(Duration::from_secs(30), "the first event poll", || {
        let stats = stats.clone();
        async move { (stats.pages.load(std::sync::atomic::Ordering::Relaxed) >= 1).then_some(()) }
    })
    .await;
    daemon
}

/// Writes the site's rows into the cache, as the scanner's full scan would.
async fn prime(daemon: &Daemon, site: &MockSite) {
    let schema = daemon.cache.view().schema;
    let mut ops = Vec::new();
    for ty in TYPES {
        assert!(schema.entity(ty).is_some(), "{ty} is cached");
    }
    // Every cached type, the thinly cached link targets too.
    for ty in schema.types.keys() {
        for active in [true, false] {
            let records: Vec<Map<String, Value>> = site
                .entities(ty)
                .into_iter()
                .filter(|r| r["_retired"].as_bool().unwrap_or(false) != active)
                .filter_map(|r| r.as_object().cloned())
                .collect();
            ops.push(WriteOp::Upsert {
                entity_type: ty.to_owned(),
                records,
                mode: UpsertMode::Full,
                active: Some(active),
                event_id: None,
            });
        }
    }
    daemon
        .writer
        .apply(Apply {
            ops,
            checkpoint: None,
        })
        .await
        .expect("prime the cache");
}

async fn wait_equal(daemon: &Daemon, site: &MockSite, types: &[&str], what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let schema = daemon.cache.view().schema;
        let diff = first_difference(&daemon.pools, &schema, site, types).await;
        let Some(diff) = diff else { return };
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: cache never matched the site: {diff}\nstatus: {}",
            crate::support::json_of(daemon.event_poller_stats.snapshot())
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cached_value(daemon: &Daemon, ty: &str, id: i64, field: &str) -> Value {
    let schema = daemon.cache.view().schema;
    cache_rows(&daemon.pools, &schema, ty)
        .await
        .get(&id)
        .and_then(|r| r.get(field).cloned())
        .unwrap_or(Value::Null)
}

async fn checkpoint(daemon: &Daemon) -> i64 {
    registry::event_cursor(&daemon.pools.reader)
        .await
        .expect("read checkpoint")
        .map(|c| c.last_event_id)
        .unwrap_or(-1)
}

async fn get_json(url: &str) -> Value {
    let mut response = awc::Client::default().get(url).send().await.expect("GET");
    assert!(response.status().is_success(), "{url}");
    response.json().limit(10 << 20).await.expect("JSON")
}

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

#[actix_web::test]
async fn every_event_kind_reaches_the_cache() {
    for test_db in databases().await {
        let site = MockSite::start();
        seed(&site);
        let history = site.last_event_id();
        let daemon = start(poller_config(&test_db, &site)).await;
        // No checkpoint stored: the poller starts at the newest event, skipping history.
        assert_eq!(checkpoint(&daemon).await, history);
        prime(&daemon, &site).await;
        let all = &TYPES[..];
        wait_equal(&daemon, &site, all, "primed").await;

        let project = json!({"type": "Project", "id": id_of(&site.entities("Project")[0])});
        let shots: Vec<i64> = site.entities("Shot").iter().map(id_of).collect();
        let assets: Vec<i64> = site.entities("Asset").iter().map(id_of).collect();
        let tasks: Vec<i64> = site.entities("Task").iter().map(id_of).collect();
        let seqs: Vec<i64> = site.entities("Sequence").iter().map(id_of).collect();

        // New (with links: in_create changes and back-references to existing rows).
        let shot = site.create(
            "Shot",
            json!({"code": "sh_new", "project": project,
                   "sg_sequence": {"type": "Sequence", "id": seqs[0]},
                   "assets": [{"type": "Asset", "id": assets[0]}]}),
        );
        let new_shot = id_of(&shot);
        let task = site.create(
            "Task",
            json!({"content": "anim", "project": project,
                   "entity": {"type": "Shot", "id": shots[0]}}),
        );
        let new_task = id_of(&task);
        let user = site.create(
            "HumanUser",
            json!({"login": "jdoe", "firstname": "J", "lastname": "Doe"}),
        );
        wait_equal(&daemon, &site, all, "New").await;

        // Scalar changes: text, number, list, status_list, entity, date, checkbox, date_time.
        site.update(
            "Shot",
            shots[1],
            json!({"description": "changed <text> & more"}),
        );
        site.update(
            "Shot",
            shots[1],
            json!({"sg_cut_in": 1001, "sg_status_list": "ip"}),
        );
        site.update("Shot", shots[2], json!({"sg_shot_type": "Regular"}));
        site.update(
            "Shot",
            shots[2],
            json!({"sg_sequence": {"type": "Sequence", "id": seqs[1]}}),
        );
        site.update("Shot", shots[0], json!({"sg_sequence": null}));
        site.update(
            "Task",
            tasks[0],
            json!({"due_date": "2027-01-31", "milestone": true}),
        );
        site.update(
            "HumanUser",
            id_of(&user),
            json!({"locked_until": "2027-02-03T04:05:06Z"}),
        );
        wait_equal(&daemon, &site, all, "scalar changes").await;
        assert_eq!(
            cached_value(&daemon, "HumanUser", id_of(&user), "locked_until").await,
            json!("2027-02-03T04:05:06Z"),
            "event-log date_time converted"
        );
        assert_eq!(
            cached_value(&daemon, "Task", tasks[0], "milestone").await,
            json!(true)
        );

        // Multi-entity add and remove, with the back-references on the other side.
        site.script()
            .try_update_with(
                "Shot",
                shots[0],
                vec![sgcache_mock_site::store::FieldWrite {
                    field: "assets".into(),
                    value: json!([{"type": "Asset", "id": assets[2]}]),
                    mode: sgcache_mock_site::UpdateMode::Add,
                }],
            )
            .expect("add an asset");
        site.update("Shot", shots[1], json!({"assets": []}));
        site.update(
            "Task",
            tasks[1],
            json!({"entity": {"type": "Shot", "id": shots[2]}}),
        );
        site.update(
            "Shot",
            shots[2],
            json!({"tasks": [{"type": "Task", "id": tasks[0]}]}),
        );
        wait_equal(&daemon, &site, all, "links and back-references").await;

        // Retirement and revival.
        site.delete("Shot", new_shot);
        site.delete("Task", new_task);
        wait_equal(&daemon, &site, all, "retirement").await;
        assert_eq!(
            cached_value(&daemon, "Shot", new_shot, "_active").await,
            json!(false)
        );
        site.revive("Shot", new_shot);
        wait_equal(&daemon, &site, all, "revival").await;
        assert_eq!(
            cached_value(&daemon, "Shot", new_shot, "_active").await,
            json!(true)
        );

        // A change to a row the cache does not have: the row is fetched whole.
        let unknown = site.seed("Shot", 1, |_| json!({"code": "seeded_later"}))[0];
        site.update(
            "Shot",
            unknown,
            json!({"description": "now it has an event"}),
        );
        wait_equal(&daemon, &site, all, "row fetched after a change").await;

        // A schema event (a field was created) makes the SchemaLoader reload.
        let status_url = format!("{}/status", daemon.url());
        let loads = get_json(&status_url).await["actors"]["schema_loader"]["handled"]
            .as_u64()
            .expect("handled");
        site.create(
            "EventLogEntry",
            json!({"event_type": "Shotgun_DisplayColumn_New",
                   "meta": {"type": "new_entity", "entity_type": "DisplayColumn", "entity_id": 9999}}),
        );
        eventually(Duration::from_secs(30), "a schema reload", || {
            let url = status_url.clone();
            async move {
                (get_json(&url).await["actors"]["schema_loader"]["handled"].as_u64() > Some(loads))
                    .then_some(())
            }
        })
        .await;

        // A write without events is not seen by the poller (the scanner catches those).
        site.quiet()
            .update("Shot", shots[0], json!({"description": "quiet write"}));
        site.update("Asset", assets[1], json!({"description": "loud write"}));
        eventually(Duration::from_secs(30), "the loud write", || async {
            (cached_value(&daemon, "Asset", assets[1], "description").await == json!("loud write"))
                .then_some(())
        })
        .await;
        assert_ne!(
            cached_value(&daemon, "Shot", shots[0], "description").await,
            json!("quiet write"),
            "a write without events is invisible to the poller"
        );

        assert_eq!(checkpoint(&daemon).await, site.last_event_id());
        let status = crate::support::json_of(daemon.event_poller_stats.snapshot());
        assert_eq!(
            status["checkpoint"],
            json!(site.last_event_id()),
            "{status}"
        );
        for kind in [
            "new",
            "change",
            "links",
            "backref",
            "retirement",
            "revival",
            "schema",
        ] {
            assert!(
                status["applied"][kind].as_u64() >= Some(1),
                "{kind}: {status}"
            );
        }
        assert!(
            status["ignored"]["in_create"].as_u64() >= Some(1),
            "{status}"
        );
        assert_eq!(status["open_gaps"], 0);
        assert!(status["lag_seconds"].is_i64(), "{status}");

        // /status carries the same figures.
        let body = get_json(&status_url).await;
        assert_eq!(
            body["actors"]["event_poller"]["checkpoint"],
            json!(site.last_event_id())
        );
        daemon.stop().await;
    }
}

#[actix_web::test]
async fn out_of_order_events_are_applied_and_burnt_ids_declared_missing() {
    for test_db in databases().await {
        let site = MockSite::start();
        seed(&site);
        let daemon = start(poller_config(&test_db, &site)).await;
        prime(&daemon, &site).await;
        let shots: Vec<i64> = site.entities("Shot").iter().map(id_of).collect();
        let all = &TYPES[..];

        // Held, then released together.
        site.hold_events();
        site.update("Shot", shots[0], json!({"description": "held 1"}));
        site.update("Shot", shots[1], json!({"description": "held 2"}));
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        assert_ne!(
            cached_value(&daemon, "Shot", shots[0], "description").await,
            json!("held 1")
        );
        site.release_events();
        wait_equal(&daemon, &site, all, "released events").await;

        // A real gap: an earlier id stays invisible while a later one is visible.
        site.hold_events();
        site.update("Shot", shots[2], json!({"sg_cut_in": 7}));
        site.with_state(|st| st.store.holding = false);
        site.update("Shot", shots[0], json!({"sg_cut_in": 8}));
        eventually(Duration::from_secs(30), "the later event", || async {
            (cached_value(&daemon, "Shot", shots[0], "sg_cut_in").await == json!(8)).then_some(())
        })
        .await;
        // The page's stats are recorded just after its rows commit: wait for them.
        eventually(Duration::from_secs(10), "the open gap counted", || async {
            let stats = crate::support::json_of(daemon.event_poller_stats.snapshot());
            (stats["open_gaps"] == 1).then_some(())
        })
        .await;
        assert_ne!(
            cached_value(&daemon, "Shot", shots[2], "sg_cut_in").await,
            json!(7)
        );
        site.release_events();
        wait_equal(&daemon, &site, all, "a late event inside the gap window").await;
        assert_eq!(
            crate::support::json_of(daemon.event_poller_stats.snapshot())["open_gaps"],
            0
        );
        assert_eq!(
            crate::support::json_of(daemon.event_poller_stats.snapshot())["missing_declared"],
            0
        );

        // A burnt id never appears: declared missing after the (2 s) window, not waited on.
        let burnt = site.burn_event_id();
        site.update("Shot", shots[1], json!({"sg_cut_in": 9}));
        wait_equal(&daemon, &site, all, "the event after a burnt id").await;
        let stats = daemon.event_poller_stats.clone();
        let status = eventually(
            Duration::from_secs(20),
            "the burnt id declared missing",
            || {
                let stats = stats.clone();
                async move {
                    let s = crate::support::json_of(stats.snapshot());
                    (s["missing_declared"] == 1 && s["open_gaps"] == 0).then_some(s)
                }
            },
        )
        .await;
        assert_eq!(
            status["checkpoint"],
            json!(site.last_event_id()),
            "{status}"
        );
        let stored = registry::event_cursor(&daemon.pools.reader)
            .await
            .expect("cursor")
            .expect("stored");
        assert!(!stored.open_gaps.contains(&burnt.to_string()), "{stored:?}");
        daemon.stop().await;
    }
}

#[actix_web::test]
async fn a_restart_mid_stream_applies_every_event_exactly_once() {
    for test_db in databases().await {
        let site = MockSite::start();
        seed(&site);
        let config = poller_config(&test_db, &site);
        let daemon = start(config.clone()).await;
        prime(&daemon, &site).await;
        let shots: Vec<i64> = site.entities("Shot").iter().map(id_of).collect();
        let assets: Vec<i64> = site.entities("Asset").iter().map(id_of).collect();
        let all = &TYPES[..];
        site.update(
            "Shot",
            shots[0],
            json!({"description": "before the restart"}),
        );
        wait_equal(&daemon, &site, all, "before the restart").await;
        let stopped_at = checkpoint(&daemon).await;
        daemon.stop().await;

        // Writes while sgcache is down.
        site.update("Shot", shots[0], json!({"description": "while down 1"}));
        site.update(
            "Shot",
            shots[1],
            json!({"assets": [{"type": "Asset", "id": assets[2]}]}),
        );
        let created = id_of(&site.create("Shot", json!({"code": "while_down"})));
        site.update("Shot", created, json!({"sg_cut_in": 42}));
        site.delete("Shot", shots[2]);
        let written = site.last_event_id() - stopped_at;
        assert!(written >= 6, "{written} events");

        let daemon = start(config.clone()).await;
        wait_equal(&daemon, &site, all, "after the restart").await;
        let stats = daemon.event_poller_stats.clone();
        eventually(
            Duration::from_secs(10),
            "checkpoint at the newest event",
            || {
                let stats = stats.clone();
                let last = site.last_event_id();
                async move {
                    (crate::support::json_of(stats.snapshot())["checkpoint"] == json!(last))
                        .then_some(())
                }
            },
        )
        .await;
        let status = crate::support::json_of(daemon.event_poller_stats.snapshot());
        let total = |key: &str| -> u64 {
            status[key]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_u64).sum())
                .unwrap_or(0)
        };
        assert_eq!(
            total("applied") + total("ignored") + total("failed"),
            written as u64,
            "each event handled once after the restart: {status}"
        );
        assert_eq!(checkpoint(&daemon).await, site.last_event_id());

        // The site goes away and comes back: retried, nothing skipped.
        site.pause();
        site.update(
            "Shot",
            shots[0],
            json!({"description": "during the outage"}),
        );
        let stats = daemon.event_poller_stats.clone();
        eventually(Duration::from_secs(30), "a failed poll", || {
            let stats = stats.clone();
            async move {
                (crate::support::json_of(stats.snapshot())["errors"].as_u64() >= Some(1))
                    .then_some(())
            }
        })
        .await;
        site.resume();
        wait_equal(&daemon, &site, all, "after the outage").await;
        assert_eq!(checkpoint(&daemon).await, site.last_event_id());
        daemon.stop().await;
    }
}

#[actix_web::test]
async fn the_events_command_sets_the_checkpoint_to_replay_from() {
    for test_db in databases().await {
        let site = MockSite::start();
        seed(&site);
        let shots: Vec<i64> = site.entities("Shot").iter().map(id_of).collect();
        let from = site.last_event_id() + 1;
        site.update("Shot", shots[0], json!({"description": "replayed"}));
        let created = id_of(&site.create("Shot", json!({"code": "replayed_new"})));
        site.delete("Shot", shots[1]);
        let events = site.last_event_id() - from + 1;

        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sgcache"))
            .args(["events", "--from", &from.to_string()])
            .current_dir(dir.path())
            .env("SGCACHE_DATABASE_URL", &test_db.url)
            .output()
            .expect("run sgcache events");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("replays from event {from}"))
        );

        let daemon = start(poller_config(&test_db, &site)).await;
        let stats = daemon.event_poller_stats.clone();
        let last = site.last_event_id();
        let status = eventually(Duration::from_secs(30), "the replay", || {
            let stats = stats.clone();
            async move {
                let s = crate::support::json_of(stats.snapshot());
                (s["checkpoint"] == json!(last)).then_some(s)
            }
        })
        .await;
        let handled: u64 = ["applied", "ignored", "failed"]
            .iter()
            .flat_map(|k| status[k].as_object().cloned().unwrap_or_default())
            .filter_map(|(_, v)| v.as_u64())
            .sum();
        assert_eq!(
            handled, events as u64,
            "every replayed event once: {status}"
        );
        // The rows the replayed events touched were fetched whole (the cache had none).
        assert_eq!(
            cached_value(&daemon, "Shot", shots[0], "description").await,
            json!("replayed")
        );
        assert_eq!(
            cached_value(&daemon, "Shot", created, "code").await,
            json!("replayed_new")
        );
        prime(&daemon, &site).await;
        wait_equal(&daemon, &site, &TYPES[..], "after the replay").await;
        daemon.stop().await;
    }
}
