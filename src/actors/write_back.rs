//! The WriteBack actor: what comes back from the site teaches the cache.
//!
//! After a client's write (`create`, `update`, `delete`, `revive`, `batch`) succeeded on the
//! site, the entities it touched are read back from the site with every cached field and
//! written through the DbWriter, before the client gets its answer (bounded by
//! `server.write_back_wait`, see `http::api3`). Re-reading instead of trusting the write's
//! reply gives the rows their new `updated_at` (so an older scan or event can never overwrite
//! them) and keeps the client's reply byte-for-byte the site's. Because the public schema does
//! not say which fields are each other's reverse (Shot.assets / Asset.shots, Task.entity /
//! Shot.tasks), the entities a write linked or unlinked are re-read too.
//!
//! Entities in passed-through `read` replies update rows the cache already has (only the
//! fields the reply carries, and only when it carries `updated_at` to order them by); rows the
//! cache lacks are read in full, never created from partial data.
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value as Json, json};
use tracing::warn;

use super::ActorStats;
use crate::config::Config;
use crate::db::StoreError;
use crate::db::reader::rows::stored_links;
use crate::db::writer::{Apply, DbWriterHandle, UpsertMode, WriteOp};
use crate::schema::{CachedEntity, CachedSchema, values};
use crate::state::CacheState;
use crate::upstream::fetch::{self, ReadArgs, entities_of};
use crate::upstream::refresh::{Gone, RELINK_MAX_ROWS, refresh, relink, upsert};
use crate::upstream::{UpstreamClient, UpstreamError};

#[derive(Debug, thiserror::Error)]
pub enum WriteBackError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A client's write succeeded on the site: cache its effect.
#[derive(Message, Debug)]
#[rtype(result = "Result<u64, WriteBackError>")]
pub struct AfterWrite {
    pub method: String,
    /// The request's `params[1]`.
    pub args: Json,
    /// The site's `results`.
    pub results: Json,
}

/// A `read` was passed through: cache what its reply says about cached types.
#[derive(Message, Debug)]
#[rtype(result = "Result<u64, WriteBackError>")]
pub struct AfterRead {
    pub entity_type: String,
    pub results: Json,
}

#[derive(Debug, Default)]
pub struct WriteBackStats {
    pub actor: ActorStats,
    pub writes: std::sync::atomic::AtomicU64,
    pub reads: std::sync::atomic::AtomicU64,
    pub rows_refreshed: std::sync::atomic::AtomicU64,
    /// Client answers sent before their write-back committed (`server.write_back_wait` hit).
    pub wait_exceeded: std::sync::atomic::AtomicU64,
}

impl WriteBackStats {
    pub fn snapshot(&self) -> WriteBackSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        WriteBackSnapshot {
            actor: self.actor.snapshot(),
            writes: self.writes.load(Relaxed),
            passed_through_reads: self.reads.load(Relaxed),
            rows_refreshed: self.rows_refreshed.load(Relaxed),
            wait_exceeded: self.wait_exceeded.load(Relaxed),
        }
    }
}

/// `/status` → `actors.write_back`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WriteBackSnapshot {
    #[serde(flatten)]
    pub actor: super::ActorSnapshot,
    pub writes: u64,
    pub passed_through_reads: u64,
    pub rows_refreshed: u64,
    pub wait_exceeded: u64,
}

pub struct WriteBack {
    upstream: Rc<UpstreamClient>,
    writer: DbWriterHandle,
    cache: Arc<CacheState>,
    reader: DatabaseConnection,
    stats: Arc<WriteBackStats>,
}

impl WriteBack {
    pub fn new(
        config: &Config,
        writer: DbWriterHandle,
        cache: Arc<CacheState>,
        reader: DatabaseConnection,
        stats: Arc<WriteBackStats>,
    ) -> WriteBack {
        WriteBack {
            upstream: Rc::new(UpstreamClient::new(&config.shotgun)),
            writer,
            cache,
            reader,
            stats,
        }
    }
}

impl Actor for WriteBack {
    type Context = Context<Self>;
}

/// What a write changed, per cached type.
#[derive(Debug, Default)]
struct Touched {
    refetch: BTreeMap<String, BTreeSet<i64>>,
    retire: Vec<(String, i64)>,
    /// Revived entities: the cached entities linking to them are re-read.
    relink: Vec<(String, i64)>,
    /// `(child type, link field, parent type, parent id)`: children the site may have created
    /// (Tasks from a `task_template`).
    children: Vec<(String, String, String, i64)>,
}

