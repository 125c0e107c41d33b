//! The DbWriter on both backends: batched upserts with associations, newer-wins, retire and
//! revive, link changes, and the checkpoint moving in the same transaction as the changes.
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Map, Value, json};
use sgcache::actors::schema_loader::fetch_schema;
use sgcache::db::writer::{Apply, Checkpoint, DbWriterHandle, UpsertMode, WriteOp};
use sgcache::db::{Pools, registry};

use crate::support::{databases, fixture_schema_applied, fixture_schema_config, test_config};

fn record(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

fn shot(id: i64, code: &str, updated_at: &str, assets: &[i64]) -> Map<String, Value> {
    record(json!({
        "type": "Shot", "id": id, "code": code, "updated_at": updated_at,
        "sg_status_list": "ip", "sg_cut_in": id * 10,
        "sg_sequence": {"type": "Sequence", "id": 7, "name": "sq07"},
        "assets": assets.iter().map(|a| json!({"type": "Asset", "id": a, "name": format!("a{a}")})).collect::<Vec<_>>(),
        "image": "https://example.invalid/thumb.png",
        "sg_sequence.Sequence.code": "ignored deep key",
    }))
}

async fn query(pools: &Pools, sql: &str) -> Vec<Vec<Option<String>>> {
    let rows = pools
        .reader
        .query_all_raw(Statement::from_string(
            pools.reader.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .expect("query");
    rows.into_iter()
        .map(|r| {
            (0..r.column_names().len())
                .map(|i| {
                    r.try_get_by_index::<Option<i64>>(i)
                        .map(|v| v.map(|n| n.to_string()))
                        .or_else(|_| {
                            r.try_get_by_index::<Option<i32>>(i)
                                .map(|v| v.map(|n| n.to_string()))
                        })
                        .or_else(|_| {
                            r.try_get_by_index::<Option<bool>>(i)
                                .map(|v| v.map(|b| b.to_string()))
                        })
                        .or_else(|_| r.try_get_by_index::<Option<String>>(i))
                        .expect("column value")
                })
                .collect()
        })
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

async fn setup(test_db: &crate::support::TestDb) -> (Pools, DbWriterHandle, actix::Arbiter) {
    let cache = fixture_schema_applied(test_db).await;
    (cache.pools, cache.writer, cache.arbiter)
}

fn upsert(records: Vec<Map<String, Value>>, mode: UpsertMode) -> WriteOp {
    WriteOp::Upsert {
        entity_type: "Shot".into(),
        records,
        mode,
        active: Some(true),
        event_id: None,
    }
}

#[actix_web::test]
async fn upserts_batches_with_associations_and_never_regresses() {
    for test_db in databases().await {
        let (pools, writer, arbiter) = setup(&test_db).await;
        let batch: Vec<_> = (1..=1200)
            .map(|i| shot(i, &format!("sh{i:04}"), "2024-01-01T00:00:00Z", &[i, i + 1]))
            .collect();
        let outcome = writer
            .apply(Apply {
                ops: vec![upsert(batch, UpsertMode::Full)],
                checkpoint: None,
            })
            .await
            .expect("upsert");
        assert_eq!(outcome.rows_written, 1200);
        assert_eq!(outcome.links_written, 2400);
        assert_eq!(
            query(&pools, "SELECT COUNT(*) FROM shot").await,
            [[s("1200")]]
        );
        assert_eq!(
            query(&pools, "SELECT code, sg_status_list, sg_cut_in, sg_sequence__type, sg_sequence__id, updated_at FROM shot WHERE id = 5").await,
            [[s("sh0005"), s("ip"), s("50"), s("Sequence"), s("7"), s("2024-01-01T00:00:00Z")]]
        );
        assert_eq!(
            query(&pools, "SELECT child_type, child_id, position FROM shot_assets WHERE parent_id = 5 ORDER BY position").await,
            [[s("Asset"), s("5"), s("0")], [s("Asset"), s("6"), s("1")]]
        );

        // Newer data wins; an older record is skipped; associations are replaced, not merged.
        let newer = shot(5, "sh0005-v2", "2024-02-01T00:00:00Z", &[9]);
        let older = shot(6, "sh0006-old", "2023-12-31T00:00:00Z", &[]);
        let outcome = writer
            .apply(Apply {
                ops: vec![upsert(vec![newer, older], UpsertMode::Full)],
                checkpoint: None,
            })
            .await
            .expect("upsert");
        assert_eq!((outcome.rows_written, outcome.skipped_older), (1, 1));
        assert_eq!(
            query(
                &pools,
                "SELECT code FROM shot WHERE id IN (5, 6) ORDER BY id"
            )
            .await,
            [[s("sh0005-v2")], [s("sh0006")]]
        );
        assert_eq!(
            query(
                &pools,
                "SELECT child_id FROM shot_assets WHERE parent_id = 5"
            )
            .await,
            [[s("9")]]
        );

        // Partial data never creates a row, but updates an existing one.
        let partial = vec![
            record(json!({"type": "Shot", "id": 5, "sg_status_list": "fin"})),
            record(json!({"type": "Shot", "id": 99999, "code": "new"})),
        ];
        let outcome = writer
            .apply(Apply {
                ops: vec![upsert(partial, UpsertMode::UpdateOnly)],
                checkpoint: None,
            })
            .await
            .expect("partial");
        assert_eq!(outcome.missing, [("Shot".to_owned(), 99999)]);
        assert_eq!(
            query(&pools, "SELECT code, sg_status_list FROM shot WHERE id = 5").await,
            [[s("sh0005-v2"), s("fin")]]
        );
        assert_eq!(
            query(&pools, "SELECT COUNT(*) FROM shot WHERE id = 99999").await,
            [[s("0")]]
        );

        // Retire, revive and link edits.
        let ops = vec![
            WriteOp::SetActive {
                entity_type: "Shot".into(),
                id: 7,
                active: false,
                event_id: Some(10),
            },
            WriteOp::Links {
                entity_type: "Shot".into(),
                id: 8,
                field: "assets".into(),
                added: vec![("Asset".into(), 100)],
                removed: vec![("Asset".into(), 8)],
            },
            WriteOp::SetActive {
                entity_type: "Shot".into(),
                id: 123456,
                active: false,
                event_id: None,
            },
        ];
        let outcome = writer
            .apply(Apply {
                ops,
                checkpoint: None,
            })
            .await
            .expect("ops");
        assert_eq!(outcome.missing, [("Shot".to_owned(), 123456)]);
        let active = query(
            &pools,
            "SELECT id, _last_log_event_id FROM shot WHERE _active = false ORDER BY id",
        )
        .await;
        assert_eq!(active, [[s("7"), s("10")]]);
        assert_eq!(
            query(
                &pools,
                "SELECT child_id, position FROM shot_assets WHERE parent_id = 8 ORDER BY position"
            )
            .await,
            [[s("9"), s("1")], [s("100"), s("2")]]
        );
        arbiter.stop();
    }
}

#[actix_web::test]
async fn the_checkpoint_moves_only_with_its_changes() {
    for test_db in databases().await {
        let (pools, writer, arbiter) = setup(&test_db).await;
        let ok = Apply {
            ops: vec![upsert(
                vec![shot(1, "sh1", "2024-01-01T00:00:00Z", &[])],
                UpsertMode::Full,
            )],
            checkpoint: Some(Checkpoint::Events {
                last_event_id: 41,
                open_gaps: json!([]),
            }),
        };
        writer.apply(ok).await.expect("apply");
        assert_eq!(
            registry::event_cursor(&pools.reader)
                .await
                .expect("cursor")
                .expect("row")
                .last_event_id,
            41
        );

        // One bad op fails the whole message: neither the good row nor the checkpoint lands.
        // (A bad `updated_at` rejects its record; a bad value of another field would leave
        // that field uncached instead, see `schema::marks`.)
        let bad = Apply {
            ops: vec![
                upsert(
                    vec![shot(2, "sh2", "2024-01-01T00:00:00Z", &[])],
                    UpsertMode::Full,
                ),
                upsert(
                    vec![record(
                        json!({"type": "Shot", "id": 3, "updated_at": "not a time"}),
                    )],
                    UpsertMode::Full,
                ),
            ],
            checkpoint: Some(Checkpoint::Events {
                last_event_id: 99,
                open_gaps: json!([]),
            }),
        };
        let err = writer.apply(bad).await.expect_err("invalid value");
        assert!(
            err.to_string().contains("updated_at"),
            "error names the field: {err}"
        );
        assert_eq!(
            registry::event_cursor(&pools.reader)
                .await
                .expect("cursor")
                .expect("row")
                .last_event_id,
            41
        );
        assert_eq!(
            query(&pools, "SELECT COUNT(*) FROM shot WHERE id = 2").await,
            [[s("0")]]
        );
        let stats = crate::support::json_of(writer.stats().snapshot());
        assert_eq!(stats["errors"], 1);
        assert!(stats["transactions"].as_u64().expect("transactions") >= 2);
        arbiter.stop();
    }
}

#[actix_web::test]
async fn a_page_read_under_an_older_schema_is_refused() {
    for test_db in databases().await {
        let (pools, writer, arbiter) = setup(&test_db).await;
        let page = || {
            upsert(
                vec![shot(1, "sh1", "2024-01-01T00:00:00Z", &[])],
                UpsertMode::Full,
            )
        };
        let stale = Apply {
            ops: vec![
                WriteOp::ExpectSchema {
                    entity_type: "Shot".into(),
                    signature: "an older field set".into(),
                },
                page(),
            ],
            checkpoint: None,
        };
        let err = writer.apply(stale).await.expect_err("refused");
        assert!(
            matches!(err, sgcache::db::StoreError::SchemaChanged(ref t) if t == "Shot"),
            "{err}"
        );
        assert_eq!(query(&pools, "SELECT COUNT(*) FROM shot").await, [[s("0")]]);

        let signature = {
            let src = fetch_schema(
                &{
                    let mut c = test_config(&test_db, None);
                    fixture_schema_config(&mut c);
                    c
                },
                None,
            )
            .await
            .expect("schema");
            let site = src.parse().expect("parse");
            let rules = test_config(&test_db, None).schema.rules();
            let (cached, _) = sgcache::schema::select(&site, &rules).expect("select");
            cached.types["Shot"].signature()
        };
        let fresh = Apply {
            ops: vec![
                WriteOp::ExpectSchema {
                    entity_type: "Shot".into(),
                    signature,
                },
                page(),
            ],
            checkpoint: None,
        };
        writer.apply(fresh).await.expect("same schema: applied");
        assert_eq!(query(&pools, "SELECT COUNT(*) FROM shot").await, [[s("1")]]);
        arbiter.stop();
    }
}
