//! One page of events: read it, classify each event, fetch what the events need, and apply
//! the page's changes with the new checkpoint in one transaction.
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value as Json, json};
use tracing::{debug, info, warn};

use super::cursor::{Cursor, OpenGaps};
use super::plan::{Action, EventKind, Planned, event_date_time, plan_event};
use super::stats::KindCounts;
use super::{MAX_OPEN_GAPS, PAGE_SIZE, PollError};
use crate::actors::tick::Parts;
use crate::db::registry;
use crate::db::writer::{Apply, UpsertMode, WriteOp};
use crate::schema::CachedSchema;
use crate::upstream::UpstreamClient;
use crate::upstream::fetch::{self, ReadArgs};
use crate::upstream::refresh::{
    Gone, RELINK_MAX_ROWS, Refreshed, Relinked, refresh, relink, upsert,
};

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
    /// Rows re-read because they link to a revived entity.
    pub relinked: u64,
    /// Revivals whose linking entities were not all re-read (the page's bound ran out).
    pub relink_truncated: u64,
    /// Where the next read continues after a full page.
    pub continue_from: Option<i64>,
    /// A non-fatal problem (e.g. the follow-up fetch of missing rows failed).
    pub warning: Option<String>,
}

fn bump(map: &mut KindCounts, kind: EventKind) {
    *map.entry(kind.label().to_owned()).or_default() += 1;
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
    ReadArgs::new("EventLogEntry")
        .filter("id", "greater_than", json!([after_id]))
        .fields(fields)
        .page(PAGE_SIZE as u32, 1)
        .paging_info(false)
        .build()
}

fn entities_of(reply: &mut Json) -> Result<Vec<Map<String, Json>>, PollError> {
    fetch::entities_of(reply).map_err(|e| PollError::Reply(e.to_string()))
}

/// The newest event id on the site (0 when the log is empty).
pub async fn newest_event_id(upstream: &UpstreamClient) -> Result<i64, PollError> {
    let args = ReadArgs::new("EventLogEntry")
        .sort("id", true)
        .page(1, 1)
        .paging_info(false);
    let mut reply = upstream.call("read", Some(args.build())).await?;
    Ok(entities_of(&mut reply)?
        .first()
        .and_then(|e| e.get("id"))
        .and_then(Json::as_i64)
        .unwrap_or(0))
}

/// Everything one poll needs (cheap clones; moved into the future): the poller's parts and
/// the site's client.
#[derive(Clone)]
pub struct PollContext {
    pub parts: Parts,
    pub upstream: Rc<UpstreamClient>,
}

/// Loads the stored checkpoint, or starts at the site's newest event (and stores that).
pub async fn load_cursor(ctx: &PollContext) -> Result<Cursor, PollError> {
    if let Some(row) = registry::event_cursor(&ctx.parts.pools.reader).await? {
        return Ok(Cursor {
            last_event_id: row.last_event_id,
            open_gaps: OpenGaps::parse(&row.open_gaps),
        });
    }
    let newest = newest_event_id(&ctx.upstream).await?;
    let cursor = Cursor {
        last_event_id: newest,
        open_gaps: OpenGaps::default(),
    };
    ctx.parts
        .writer
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

/// Gaps waited on longer than `window` are declared missing (counted in `report`).
fn expire_gaps(gaps: &mut OpenGaps, window: Duration, now: DateTime<Utc>, report: &mut PageReport) {
    // First-seen times are stored in whole seconds: allow for the lost fraction.
    let window = chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| w.checked_add(&chrono::Duration::seconds(1)))
        .unwrap_or(chrono::Duration::MAX);
    gaps.0.retain(|id, first_seen| {
        let expired = now - *first_seen >= window;
        if expired {
            warn!(
                event_id = id,
                since = %crate::time::format(*first_seen),
                "event id never appeared within the gap window: declared missing"
            );
            report.missing_declared += 1;
        }
        !expired
    });
}

