//! Cache-table DDL on both backends: naming rules, idempotence across restarts, widening and
//! narrowing the selection, and the `complete` flag reset on change.
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use sgcache::actors::schema_loader::{apply_schema, fetch_schema};
use sgcache::config::Config;
use sgcache::db::writer::{Apply, DbWriterHandle, EntityStatePatch, WriteOp};
use sgcache::db::{self, Pools, registry};
use sgcache::state::CacheState;

use crate::support::{columns, databases, fixture_schema_config, nullable, tables, test_config};

async fn open(config: &Config) -> (Pools, DbWriterHandle, actix::Arbiter) {
    let pools = db::connect(&config.database).await.expect("connect");
    db::migrate(&pools).await.expect("migrate");
    let (writer, arbiter) =
        DbWriterHandle::start(pools.writer.clone(), pools.backend, CacheState::new());
    (pools, writer, arbiter)
}

async fn apply(
    config: &Config,
    pools: &Pools,
    writer: &DbWriterHandle,
) -> sgcache::actors::schema_loader::Applied {
    let src = fetch_schema(config, None).await.expect("fixture schema");
    apply_schema(&src, config, pools, writer)
        .await
        .expect("apply schema")
}

#[actix_web::test]
async fn tables_follow_the_naming_rules_and_ddl_is_idempotent() {
    for test_db in databases().await {
        let mut config = test_config(&test_db, None);
        fixture_schema_config(&mut config);
        let (pools, writer, arbiter) = open(&config).await;
        let first = apply(&config, &pools, &writer).await;
        assert!(first.statements > 0, "first start creates tables");

        let all = tables(&pools.reader).await;
        for t in [
            "shot",
            "task",
            "project",
            "humanuser",
            "shot_assets",
            "task_task_assignees",
            "sgcache_schema_field",
            "sgcache_entity_state",
            "sgcache_event_cursor",
        ] {
            assert!(
                all.contains(&t.to_owned()),
                "{:?}: table {t} missing from {all:?}",
                test_db.backend
            );
        }
        assert!(
            !all.contains(&"version".to_owned()),
            "Version is not selected"
        );
        assert!(!all.contains(&"eventlogentry".to_owned()));

        let shot = columns(&pools.reader, "shot").await;
        for c in [
            "id",
            "_active",
            "_cache_created_at",
            "_cache_updated_at",
            "_last_log_event_id",
            "code",
            "sg_status_list",
            "sg_cut_in",
            "updated_at",
            "project__type",
            "project__id",
            "sg_sequence__type",
            "sg_sequence__id",
        ] {
            assert!(
                shot.contains(&c.to_owned()),
                "{:?}: shot.{c} missing from {shot:?}",
                test_db.backend
            );
        }
        for c in ["image", "tag_list", "assets", "project", "filmstrip_image"] {
            assert!(
                !shot.contains(&c.to_owned()),
                "{:?}: shot.{c} must not exist",
                test_db.backend
            );
        }
        assert_eq!(
            columns(&pools.reader, "shot_assets").await,
            ["parent_id", "child_type", "child_id", "position"]
        );
        assert!(nullable(&pools.reader, "shot", "code").await);
        assert!(nullable(&pools.reader, "shot", "sg_cut_in").await);
        assert!(
            !nullable(&pools.reader, "task", "milestone").await,
            "checkbox is NOT NULL"
        );
        assert!(!nullable(&pools.reader, "shot", "_active").await);

        // Same schema again, and again after a "restart" (new pools and writer): nothing to do.
        let registry_before = registry::load_applied(&pools.reader)
            .await
            .expect("registry");
        let again = apply(&config, &pools, &writer).await;
        assert_eq!(again.statements, 0, "{:?}", test_db.backend);
        assert!(again.invalidated.is_empty());
        arbiter.stop();
        let (pools2, writer2, arbiter2) = open(&config).await;
        let restarted = apply(&config, &pools2, &writer2).await;
        assert_eq!(restarted.statements, 0);
        assert_eq!(
            registry::load_applied(&pools2.reader)
                .await
                .expect("registry"),
            registry_before
        );
        assert_eq!(
            columns(&pools2.reader, "shot").await,
            shot,
            "a restart changes nothing"
        );
        arbiter2.stop();
    }
}

