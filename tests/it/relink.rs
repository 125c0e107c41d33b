//! Links to a revived entity, on both backends, against the mock site: an entity the cache
//! re-read from the site while one of its link targets was retired was stored without that
//! link (the site hides it); reviving the target re-reads the cached entities linking to it,
//! through the event poller (a Revival event) and through the write-back (a `revive` sent
//! through sgcache), so the cached entity link and multi-entity list equal the site's again.
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    MockSite, api3, assert_answered_locally, databases, listener, status_of, test_config,
    until_equal, wait_primed,
};

/// Posts `method` with `args` to `base`; the reply, which must not be a fault.
async fn call(base: &str, method: &str, args: Value) -> Value {
    let reply = api3(base, method, &args).await;
    assert!(
        reply.get("exception").is_none(),
        "{method} {args}: fault {reply}"
    );
    reply
}

fn link(ty: &str, id: i64) -> Value {
    json!({"type": ty, "id": id})
}

/// The reads compared: the Task's entity link, the Shot's multi-entity list.
fn reads() -> [Value; 2] {
    [
        json!({"type": "Task", "return_fields": ["content", "entity"], "sorts": [{"field_name": "id"}]}),
        json!({"type": "Shot", "return_fields": ["code", "assets"], "sorts": [{"field_name": "id"}]}),
    ]
}

/// Every read answered by sgcache (locally) equals the site's, waiting up to 20 s for events;
/// returns the site's answers.
async fn agree(daemon: &sgcache::Daemon, site: &MockSite, what: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for args in reads() {
        let want = call(&site.url(), "read", args.clone()).await;
        let url = daemon.url();
        until_equal(&want, &format!("{what}: {args}"), || {
            call(&url, "read", args.clone())
        })
        .await;
        out.push(want);
    }
    assert_answered_locally(daemon, &["write"], what).await;
    out
}

/// A Task linked to an Element, a Shot linked to two Assets; returns (element, assets, task, shot).
fn seed(site: &MockSite) -> (i64, Vec<i64>, i64, i64) {
    let project = site.seed("Project", 1, |_| json!({"name": "Film"}))[0];
    let element = site.seed(
        "Element",
        1,
        |_| json!({"code": "el0", "project": link("Project", project)}),
    )[0];
    let assets = site.seed(
        "Asset",
        2,
        |i| json!({"code": format!("a{i}"), "project": link("Project", project)}),
    );
    let task = site.seed(
        "Task",
        1,
        |_| json!({"content": "t0", "entity": link("Element", element), "project": link("Project", project)}),
    )[0];
    let shot = site.seed("Shot", 1, |_| {
        json!({"code": "sh010", "assets": [link("Asset", assets[0]), link("Asset", assets[1])],
               "project": link("Project", project)})
    })[0];
    (element, assets, task, shot)
}

/// Writes another field of the Task and the Shot through sgcache: the write-back re-reads both
/// from the site while the Element and an Asset are retired.
async fn write_through(daemon: &sgcache::Daemon, task: i64, shot: i64, tag: &str) {
    call(
        &daemon.url(),
        "update",
        json!({"type": "Task", "id": task,
               "fields": [{"field_name": "content", "value": format!("t0 {tag}")}]}),
    )
    .await;
    call(
        &daemon.url(),
        "update",
        json!({"type": "Shot", "id": shot,
               "fields": [{"field_name": "code", "value": format!("sh010 {tag}")}]}),
    )
    .await;
}

/// The answers show the Task linked to the Element and the Shot to both Assets.
fn assert_linked(answers: &[Value], element: i64, assets: &[i64]) {
    assert_eq!(
        answers[0]["results"]["entities"][0]["entity"],
        json!({"type": "Element", "id": element, "name": "el0"})
    );
    let listed: Vec<i64> = answers[1]["results"]["entities"][0]["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .filter_map(|l| l["id"].as_i64())
        .collect();
    assert_eq!(listed, assets);
}

#[actix_web::test]
async fn a_revival_event_re_reads_the_entities_linking_to_the_revived_entity() {
    for test_db in databases().await {
        let site = MockSite::start();
        let (element, assets, task, shot) = seed(&site);
        let mut config = test_config(&test_db, Some(&site));
        config.events.poll_interval = Duration::from_millis(100);
        let daemon = sgcache::Daemon::start(config, listener())
            .await
            .expect("daemon starts");
        wait_primed(&daemon, Duration::from_secs(60)).await;
        assert_linked(&agree(&daemon, &site, "primed").await, element, &assets);

        // Retired on the site; the cache re-reads the Task and the Shot meanwhile.
        site.delete("Element", element);
        site.delete("Asset", assets[1]);
        agree(&daemon, &site, "retired").await;
        write_through(&daemon, task, shot, "retired").await;
        let answers = agree(&daemon, &site, "re-read while retired").await;
        assert_eq!(answers[0]["results"]["entities"][0]["entity"], Value::Null);

        // Revived on the site: the Revival events bring the links back.
        site.revive("Element", element);
        site.revive("Asset", assets[1]);
        assert_linked(&agree(&daemon, &site, "revived").await, element, &assets);
        let poller = status_of(&daemon).await["actors"]["event_poller"].clone();
        assert!(
            poller["relinked"].as_u64().unwrap_or(0) >= 2,
            "the Task and the Shot were re-read: {poller}"
        );
        assert_eq!(poller["relink_truncated"], 0);
        drop(daemon);
    }
}

#[actix_web::test]
async fn a_revive_through_sgcache_re_reads_the_entities_linking_to_the_revived_entity() {
    for test_db in databases().await {
        let site = MockSite::start();
        let (element, assets, task, shot) = seed(&site);
        let mut config = test_config(&test_db, Some(&site));
        // Only the write-back: no event brings anything back.
        config.events.enabled = false;
        let daemon = sgcache::Daemon::start(config, listener())
            .await
            .expect("daemon starts");
        wait_primed(&daemon, Duration::from_secs(60)).await;
        assert_linked(&agree(&daemon, &site, "primed").await, element, &assets);

        // Retired through sgcache, re-read while retired, revived through sgcache.
        call(
            &daemon.url(),
            "delete",
            json!({"type": "Element", "id": element}),
        )
        .await;
        call(
            &daemon.url(),
            "delete",
            json!({"type": "Asset", "id": assets[1]}),
        )
        .await;
        write_through(&daemon, task, shot, "retired").await;
        let answers = agree(&daemon, &site, "re-read while retired").await;
        assert_eq!(answers[0]["results"]["entities"][0]["entity"], Value::Null);
        call(
            &daemon.url(),
            "revive",
            json!({"type": "Element", "id": element}),
        )
        .await;
        call(
            &daemon.url(),
            "revive",
            json!({"type": "Asset", "id": assets[1]}),
        )
        .await;
        assert_linked(&agree(&daemon, &site, "revived").await, element, &assets);
        drop(daemon);
    }
}