/// More than [`MAX_OPEN_GAPS`] open gaps: the oldest are declared missing.
fn cap_gaps(gaps: &mut OpenGaps, report: &mut PageReport) {
    if gaps.len() <= MAX_OPEN_GAPS {
        return;
    }
    let excess = gaps.len() - MAX_OPEN_GAPS;
    let drop: Vec<i64> = gaps.0.keys().take(excess).copied().collect();
    warn!(
        count = drop.len(),
        "too many open event gaps: the oldest are declared missing"
    );
    for id in drop {
        gaps.0.remove(&id);
        report.missing_declared += 1;
    }
}

/// Moves `next` over the page's event ids (new gaps, filled gaps) and plans every event not
/// applied before, in id order. Returns the plans and the highest id on the page.
fn plan_page(
    schema: &CachedSchema,
    events: &[Map<String, Json>],
    next: &mut Cursor,
    start: i64,
    now: DateTime<Utc>,
    report: &mut PageReport,
) -> (Vec<Planned>, i64) {
    let mut plans = Vec::new();
    let mut page_last = start;
    let first_seen = now.trunc_subsecs(0);
    for event in events {
        let Some(id) = event.get("id").and_then(Json::as_i64) else {
            continue;
        };
        page_last = page_last.max(id);
        report.newest_seen = report.newest_seen.max(id);
        if id > next.last_event_id {
            for missing in next.last_event_id + 1..id {
                next.open_gaps.0.insert(missing, first_seen);
            }
            next.last_event_id = id;
        } else if next.open_gaps.0.remove(&id).is_none() {
            // Applied before (a re-read from the lowest gap).
            continue;
        }
        if let Some(at) = event.get("created_at").and_then(Json::as_str) {
            report.newest_applied_created =
                crate::time::parse(&event_date_time(at)).map(|t| t.timestamp());
        }
        plans.push(plan_event(schema, event, id));
    }
    (plans, page_last)
}

/// Reads whole every entity the plans ask to fetch (before the transaction).
async fn fetch_wanted(
    ctx: &PollContext,
    schema: &CachedSchema,
    plans: &[Planned],
) -> Result<BTreeMap<String, Refreshed>, PollError> {
    let mut wanted: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for plan in plans {
        for action in &plan.actions {
            if let Action::Fetch { ty, id } = action {
                wanted.entry(ty.clone()).or_default().insert(*id);
            }
        }
    }
    let mut fetched = BTreeMap::new();
    for (ty, ids) in &wanted {
        let Some(entity) = schema.types.get(ty) else {
            continue;
        };
        fetched.insert(ty.clone(), refresh(&ctx.upstream, entity, ids).await?);
    }
    Ok(fetched)
}

/// Re-reads, for every revival of the page, the cached entities linking to the revived entity
/// (before the transaction; at most [`RELINK_MAX_ROWS`] rows for the whole page).
async fn relink_wanted(
    ctx: &PollContext,
    schema: &CachedSchema,
    plans: &[Planned],
) -> Result<BTreeMap<(String, i64), Relinked>, PollError> {
    let mut budget = RELINK_MAX_ROWS;
    let mut relinked = BTreeMap::new();
    for plan in plans {
        for action in &plan.actions {
            if let Action::Relink { ty, id } = action
                && !relinked.contains_key(&(ty.clone(), *id))
            {
                let found = relink(&ctx.upstream, schema, ty, *id, &mut budget).await?;
                relinked.insert((ty.clone(), *id), found);
            }
        }
    }
    Ok(relinked)
}

/// The write of one action that needs no fetch (`Fetch` and `Reload` give `None`).
fn action_op(action: &Action, event_id: Option<i64>) -> Option<WriteOp> {
    Some(match action {
        Action::Update { ty, record } => WriteOp::Upsert {
            entity_type: ty.clone(),
            records: vec![record.clone()],
            mode: UpsertMode::UpdateOnly,
            active: None,
            event_id,
        },
        Action::Links {
            ty,
            id,
            field,
            added,
            removed,
        } => WriteOp::Links {
            entity_type: ty.clone(),
            id: *id,
            field: field.clone(),
            added: added.clone(),
            removed: removed.clone(),
        },
        Action::SetActive { ty, id, active } => WriteOp::SetActive {
            entity_type: ty.clone(),
            id: *id,
            active: *active,
            event_id,
        },
        Action::Fetch { .. } | Action::Relink { .. } | Action::Reload => return None,
    })
}