impl Touched {
    fn refetch(&mut self, schema: &CachedSchema, entity_type: &str, id: i64) {
        if schema.types.contains_key(entity_type) {
            self.refetch
                .entry(entity_type.to_owned())
                .or_default()
                .insert(id);
        }
    }

    /// Every link in a wire value (entity or multi-entity) whose type is cached.
    fn refetch_links(&mut self, schema: &CachedSchema, value: &Json) {
        let links: Vec<(String, i64)> = match value {
            Json::Array(_) => values::multi_entity_value(value).unwrap_or_default(),
            _ => values::entity_value(value)
                .ok()
                .flatten()
                .into_iter()
                .collect(),
        };
        for (t, id) in links {
            self.refetch(schema, &t, id);
        }
    }
}

/// Works out what one write item (`create`, `update`, `delete`, `revive`) touched.
async fn touched_by_item(
    db: &DatabaseConnection,
    schema: &CachedSchema,
    method: &str,
    args: &Json,
    result: &Json,
    touched: &mut Touched,
) -> Result<(), StoreError> {
    // The other side of every link this write set or cleared.
    if let Some((entity, id, written)) = touched_by_reply(schema, method, args, result, touched) {
        for (t, i) in stored_links(db, entity, id, &written).await? {
            touched.refetch(schema, &t, i);
        }
    }
    Ok(())
}

