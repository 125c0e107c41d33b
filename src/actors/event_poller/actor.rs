//! The actor: one poll at a time, rescheduled after each (immediately after a full page).
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use tracing::{debug, warn};

use super::cursor::Cursor;
use super::page::{PageReport, PollContext, load_cursor, poll_page};
use super::stats::EventPollerStats;
use crate::actors::schema_loader::{Reload, SchemaLoader};
use crate::actors::tick::{Parts, Runs};
use crate::config::Config;
use crate::db::Pools;
use crate::db::writer::DbWriterHandle;
use crate::state::CacheState;

/// The actor: one poll at a time, rescheduled after each (immediately after a full page).
pub struct EventPoller {
    ctx: Option<PollContext>,
    schema_loader: Option<Addr<SchemaLoader>>,
    stats: Arc<EventPollerStats>,
    cursor: Option<Cursor>,
    continue_from: Option<i64>,
    poll_interval: Duration,
    retry_backoff: Duration,
    runs: Runs,
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
        let parts = Parts::new(config, pools, writer, cache);
        EventPoller {
            poll_interval: parts.config.events.poll_interval,
            retry_backoff: parts.config.shotgun.retry_backoff,
            ctx: parts
                .site_client()
                .map(|upstream| PollContext { parts, upstream }),
            schema_loader,
            stats,
            cursor: None,
            continue_from: None,
            runs: Runs::default(),
        }
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.runs.skip(&self.stats.actor, true) {
            return;
        }
        let Some(poll_ctx) = self.ctx.clone() else {
            return;
        };
        // Without the cached schema every event would look uncached: wait for it.
        if poll_ctx.parts.cache.view().schema.types.is_empty() {
            ctx.run_later(self.poll_interval, |act, ctx| act.poll(ctx));
            return;
        }
        self.runs.start();
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
            act.runs.end();
            let delay = match result {
                Ok((cursor, report)) => {
                    act.runs.succeeded();
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
                    let delay = act.runs.failed(act.retry_backoff)
                        .max(act.poll_interval.min(Duration::from_secs(1)));
                    warn!(error = %err, attempt = act.runs.failures(), delay_ms = delay.as_millis() as u64, "event poll failed; retrying from the same event");
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
        s.relinked.fetch_add(report.relinked, Ordering::Relaxed);
        s.relink_truncated
            .fetch_add(report.relink_truncated, Ordering::Relaxed);
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

impl Handler<crate::actors::Stop> for EventPoller {
    type Result = ();

    fn handle(&mut self, _msg: crate::actors::Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