/// The page's writes in event order, and the fetched rows they use; counts each event as
/// applied, ignored or failed.
fn page_ops(
    plans: &[Planned],
    fetched: &BTreeMap<String, Refreshed>,
    mut relinked: BTreeMap<(String, i64), Relinked>,
    report: &mut PageReport,
) -> (Vec<WriteOp>, BTreeSet<(String, i64)>) {
    let mut ops = Vec::new();
    let mut used = BTreeSet::new();
    for plan in plans {
        if plan.actions.is_empty() {
            bump(&mut report.ignored, plan.kind);
            continue;
        }
        let event_id = Some(plan.event_id);
        let mut failed = false;
        for action in &plan.actions {
            match action {
                Action::Fetch { ty, id } => match fetched.get(ty).and_then(|r| r.get(*id)) {
                    Some((record, active)) => {
                        used.insert((ty.clone(), *id));
                        ops.push(upsert(ty, vec![record.clone()], active, event_id));
                    }
                    None => {
                        // Deleted for good on the site (or not readable): nothing to cache.
                        debug!(entity_type = %ty, id, event_id = plan.event_id, "entity of an event not found on the site");
                        failed = true;
                    }
                },
                Action::Relink { ty, id } => {
                    if let Some(found) = relinked.remove(&(ty.clone(), *id)) {
                        report.relinked += found.rows;
                        report.relink_truncated += u64::from(found.truncated);
                        ops.extend(found.ops(event_id));
                    }
                }
                Action::Reload => report.reload_schema = true,
                other => ops.extend(action_op(other, event_id)),
            }
        }
        let counts = if failed {
            &mut report.failed
        } else {
            &mut report.applied
        };
        bump(counts, plan.kind);
    }
    (ops, used)
}

/// Reads one page of events, applies it with the new checkpoint in one transaction, and
/// returns the new cursor. On error nothing was committed and `cursor` still holds.
pub async fn poll_page(
    ctx: &PollContext,
    cursor: &Cursor,
    continue_from: Option<i64>,
) -> Result<(Cursor, PageReport), PollError> {
    let schema = ctx.parts.cache.view().schema;
    let mut next = cursor.clone();
    let mut report = PageReport::default();
    let now = Utc::now();
    expire_gaps(
        &mut next.open_gaps,
        ctx.parts.config.events.gap_window,
        now,
        &mut report,
    );

    let start = match (continue_from, next.open_gaps.0.keys().next()) {
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
    let (plans, page_last) = plan_page(&schema, &events, &mut next, start, now, &mut report);
    cap_gaps(&mut next.open_gaps, &mut report);
    if report.full {
        report.continue_from = Some(page_last);
    }

    // Fetch first (outside the transaction), then one transaction: changes and checkpoint.
    let fetched = fetch_wanted(ctx, &schema, &plans).await?;
    let relinked = relink_wanted(ctx, &schema, &plans).await?;
    let (ops, fetched_used) = page_ops(&plans, &fetched, relinked, &mut report);
    let outcome = ctx
        .parts
        .writer
        .apply(Apply {
            ops,
            checkpoint: Some(next.checkpoint()),
        })
        .await?;

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
        let refreshed = refresh(&ctx.upstream, entity, ids).await?;
        ops.extend(refreshed.ops(Some(event_id), Gone::Keep));
    }
    if !ops.is_empty() {
        ctx.parts
            .writer
            .apply(Apply {
                ops,
                checkpoint: None,
            })
            .await?;
    }
    Ok(())
}
