mod common;

use common::*;
use serde_json::{Value, json};
use sgcache_mock_site::MockSite;

fn event_ids(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

#[actix_web::test]
async fn event_log_shapes_and_order() {
    let site = MockSite::start();
    let url = site.url();
    let project = site.create("Project", json!({"name": "P"}));
    let pid = project["id"].as_i64().unwrap();
    let asset = site.create(
        "Asset",
        json!({"code": "ball", "project": {"type": "Project", "id": pid}}),
    );
    let aid = asset["id"].as_i64().unwrap();
    let start = site.events().len();

    let created = results(
        &url,
        "create",
        json!({"type": "Shot", "fields": fields(json!({"code": "sh010", "project": {"type": "Project", "id": pid}}))}),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    let evs: Vec<Value> = site.events()[start..].to_vec();
    assert_eq!(evs.len(), 3, "{evs:#?}");
    assert_eq!(evs[0]["event_type"], json!("Shotgun_Shot_New"));
    assert_eq!(
        evs[0]["meta"],
        json!({"type": "new_entity", "entity_type": "Shot", "entity_id": id})
    );
    assert_eq!(
        evs[0]["entity"],
        json!({"type": "Shot", "id": id, "name": "sh010"})
    );
    assert_eq!(evs[0]["user"]["type"], json!("ApiUser"));
    assert_eq!(
        evs[0]["project"],
        json!({"type": "Project", "id": pid, "name": "P"})
    );
    assert_eq!(evs[1]["event_type"], json!("Shotgun_Shot_Change"));
    assert_eq!(evs[1]["attribute_name"], json!("code"));
    assert_eq!(evs[1]["meta"]["in_create"], json!(true));
    assert_eq!(evs[1]["meta"]["new_value"], json!("sh010"));
    assert_eq!(evs[1]["meta"]["field_data_type"], json!("text"));
    assert_eq!(evs[2]["attribute_name"], json!("project"));
    let ids = event_ids(&site.events());
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // scalar change and date_time in event-log form
    let n = site.events().len();
    results(
        &url,
        "update",
        json!({"type": "Shot", "id": id, "fields": fields(json!({"code": "sh020"}))}),
    )
    .await;
    let ev = &site.events()[n];
    assert_eq!(
        ev["meta"],
        json!({"type": "attribute_change", "attribute_name": "code", "entity_type": "Shot", "entity_id": id,
               "field_data_type": "text", "old_value": "sh010", "new_value": "sh020"})
    );
    let n = site.events().len();
    site.create(
        "Task",
        json!({"content": "anim", "start_date": "2024-01-02"}),
    );
    let tid = site.entities("Task")[0]["id"].as_i64().unwrap();
    let n2 = site.events().len();
    assert!(n2 > n);
    // Version has no date_time field besides created/updated; use HumanUser.locked_until
    let user = site.create("HumanUser", json!({"name": "Jo"}));
    let uid = user["id"].as_i64().unwrap();
    let n = site.events().len();
    site.update(
        "HumanUser",
        uid,
        json!({"locked_until": "2015-07-13T21:54:01Z"}),
    );
    let ev = &site.events()[n];
    assert_eq!(ev["meta"]["new_value"], json!("2015-07-13 21:54:01 UTC"));
    assert_eq!(ev["meta"]["old_value"], json!(null));
    assert_eq!(
        site.entity("HumanUser", uid).unwrap()["locked_until"],
        json!("2015-07-13T21:54:01Z")
    );

    // multi_entity add/remove: added/removed, plus back-reference on Asset.shots
    let n = site.events().len();
    results(
        &url,
        "update",
        json!({"type": "Shot", "id": id, "fields": [{"field_name": "assets", "value": [{"type": "Asset", "id": aid}],
               "multi_entity_update_mode": "add"}]}),
    )
    .await;
    let evs = site.events()[n..].to_vec();
    assert_eq!(evs.len(), 2, "{evs:#?}");
    assert_eq!(
        evs[0]["meta"]["added"],
        json!([{"type": "Asset", "id": aid, "name": "ball"}])
    );
    assert_eq!(evs[0]["meta"]["removed"], json!([]));
    assert!(evs[0]["meta"].get("old_value").is_none());
    assert_eq!(evs[1]["event_type"], json!("Shotgun_Asset_Change"));
    assert_eq!(evs[1]["attribute_name"], json!("shots"));
    assert_eq!(
        evs[1]["meta"]["actual_attribute_changed"],
        json!("Shot.assets")
    );
    assert_eq!(evs[1]["meta"]["original_event_log_entry_id"], evs[0]["id"]);
    assert_eq!(
        site.entity("Asset", aid).unwrap()["shots"],
        json!([{"type": "Shot", "id": id, "name": "sh020"}])
    );
    let n = site.events().len();
    results(
        &url,
        "update",
        json!({"type": "Shot", "id": id, "fields": [{"field_name": "assets", "value": [{"type": "Asset", "id": aid}],
               "multi_entity_update_mode": "remove"}]}),
    )
    .await;
    assert_eq!(
        site.events()[n]["meta"]["removed"],
        json!([{"type": "Asset", "id": aid, "name": "ball"}])
    );
    assert_eq!(site.entity("Asset", aid).unwrap()["shots"], json!([]));

    // Task.entity <-> Shot.tasks
    site.update("Task", tid, json!({"entity": {"type": "Shot", "id": id}}));
    assert_eq!(
        site.entity("Shot", id).unwrap()["tasks"],
        json!([{"type": "Task", "id": tid, "name": "anim"}])
    );
    let last = site.events().last().unwrap().clone();
    assert_eq!(last["event_type"], json!("Shotgun_Shot_Change"));
    assert_eq!(
        last["meta"]["actual_attribute_changed"],
        json!("Task.entity")
    );

    // retirement / revival, entity null while retired
    let n = site.events().len();
    assert!(site.delete("Shot", id));
    let evs = site.events();
    assert_eq!(evs[n]["event_type"], json!("Shotgun_Shot_Retirement"));
    assert_eq!(evs[n]["meta"]["type"], json!("entity_retirement"));
    assert_eq!(evs[n]["meta"]["entity_id"], json!(id));
    assert_eq!(evs[n]["meta"]["display_name"], json!("sh020"));
    assert!(
        evs[n]["meta"]["retirement_date"]
            .as_str()
            .unwrap()
            .ends_with(" UTC")
    );
    let shot_events: Vec<&Value> = evs
        .iter()
        .filter(|e| {
            e["event_type"]
                .as_str()
                .unwrap()
                .starts_with("Shotgun_Shot_")
        })
        .collect();
    assert!(shot_events.len() >= 5);
    assert!(
        shot_events.iter().all(|e| e["entity"].is_null()),
        "{shot_events:#?}"
    );
    assert_eq!(evs[n + 1]["attribute_name"], json!("retirement_date"));
    // read over HTTP shows null entity too
    let r = find(
        &url,
        "EventLogEntry",
        json!([{"path": "event_type", "relation": "is", "values": ["Shotgun_Shot_New"]}]),
        json!(["entity"]),
    )
    .await;
    assert!(r["entities"][0]["entity"].is_null());
    let n = site.events().len();
    assert!(site.revive("Shot", id));
    let evs = site.events();
    assert_eq!(evs[n]["event_type"], json!("Shotgun_Shot_Revival"));
    assert_eq!(evs[n]["meta"]["type"], json!("entity_revival"));
    let r = find(
        &url,
        "EventLogEntry",
        json!([{"path": "event_type", "relation": "is", "values": ["Shotgun_Shot_New"]}]),
        json!(["entity", "entity.Shot.code", "entity.Asset.code"]),
    )
    .await;
    assert_eq!(r["entities"][0]["entity"]["id"], json!(id));
    assert_eq!(r["entities"][0]["entity.Shot.code"], json!("sh020"));
    assert_eq!(r["entities"][0]["entity.Asset.code"], json!(null));
    let ids = event_ids(&site.events());
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[actix_web::test]
async fn quiet_writes_log_nothing_but_move_updated_at() {
    let site = MockSite::start();
    let shot = site.create("Shot", json!({"code": "a"}));
    let id = shot["id"].as_i64().unwrap();
    let before = site.events().len();
    let t0 = shot["updated_at"].as_str().unwrap().to_string();
    site.set_now_offset(chrono::Duration::hours(1));
    let q = site.quiet();
    q.update("Shot", id, json!({"code": "b"}));
    q.create("Shot", json!({"code": "c"}));
    q.delete("Shot", id);
    q.revive("Shot", id);
    assert_eq!(site.events().len(), before);
    let now = site.entity("Shot", id).unwrap();
    assert_eq!(now["code"], json!("b"));
    assert!(now["updated_at"].as_str().unwrap() > t0.as_str());
    assert_eq!(now["updated_by"]["name"], json!("quiet_script"));

    // over HTTP as well
    let r = call_with(
        &site.url(),
        quiet_auth(),
        "update",
        json!({"type": "Shot", "id": id, "fields": fields(json!({"code": "d"}))}),
    )
    .await;
    assert_eq!(r["results"]["code"], json!("d"));
    assert_eq!(site.events().len(), before);
}

#[actix_web::test]
async fn held_and_burnt_event_ids() {
    let site = MockSite::start();
    let url = site.url();
    site.create("Shot", json!({"code": "a"}));
    let visible = event_ids(&site.events());
    let burnt = site.burn_event_id();
    site.hold_events();
    site.create("Shot", json!({"code": "held"}));
    site.release_events();
    site.hold_events();
    let held_count_before = site.events().len();
    site.create("Shot", json!({"code": "held2"}));
    assert_eq!(site.events().len(), held_count_before);
    site.release_events();
    site.hold_events();
    site.create("Shot", json!({"code": "hidden"}));
    let shown_after_hidden = site.create("Asset", json!({"code": "x"}));
    let _ = shown_after_hidden;
    // events of "hidden" and the Asset are all held; make the asset visible only after release
    let filt =
        json!([{"path": "id", "relation": "greater_than", "values": [visible.last().unwrap()]}]);
    let r = find(&url, "EventLogEntry", filt.clone(), json!(["event_type"])).await;
    let seen = ids(&r);
    assert!(!seen.contains(&burnt));
    assert_eq!(
        r["entities"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event_type"] == json!("Shotgun_Shot_New"))
            .count(),
        2
    );
    site.release_events();
    let r2 = find(&url, "EventLogEntry", filt, json!(["event_type"])).await;
    let seen2 = ids(&r2);
    assert!(seen2.len() > seen.len());
    assert!(!seen2.contains(&burnt));
    assert_eq!(seen2[0], burnt + 1);
    assert!(seen2.windows(2).all(|w| w[0] < w[1]));
}

#[actix_web::test]
async fn event_log_reads_with_id_filters_paging_and_sorts() {
    let site = MockSite::start();
    let url = site.url();
    for i in 0..5 {
        site.create("Shot", json!({"code": format!("s{i}")}));
    }
    let all = site.events();
    assert_eq!(all.len(), 10);
    let first = all[0]["id"].as_i64().unwrap();
    let r = results(
        &url,
        "read",
        json!({"type": "EventLogEntry",
               "filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "between", "values": [first + 2, first + 7]}]},
               "return_fields": ["id", "event_type", "attribute_name", "meta", "entity", "user", "project", "session_uuid", "created_at", "description"],
               "return_only": "active", "sorts": [{"field_name": "id", "direction": "desc"}],
               "paging": {"entities_per_page": 4, "current_page": 1}, "return_paging_info_without_counts": true}),
    )
    .await;
    assert_eq!(ids(&r), vec![first + 7, first + 6, first + 5, first + 4]);
    assert_eq!(
        r["paging_info"],
        json!({"entity_count": 6, "has_next_page": true})
    );
    let e = &r["entities"][0];
    for k in [
        "event_type",
        "attribute_name",
        "meta",
        "entity",
        "user",
        "project",
        "session_uuid",
        "created_at",
        "description",
    ] {
        assert!(e.get(k).is_some(), "missing {k}");
    }
    let r = find(
        &url,
        "EventLogEntry",
        json!([{"path": "id", "relation": "in", "values": [first, first + 3]}]),
        json!(["id"]),
    )
    .await;
    assert_eq!(ids(&r), vec![first, first + 3]);
    let r = find(
        &url,
        "EventLogEntry",
        json!([{"path": "id", "relation": "less_than", "values": [first + 2]}]),
        json!(["id"]),
    )
    .await;
    assert_eq!(ids(&r), vec![first, first + 1]);
    // session_uuid is copied from the auth params
    let mut a = auth();
    a["session_uuid"] = json!("aaaa-bbbb");
    call_with(
        &url,
        a,
        "create",
        json!({"type": "Shot", "fields": fields(json!({"code": "u"}))}),
    )
    .await;
    assert_eq!(
        site.events().last().unwrap()["session_uuid"],
        json!("aaaa-bbbb")
    );
    // meta is not filterable
    let bad = call(&url, "read", json!({"type": "EventLogEntry", "filters": {"logical_operator": "and", "conditions": [{"path": "meta", "relation": "is", "values": [null]}]}})).await;
    assert_eq!(bad["exception"], json!(true));
}
