//! The EventPoller actor: follows the site's `EventLogEntry` stream and applies each event to
//! the cache (issue #6; `docs/shotgun-api.md` §9).
//!
//! **Polling.** Every `events.poll_interval` it reads `EventLogEntry` with `id > start`, sorted
//! by id, 500 per page; when a page comes back full it asks again at once. `start` is the
//! stored checkpoint, or `min(open gap) - 1` while gaps are open (§9.3).
//!
//! **Start-up.** With no stored checkpoint it starts from the newest event id on the site
//! (history is skipped): the Scanner's full scans prime the cache and its incremental scans
//! cover anything in between. `sgcache events --from ID` stores a checkpoint to replay from.
//!
//! **Exactly once.** All the changes of one page and the new checkpoint (last id and open
//! gaps) go to the DbWriter as ONE [`Apply`], i.e. one transaction: a crash at any point
//! neither skips an event nor applies one twice. Fetches from the site happen before that
//! Apply. Rows the Apply reports missing (a change to a row the cache does not have) are
//! fetched whole and written in a follow-up Apply.
//!
//! **Gaps.** Event ids are not committed in order. An id below the newest id seen that has
//! not appeared yet is an *open gap* (id → first-seen time); polls re-read from the lowest
//! gap for `events.gap_window`, then the id is declared missing (counted, logged). Events
//! already applied inside that re-read window are skipped.
//!
//! **Handling** (cached types and fields only; anything else is counted as ignored):
//! `Shotgun_<T>_New` → fetch the entity (active, else retired) and upsert it whole;
//! `_Change` → apply `new_value` (event-log date-times converted) or `added`/`removed` links;
//! a back-reference change (`meta.actual_attribute_changed`) updates `event.entity`'s field
//! `attribute_name`; `in_create` changes are skipped (the New event fetched the entity);
//! `_Retirement` / `_Revival` → set `_active` (a revival also refetches);
//! `Shotgun_DisplayColumn_New/_Change` → [`Reload`] the schema.
//!
//! **What it cannot see:** writes by scripts with event generation off (`site.quiet()` in the
//! tests) produce no events at all; the Scanner's periodic `updated_at` scans catch those.
//!
//! When the site is down the poll is retried with back-off and jitter, from the same place.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use serde_json::{Map, Value as Json, json};
use tracing::{debug, info, warn};

use super::ActorStats;
use super::schema_loader::{Reload, SchemaLoader};
use crate::config::Config;
use crate::db::writer::{Apply, Checkpoint, DbWriterHandle, UpsertMode, WriteOp};
use crate::db::{Pools, StoreError, registry};
use crate::schema::{CachedEntity, CachedSchema, ColumnLayout, FieldKind, values};
use crate::state::CacheState;
use crate::upstream::fetch;
use crate::upstream::{UpstreamClient, UpstreamError, backoff_delay};

/// Events per page (the official event daemon's batch size).
pub const PAGE_SIZE: usize = 500;
/// More open gaps than this are declared missing at once (a huge jump in ids).
const MAX_OPEN_GAPS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unexpected reply from the site: {0}")]
    Reply(String),
}

/// Where the poller is in the stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The highest event id processed (the stored checkpoint).
    pub last_event_id: i64,
    /// Ids below `last_event_id` not seen yet → when first noticed (`YYYY-MM-DDTHH:MM:SSZ`).
    pub open_gaps: BTreeMap<i64, String>,
}

impl Cursor {
    pub fn gaps_json(&self) -> Json {
        Json::Object(
            self.open_gaps
                .iter()
                .map(|(id, at)| (id.to_string(), Json::String(at.clone())))
                .collect(),
        )
    }

    pub fn parse_gaps(text: &str) -> BTreeMap<i64, String> {
        let value: Json = serde_json::from_str(text).unwrap_or(Json::Null);
        match value {
            Json::Object(map) => map
                .into_iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.parse().ok()?,
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(crate::time::now),
                    ))
                })
                .collect(),
            // An old or hand-written list of ids: first seen now.
            Json::Array(ids) => ids
                .iter()
                .filter_map(Json::as_i64)
                .map(|id| (id, crate::time::now()))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint::Events {
            last_event_id: self.last_event_id,
            open_gaps: self.gaps_json(),
        }
    }
}

/// Counters by kind (`new`, `change`, `links`, `backref`, `retirement`, `revival`, `schema`,
/// `in_create`, `uncached`, `other`, ...).
pub type KindCounts = BTreeMap<String, u64>;

/// The poller's figures for `/status` (`actors.event_poller`).
#[derive(Debug, Default)]
pub struct EventPollerStats {
    pub actor: ActorStats,
    pub checkpoint: AtomicI64,
    pub newest_event_seen: AtomicI64,
    /// `created_at` (unix seconds) of the newest applied event; 0 = none yet.
    pub newest_applied_created_unix: AtomicI64,
    pub open_gaps: AtomicU64,
    pub missing_declared: AtomicU64,
    pub polls: AtomicU64,
    pub pages: AtomicU64,
    pub applied: Mutex<KindCounts>,
    pub ignored: Mutex<KindCounts>,
    pub failed: Mutex<KindCounts>,
}

