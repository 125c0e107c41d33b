//! Two instances writing the same rows at the same moment (their write-backs, a leader's event
//! and a follower's write-back): the newer `updated_at` wins whatever the commit order, links
//! included.
use serde_json::{Map, Value, json};
use sgcache::actors::schema_loader::{apply_schema, fetch_schema};
use sgcache::db::writer::{Apply, DbWriterHandle, UpsertMode, WriteOp};
use sgcache::db::{self, Pools};
use sgcache::state::CacheState;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::pg_db;
use crate::support::{fixture_schema_config, test_config};

fn shot(id: i64, code: &str, updated_at: &str, asset: i64) -> WriteOp {
    let record = json!({"type": "Shot", "id": id, "code": code, "updated_at": updated_at,
                        "assets": [{"type": "Asset", "id": asset}]});
    let record: Map<String, Value> = record.as_object().cloned().expect("object");
    WriteOp::Upsert {
        entity_type: "Shot".into(),
        records: vec![record],
        mode: UpsertMode::Full,
        active: Some(true),
        event_id: None,
    }
}

async fn write(writer: &DbWriterHandle, op: WriteOp) {
    writer
        .apply(Apply {
            ops: vec![op],
            checkpoint: None,
        })
        .await
        .expect("upsert");
}

/// `(code, updated_at, linked asset ids)` of Shot `id`.
async fn stored(pools: &Pools, id: i64) -> (String, String, Vec<i64>) {
    let one = |sql: &str| Statement::from_sql_and_values(DbBackend::Postgres, sql, [id.into()]);
    let row = pools
        .reader
        .query_one_raw(one("SELECT code, updated_at FROM shot WHERE id = $1"))
        .await
        .expect("select")
        .expect("the row");
    let links = pools
        .reader
        .query_all_raw(one(
            "SELECT child_id FROM shot_assets WHERE parent_id = $1 ORDER BY child_id",
        ))
        .await
        .expect("links");
    (
        row.try_get("", "code").expect("code"),
        row.try_get("", "updated_at").expect("updated_at"),
        links
            .iter()
            .map(|r| r.try_get("", "child_id").expect("child_id"))
            .collect(),
    )
}

#[actix_web::test]
async fn two_instances_upserting_one_row_at_once_keep_the_newer_version() {
    let Some(test_db) = pg_db().await else { return };
    let mut config = test_config(&test_db, None);
    fixture_schema_config(&mut config);
    let mut instances = Vec::new();
    for _ in 0..2 {
        let pools = db::connect(&config.database).await.expect("connect");
        db::migrate(&pools).await.expect("migrate");
        let cache = CacheState::new();
        let (writer, arbiter) =
            DbWriterHandle::start(pools.writer.clone(), pools.backend, cache.clone());
        instances.push((pools, cache, writer, arbiter));
    }
    let src = fetch_schema(&config, None).await.expect("schema");
    let (pools, _, first, _) = &instances[0];
    apply_schema(&src, &config, pools, first)
        .await
        .expect("apply");
    let schema = instances[0].1.view().schema;
    instances[1].1.set_schema(schema);
    let (a, b) = (&instances[0].2, &instances[1].2);

    for round in 0..40i64 {
        let id = 1000 + round;
        if round % 2 == 0 {
            // Half the rounds race on an existing row, half on a new one.
            write(a, shot(id, "base", "2026-01-01T00:00:00Z", 9)).await;
        }
        let newer = shot(id, "newer", "2026-01-01T00:00:02Z", 1);
        let older = shot(id, "older", "2026-01-01T00:00:01Z", 2);
        // Alternate which instance gets which version and who is asked first.
        if round % 4 < 2 {
            futures_util::future::join(write(a, newer), write(b, older)).await;
        } else {
            futures_util::future::join(write(b, older), write(a, newer)).await;
        }
        assert_eq!(
            stored(pools, id).await,
            (
                "newer".to_owned(),
                "2026-01-01T00:00:02Z".to_owned(),
                vec![1]
            ),
            "round {round}"
        );
    }
}