/// What one write item touched, from the request and the site's reply (pure). Returns the
/// written row and its written fields when the links the cache holds for them (before this
/// write) must be re-read too.
fn touched_by_reply<'s>(
    schema: &'s CachedSchema,
    method: &str,
    args: &Json,
    result: &Json,
    touched: &mut Touched,
) -> Option<(&'s CachedEntity, i64, Vec<String>)> {
    let entity_type = args.get("type").and_then(Json::as_str)?;
    let id = match method {
        "create" => result.get("id").and_then(Json::as_i64),
        _ => args.get("id").and_then(Json::as_i64),
    };
    let id = id?;
    let written: Vec<String> = args
        .get("fields")
        .and_then(Json::as_array)
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| {
                    f.get("field_name")
                        .and_then(Json::as_str)
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    match method {
        "delete" => {
            if result.as_bool() == Some(true) && schema.types.contains_key(entity_type) {
                touched.retire.push((entity_type.to_owned(), id));
            }
            return None;
        }
        "revive" => {
            touched.refetch(schema, entity_type, id);
            if schema.types.contains_key(entity_type) {
                touched.relink.push((entity_type.to_owned(), id));
            }
            return None;
        }
        _ => {}
    }
    touched.refetch(schema, entity_type, id);
    for field in &written {
        if let Some(value) = result.get(field) {
            touched.refetch_links(schema, value);
        }
    }
    if method == "create"
        && written.iter().any(|f| f == "task_template")
        && result.get("task_template").is_some_and(|v| !v.is_null())
        && schema
            .types
            .get("Task")
            .is_some_and(|t| t.fields.contains_key("entity"))
    {
        touched
            .children
            .push(("Task".into(), "entity".into(), entity_type.to_owned(), id));
    }
    schema
        .types
        .get(entity_type)
        .map(|entity| (entity, id, written))
}

impl WriteBack {
    async fn apply_touched(
        upstream: &UpstreamClient,
        writer: &DbWriterHandle,
        schema: &CachedSchema,
        touched: Touched,
    ) -> Result<u64, WriteBackError> {
        let mut ops = Vec::new();
        let mut rows = 0u64;
        for (entity_type, ids) in &touched.refetch {
            let Some(entity) = schema.types.get(entity_type) else {
                continue;
            };
            let refreshed = refresh(upstream, entity, ids).await?;
            rows += refreshed.found.len() as u64;
            ops.extend(refreshed.ops(None, Gone::Keep));
        }
        for (child_type, field, parent_type, parent_id) in &touched.children {
            let Some(entity) = schema.types.get(child_type) else {
                continue;
            };
            let parent = json!([{"type": parent_type, "id": parent_id}]);
            let records = fetch::read(
                upstream,
                ReadArgs::whole(entity).filter(field, "is", parent),
            )
            .await?;
            rows += records.len() as u64;
            if !records.is_empty() {
                ops.push(upsert(child_type, records, true, None));
            }
        }
        let mut budget = RELINK_MAX_ROWS;
        for (entity_type, id) in &touched.relink {
            let found = relink(upstream, schema, entity_type, *id, &mut budget).await?;
            rows += found.rows;
            ops.extend(found.ops(None));
        }
        for (entity_type, id) in touched.retire {
            ops.push(WriteOp::SetActive {
                entity_type,
                id,
                active: false,
                event_id: None,
            });
            rows += 1;
        }
        if !ops.is_empty() {
            writer
                .apply(Apply {
                    ops,
                    checkpoint: None,
                })
                .await?;
        }
        Ok(rows)
    }
}

impl Handler<AfterWrite> for WriteBack {
    type Result = ResponseActFuture<Self, Result<u64, WriteBackError>>;

    fn handle(&mut self, msg: AfterWrite, _ctx: &mut Self::Context) -> Self::Result {
        let upstream = self.upstream.clone();
        let writer = self.writer.clone();
        let reader = self.reader.clone();
        let schema = self.cache.view().schema;
        let fut = async move {
            let mut touched = Touched::default();
            if msg.method == "batch" {
                let (Some(items), Some(results)) = (msg.args.as_array(), msg.results.as_array())
                else {
                    return Ok(0);
                };
                for (item, result) in items.iter().zip(results) {
                    let kind = item
                        .get("request_type")
                        .and_then(Json::as_str)
                        .unwrap_or_default();
                    touched_by_item(&reader, &schema, kind, item, result, &mut touched).await?;
                }
            } else {
                let result = match &msg.results {
                    // `create` may answer a one-element list.
                    Json::Array(list) if list.len() == 1 => list[0].clone(),
                    other => other.clone(),
                };
                touched_by_item(
                    &reader,
                    &schema,
                    &msg.method,
                    &msg.args,
                    &result,
                    &mut touched,
                )
                .await?;
            }
            WriteBack::apply_touched(&upstream, &writer, &schema, touched).await
        };
        Box::pin(fut.into_actor(self).map(|result, act, _| {
            use std::sync::atomic::Ordering::Relaxed;
            act.stats.writes.fetch_add(1, Relaxed);
            match &result {
                Ok(rows) => {
                    act.stats.actor.handled();
                    act.stats.rows_refreshed.fetch_add(*rows, Relaxed);
                }
                Err(e) => {
                    warn!(error = %e, "write-back failed");
                    act.stats.actor.error(e);
                }
            }
            result
        }))
    }
}

impl Handler<AfterRead> for WriteBack {
    type Result = ResponseActFuture<Self, Result<u64, WriteBackError>>;

    fn handle(&mut self, msg: AfterRead, _ctx: &mut Self::Context) -> Self::Result {
        let upstream = self.upstream.clone();
        let writer = self.writer.clone();
        let schema = self.cache.view().schema;
        let fut = async move {
            let Some(entity) = schema.types.get(&msg.entity_type) else {
                return Ok(0);
            };
            let mut results = msg.results;
            let records = entities_of(&mut results)?;
            // Partial records can only be ordered by their `updated_at`.
            let partial: Vec<Map<String, Json>> = records
                .iter()
                .filter(|r| r.get("updated_at").is_some_and(|v| !v.is_null()))
                .cloned()
                .collect();
            if partial.is_empty() {
                return Ok(0);
            }
            let op = WriteOp::Upsert {
                entity_type: msg.entity_type.clone(),
                records: partial,
                mode: UpsertMode::UpdateOnly,
                active: None,
                event_id: None,
            };
            let outcome = writer
                .apply(Apply {
                    ops: vec![op],
                    checkpoint: None,
                })
                .await?;
            let mut rows = outcome.rows_written;
            // Rows the cache does not have: read them whole.
            let missing: BTreeSet<i64> = outcome.missing.iter().map(|(_, id)| *id).collect();
            if !missing.is_empty() {
                let refreshed = refresh(&upstream, entity, &missing).await?;
                rows += refreshed.found.len() as u64;
                let ops = refreshed.ops(None, Gone::Keep);
                writer
                    .apply(Apply {
                        ops,
                        checkpoint: None,
                    })
                    .await?;
            }
            Ok(rows)
        };
        Box::pin(fut.into_actor(self).map(|result, act, _| {
            use std::sync::atomic::Ordering::Relaxed;
            act.stats.reads.fetch_add(1, Relaxed);
            match &result {
                Ok(rows) => {
                    act.stats.actor.handled();
                    act.stats.rows_refreshed.fetch_add(*rows, Relaxed);
                }
                Err(e) => act.stats.actor.error(e),
            }
            result
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> CachedSchema {
        crate::actors::fixture::schema(&["Shot", "Asset", "Sequence"])
    }

    fn refetched(t: &Touched) -> Vec<(String, i64)> {
        t.refetch
            .iter()
            .flat_map(|(ty, ids)| ids.iter().map(move |id| (ty.clone(), *id)))
            .collect()
    }

    #[test]
    fn a_create_touches_the_new_row_and_every_linked_row() {
        let schema = schema();
        let mut t = Touched::default();
        let args = json!({"type": "Shot", "fields": [
            {"field_name": "code", "value": "a"},
            {"field_name": "sg_sequence", "value": {"type": "Sequence", "id": 2}},
            {"field_name": "assets", "value": [{"type": "Asset", "id": 5}, {"type": "Asset", "id": 6}]}]});
        let reply = json!({"type": "Shot", "id": 9, "code": "a",
                           "sg_sequence": {"type": "Sequence", "id": 2, "name": "sq"},
                           "assets": [{"type": "Asset", "id": 5}, {"type": "Asset", "id": 6}]});
        let lookup = touched_by_reply(&schema, "create", &args, &reply, &mut t);
        let (entity, id, written) = lookup.expect("stored links to look up");
        assert_eq!((entity.name.as_str(), id), ("Shot", 9));
        assert_eq!(written, vec!["code", "sg_sequence", "assets"]);
        assert_eq!(
            refetched(&t),
            vec![
                ("Asset".to_owned(), 5),
                ("Asset".to_owned(), 6),
                ("Sequence".to_owned(), 2),
                ("Shot".to_owned(), 9)
            ]
        );
        assert!(t.retire.is_empty() && t.children.is_empty());
    }

    #[test]
    fn an_update_that_unlinks_touches_the_row_and_looks_up_the_old_links() {
        let schema = schema();
        let mut t = Touched::default();
        let args = json!({"type": "Shot", "id": 3,
                          "fields": [{"field_name": "assets", "value": []}]});
        let reply = json!({"type": "Shot", "id": 3, "assets": []});
        let lookup = touched_by_reply(&schema, "update", &args, &reply, &mut t);
        // The unlinked assets are only known from the cache's stored links.
        assert_eq!(
            lookup.map(|(_, id, w)| (id, w)),
            Some((3, vec!["assets".to_owned()]))
        );
        assert_eq!(refetched(&t), vec![("Shot".to_owned(), 3)]);
    }

    #[test]
    fn delete_retires_revive_refetches_and_uncached_types_are_left_alone() {
        let schema = schema();
        let mut t = Touched::default();
        let gone = json!({"type": "Shot", "id": 4});
        assert!(touched_by_reply(&schema, "delete", &gone, &json!(true), &mut t).is_none());
        assert_eq!(t.retire, vec![("Shot".to_owned(), 4)]);
        // A delete the site refused retires nothing.
        let other = json!({"type": "Shot", "id": 5});
        touched_by_reply(&schema, "delete", &other, &json!(false), &mut t);
        assert_eq!(t.retire.len(), 1);
        assert!(touched_by_reply(&schema, "revive", &gone, &json!(true), &mut t).is_none());
        assert_eq!(refetched(&t), vec![("Shot".to_owned(), 4)]);
        // ... and re-reads the entities linking to it.
        assert_eq!(t.relink, vec![("Shot".to_owned(), 4)]);
        let mut u = Touched::default();
        let uncached = json!({"type": "Reading", "id": 1, "fields": []});
        assert!(touched_by_reply(&schema, "update", &uncached, &uncached, &mut u).is_none());
        assert!(touched_by_reply(&schema, "revive", &uncached, &json!(true), &mut u).is_none());
        assert!(u.refetch.is_empty() && u.retire.is_empty() && u.relink.is_empty());
    }

    #[test]
    fn each_batch_item_is_taken_by_its_request_type() {
        let schema = schema();
        let mut t = Touched::default();
        let items = [
            (
                json!({"request_type": "create", "type": "Asset", "fields": []}),
                json!({"type": "Asset", "id": 11}),
            ),
            (
                json!({"request_type": "update", "type": "Shot", "id": 2, "fields": []}),
                json!({"type": "Shot", "id": 2}),
            ),
            (
                json!({"request_type": "delete", "type": "Sequence", "id": 1}),
                json!(true),
            ),
        ];
        for (item, result) in &items {
            let kind = item["request_type"].as_str().unwrap_or_default();
            touched_by_reply(&schema, kind, item, result, &mut t);
        }
        assert_eq!(
            refetched(&t),
            vec![("Asset".to_owned(), 11), ("Shot".to_owned(), 2)]
        );
        assert_eq!(t.retire, vec![("Sequence".to_owned(), 1)]);
    }
}