#[actix_web::test]
async fn widening_adds_columns_and_marks_types_incomplete() {
    for test_db in databases().await {
        let mut config = test_config(&test_db, None);
        fixture_schema_config(&mut config);
        config.schema.exclude = vec!["*.description".into(), "Shot.sg_cut_*".into()];
        let (pools, writer, arbiter) = open(&config).await;
        apply(&config, &pools, &writer).await;
        assert!(
            !columns(&pools.reader, "shot")
                .await
                .contains(&"description".to_owned())
        );

        // Pretend the first full scans completed.
        for ty in ["Shot", "Task", "Project"] {
            writer
                .apply(Apply {
                    ops: vec![WriteOp::EntityState {
                        entity_type: ty.into(),
                        patch: EntityStatePatch {
                            complete: Some(true),
                            ..Default::default()
                        },
                    }],
                    checkpoint: None,
                })
                .await
                .expect("mark complete");
        }
        let complete = sgcache::db::writer::load_complete(&pools.reader)
            .await
            .expect("complete");
        assert!(complete.contains("Shot") && complete.contains("Task"));

        // Widen: descriptions and cut fields come back.
        config.schema.exclude.clear();
        let widened = apply(&config, &pools, &writer).await;
        let shot = columns(&pools.reader, "shot").await;
        for c in ["description", "sg_cut_in", "sg_cut_out", "sg_cut_order"] {
            assert!(
                shot.contains(&c.to_owned()),
                "{:?}: widening adds shot.{c}",
                test_db.backend
            );
        }
        assert!(widened.invalidated.contains(&"Shot".to_owned()));
        let complete = sgcache::db::writer::load_complete(&pools.reader)
            .await
            .expect("complete");
        assert!(
            !complete.contains("Shot"),
            "Shot got new fields: it must be rescanned"
        );
        // Task and Project have no `description` or cut fields in the fixture: untouched.
        assert!(
            complete.contains("Task") && complete.contains("Project"),
            "unchanged types stay complete: {complete:?}"
        );
        assert!(!widened.invalidated.contains(&"Task".to_owned()));

        // Narrow again: the columns go away.
        config.schema.exclude = vec!["Shot.sg_cut_*".into()];
        apply(&config, &pools, &writer).await;
        let shot = columns(&pools.reader, "shot").await;
        assert!(
            !shot.contains(&"sg_cut_in".to_owned()),
            "{:?}: narrowing drops shot.sg_cut_in",
            test_db.backend
        );
        assert!(shot.contains(&"description".to_owned()));
        arbiter.stop();
    }
}

/// A field whose data type changed on the site: its column is dropped and recreated with the
/// new type, the registry records the new type, and its entity type must be rescanned.
#[actix_web::test]
async fn a_retyped_field_is_recreated_and_its_type_marked_incomplete() {
    for test_db in databases().await {
        let mut config = test_config(&test_db, None);
        fixture_schema_config(&mut config);
        let (pools, writer, arbiter) = open(&config).await;
        apply(&config, &pools, &writer).await;
        writer
            .apply(Apply {
                ops: vec![WriteOp::EntityState {
                    entity_type: "Shot".into(),
                    patch: EntityStatePatch {
                        complete: Some(true),
                        ..Default::default()
                    },
                }],
                checkpoint: None,
            })
            .await
            .expect("mark complete");

        // The site now says Shot.sg_cut_in is a float.
        let mut schema: serde_json::Value =
            serde_json::from_str(include_str!("../fixtures/schema_read.json")).expect("json");
        schema["Shot"]["sg_cut_in"]["data_type"]["value"] = "float".into();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("schema_read.json");
        std::fs::write(&path, schema.to_string()).expect("write schema");
        config.schema.file = Some(path);
        config.schema.entity_file = None;
        let applied = apply(&config, &pools, &writer).await;
        assert!(
            applied.invalidated.contains(&"Shot".to_owned()),
            "{:?}",
            applied.invalidated
        );
        let registry = registry::load_applied(&pools.reader)
            .await
            .expect("registry");
        assert_eq!(registry.types["Shot"]["sg_cut_in"].data_type, "float");
        let complete = sgcache::db::writer::load_complete(&pools.reader)
            .await
            .expect("complete");
        assert!(!complete.contains("Shot"), "Shot must be rescanned");
        assert!(
            columns(&pools.reader, "shot")
                .await
                .contains(&"sg_cut_in".to_owned())
        );
        // The new column takes floats.
        writer
            .apply(Apply {
                ops: vec![WriteOp::Upsert {
                    entity_type: "Shot".into(),
                    records: vec![
                        serde_json::json!({"type": "Shot", "id": 1, "sg_cut_in": 1.5})
                            .as_object()
                            .cloned()
                            .expect("object"),
                    ],
                    mode: sgcache::db::writer::UpsertMode::Full,
                    active: Some(true),
                    event_id: None,
                }],
                checkpoint: None,
            })
            .await
            .expect("a float goes into the retyped column");
        arbiter.stop();
    }
}

