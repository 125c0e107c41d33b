//! The `sgcache` binary: one clear line and exit code 2 for bad configuration, `config check`
//! masks secrets, `migrate` and `schema show` work offline.
use std::process::{Command, Output};

fn sgcache(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sgcache"));
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SGCACHE_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run sgcache")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// (config.toml text, environment, the key the error must name)
type ConfigCase = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn bad_configuration_stops_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[ConfigCase] = &[
        ("[scanner]\ninterval = \"often\"\n", &[], "scanner.interval"),
        ("[shotgun]\nurll = \"x\"\n", &[], "urll"),
        ("[shotgun]\nurl = \"site.example\"\n", &[], "shotgun.url"),
        (
            "",
            &[("SGCACHE_SHOTGUN_URL", "https://site.example")],
            "shotgun.script_name",
        ),
        (
            "[shotgun]\nurl = \"https://site.example\"\nscript_name = \"s\"\n",
            &[],
            "shotgun.api_key",
        ),
    ];
    for (toml, env, key) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, toml).expect("write config");
        let out = sgcache(
            &["--config", path.to_str().expect("path"), "serve"],
            env,
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(2), "{toml:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
        assert!(err.contains(key), "{err:?} should name {key}");
        assert!(!err.contains("panicked"));
    }
    let out = sgcache(
        &["--config", "/nonexistent/sg.toml", "config", "check"],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"));
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sgcache(
        &["config", "check", "--bind", "127.0.0.1:9999"],
        &[
            ("SGCACHE_SHOTGUN_API_KEY", "hunter2"),
            ("SGCACHE_DATABASE_URL", "postgres://u:pw@db/sg"),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bind = \"127.0.0.1:9999\""), "{text}");
    assert!(text.contains("api_key = \"********\""), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains(":pw@"),
        "{text}"
    );
}

#[test]
fn migrate_and_schema_show_work_offline_on_a_fresh_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sgcache(&["migrate"], &[], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        dir.path().join("var/sgcache.sqlite").exists(),
        "the default SQLite file is created under var/"
    );

    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/schema_read.json"
    );
    let out = sgcache(
        &["schema", "show"],
        &[
            ("SGCACHE_SCHEMA_FILE", schema),
            ("SGCACHE_SCHEMA_INCLUDE", "[\"Shot\", \"Task.content\"]"),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Shot -> table shot (link name from code)"),
        "{text}"
    );
    assert!(
        text.contains("Task -> table task (link name from content)"),
        "{text}"
    );
    assert!(
        text.contains("Shot.image"),
        "skipped fields are listed: {text}"
    );
}

#[test]
fn help_explains_the_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sgcache(&["--help"], &[], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "serve", "migrate", "schema", "config", "--config", "SGCACHE_",
    ] {
        assert!(text.contains(word), "--help mentions {word}: {text}");
    }
}
