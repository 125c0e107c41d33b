mod common;

use common::*;
use serde_json::json;
use sgcache_mock_site::MockSite;

fn leaf(path: &str, relation: &str, values: serde_json::Value) -> serde_json::Value {
    json!({"path": path, "relation": relation, "values": values})
}

#[actix_web::test]
async fn paging_and_order() {
    let site = MockSite::start();
    let url = site.url();
    let ids_seeded = site.seed(
        "Shot",
        25,
        |i| json!({"code": format!("sh{:03}", 25 - i), "sg_cut_in": (i % 5) as i64}),
    );
    assert_eq!(ids_seeded, (1..=25).collect::<Vec<_>>());
    assert!(site.events().is_empty(), "seed logs no events");
    let page = |n: i64| {
        json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": []}, "return_fields": ["code"],
               "return_only": "active", "paging": {"entities_per_page": 10, "current_page": n},
               "return_paging_info_without_counts": true})
    };
    let p1 = results(&url, "read", page(1)).await;
    assert_eq!(ids(&p1), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        p1["paging_info"],
        json!({"entity_count": 25, "has_next_page": true})
    );
    let p3 = results(&url, "read", page(3)).await;
    assert_eq!(ids(&p3), (21..=25).collect::<Vec<_>>());
    assert_eq!(
        p3["paging_info"],
        json!({"entity_count": 25, "has_next_page": false})
    );
    let p4 = results(&url, "read", page(4)).await;
    assert!(ids(&p4).is_empty());

    // sorts with id tie-break
    let mut q = page(1);
    q["sorts"] = json!([{"field_name": "sg_cut_in", "direction": "desc"}]);
    let s = results(&url, "read", q).await;
    assert_eq!(ids(&s), vec![5, 10, 15, 20, 25, 4, 9, 14, 19, 24]);
    let mut q = page(1);
    q["sorts"] = json!([{"field_name": "code", "direction": "asc"}]);
    assert_eq!(ids(&results(&url, "read", q).await)[0], 25);
}

