mod common;

use common::*;
use serde_json::{Value, json};
use sgcache_mock_site::{MockSite, ScriptConfig};

#[actix_web::test]
async fn info_needs_no_auth_and_bad_auth_is_102() {
    let site = MockSite::start();
    let (status, text) = post_raw(
        &site.url(),
        json!({"method_name": "info", "params": []}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["results"]["version"], json!([8, 50, 0]));
    assert_eq!(v["results"]["api_max_entities_per_page"], json!(500));

    let bad = call_with(
        &site.url(),
        json!({"script_name": "x", "script_key": "nope"}),
        "read",
        json!({"type": "Shot"}),
    )
    .await;
    assert_eq!(bad["exception"], json!(true));
    assert_eq!(bad["error_code"], json!(102));
    assert_eq!(bad["message"], json!("Can't authenticate script 'x'"));
    let wrong_key = call_with(
        &site.url(),
        json!({"script_name": "sgcache", "script_key": "nope"}),
        "read",
        json!({"type": "Shot"}),
    )
    .await;
    assert_eq!(wrong_key["error_code"], json!(102));

    let unknown = call(&site.url(), "frobnicate", json!({})).await;
    assert_eq!(unknown["error_code"], json!(103));
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("unknown method")
    );

    // prefixed path works too
    let client = awc::Client::default();
    let mut resp = client
        .post(format!("{}/next=site.example/api3/json", site.url()))
        .send_body(json!({"method_name": "info", "params": []}).to_string())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json; charset=utf-8"
    );
    let v: Value = serde_json::from_slice(&resp.body().await.unwrap()).unwrap();
    assert!(v["results"]["version"].is_array());
}

#[actix_web::test]
async fn malformed_input_gives_faults_not_panics() {
    let site = MockSite::start();
    let url = site.url();
    for body in [
        "not json".to_string(),
        "[]".into(),
        "{}".into(),
        json!({"method_name": 5}).to_string(),
        json!({"method_name": "read", "params": "x"}).to_string(),
        json!({"method_name": "read", "params": [auth(), 7]}).to_string(),
        json!({"method_name": "read", "params": [auth(), {"type": 7}]}).to_string(),
        json!({"method_name": "read", "params": [auth(), {"type": "Shot", "filters": 3}]}).to_string(),
        json!({"method_name": "read", "params": [auth(), {"type": "Shot", "filters": {"logical_operator": "and", "conditions": [{"path": 1}]}}]}).to_string(),
        json!({"method_name": "read", "params": [auth(), {"type": "Shot", "paging": {"entities_per_page": "x"}}]}).to_string(),
        json!({"method_name": "read", "params": [auth(), {"type": "Shot", "paging": {"entities_per_page": 0, "current_page": 1}}]}).to_string(),
        json!({"method_name": "read", "params": [auth(), {"type": "Shot", "return_fields": [1]}]}).to_string(),
        json!({"method_name": "read", "params": [auth(), {"type": "Shot", "sorts": [{"field_name": "nope"}]}]}).to_string(),
        json!({"method_name": "create", "params": [auth(), {"type": "Shot", "fields": [{"value": 1}]}]}).to_string(),
        json!({"method_name": "create", "params": [auth(), {"type": "Shot", "fields": [{"field_name": "sg_cut_in", "value": "abc"}]}]}).to_string(),
        json!({"method_name": "create", "params": [auth(), {"type": "Shot", "fields": [{"field_name": "sg_sequence", "value": 5}]}]}).to_string(),
        json!({"method_name": "update", "params": [auth(), {"type": "Shot", "id": "1"}]}).to_string(),
        json!({"method_name": "batch", "params": [auth(), {"x": 1}]}).to_string(),
        json!({"method_name": "schema_field_read", "params": [auth(), {"type": "Nope"}]}).to_string(),
    ] {
        let (status, text) = post_raw(&url, body.clone()).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{body} -> {text}"));
        assert_eq!(v["exception"], json!(true), "{body} -> {v}");
    }
    // still alive
    assert!(results(&url, "read", json!({"type": "Shot"})).await["entities"].is_array());
}