/// The definition of `index` on PostgreSQL (`None` when it does not exist).
async fn index_def<C: ConnectionTrait>(db: &C, index: &str) -> Option<String> {
    let sql = format!(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = '{index}'"
    );
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .expect("pg_indexes")
        .map(|r| r.try_get::<String>("", "indexdef").expect("indexdef"))
}

/// PostgreSQL: every cached table gets the index of its live rows' ids, a database made
/// without it gets it on the next start (with nothing else to apply), and a page's inner query
/// can be answered from it alone (the condition `"_active" = TRUE` the reads write implies the
/// index's).
#[actix_web::test]
async fn postgres_tables_get_the_live_ids_index() {
    let Some(url) = crate::support::pg_url() else {
        return;
    };
    let test_db = crate::support::TestDb::postgres(&url).await;
    let mut config = test_config(&test_db, None);
    fixture_schema_config(&mut config);
    let (pools, writer, arbiter) = open(&config).await;
    apply(&config, &pools, &writer).await;
    for table in ["shot", "task", "project", "humanuser"] {
        let def = index_def(&pools.reader, &format!("ix_{table}__active_id"))
            .await
            .unwrap_or_else(|| panic!("{table}: no live-ids index"));
        assert!(
            def.ends_with(&format!(
                "ON public.{table} USING btree (id) WHERE (_active = true)"
            )),
            "{def}"
        );
    }
    // A database made before the index: the next start adds it, and applies nothing else.
    pools
        .writer
        .execute_unprepared(r#"DROP INDEX "ix_shot__active_id""#)
        .await
        .expect("drop the index");
    arbiter.stop();
    let (pools, writer, arbiter) = open(&config).await;
    let restarted = apply(&config, &pools, &writer).await;
    assert_eq!(restarted.statements, 0);
    assert!(restarted.invalidated.is_empty());
    assert!(
        index_def(&pools.reader, "ix_shot__active_id")
            .await
            .is_some()
    );
    // With the index in place, an apply does not wait for the table's writes (PostgreSQL's
    // `CREATE INDEX IF NOT EXISTS` would, even for an index that exists).
    let other = sea_orm::Database::connect(&test_db.url)
        .await
        .expect("connect");
    let writing = other.begin().await.expect("begin");
    writing
        .execute_unprepared(r#"LOCK TABLE "shot" IN ROW EXCLUSIVE MODE"#)
        .await
        .expect("lock");
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        apply(&config, &pools, &writer),
    )
    .await
    .expect("an apply with every index in place waits for no table");
    writing.rollback().await.expect("rollback");
    // With every other way to read the table priced out, the planner walks the index only.
    let txn = pools.reader.begin().await.expect("begin");
    for off in ["enable_seqscan", "enable_indexscan", "enable_bitmapscan"] {
        txn.execute_unprepared(&format!("SET LOCAL {off} = off"))
            .await
            .expect("set");
    }
    let plan: Vec<String> = txn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            r#"EXPLAIN SELECT t0."id" FROM "shot" t0 WHERE t0."_active" = TRUE AND (TRUE) ORDER BY t0."id" ASC LIMIT 501 OFFSET 1000"#,
        ))
        .await
        .expect("explain")
        .into_iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("plan line"))
        .collect();
    assert!(
        plan.iter()
            .any(|l| l.contains("Index Only Scan using ix_shot__active_id")),
        "{plan:#?}"
    );
    txn.rollback().await.expect("rollback");
    arbiter.stop();
}