#[actix_web::test]
async fn filter_semantics() {
    let site = MockSite::start();
    let url = site.url();
    let p = site.create("Project", json!({"name": "P"}))["id"]
        .as_i64()
        .unwrap();
    let sq = site.create(
        "Sequence",
        json!({"code": "SQ01", "project": {"type": "Project", "id": p}}),
    )["id"]
        .as_i64()
        .unwrap();
    let a1 = site.create("Asset", json!({"code": "ball"}))["id"]
        .as_i64()
        .unwrap();
    let a2 = site.create("Asset", json!({"code": "tree"}))["id"]
        .as_i64()
        .unwrap();
    let s1 = site.create(
        "Shot",
        json!({"code": "Alpha", "sg_cut_in": 0, "sg_sequence": {"type": "Sequence", "id": sq},
        "assets": [{"type": "Asset", "id": a1}]}),
    )["id"]
        .as_i64()
        .unwrap();
    let s2 = site.create("Shot", json!({"code": "beta", "sg_cut_in": 10, "assets": [{"type": "Asset", "id": a1}, {"type": "Asset", "id": a2}]}))["id"].as_i64().unwrap();
    let s3 = site.create("Shot", json!({}))["id"].as_i64().unwrap();

    let q = |c: serde_json::Value| {
        let url = url.clone();
        async move { ids(&find(&url, "Shot", c, json!(["code"])).await) }
    };
    assert_eq!(
        q(json!([leaf("code", "is", json!(["ALPHA"]))])).await,
        vec![s1]
    );
    assert_eq!(
        q(json!([leaf("code", "is_not", json!(["alpha"]))])).await,
        vec![s2, s3]
    );
    assert_eq!(
        q(json!([leaf("code", "is", json!([null]))])).await,
        vec![s3]
    );
    assert_eq!(
        q(json!([leaf("code", "is_not", json!([null]))])).await,
        vec![s1, s2]
    );
    assert_eq!(
        q(json!([leaf("code", "in", json!(["beta", null]))])).await,
        vec![s2, s3]
    );
    assert_eq!(
        q(json!([leaf("code", "not_in", json!(["beta"]))])).await,
        vec![s1, s3]
    );
    assert_eq!(
        q(json!([leaf("code", "contains", json!(["LPH"]))])).await,
        vec![s1]
    );
    assert_eq!(
        q(json!([leaf("code", "not_contains", json!(["lph"]))])).await,
        vec![s2, s3]
    );
    assert_eq!(
        q(json!([leaf("code", "starts_with", json!(["be"]))])).await,
        vec![s2]
    );
    assert_eq!(
        q(json!([leaf("code", "ends_with", json!(["HA"]))])).await,
        vec![s1]
    );
    assert_eq!(
        q(json!([leaf("sg_cut_in", "is", json!([0]))])).await,
        vec![s1],
        "0 is not null"
    );
    assert_eq!(
        q(json!([leaf("sg_cut_in", "greater_than", json!([0]))])).await,
        vec![s2]
    );
    assert_eq!(
        q(json!([leaf("sg_cut_in", "less_than", json!([5]))])).await,
        vec![s1]
    );
    assert_eq!(
        q(json!([leaf("sg_cut_in", "between", json!([0, 10]))])).await,
        vec![s1, s2]
    );
    assert_eq!(
        q(json!([leaf("sg_cut_in", "not_between", json!([1, 10]))])).await,
        vec![s1, s3]
    );
    assert_eq!(
        q(json!([leaf("id", "in", json!([s1, s3]))])).await,
        vec![s1, s3]
    );
    let seq = json!({"type": "Sequence", "id": sq, "name": "whatever"});
    assert_eq!(
        q(json!([leaf("sg_sequence", "is", json!([seq]))])).await,
        vec![s1]
    );
    assert_eq!(
        q(json!([leaf("sg_sequence", "is_not", json!([seq]))])).await,
        vec![s2, s3]
    );
    assert_eq!(
        q(json!([leaf("sg_sequence", "type_is", json!(["Sequence"]))])).await,
        vec![s1]
    );
    assert_eq!(
        q(json!([leaf("sg_sequence", "type_is", json!([null]))])).await,
        vec![s2, s3]
    );
    assert_eq!(
        q(json!([leaf(
            "sg_sequence",
            "type_is_not",
            json!(["Sequence"])
        )]))
        .await,
        vec![s2, s3]
    );
    assert_eq!(
        q(json!([leaf("sg_sequence", "name_is", json!(["SQ01"]))])).await,
        vec![s1]
    );
    assert_eq!(
        q(json!([leaf("sg_sequence", "name_contains", json!(["q0"]))])).await,
        vec![s1]
    );
    assert_eq!(
        q(json!([leaf(
            "sg_sequence",
            "name_not_contains",
            json!(["q0"])
        )]))
        .await,
        vec![s2, s3]
    );
    let ball = json!({"type": "Asset", "id": a1});
    let tree = json!({"type": "Asset", "id": a2});
    assert_eq!(
        q(json!([leaf("assets", "is", json!([ball]))])).await,
        vec![s1, s2]
    );
    assert_eq!(
        q(json!([leaf("assets", "is", json!([tree]))])).await,
        vec![s2]
    );
    assert_eq!(
        q(json!([leaf("assets", "is_not", json!([tree]))])).await,
        vec![s1, s3]
    );
    assert_eq!(
        q(json!([leaf("assets", "in", json!([tree, null]))])).await,
        vec![s2, s3]
    );
    assert_eq!(
        q(json!([leaf("assets", "not_in", json!([ball]))])).await,
        vec![s3]
    );
    assert_eq!(
        q(json!([leaf("assets", "is", json!([null]))])).await,
        vec![s3]
    );
    assert_eq!(
        q(json!([leaf("assets", "name_contains", json!(["tre"]))])).await,
        vec![s2]
    );
    // nested groups
    let nested = json!([{"logical_operator": "or", "conditions": [leaf("code", "is", json!(["alpha"])),
        {"logical_operator": "and", "conditions": [leaf("sg_cut_in", "is", json!([10])), leaf("code", "starts_with", json!(["b"]))]}]}]);
    assert_eq!(q(nested).await, vec![s1, s2]);
    // deep filter and deep return field
    assert_eq!(
        q(json!([leaf(
            "sg_sequence.Sequence.code",
            "is",
            json!(["sq01"])
        )]))
        .await,
        vec![s1]
    );
    let r = find(
        &url,
        "Shot",
        json!([]),
        json!([
            "sg_sequence.Sequence.code",
            "sg_sequence.Sequence.project",
            "sg_sequence.Project.name",
            "bogus",
            "assets"
        ]),
    )
    .await;
    assert_eq!(r["entities"][0]["sg_sequence.Sequence.code"], json!("SQ01"));
    assert_eq!(
        r["entities"][0]["sg_sequence.Sequence.project"],
        json!({"type": "Project", "id": p, "name": "P"})
    );
    assert_eq!(r["entities"][0]["sg_sequence.Project.name"], json!(null));
    assert_eq!(r["entities"][1]["sg_sequence.Sequence.code"], json!(null));
    assert!(r["entities"][0].get("bogus").is_none());
    assert_eq!(
        r["entities"][1]["assets"],
        json!([{"type": "Asset", "id": a1, "name": "ball"}, {"type": "Asset", "id": a2, "name": "tree"}])
    );
    // faults
    let bad = call(&url, "read", json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": [leaf("foo", "is", json!(["x"]))]}})).await;
    assert_eq!(bad["error_code"], json!(103));
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .starts_with("API read() Shot.foo doesn't exist"),
        "{bad}"
    );
    let bad = call(&url, "read", json!({"type": "Shot", "filters": {"logical_operator": "and", "conditions": [leaf("code", "frobs", json!(["x"]))]}})).await;
    assert_eq!(bad["exception"], json!(true));
    let bad = call(&url, "read", json!({"type": "Nope"})).await;
    assert_eq!(bad["exception"], json!(true));
}