#[actix_web::test]
async fn schema_calls_have_the_wire_shapes() {
    let site = MockSite::start();
    let url = site.url();
    let all = results(&url, "schema_read", Value::Null).await;
    assert_eq!(all.as_object().unwrap().len(), 19);
    assert_eq!(all["Shot"]["code"]["data_type"]["value"], json!("text"));
    let ents = results(&url, "schema_entity_read", Value::Null).await;
    assert_eq!(ents["HumanUser"]["name"]["value"], json!("Person"));
    let one = results(
        &url,
        "schema_field_read",
        json!({"type": "Asset", "field_name": "shots"}),
    )
    .await;
    assert_eq!(one.as_object().unwrap().len(), 1);
    assert_eq!(
        one["shots"]["properties"]["valid_types"]["value"],
        json!(["Shot"])
    );
    let typ = results(&url, "schema_field_read", json!({"type": "Shot"})).await;
    assert!(typ["sg_sequence"].is_object());
    let missing = call(
        &url,
        "schema_field_read",
        json!({"type": "Shot", "field_name": "foo"}),
    )
    .await;
    assert_eq!(missing["exception"], json!(true));
}

#[actix_web::test]
async fn create_update_delete_revive_over_http() {
    let site = MockSite::start();
    let url = site.url();
    let project = site.create("Project", json!({"name": "Proj"}));
    let pid = project["id"].as_i64().unwrap();
    let seq = site.create(
        "Sequence",
        json!({"code": "sq01", "project": {"type": "Project", "id": pid}}),
    );
    let created = results(
        &url,
        "create",
        json!({"type": "Shot", "fields": fields(json!({"code": "sh010", "sg_sequence": {"type": "Sequence", "id": seq["id"]},
               "project": {"type": "Project", "id": pid}})), "return_fields": ["id", "sg_status_list", "created_by", "nope"]}),
    )
    .await;
    assert_eq!(created["type"], json!("Shot"));
    assert_eq!(created["code"], json!("sh010"));
    assert_eq!(
        created["sg_sequence"],
        json!({"type": "Sequence", "id": seq["id"], "name": "sq01"})
    );
    assert_eq!(
        created["sg_status_list"],
        json!("wtg"),
        "schema default value"
    );
    assert_eq!(created["created_by"]["type"], json!("ApiUser"));
    assert_eq!(created["created_by"]["name"], json!("sgcache"));
    assert!(created.get("nope").is_none());
    let id = created["id"].as_i64().unwrap();

    let stored = site.entity("Shot", id).unwrap();
    let ts = stored["updated_at"].as_str().unwrap();
    assert_eq!(ts.len(), 20);
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T');
    assert_eq!(stored["assets"], json!([]));
    assert_eq!(stored["_retired"], json!(false));

    let upd = results(
        &url,
        "update",
        json!({"type": "Shot", "id": id, "fields": fields(json!({"sg_cut_in": 1001}))}),
    )
    .await;
    assert_eq!(upd, json!({"type": "Shot", "id": id, "sg_cut_in": 1001}));
    let bad = call(
        &url,
        "update",
        json!({"type": "Shot", "id": id, "fields": fields(json!({"foo": 1}))}),
    )
    .await;
    assert_eq!(bad["exception"], json!(true));
    let missing = call(
        &url,
        "update",
        json!({"type": "Shot", "id": 999, "fields": fields(json!({"code": "x"}))}),
    )
    .await;
    assert_eq!(missing["exception"], json!(true));

    assert_eq!(
        results(&url, "delete", json!({"type": "Shot", "id": id})).await,
        json!(true)
    );
    assert_eq!(
        results(&url, "delete", json!({"type": "Shot", "id": id})).await,
        json!(false)
    );
    assert_eq!(
        call(&url, "delete", json!({"type": "Shot", "id": 999})).await["exception"],
        json!(true)
    );
    let active = find(&url, "Shot", json!([]), json!(["code"])).await;
    assert!(ids(&active).is_empty());
    let retired = results(
        &url,
        "read",
        json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": []}, "return_fields": ["code"],
               "return_only": "retired", "paging": {"entities_per_page": 10, "current_page": 1}}),
    )
    .await;
    assert_eq!(ids(&retired), vec![id]);
    assert_eq!(
        results(&url, "revive", json!({"type": "Shot", "id": id})).await,
        json!(true)
    );
    assert_eq!(
        results(&url, "revive", json!({"type": "Shot", "id": id})).await,
        json!(false)
    );
    assert_eq!(
        ids(&find(&url, "Shot", json!([]), json!(["code"])).await),
        vec![id]
    );
}