impl EventPollerStats {
    fn add(map: &Mutex<KindCounts>, counts: &KindCounts) {
        if let Ok(mut m) = map.lock() {
            for (k, n) in counts {
                *m.entry(k.clone()).or_default() += n;
            }
        }
    }

    pub fn snapshot(&self) -> EventPollerSnapshot {
        let newest = self.newest_applied_created_unix.load(Ordering::Relaxed);
        let counts = |m: &Mutex<KindCounts>| m.lock().map(|m| m.clone()).unwrap_or_default();
        EventPollerSnapshot {
            actor: self.actor.snapshot(),
            checkpoint: self.checkpoint.load(Ordering::Relaxed),
            newest_event_seen: self.newest_event_seen.load(Ordering::Relaxed),
            lag_seconds: (newest > 0).then(|| (chrono::Utc::now().timestamp() - newest).max(0)),
            applied: counts(&self.applied),
            ignored: counts(&self.ignored),
            failed: counts(&self.failed),
            open_gaps: self.open_gaps.load(Ordering::Relaxed),
            missing_declared: self.missing_declared.load(Ordering::Relaxed),
            polls: self.polls.load(Ordering::Relaxed),
            pages: self.pages.load(Ordering::Relaxed),
        }
    }
}

/// `/status` → `actors.event_poller`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EventPollerSnapshot {
    #[serde(flatten)]
    pub actor: super::ActorSnapshot,
    pub checkpoint: i64,
    pub newest_event_seen: i64,
    /// Age of the newest applied event; `None` before the first.
    pub lag_seconds: Option<i64>,
    pub applied: KindCounts,
    pub ignored: KindCounts,
    pub failed: KindCounts,
    pub open_gaps: u64,
    pub missing_declared: u64,
    pub polls: u64,
    pub pages: u64,
}

/// What one event asks for, before fetching.
#[derive(Debug)]
enum Action {
    /// Fetch the whole entity and upsert it (New, Revival, or a value we cannot apply).
    Fetch {
        ty: String,
        id: i64,
    },
    /// Write some fields of an existing row.
    Update {
        ty: String,
        record: Map<String, Json>,
    },
    Links {
        ty: String,
        id: i64,
        field: String,
        added: Vec<(String, i64)>,
        removed: Vec<(String, i64)>,
    },
    SetActive {
        ty: String,
        id: i64,
        active: bool,
    },
    Reload,
}

/// One event, classified.
struct Planned {
    event_id: i64,
    kind: &'static str,
    actions: Vec<Action>,
}

/// The result of one page.
#[derive(Debug, Default)]
pub struct PageReport {
    pub events: usize,
    pub full: bool,
    pub applied: KindCounts,
    pub ignored: KindCounts,
    pub failed: KindCounts,
    pub missing_declared: u64,
    pub reload_schema: bool,
    pub newest_seen: i64,
    pub newest_applied_created: Option<i64>,
    /// Where the next read continues after a full page.
    pub continue_from: Option<i64>,
    /// A non-fatal problem (e.g. the follow-up fetch of missing rows failed).
    pub warning: Option<String>,
}

fn bump(map: &mut KindCounts, kind: &str) {
    *map.entry(kind.to_owned()).or_default() += 1;
}

fn condition(path: &str, relation: &str, values: Json) -> Json {
    json!({"path": path, "relation": relation, "values": values})
}

