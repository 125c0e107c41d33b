//! Hostile and broken input: the request parser and the filter compiler are fuzzed with
//! proptest (a short run here; `cargo fuzz` targets in `fuzz/` for long runs), and malformed
//! requests over HTTP get Shotgun-format faults while the daemon keeps serving.
use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use sgcache::Daemon;
use sgcache::api3::read::ReadRequest;
use sgcache::query::rules::Rules;
use sgcache::query::{Decision, plan_read};
use sgcache::schema::{Backend, CachedSchema, SelectionRules, SiteSchema, select};

use crate::support::{MockSite, TestDb, listener, test_config};

fn schemas() -> (SiteSchema, CachedSchema, BTreeSet<String>) {
    let site = SiteSchema::from_json(
        &serde_json::from_str(include_str!("../fixtures/schema_read.json")).expect("json"),
        None,
    )
    .expect("schema");
    let rules = SelectionRules {
        include: vec!["*".into()],
        exclude: vec![],
    };
    let (cached, _) = select(&site, &rules).expect("select");
    let complete = cached.types.keys().cloned().collect();
    (site, cached, complete)
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[ -~]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("Shot"),
            Just("code"),
            Just("is"),
            Just("in"),
            Just("and"),
            Just("or"),
            Just("entity.Shot.code"),
            Just("sg_sequence.Sequence.code"),
            Just("assets"),
            Just("id\"; DROP TABLE shot; --"),
            Just("DAY")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("filters".to_owned()),
                    Just("conditions".to_owned()),
                    Just("logical_operator".to_owned()),
                    Just("path".to_owned()),
                    Just("relation".to_owned()),
                    Just("values".to_owned()),
                    Just("return_fields".to_owned()),
                    Just("paging".to_owned()),
                    Just("sorts".to_owned()),
                    Just("return_only".to_owned()),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Requests close to valid: real types, real and fake paths, every relation, odd values.
fn near_valid_read() -> impl Strategy<Value = Value> {
    let paths = prop_oneof![
        Just("code"),
        Just("id"),
        Just("sg_status_list"),
        Just("sg_cut_in"),
        Just("project"),
        Just("assets"),
        Just("sg_sequence.Sequence.code"),
        Just("tasks.Task.content"),
        Just("entity.Shot.code"),
        Just("updated_at"),
        Just("image"),
        Just("no_such_field"),
        Just("code; DROP TABLE shot"),
        Just("a.B.c.D.e")
    ];
    let relations = prop_oneof![
        Just("is"),
        Just("is_not"),
        Just("in"),
        Just("not_in"),
        Just("less_than"),
        Just("greater_than"),
        Just("between"),
        Just("not_between"),
        Just("contains"),
        Just("not_contains"),
        Just("starts_with"),
        Just("ends_with"),
        Just("in_last"),
        Just("in_next"),
        Just("in_calendar_month"),
        Just("type_is"),
        Just("name_contains"),
        Just("name_is"),
        Just("bogus")
    ];
    let condition = (
        paths.clone(),
        relations,
        prop::collection::vec(any_json(), 0..3),
    )
        .prop_map(|(p, r, v)| json!({"path": p, "relation": r, "values": v}));
    (
        prop_oneof![Just("Shot"), Just("Task"), Just("Asset"), Just("NoSuchType")],
        prop::collection::vec(condition, 0..4),
        prop::collection::vec(paths, 0..4),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(|(ty, conditions, fields, per_page, page)| {
            json!({"type": ty, "filters": {"logical_operator": "or", "conditions": conditions},
                   "return_fields": fields, "return_only": "active",
                   "sorts": [{"field_name": "code", "direction": "desc"}],
                   "paging": {"entities_per_page": per_page.rem_euclid(600), "current_page": page.rem_euclid(5)}})
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_read_parser_and_planner_never_panic_on_arbitrary_json(args in any_json()) {
        let (site, cached, complete) = schemas();
        if let Ok(req) = ReadRequest::parse(&args) {
            for backend in [Backend::Sqlite, Backend::Postgres] {
                let _ = plan_read(&req, &cached, &site, &complete, &Rules::assumed(), backend);
            }
        }
    }

    #[test]
    fn near_valid_reads_plan_or_fail_cleanly(args in near_valid_read()) {
        let (site, cached, complete) = schemas();
        match ReadRequest::parse(&args) {
            Err(fault) => prop_assert!(!fault.message.is_empty()),
            Ok(req) => {
                for backend in [Backend::Sqlite, Backend::Postgres] {
                    match plan_read(&req, &cached, &site, &complete, &Rules::assumed(), backend) {
                        Err(fault) => prop_assert!(fault.message.contains("doesn't exist") || !fault.message.is_empty()),
                        Ok(Decision::Local(_)) | Ok(Decision::PassThrough(_)) => {}
                    }
                }
            }
        }
    }
}

async fn post_raw(base: &str, body: &[u8]) -> (u16, Value) {
    let mut r = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .post(format!("{base}/api3/json"))
        .insert_header(("content-type", "application/json"))
        .send_body(body.to_vec())
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let body = r.body().limit(1 << 20).await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[actix_web::test]
async fn malformed_requests_get_faults_and_the_daemon_keeps_serving() {
    let site = MockSite::start();
    let test_db = TestDb::sqlite();
    let mut config = test_config(&test_db, Some(&site));
    config.server.max_body_bytes = 64 * 1024;
    config.scanner.enabled = false;
    config.events.enabled = false;
    let daemon = Daemon::start(config, listener()).await.expect("daemon");
    let base = daemon.url();
    let auth = json!({"script_name": "sgcache", "script_key": "test-key"});
    let deep = (0..200).fold(
        json!({"path": "code", "relation": "is", "values": ["x"]}),
        |inner, _| json!({"logical_operator": "and", "conditions": [inner]}),
    );
    let wide: Vec<Value> = (0..20_000)
        .map(|i| json!({"path": "id", "relation": "is", "values": [i]}))
        .collect();
    let cases: Vec<(String, Vec<u8>)> = vec![
        ("not json".into(), b"{this is not json".to_vec()),
        ("empty".into(), Vec::new()),
        ("a list".into(), b"[1, 2, 3]".to_vec()),
        ("no method".into(), json!({"params": []}).to_string().into_bytes()),
        ("method not a string".into(), json!({"method_name": 5, "params": []}).to_string().into_bytes()),
        ("params not a list".into(), json!({"method_name": "read", "params": {"a": 1}}).to_string().into_bytes()),
        ("read without args".into(), json!({"method_name": "read", "params": [auth]}).to_string().into_bytes()),
        ("read args wrong type".into(), json!({"method_name": "read", "params": [auth, "Shot"]}).to_string().into_bytes()),
        ("absurd paging".into(), json!({"method_name": "read", "params": [auth, {"type": "Shot",
            "filters": {"logical_operator": "and", "conditions": []}, "return_fields": ["code"], "return_only": "active",
            "paging": {"entities_per_page": -5, "current_page": 99999999999i64}}]}).to_string().into_bytes()),
        ("deep nesting".into(), json!({"method_name": "read", "params": [auth, {"type": "Shot", "filters": deep,
            "return_fields": ["code"], "return_only": "active", "paging": {"entities_per_page": 5, "current_page": 1}}]})
            .to_string().into_bytes()),
        ("unknown relation".into(), json!({"method_name": "read", "params": [auth, {"type": "Shot",
            "filters": {"logical_operator": "and", "conditions": [{"path": "code", "relation": "resembles", "values": ["x"]}]},
            "return_fields": ["code"], "return_only": "active", "paging": {"entities_per_page": 5, "current_page": 1}}]})
            .to_string().into_bytes()),
        ("SQL in a field name".into(), json!({"method_name": "read", "params": [auth, {"type": "Shot",
            "filters": {"logical_operator": "and", "conditions": [{"path": "code\" OR 1=1; --", "relation": "is", "values": ["x"]}]},
            "return_fields": ["code"], "return_only": "active", "paging": {"entities_per_page": 5, "current_page": 1}}]})
            .to_string().into_bytes()),
    ];
    for (what, body) in cases {
        let (status, reply) = post_raw(&base, &body).await;
        assert_eq!(status, 200, "{what}");
        assert_eq!(reply["exception"], true, "{what}: {reply}");
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {reply}"
        );
    }
    // Too large a body: refused with a clear fault naming the limit.
    let huge = json!({"method_name": "read", "params": [auth, {"type": "Shot",
        "filters": {"logical_operator": "or", "conditions": wide}}]})
    .to_string()
    .into_bytes();
    let (status, reply) = post_raw(&base, &huge).await;
    assert_eq!(status, 200);
    assert!(
        reply["message"]
            .as_str()
            .expect("message")
            .contains("max_body_bytes"),
        "{reply}"
    );

    // Still alive and well.
    let (_, reply) = post_raw(
        &base,
        json!({"method_name": "info", "params": []})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert!(reply["results"]["version"].is_array(), "{reply}");
    daemon.stop().await;
}
