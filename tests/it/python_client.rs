//! The official Python client, unchanged, against sgcache in front of the mock site: every
//! answer equals the site's, and the locally answered reads never reach the site.
//!
//! Needs `python3` with `shotgun_api3`: the test makes a venv under `tests/python/.venv` and
//! installs `shotgun_api3` from PyPI on first use. Without Python or PyPI it is skipped loudly
//! (and fails under CI=true, where both must be there).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sgcache::Daemon;

use crate::support::{MockSite, TestDb, listener, test_config, wait_primed};

#[path = "../python/venv.rs"]
mod venv;

/// One of the client scripts of `tests/python/` (`BASE_URL SCRIPT_NAME API_KEY OUT.json`), run
/// with the venv's interpreter and the mock site's credentials.
pub(crate) struct ClientScript {
    python: PathBuf,
    script: PathBuf,
    dir: tempfile::TempDir,
}

impl ClientScript {
    /// `script` for `test`; `None` when python3 or PyPI is missing: `test` is then skipped
    /// with a note (and fails under CI, where both must be there).
    pub(crate) fn new(test: &str, script: &str) -> Option<ClientScript> {
        let client = venv::CLIENT_VERSION;
        let Some(python) = venv::venv_python() else {
            assert!(
                std::env::var("CI").is_err(),
                "CI needs python3 with {client}"
            );
            eprintln!("NOTE: python3 with {client} is not available: {test} test SKIPPED");
            return None;
        };
        Some(ClientScript {
            python,
            script: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/python")
                .join(script),
            dir: tempfile::tempdir().expect("tempdir"),
        })
    }

    /// The script's answers against `base` (sgcache or the site), dumped to `{name}.json`; run
    /// off the async runtime's thread (the daemon under test runs on it).
    pub(crate) async fn answers(&self, base: &str, name: &str) -> Value {
        let (python, script) = (self.python.clone(), self.script.clone());
        let base_url = format!("{base}/");
        let out = self.dir.path().join(format!("{name}.json"));
        actix_web::rt::task::spawn_blocking(move || run(&python, &script, &base_url, &out))
            .await
            .expect("join")
    }
}

fn run(python: &Path, script: &Path, base_url: &str, out: &Path) -> Value {
    let output = Command::new(python)
        .arg(script)
        .args([base_url, "sgcache", "test-key"])
        .arg(out)
        .output()
        .expect("run the Python client");
    assert!(
        output.status.success(),
        "client against {base_url} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(out).expect("client output")).expect("client JSON")
}

/// A site with 2,100 shots (over four 500-entity pages), links, tasks and retired rows.
fn populate(site: &MockSite) {
    let project = site.create("Project", json!({"name": "Demo"}))["id"]
        .as_i64()
        .expect("id");
    let seqs = site.seed("Sequence", 5, |i| json!({"code": format!("sq{:02}", i + 1), "project": {"type": "Project", "id": project}}));
    let assets = site.seed(
        "Asset",
        20,
        |i| json!({"code": format!("asset{i:02}"), "project": {"type": "Project", "id": project}}),
    );
    let users = site.seed(
        "HumanUser",
        3,
        |i| json!({"login": format!("user{i}"), "name": format!("User {i}")}),
    );
    let statuses = ["ip", "wtg", "fin"];
    let shots = site.seed("Shot", 2100, |i| {
        let mut shot = json!({
            "code": if i % 3 == 0 { format!("SH{i:04}") } else { format!("sh{i:04}") },
            "project": {"type": "Project", "id": project},
            "sg_status_list": statuses[i % 3],
            "sg_cut_in": (i * 7) % 500,
            "assets": [{"type": "Asset", "id": assets[i % 20]}, {"type": "Asset", "id": assets[(i + 1) % 20]}],
        });
        if i % 10 != 0 {
            shot["sg_sequence"] = json!({"type": "Sequence", "id": seqs[i % 5]});
        }
        shot
    });
    site.seed("Task", 300, |i| {
        json!({
            "content": format!("task{i}"),
            "project": {"type": "Project", "id": project},
            "entity": if i % 4 == 0 { json!({"type": "Asset", "id": assets[i % 20]}) } else { json!({"type": "Shot", "id": shots[i]}) },
            "task_assignees": [{"type": "HumanUser", "id": users[i % 3]}],
        })
    });
    for id in &shots[..5] {
        site.delete("Shot", *id);
    }
}

#[actix_web::test]
async fn the_official_client_gets_the_sites_answers_and_cached_reads_stay_local() {
    let Some(client) = ClientScript::new("Python client", "client_compat.py") else {
        return;
    };
    let site = MockSite::start();
    populate(&site);
    let test_db = TestDb::sqlite();
    let mut config = test_config(&test_db, Some(&site));
    config.schema.include = vec![
        "Project".into(),
        "Sequence".into(),
        "Shot".into(),
        "Asset".into(),
        "Task".into(),
        "HumanUser".into(),
    ];
    let daemon = Daemon::start(config, listener()).await.expect("daemon");
    wait_primed(&daemon, Duration::from_secs(120)).await;

    site.clear_requests();
    let via_cache = client.answers(&daemon.url(), "cache").await;
    let reached_site: Vec<_> = site
        .requests()
        .into_iter()
        .map(|r| {
            let project = r.body["params"][1].get("project").is_some();
            (r.method, r.entity_type, project)
        })
        .collect();
    let direct = client.answers(&site.url(), "site").await;

    for (call, expected) in direct.as_object().expect("object") {
        assert_eq!(
            &via_cache[call], expected,
            "{call}: sgcache differs from the site"
        );
    }
    assert_eq!(
        via_cache["find_all_paged"].as_array().map(Vec::len),
        Some(2095),
        "every active shot exactly once"
    );
    // Only the pass-through calls reached the site. The daemon's own event poller reads
    // EventLogEntry meanwhile (the client script never does): those are not the client's.
    let from_client = reached_site
        .iter()
        .filter(|(_, ty, _)| ty.as_deref() != Some("EventLogEntry"));
    for (method, entity_type, project) in from_client {
        // Pass-through calls (schema calls only with a project), and the one-row credential
        // check (a HumanUser read, §auth).
        let allowed = (method == "schema_field_read" && *project)
            || method == "summarize"
            || (method == "read"
                && matches!(entity_type.as_deref(), Some("Version") | Some("HumanUser")));
        assert!(
            allowed,
            "{method} {entity_type:?} should have been answered by sgcache: {reached_site:?}"
        );
    }
    assert!(
        reached_site
            .iter()
            .any(|(m, _, project)| m == "schema_field_read" && *project),
        "a schema call with a project reached the site"
    );
    assert!(
        reached_site.iter().any(|(m, _, _)| m == "summarize"),
        "summarize is passed through"
    );
    for call in [
        "schema_read",
        "schema_entity_read",
        "schema_field_read_type",
    ] {
        assert!(
            direct[call].as_object().is_some_and(|o| !o.is_empty()),
            "{call}: the site's answer is there to compare"
        );
    }
    let checks = reached_site
        .iter()
        .filter(|(m, t, _)| m == "read" && t.as_deref() == Some("HumanUser"))
        .count();
    assert_eq!(checks, 1, "credentials are checked once: {reached_site:?}");
    daemon.stop().await;
}