/// The `read` arguments of one page of events after `after_id`.
pub fn events_request(schema: &CachedSchema, after_id: i64) -> Json {
    let mut fields: Vec<String> = [
        "id",
        "event_type",
        "attribute_name",
        "meta",
        "entity",
        "user",
        "project",
        "created_at",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for (name, entity) in &schema.types {
        if entity.fields.contains_key("updated_at") {
            fields.push(format!("entity.{name}.updated_at"));
        }
    }
    json!({
        "type": "EventLogEntry",
        "filters": {"logical_operator": "and",
                    "conditions": [condition("id", "greater_than", json!([after_id]))]},
        "return_fields": fields,
        "sorts": [{"field_name": "id", "direction": "asc"}],
        "paging": {"entities_per_page": PAGE_SIZE, "current_page": 1},
        "return_only": "active",
        "return_paging_info": false,
    })
}

fn entities_of(reply: &mut Json) -> Result<Vec<Map<String, Json>>, PollError> {
    fetch::entities_of(reply).map_err(|e| PollError::Reply(e.to_string()))
}

/// The newest event id on the site (0 when the log is empty).
pub async fn newest_event_id(upstream: &UpstreamClient) -> Result<i64, PollError> {
    let mut reply = upstream
        .call(
            "read",
            Some(json!({
                "type": "EventLogEntry",
                "filters": {"logical_operator": "and", "conditions": []},
                "return_fields": ["id"],
                "sorts": [{"field_name": "id", "direction": "desc"}],
                "paging": {"entities_per_page": 1, "current_page": 1},
                "return_only": "active",
                "return_paging_info": false,
            })),
        )
        .await?;
    Ok(entities_of(&mut reply)?
        .first()
        .and_then(|e| e.get("id"))
        .and_then(Json::as_i64)
        .unwrap_or(0))
}

/// Fetches whole entities by id (every cached field), active first, then retired.
/// Returns `(record, active)` per id found.
async fn fetch_entities(
    upstream: &UpstreamClient,
    entity: &CachedEntity,
    ids: &BTreeSet<i64>,
) -> Result<HashMap<i64, (Map<String, Json>, bool)>, PollError> {
    let ids: Vec<i64> = ids.iter().copied().collect();
    Ok(fetch::fetch_by_ids(upstream, entity, &ids)
        .await?
        .into_iter()
        .filter_map(|(record, active)| Some((record.get("id")?.as_i64()?, (record, active))))
        .collect())
}

/// `"2015-07-13 21:54:01 UTC"` (event-log form) → `"2015-07-13T21:54:01Z"`; other strings
/// are returned unchanged.
pub fn event_date_time(s: &str) -> String {
    if crate::time::parse(s).is_some() {
        return s.to_owned();
    }
    let trimmed = s.trim().trim_end_matches("UTC").trim_end();
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(trimmed, format) {
            return crate::time::format(t.and_utc());
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return crate::time::format(t.with_timezone(&chrono::Utc));
    }
    s.to_owned()
}

fn link_of(v: &Json) -> Option<(String, i64)> {
    Some((v.get("type")?.as_str()?.to_owned(), v.get("id")?.as_i64()?))
}

fn links_of(v: Option<&Json>) -> Vec<(String, i64)> {
    v.and_then(Json::as_array)
        .map(|a| a.iter().filter_map(link_of).collect())
        .unwrap_or_default()
}

/// Splits `Shotgun_<Type>_<Action>`; `None` for other domains.
pub fn parse_event_type(event_type: &str) -> Option<(&str, &str)> {
    event_type.strip_prefix("Shotgun_")?.rsplit_once('_')
}

/// The `updated_at` a Change event's record carries: the event's time, or the entity's
/// current `updated_at` if that is earlier (the two can straddle a second boundary). Older
/// than the stored row → the writer skips the change, so a replayed event never undoes a
/// newer scan.
fn change_updated_at(event: &Map<String, Json>, ty: &str) -> Option<String> {
    let created = event
        .get("created_at")
        .and_then(Json::as_str)
        .map(event_date_time)
        .filter(|s| crate::time::parse(s).is_some());
    let current = event
        .get(&format!("entity.{ty}.updated_at"))
        .and_then(Json::as_str)
        .map(event_date_time)
        .filter(|s| crate::time::parse(s).is_some());
    match (created, current) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Decides what one event means for the cache.
fn plan_event(schema: &CachedSchema, event: &Map<String, Json>, event_id: i64) -> Planned {
    let planned = |kind, actions| Planned {
        event_id,
        kind,
        actions,
    };
    let event_type = event.get("event_type").and_then(Json::as_str).unwrap_or("");
    let Some((ty, action)) = parse_event_type(event_type) else {
        return planned("other", vec![]);
    };
    if ty == "DisplayColumn" {
        return match action {
            "New" | "Change" => planned("schema", vec![Action::Reload]),
            _ => planned("other", vec![]),
        };
    }
    let Some(entity) = schema.types.get(ty) else {
        return planned("uncached", vec![]);
    };
    let meta = event.get("meta").and_then(Json::as_object);
    let meta_id = meta.and_then(|m| m.get("entity_id")).and_then(Json::as_i64);
    let event_entity = event.get("entity").and_then(link_of);
    let own_id = meta_id.or_else(|| {
        event_entity
            .as_ref()
            .filter(|(t, _)| t == ty)
            .map(|(_, i)| *i)
    });
    match action {
        "New" => match own_id {
            Some(id) => planned("new", vec![Action::Fetch { ty: ty.into(), id }]),
            None => planned("malformed", vec![]),
        },
        "Retirement" => match own_id {
            Some(id) => planned(
                "retirement",
                vec![Action::SetActive {
                    ty: ty.into(),
                    id,
                    active: false,
                }],
            ),
            None => planned("malformed", vec![]),
        },
        "Revival" => match own_id {
            Some(id) => planned(
                "revival",
                vec![
                    Action::SetActive {
                        ty: ty.into(),
                        id,
                        active: true,
                    },
                    Action::Fetch { ty: ty.into(), id },
                ],
            ),
            None => planned("malformed", vec![]),
        },
        "Change" => plan_change(entity, event, meta, event_entity, meta_id, event_id),
        _ => planned("other", vec![]),
    }
}

fn plan_change(
    entity: &CachedEntity,
    event: &Map<String, Json>,
    meta: Option<&Map<String, Json>>,
    event_entity: Option<(String, i64)>,
    meta_id: Option<i64>,
    event_id: i64,
) -> Planned {
    let ty = entity.name.as_str();
    let planned = |kind, actions| Planned {
        event_id,
        kind,
        actions,
    };
    let Some(meta) = meta else {
        return planned("malformed", vec![]);
    };
    let attribute = event
        .get("attribute_name")
        .and_then(Json::as_str)
        .or_else(|| meta.get("attribute_name").and_then(Json::as_str))
        .unwrap_or("");
    let Some(field) = entity.fields.get(attribute) else {
        return planned("uncached_field", vec![]);
    };
    let backref = meta
        .get("actual_attribute_changed")
        .is_some_and(|v| !v.is_null());
    if backref {
        // The owner of `attribute_name` is the event's entity; meta describes the other side.
        let Some(id) = event_entity.filter(|(t, _)| t == ty).map(|(_, i)| i) else {
            // Retired owner (entity is null): the scanner reconciles it.
            return planned("backref_no_owner", vec![]);
        };
        let added = links_of(meta.get("added"));
        let removed = links_of(meta.get("removed"));
        return match &field.layout {
            ColumnLayout::MultiEntity { .. } => planned(
                "backref",
                vec![Action::Links {
                    ty: ty.into(),
                    id,
                    field: field.name.clone(),
                    added,
                    removed,
                }],
            ),
            ColumnLayout::Entity { .. } => {
                let value = meta
                    .get("added")
                    .and_then(Json::as_array)
                    .and_then(|a| a.last())
                    .cloned();
                let value = match value {
                    Some(v) => v,
                    None if !removed.is_empty() => Json::Null,
                    None => return planned("backref_empty", vec![]),
                };
                let mut record = Map::new();
                record.insert("type".into(), json!(ty));
                record.insert("id".into(), json!(id));
                record.insert(field.name.clone(), value);
                planned(
                    "backref",
                    vec![Action::Update {
                        ty: ty.into(),
                        record,
                    }],
                )
            }
            ColumnLayout::Scalar { .. } => planned("backref_scalar", vec![]),
        };
    }
    if meta.get("in_create").and_then(Json::as_bool) == Some(true) {
        // The New event fetched the whole entity.
        return planned("in_create", vec![]);
    }
    let Some(id) = meta_id.or_else(|| event_entity.filter(|(t, _)| t == ty).map(|(_, i)| i)) else {
        return planned("malformed", vec![]);
    };
    let refetch = |kind| planned(kind, vec![Action::Fetch { ty: ty.into(), id }]);
    // What the site sets along with any change: updated_at and updated_by.
    let mut record = Map::new();
    record.insert("type".into(), json!(ty));
    record.insert("id".into(), json!(id));
    if field.name != "updated_at"
        && entity.fields.contains_key("updated_at")
        && let Some(at) = change_updated_at(event, ty)
    {
        record.insert("updated_at".into(), json!(at));
    }
    if field.name != "updated_by"
        && entity.fields.contains_key("updated_by")
        && let Some(user) = event.get("user").filter(|u| link_of(u).is_some())
    {
        record.insert("updated_by".into(), user.clone());
    }
    match &field.layout {
        ColumnLayout::MultiEntity { .. } => {
            if meta.get("added").is_none() && meta.get("removed").is_none() {
                return refetch("change_refetch");
            }
            let mut actions = vec![Action::Links {
                ty: ty.into(),
                id,
                field: field.name.clone(),
                added: links_of(meta.get("added")),
                removed: links_of(meta.get("removed")),
            }];
            if record.len() > 2 {
                actions.push(Action::Update {
                    ty: ty.into(),
                    record,
                });
            }
            planned("links", actions)
        }
        layout => {
            let Some(raw) = meta.get("new_value") else {
                return refetch("change_refetch");
            };
            let value = match (field.kind, raw) {
                (FieldKind::DateTime, Json::String(s)) => Json::String(event_date_time(s)),
                _ => raw.clone(),
            };
            // Check the value the way the writer will; anything odd is fetched instead.
            let ok = match layout {
                ColumnLayout::Scalar { .. } => values::scalar_value(field, &value).is_ok(),
                ColumnLayout::Entity { .. } => values::entity_value(&value).is_ok(),
                ColumnLayout::MultiEntity { .. } => false,
            };
            if !ok || matches!(field.kind, FieldKind::Image | FieldKind::Url) {
                // Image changes carry an Attachment id, not the URL a read returns.
                return refetch("change_refetch");
            }
            record.insert(field.name.clone(), value);
            planned(
                "change",
                vec![Action::Update {
                    ty: ty.into(),
                    record,
                }],
            )
        }
    }
}

/// Everything one poll needs (cheap clones; moved into the future).
#[derive(Clone)]
pub struct PollContext {
    pub config: Arc<Config>,
    pub pools: Pools,
    pub writer: DbWriterHandle,
    pub cache: Arc<CacheState>,
    pub upstream: Rc<UpstreamClient>,
}

/// Loads the stored checkpoint, or starts at the site's newest event (and stores that).
pub async fn load_cursor(ctx: &PollContext) -> Result<Cursor, PollError> {
    if let Some(row) = registry::event_cursor(&ctx.pools.reader).await? {
        return Ok(Cursor {
            last_event_id: row.last_event_id,
            open_gaps: Cursor::parse_gaps(&row.open_gaps),
        });
    }
    let newest = newest_event_id(&ctx.upstream).await?;
    let cursor = Cursor {
        last_event_id: newest,
        open_gaps: BTreeMap::new(),
    };
    ctx.writer
        .apply(Apply {
            ops: vec![],
            checkpoint: Some(cursor.checkpoint()),
        })
        .await?;
    info!(
        last_event_id = newest,
        "no event checkpoint stored: following the event log from the newest event (the scanner primes the cache)"
    );
    Ok(cursor)
}

/// Reads one page of events, applies it with the new checkpoint in one transaction, and
/// returns the new cursor. On error nothing was committed and `cursor` still holds.
pub async fn poll_page(
    ctx: &PollContext,
    cursor: &Cursor,
    continue_from: Option<i64>,
) -> Result<(Cursor, PageReport), PollError> {
    let schema = ctx.cache.view().schema;
    let mut next = cursor.clone();
    let mut report = PageReport::default();
    let now = chrono::Utc::now();

    // Gaps waited on long enough are declared missing.
    // First-seen times are stored in whole seconds: allow for the lost fraction.
    let window = chrono::Duration::from_std(ctx.config.events.gap_window)
        .ok()
        .and_then(|w| w.checked_add(&chrono::Duration::seconds(1)))
        .unwrap_or(chrono::Duration::MAX);
    next.open_gaps.retain(|id, first_seen| {
        let expired = crate::time::parse(first_seen).is_none_or(|t| now - t >= window);
        if expired {
            warn!(
                event_id = id,
                since = %first_seen,
                "event id never appeared within the gap window: declared missing"
            );
            report.missing_declared += 1;
        }
        !expired
    });

    let start = match (continue_from, next.open_gaps.keys().next()) {
        (Some(from), _) => from,
        (None, Some(gap)) => (gap - 1).min(next.last_event_id),
        (None, None) => next.last_event_id,
    };
    let mut reply = ctx
        .upstream
        .call("read", Some(events_request(&schema, start)))
        .await?;
    let events = entities_of(&mut reply)?;
    report.events = events.len();
    report.full = events.len() >= PAGE_SIZE;

    let mut plans = Vec::new();
    let mut page_last = start;
    let mut newest_created: Option<String> = None;
    for event in &events {
        let Some(id) = event.get("id").and_then(Json::as_i64) else {
            continue;
        };
        page_last = page_last.max(id);
        report.newest_seen = report.newest_seen.max(id);
        if id > next.last_event_id {
            let first_missing = next.last_event_id + 1;
            for missing in first_missing..id {
                next.open_gaps.insert(missing, crate::time::format(now));
            }
            next.last_event_id = id;
        } else if next.open_gaps.remove(&id).is_none() {
            // Applied before (a re-read from the lowest gap).
            continue;
        }
        if let Some(at) = event.get("created_at").and_then(Json::as_str) {
            newest_created = Some(event_date_time(at));
        }
        plans.push((plan_event(&schema, event, id), event));
    }
    if next.open_gaps.len() > MAX_OPEN_GAPS {
        let excess = next.open_gaps.len() - MAX_OPEN_GAPS;
        let drop: Vec<i64> = next.open_gaps.keys().take(excess).copied().collect();
        warn!(
            count = drop.len(),
            "too many open event gaps: the oldest are declared missing"
        );
        for id in drop {
            next.open_gaps.remove(&id);
            report.missing_declared += 1;
        }
    }
    if report.full {
        report.continue_from = Some(page_last);
    }

    // Fetch first (outside the transaction).
    let mut wanted: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (plan, _) in &plans {
        for action in &plan.actions {
            if let Action::Fetch { ty, id } = action {
                wanted.entry(ty.clone()).or_default().insert(*id);
            }
        }
    }
    let mut fetched: HashMap<(String, i64), (Map<String, Json>, bool)> = HashMap::new();
    for (ty, ids) in &wanted {
        let Some(entity) = schema.types.get(ty) else {
            continue;
        };
        for (id, found) in fetch_entities(&ctx.upstream, entity, ids).await? {
            fetched.insert((ty.clone(), id), found);
        }
    }

    // Build the ops in event order.
    let mut ops = Vec::new();
    let mut fetched_used: BTreeSet<(String, i64)> = BTreeSet::new();
    for (plan, _) in &plans {
        if plan.actions.is_empty() {
            bump(&mut report.ignored, plan.kind);
            continue;
        }
        let event_id = Some(plan.event_id);
        let mut failed = false;
        for action in &plan.actions {
            match action {
                Action::Fetch { ty, id } => match fetched.get(&(ty.clone(), *id)) {
                    Some((record, active)) => {
                        fetched_used.insert((ty.clone(), *id));
                        ops.push(WriteOp::Upsert {
                            entity_type: ty.clone(),
                            records: vec![record.clone()],
                            mode: UpsertMode::Full,
                            active: Some(*active),
                            event_id,
                        });
                    }
                    None => {
                        // Deleted for good on the site (or not readable): nothing to cache.
                        debug!(entity_type = %ty, id, event_id = plan.event_id, "entity of an event not found on the site");
                        failed = true;
                    }
                },
                Action::Update { ty, record } => ops.push(WriteOp::Upsert {
                    entity_type: ty.clone(),
                    records: vec![record.clone()],
                    mode: UpsertMode::UpdateOnly,
                    active: None,
                    event_id,
                }),
                Action::Links {
                    ty,
                    id,
                    field,
                    added,
                    removed,
                } => ops.push(WriteOp::Links {
                    entity_type: ty.clone(),
                    id: *id,
                    field: field.clone(),
                    added: added.clone(),
                    removed: removed.clone(),
                }),
                Action::SetActive { ty, id, active } => ops.push(WriteOp::SetActive {
                    entity_type: ty.clone(),
                    id: *id,
                    active: *active,
                    event_id,
                }),
                Action::Reload => report.reload_schema = true,
            }
        }
        if failed {
            bump(&mut report.failed, plan.kind);
        } else {
            bump(&mut report.applied, plan.kind);
        }
    }

    // One transaction: the page's changes and the checkpoint.
    let outcome = ctx
        .writer
        .apply(Apply {
            ops,
            checkpoint: Some(next.checkpoint()),
        })
        .await?;
    report.newest_applied_created = newest_created
        .as_deref()
        .and_then(crate::time::parse)
        .map(|t| t.timestamp());

    // Changes to rows the cache does not have: fetch those rows whole.
    let mut missing: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (ty, id) in outcome.missing {
        if !fetched_used.contains(&(ty.clone(), id)) {
            missing.entry(ty).or_default().insert(id);
        }
    }
    if !missing.is_empty()
        && let Err(err) = fetch_missing(ctx, &schema, &missing, next.last_event_id).await
    {
        warn!(error = %err, "cannot fetch rows named by events that the cache lacks (the scanner will)");
        report.warning = Some(err.to_string());
    }
    Ok((next, report))
}

async fn fetch_missing(
    ctx: &PollContext,
    schema: &CachedSchema,
    missing: &BTreeMap<String, BTreeSet<i64>>,
    event_id: i64,
) -> Result<(), PollError> {
    let mut ops = Vec::new();
    for (ty, ids) in missing {
        let Some(entity) = schema.types.get(ty) else {
            continue;
        };
        let found = fetch_entities(&ctx.upstream, entity, ids).await?;
        for active in [true, false] {
            let records: Vec<_> = found
                .values()
                .filter(|(_, a)| *a == active)
                .map(|(r, _)| r.clone())
                .collect();
            if !records.is_empty() {
                ops.push(WriteOp::Upsert {
                    entity_type: ty.clone(),
                    records,
                    mode: UpsertMode::Full,
                    active: Some(active),
                    event_id: Some(event_id),
                });
            }
        }
    }
    if !ops.is_empty() {
        ctx.writer
            .apply(Apply {
                ops,
                checkpoint: None,
            })
            .await?;
    }
    Ok(())
}

/// The actor: one poll at a time, rescheduled after each (immediately after a full page).
pub struct EventPoller {
    ctx: Option<PollContext>,
    schema_loader: Option<Addr<SchemaLoader>>,
    stats: Arc<EventPollerStats>,
    cursor: Option<Cursor>,
    continue_from: Option<i64>,
    poll_interval: Duration,
    retry_backoff: Duration,
    in_flight: bool,
    failures: u32,
}

impl EventPoller {
    pub fn new(
        config: Arc<Config>,
        pools: Pools,
        writer: DbWriterHandle,
        cache: Arc<CacheState>,
        schema_loader: Option<Addr<SchemaLoader>>,
        stats: Arc<EventPollerStats>,
    ) -> Self {
        let ctx = (!config.shotgun.url.is_empty()).then(|| PollContext {
            upstream: Rc::new(UpstreamClient::new(&config.shotgun)),
            config: config.clone(),
            pools,
            writer,
            cache,
        });
        EventPoller {
            ctx,
            schema_loader,
            stats,
            cursor: None,
            continue_from: None,
            poll_interval: config.events.poll_interval,
            retry_backoff: config.shotgun.retry_backoff,
            in_flight: false,
            failures: 0,
        }
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            self.stats
                .actor
                .skipped_ticks
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(poll_ctx) = self.ctx.clone() else {
            return;
        };
        // Without the cached schema every event would look uncached: wait for it.
        if poll_ctx.cache.view().schema.types.is_empty() {
            ctx.run_later(self.poll_interval, |act, ctx| act.poll(ctx));
            return;
        }
        self.in_flight = true;
        self.stats.polls.fetch_add(1, Ordering::Relaxed);
        let cursor = self.cursor.clone();
        let continue_from = self.continue_from;
        let fut = async move {
            let cursor = match cursor {
                Some(c) => c,
                None => load_cursor(&poll_ctx).await?,
            };
            poll_page(&poll_ctx, &cursor, continue_from).await
        };
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.in_flight = false;
            let delay = match result {
                Ok((cursor, report)) => {
                    act.failures = 0;
                    act.record(&cursor, &report);
                    if report.reload_schema
                        && let Some(loader) = &act.schema_loader
                    {
                        loader.do_send(Reload);
                    }
                    act.continue_from = report.continue_from;
                    act.cursor = Some(cursor);
                    if report.full {
                        Duration::ZERO
                    } else {
                        act.poll_interval
                    }
                }
                Err(err) => {
                    act.failures += 1;
                    let delay = backoff_delay(act.retry_backoff, act.failures)
                        .max(act.poll_interval.min(Duration::from_secs(1)));
                    warn!(error = %err, attempt = act.failures, delay_ms = delay.as_millis() as u64, "event poll failed; retrying from the same event");
                    act.stats.actor.error(&err);
                    delay
                }
            };
            ctx.run_later(delay, |act, ctx| act.poll(ctx));
        }));
    }

    fn record(&self, cursor: &Cursor, report: &PageReport) {
        let s = &self.stats;
        s.actor.handled();
        s.pages.fetch_add(1, Ordering::Relaxed);
        s.checkpoint.store(cursor.last_event_id, Ordering::Relaxed);
        s.newest_event_seen.fetch_max(
            report.newest_seen.max(cursor.last_event_id),
            Ordering::Relaxed,
        );
        if let Some(at) = report.newest_applied_created {
            s.newest_applied_created_unix
                .fetch_max(at, Ordering::Relaxed);
        }
        s.open_gaps
            .store(cursor.open_gaps.len() as u64, Ordering::Relaxed);
        s.missing_declared
            .fetch_add(report.missing_declared, Ordering::Relaxed);
        EventPollerStats::add(&s.applied, &report.applied);
        EventPollerStats::add(&s.ignored, &report.ignored);
        EventPollerStats::add(&s.failed, &report.failed);
        if let Some(w) = &report.warning
            && let Ok(mut last) = s.actor.last_error.lock()
        {
            *last = Some(w.clone());
        }
        if report.events > 0 {
            debug!(
                events = report.events,
                checkpoint = cursor.last_event_id,
                open_gaps = cursor.open_gaps.len(),
                "event page applied"
            );
        }
    }
}

