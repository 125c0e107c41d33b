//! The switchable rules: each variant changes exactly what it names.
mod common;

use common::*;
use serde_json::{Value, json};
use sgcache_mock_site::{
    EmptyIn, EmptyPath, MockConfig, MockSite, NullsAt, Semantics, TextOrder, entity_link,
};

fn site_with(semantics: Semantics) -> MockSite {
    MockSite::start_with(MockConfig {
        semantics,
        ..MockConfig::default()
    })
}

async fn sorted(url: &str, field: &str, direction: &str) -> Vec<i64> {
    ids(&results(
        url,
        "read",
        json!({"type": "Shot", "return_fields": ["code"], "sorts": [{"field_name": field, "direction": direction}]}),
    )
    .await)
}

async fn matching(url: &str, ty: &str, path: &str, relation: &str, values: Value) -> Value {
    call(
        url,
        "read",
        json!({"type": ty, "filters": {"logical_operator": "and", "conditions": [
            {"path": path, "relation": relation, "values": values}]}}),
    )
    .await
}

#[actix_web::test]
async fn nulls_and_text_order() {
    let site = site_with(Semantics::default());
    for (code, cut) in [
        (json!("b"), json!(2)),
        (json!("B"), Value::Null),
        (Value::Null, json!(1)),
        (json!("a"), json!(3)),
    ] {
        site.create("Shot", json!({"code": code, "sg_cut_in": cut}));
    }
    let url = site.url();
    // Default: nulls first ascending, last descending; case-insensitive, ties by id.
    assert_eq!(sorted(&url, "code", "asc").await, [3, 4, 1, 2]);
    assert_eq!(sorted(&url, "code", "desc").await, [1, 2, 4, 3]);
    assert_eq!(sorted(&url, "sg_cut_in", "asc").await, [2, 3, 1, 4]);
    assert_eq!(sorted(&url, "sg_cut_in", "desc").await, [4, 1, 3, 2]);
    let variant = Semantics {
        nulls_ascending: NullsAt::Last,
        nulls_descending: NullsAt::First,
        text_order: TextOrder::CodePoint,
        ..Semantics::default()
    };
    site.set_semantics(variant);
    assert_eq!(sorted(&url, "code", "asc").await, [2, 4, 1, 3]);
    assert_eq!(sorted(&url, "code", "desc").await, [3, 1, 4, 2]);
    assert_eq!(sorted(&url, "sg_cut_in", "asc").await, [3, 1, 4, 2]);
    assert_eq!(sorted(&url, "sg_cut_in", "desc").await, [2, 4, 1, 3]);
    site.set_semantics(Semantics {
        text_order: TextOrder::CaseInsensitiveThenCodePoint,
        ..Semantics::default()
    });
    assert_eq!(sorted(&url, "code", "asc").await, [3, 4, 2, 1]);
}

#[actix_web::test]
async fn relative_dates_follow_zone_and_week_start() {
    let site = MockSite::start();
    // Sunday 2024-03-10 03:00 UTC is Saturday evening at UTC-5.
    let now = chrono::DateTime::parse_from_rfc3339("2024-03-10T03:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    site.freeze_clock(Some(now));
    for at in [
        "2024-03-09T06:00:00Z",
        "2024-03-10T01:00:00Z",
        "2024-03-10T06:00:00Z",
    ] {
        site.create("Shot", json!({"created_at": at}));
    }
    let url = site.url();
    let day = |url: String| async move {
        ids(&matching(&url, "Shot", "created_at", "in_calendar_day", json!([0])).await["results"])
    };
    assert_eq!(day(url.clone()).await, [2, 3]);
    site.set_semantics(Semantics {
        utc_offset_minutes: -300,
        ..Semantics::default()
    });
    assert_eq!(day(url.clone()).await, [1, 2]);
    let week = |url: String| async move {
        ids(&matching(&url, "Shot", "created_at", "in_calendar_week", json!([0])).await["results"])
    };
    // UTC, weeks from Monday: the week of Sunday the 10th holds all three.
    site.set_semantics(Semantics::default());
    assert_eq!(week(url.clone()).await, [1, 2, 3]);
    let sunday = Semantics {
        week_start: chrono::Weekday::Sun,
        ..Semantics::default()
    };
    site.set_semantics(sunday);
    assert_eq!(week(url.clone()).await, [2, 3]);
    // At UTC-5 it is still Saturday: the week that began on Sunday the 3rd.
    site.set_semantics(Semantics {
        utc_offset_minutes: -300,
        ..sunday
    });
    assert_eq!(week(url.clone()).await, [1, 2]);
}

#[actix_web::test]
async fn empty_paths_and_lists() {
    let site = MockSite::start();
    let asset = site.create("Asset", json!({"code": "tree"}))["id"]
        .as_i64()
        .unwrap();
    site.create("Shot", json!({"code": "with"}));
    site.update("Shot", 1, json!({"assets": [entity_link("Asset", asset)]}));
    site.create("Shot", json!({"code": "without"}));
    let url = site.url();
    let null_path = || matching(&url, "Shot", "assets.Asset.code", "is", json!([null]));
    let not_null_path = || matching(&url, "Shot", "assets.Asset.code", "is_not", json!([null]));
    assert_eq!(ids(&null_path().await["results"]), [2]);
    assert_eq!(ids(&not_null_path().await["results"]), [1]);
    let empty_in = || matching(&url, "Shot", "code", "in", json!([]));
    let empty_not_in = || matching(&url, "Shot", "code", "not_in", json!([]));
    assert!(ids(&empty_in().await["results"]).is_empty());
    assert_eq!(ids(&empty_not_in().await["results"]), [1, 2]);
    site.set_semantics(Semantics {
        empty_path: EmptyPath::NoValue,
        empty_in: EmptyIn::Ignored,
        ..Semantics::default()
    });
    assert!(ids(&null_path().await["results"]).is_empty());
    assert_eq!(ids(&not_null_path().await["results"]), [1, 2]);
    assert_eq!(ids(&empty_in().await["results"]), [1, 2]);
    assert_eq!(ids(&empty_not_in().await["results"]), [1, 2]);
    site.set_semantics(Semantics {
        empty_in: EmptyIn::Fault,
        ..Semantics::default()
    });
    assert_eq!(empty_in().await["exception"], json!(true));
    // Paths of entity hops only are not affected by the multi-entity rule.
    site.set_semantics(Semantics {
        empty_path: EmptyPath::NoValue,
        ..Semantics::default()
    });
    let r = matching(
        &url,
        "Shot",
        "sg_sequence.Sequence.code",
        "is",
        json!([null]),
    )
    .await;
    assert_eq!(ids(&r["results"]), [1, 2]);
}