#[actix_web::test]
async fn batch_is_all_or_nothing() {
    let site = MockSite::start();
    let url = site.url();
    let keep = site.create("Shot", json!({"code": "keep"}));
    let kid = keep["id"].as_i64().unwrap();
    let events_before = site.events().len();
    let r = call(
        &url,
        "batch",
        json!([
            {"request_type": "create", "type": "Shot", "fields": fields(json!({"code": "new1"})), "return_fields": ["id"]},
            {"request_type": "update", "type": "Shot", "id": kid, "fields": fields(json!({"code": "changed"}))},
            {"request_type": "update", "type": "Shot", "id": kid, "fields": fields(json!({"no_such_field": 1}))},
        ]),
    )
    .await;
    assert_eq!(r["exception"], json!(true));
    assert_eq!(site.entities("Shot").len(), 1);
    assert_eq!(site.entity("Shot", kid).unwrap()["code"], json!("keep"));
    assert_eq!(site.events().len(), events_before);

    let ok = results(
        &url,
        "batch",
        json!([
            {"request_type": "create", "type": "Shot", "fields": fields(json!({"code": "new1"})), "return_fields": ["id"]},
            {"request_type": "update", "type": "Shot", "id": kid, "fields": fields(json!({"code": "changed"}))},
            {"request_type": "delete", "type": "Shot", "id": kid},
        ]),
    )
    .await;
    let list = ok.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["code"], json!("new1"));
    assert_eq!(list[1]["code"], json!("changed"));
    assert_eq!(list[2], json!(true));
    assert_eq!(site.entity("Shot", kid).unwrap()["_retired"], json!(true));
}

#[actix_web::test]
async fn user_and_session_auth() {
    let mut config = sgcache_mock_site::MockConfig::default();
    config.users.push(sgcache_mock_site::UserConfig {
        login: "jdoe".into(),
        password: "pw".into(),
        name: "John Doe".into(),
    });
    config.scripts.push(ScriptConfig::new("other", "k", true));
    let site = MockSite::start_with(config);
    let url = site.url();
    let r = call_with(
        &url,
        json!({"user_login": "jdoe", "user_password": "pw"}),
        "get_session_token",
        Value::Null,
    )
    .await;
    let token = r["results"]["session_id"].as_str().unwrap().to_string();
    let created = call_with(
        &url,
        json!({"session_token": token, "reject_if_expired": true}),
        "create",
        json!({"type": "Shot", "fields": fields(json!({"code": "a"}))}),
    )
    .await;
    let id = created["results"]["id"].as_i64().unwrap();
    assert_eq!(
        site.entity("Shot", id).unwrap()["created_by"]["name"],
        json!("John Doe")
    );
    let bad = call_with(
        &url,
        json!({"user_login": "jdoe", "user_password": "no"}),
        "read",
        json!({"type": "Shot"}),
    )
    .await;
    assert_eq!(bad["error_code"], json!(102));
    let bad = call_with(
        &url,
        json!({"session_token": "nope"}),
        "read",
        json!({"type": "Shot"}),
    )
    .await;
    assert_eq!(bad["error_code"], json!(102));
}

#[test]
fn loads_the_big_schema() {
    let path = "/work/shared/data/shotgun-schema/schema.json";
    if !std::path::Path::new(path).exists() {
        return;
    }
    let site = MockSite::start_with(sgcache_mock_site::MockConfig::with_schema_file(path).unwrap());
    assert!(site.schema().types().count() > 50);
    let shot = site.create("Shot", json!({"code": "big"}));
    assert_eq!(shot["code"], json!("big"));
}