impl Actor for EventPoller {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.poll(ctx);
    }
}

impl Handler<super::Stop> for EventPoller {
    type Result = ();

    fn handle(&mut self, _msg: super::Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// `sgcache events --from ID`: stores the checkpoint `ID - 1` (no open gaps), so the daemon
/// replays the event log from event `ID` on (inclusive) at its next start. Run it while the
/// daemon is stopped: a running poller keeps its own position and would overwrite it.
/// Returns the previous checkpoint, if any.
pub async fn set_checkpoint_command(config: &Config, from: i64) -> anyhow::Result<Option<i64>> {
    let pools = crate::db::connect(&config.database).await?;
    crate::db::migrate(&pools).await?;
    let previous = registry::event_cursor(&pools.reader)
        .await?
        .map(|c| c.last_event_id);
    let (writer, arbiter) =
        DbWriterHandle::start(pools.writer.clone(), pools.backend, CacheState::new());
    let result = writer
        .apply(Apply {
            ops: vec![],
            checkpoint: Some(Checkpoint::Events {
                last_event_id: (from - 1).max(0),
                open_gaps: json!({}),
            }),
        })
        .await;
    arbiter.stop();
    result?;
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_event_log_date_times() {
        assert_eq!(
            event_date_time("2015-07-13 21:54:01 UTC"),
            "2015-07-13T21:54:01Z"
        );
        assert_eq!(
            event_date_time("2015-07-13T21:54:01Z"),
            "2015-07-13T21:54:01Z"
        );
        assert_eq!(event_date_time("not a date"), "not a date");
    }

    #[test]
    fn parses_event_types() {
        assert_eq!(
            parse_event_type("Shotgun_Shot_Change"),
            Some(("Shot", "Change"))
        );
        assert_eq!(
            parse_event_type("Shotgun_DisplayColumn_New"),
            Some(("DisplayColumn", "New"))
        );
        assert_eq!(parse_event_type("Toolkit_App_Startup"), None);
    }

    fn fixture_schema() -> CachedSchema {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/schema_read.json"
        );
        let text = std::fs::read_to_string(path).expect("fixture");
        let site =
            crate::schema::SiteSchema::from_json(&serde_json::from_str(&text).expect("JSON"), None)
                .expect("schema");
        let rules = crate::schema::SelectionRules {
            include: vec!["Shot".into(), "Task".into(), "Asset".into()],
            exclude: vec![],
        };
        crate::schema::select(&site, &rules).expect("select").0
    }

    fn event(v: Json) -> Map<String, Json> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn plans_each_kind_of_event() {
        let schema = fixture_schema();
        let kind = |v: Json| plan_event(&schema, &event(v), 1).kind;
        assert_eq!(
            kind(json!({"event_type": "Shotgun_DisplayColumn_Change", "meta": {}})),
            "schema"
        );
        assert_eq!(
            kind(json!({"event_type": "Shotgun_Reading_Change"})),
            "uncached"
        );
        assert_eq!(kind(json!({"event_type": "Toolkit_App_Startup"})), "other");
        assert_eq!(kind(json!({"event_type": "Shotgun_Shot_View"})), "other");
        assert_eq!(
            kind(
                json!({"event_type": "Shotgun_Shot_Change", "attribute_name": "smart_cut_in",
                        "meta": {"entity_id": 3, "new_value": 1}})
            ),
            "uncached_field"
        );
        assert_eq!(
            kind(
                json!({"event_type": "Shotgun_Shot_Change", "attribute_name": "code",
                        "meta": {"entity_id": 3, "new_value": "x", "in_create": true}})
            ),
            "in_create"
        );
        // A back-reference whose owner is retired (entity null) cannot be placed.
        assert_eq!(
            kind(
                json!({"event_type": "Shotgun_Shot_Change", "attribute_name": "tasks",
                        "entity": null,
                        "meta": {"actual_attribute_changed": "Task.entity", "entity_type": "Task",
                                 "entity_id": 5, "added": [{"type": "Task", "id": 5}], "removed": []}})
            ),
            "backref_no_owner"
        );
        // A value the cache cannot store as is (null checkbox) is fetched instead.
        let plan = plan_event(
            &schema,
            &event(
                json!({"event_type": "Shotgun_Task_Change", "attribute_name": "milestone",
                          "meta": {"entity_id": 4, "new_value": null}}),
            ),
            1,
        );
        assert_eq!(plan.kind, "change_refetch");
        assert!(matches!(plan.actions[..], [Action::Fetch { id: 4, .. }]));
    }

    #[test]
    fn a_change_carries_the_converted_value_and_bookkeeping() {
        let schema = fixture_schema();
        let plan = plan_event(
            &schema,
            &event(json!({
                "event_type": "Shotgun_Shot_Change", "attribute_name": "sg_sequence",
                "entity": {"type": "Shot", "id": 3},
                "user": {"type": "HumanUser", "id": 9, "name": "J"},
                "created_at": "2026-01-02T03:04:06Z",
                "entity.Shot.updated_at": "2026-01-02T03:04:05Z",
                "meta": {"entity_id": 3, "new_value": {"type": "Sequence", "id": 2, "valid": "valid"}},
            })),
            7,
        );
        assert_eq!(plan.kind, "change");
        let [Action::Update { record, .. }] = &plan.actions[..] else {
            panic!("one update");
        };
        assert_eq!(record["sg_sequence"]["id"], 2);
        // The earlier of the event time and the entity's updated_at.
        assert_eq!(record["updated_at"], "2026-01-02T03:04:05Z");
        assert_eq!(record["updated_by"]["id"], 9);
    }

    #[test]
    fn gaps_round_trip() {
        let mut cursor = Cursor {
            last_event_id: 10,
            open_gaps: BTreeMap::new(),
        };
        cursor.open_gaps.insert(7, "2026-01-01T00:00:00Z".into());
        let text = cursor.gaps_json().to_string();
        assert_eq!(Cursor::parse_gaps(&text), cursor.open_gaps);
        assert_eq!(Cursor::parse_gaps("[3]").len(), 1);
        assert!(Cursor::parse_gaps("garbage").is_empty());
    }
}
