//! `POST /explain` and `sgcache explain`: the decision, the reason, the rules relied on and
//! the SQL, for local, passed-through and invalid requests.
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sgcache::Daemon;

use crate::query::seed_mock;
use crate::support::{MockSite, TestDb, databases, listener, test_config, wait_primed};

fn read_body(args: Value) -> String {
    json!({"method_name": "read",
        "params": [{"script_name": "sgcache", "script_key": "test-key"}, args]})
    .to_string()
}

fn sorted_by_code() -> String {
    read_body(json!({"type": "Shot", "filters": [["code", "is", "sh1"]],
        "sorts": [{"field_name": "code"}]}))
}

fn by_id() -> String {
    read_body(
        json!({"type": "Shot", "filters": [["code", "is", "sh1"]], "return_fields": ["code"]}),
    )
}

async fn explain(daemon: &Daemon, body: String) -> Value {
    let mut r = awc::Client::default()
        .post(format!("{}/explain", daemon.url()))
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await
        .expect("POST /explain");
    assert!(r.status().is_success());
    r.json().limit(1 << 20).await.expect("JSON")
}

fn rule<'a>(e: &'a Value, name: &str) -> &'a Value {
    e["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["rule"] == name))
        .unwrap_or_else(|| panic!("{name} not relied on: {e}"))
}

#[actix_web::test]
async fn explain_answers_for_local_passed_through_and_invalid_requests() {
    let site = MockSite::start();
    seed_mock(&site);
    for test_db in databases().await {
        let mut config = test_config(&test_db, Some(&site));
        // Every rule vouched for but the text order: reads sorted by text pass through.
        config.calibration.pinned.remove("text_order");
        let daemon = Daemon::start(config, listener())
            .await
            .expect("daemon starts");
        wait_primed(&daemon, Duration::from_secs(60)).await;
        let backend = daemon.pools.backend.name();

        let e = explain(&daemon, by_id()).await;
        assert_eq!(e["decision"], "local", "{e}");
        assert_eq!(e["reason"], Value::Null);
        assert_eq!(e["rules"], json!([]), "{e}");
        assert_eq!(e["sql"]["backend"], backend);
        let page = e["sql"]["page"].as_str().unwrap();
        assert!(
            page.starts_with("SELECT") && page.contains("\"shot\""),
            "{page}"
        );
        let placeholder = if backend == "postgres" { "$1" } else { "?" };
        assert!(page.contains(placeholder), "{page}");
        assert_eq!(e["sql"]["multi_entity"], json!([]), "{e}");

        // A multi-entity return field: one statement of its own over the page's ids.
        let e = explain(
            &daemon,
            read_body(json!({"type": "Shot", "return_fields": ["code", "assets"]})),
        )
        .await;
        assert_eq!(e["decision"], "local", "{e}");
        let multi = e["sql"]["multi_entity"].as_array().unwrap();
        assert_eq!(multi.len(), 1, "{e}");
        let multi = multi[0].as_str().unwrap();
        assert!(multi.contains("\"shot_assets\""), "{multi}");
        assert!(
            !e["sql"]["page"].as_str().unwrap().contains("shot_assets"),
            "{e}"
        );

        let e = explain(&daemon, sorted_by_code()).await;
        assert_eq!(e["decision"], "pass_through", "{e}");
        assert_eq!(e["reason"], "uncalibrated");
        assert_eq!(rule(&e, "nulls_ascending")["state"], "decided");
        let text = rule(&e, "text_order");
        assert_eq!(text["state"], "undecided");
        assert!(
            text["affects"].as_str().unwrap().contains("sorts"),
            "{text}"
        );
        assert_eq!(e["sql"], Value::Null);

        let e = explain(&daemon, "not json".into()).await;
        assert_eq!(e["decision"], "fault", "{e}");
        let e = explain(
            &daemon,
            read_body(json!({"type": "Shot", "filters": [["nope", "is", 1]]})),
        )
        .await;
        assert_eq!(e["decision"], "fault", "{e}");
        assert!(
            e["detail"]
                .as_str()
                .unwrap()
                .contains("Shot.nope doesn't exist"),
            "{e}"
        );
        let write = json!({"method_name": "update", "params": [{}, {"type": "Shot", "id": 1}]});
        let e = explain(&daemon, write.to_string()).await;
        assert_eq!(
            (&e["decision"], &e["reason"]),
            (&json!("pass_through"), &json!("write"))
        );

        if backend == "sqlite" {
            cli_explains(&test_db);
        }
        daemon.stop().await;
    }
}

/// `sgcache explain FILE` against the database the daemon filled (no rule calibrated or
/// pinned there: the sorted read passes through).
fn cli_explains(test_db: &TestDb) {
    let dir = tempfile::tempdir().expect("tempdir");
    let include = r#"["Project", "Sequence", "Shot", "Asset", "Task", "Step", "HumanUser"]"#;
    let run = |body: &str| {
        let path = dir.path().join("request.json");
        std::fs::write(&path, body).expect("write request");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sgcache"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SGCACHE_")) {
            cmd.env_remove(k);
        }
        let out = cmd
            .args(["explain", path.to_str().unwrap()])
            .current_dir(dir.path())
            .env("SGCACHE_DATABASE_URL", &test_db.url)
            .env("SGCACHE_SCHEMA_INCLUDE", include)
            .output()
            .expect("run sgcache explain");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON on stdout")
    };
    let e = run(&by_id());
    assert_eq!(e["decision"], "local", "{e}");
    assert!(e["sql"]["page"].as_str().unwrap().contains("SELECT"));
    let e = run(&sorted_by_code());
    assert_eq!(
        (&e["decision"], &e["reason"]),
        (&json!("pass_through"), &json!("uncalibrated"))
    );
    let e = run("{\"method_name\": \"read\", \"params\": [{}]}");
    assert_eq!(e["decision"], "fault", "{e}");
}
