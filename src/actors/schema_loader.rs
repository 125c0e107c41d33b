//! The SchemaLoader actor: fetches the site's schema (or reads `[schema] file`), applies the
//! selection rules, plans the DDL against the schema registry and hands it to the DbWriter.
//! It runs at start-up and every `schema.refresh_interval`; when the site cannot be reached it
//! falls back to the newest stored snapshot and retries with back-off.
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::ActorStats;
use super::tick::{Parts, Runs};
use crate::config::Config;
use crate::db::entities::schema_snapshot;
use crate::db::writer::{ApplySchema, DbWriterHandle, NewSnapshot};
use crate::db::{Pools, StoreError, registry};
use crate::schema::{CachedSchema, SchemaError, SelectionReport, SiteSchema, plan_ddl, select};
use crate::state::CacheState;
use crate::upstream::{UpstreamClient, UpstreamError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("cannot read {path}: {problem}")]
    File { path: String, problem: String },
    #[error("invalid schema: {0}")]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A `schema_read` (+ `schema_entity_read`) reply and where it came from.
#[derive(Clone, Debug)]
pub struct SchemaSource {
    /// `site`, `file` or `snapshot`.
    pub source: &'static str,
    pub schema_read: Json,
    pub schema_entity_read: Option<Json>,
}

impl SchemaSource {
    /// A stored snapshot (`sgcache_schema_snapshot` row).
    pub fn from_snapshot(row: &schema_snapshot::Model) -> Result<SchemaSource, LoadError> {
        let parse = |text: &str| {
            serde_json::from_str::<Json>(text).map_err(|e| LoadError::File {
                path: "sgcache_schema_snapshot".to_owned(),
                problem: e.to_string(),
            })
        };
        Ok(SchemaSource {
            source: "snapshot",
            schema_read: parse(&row.schema_read)?,
            schema_entity_read: row.schema_entity_read.as_deref().map(parse).transpose()?,
        })
    }

    pub fn parse(&self) -> Result<SiteSchema, SchemaError> {
        SiteSchema::from_json(&self.schema_read, self.schema_entity_read.as_ref())
    }
}

/// Reads `[schema] file` (and `entity_file`) if configured, else asks the site.
pub async fn fetch_schema(
    config: &Config,
    upstream: Option<&UpstreamClient>,
) -> Result<SchemaSource, LoadError> {
    if let Some(path) = &config.schema.file {
        let schema_read = read_json(path)?;
        let schema_entity_read = config
            .schema
            .entity_file
            .as_ref()
            .map(|p| read_json(p))
            .transpose()?;
        return Ok(SchemaSource {
            source: "file",
            schema_read,
            schema_entity_read,
        });
    }
    let Some(upstream) = upstream else {
        return Err(LoadError::Upstream(UpstreamError::Transport(
            "no site configured (shotgun.url)".to_owned(),
        )));
    };
    let (schema_read, schema_entity_read) = upstream.schema().await?;
    Ok(SchemaSource {
        source: "site",
        schema_read,
        schema_entity_read: Some(schema_entity_read),
    })
}

fn read_json(path: &std::path::Path) -> Result<Json, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::File {
        path: path.display().to_string(),
        problem: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| LoadError::File {
        path: path.display().to_string(),
        problem: format!("not JSON: {e}"),
    })
}

/// The newest stored snapshot, for starting while the site is down.
pub async fn stored_schema(pools: &Pools) -> Result<Option<SchemaSource>, LoadError> {
    registry::latest_snapshot(&pools.reader)
        .await?
        .map(|row| SchemaSource::from_snapshot(&row))
        .transpose()
}

/// What applying a schema did.
#[derive(Clone, Debug)]
pub struct Applied {
    pub site: Arc<SiteSchema>,
    /// The schema served: the selection without the fields marks leave uncached.
    pub cached: CachedSchema,
    pub report: SelectionReport,
    pub statements: usize,
    pub invalidated: Vec<String>,
}

/// Selection → DDL plan → DbWriter. Stores the schema as a new snapshot when it changed.
pub async fn apply_schema(
    src: &SchemaSource,
    config: &Config,
    pools: &Pools,
    writer: &DbWriterHandle,
) -> Result<Applied, LoadError> {
    let site = src.parse()?;
    let (cached, report) = select(&site, &config.schema.rules())?;
    let site = Arc::new(site);
    let applied = registry::load_applied(&pools.reader).await?;
    let plan = plan_ddl(&cached, &applied, pools.backend);
    let schema_text = src.schema_read.to_string();
    let entity_text = src.schema_entity_read.as_ref().map(Json::to_string);
    // Both replies: schema calls are answered from the newest snapshot (http::api3::schema).
    let mut hasher = Sha256::new();
    hasher.update(schema_text.as_bytes());
    hasher.update(entity_text.as_deref().unwrap_or_default().as_bytes());
    let digest = format!("{:x}", hasher.finalize());
    let latest = registry::latest_snapshot(&pools.reader).await?;
    let snapshot = (src.source != "snapshot"
        && latest
            .as_ref()
            .is_none_or(|l| l.digest != digest || l.source != src.source))
    .then(|| NewSnapshot {
        source: src.source.to_owned(),
        digest,
        schema_read: schema_text,
        schema_entity_read: entity_text,
    });
    let statements = plan.statements.len();
    let mut invalidated: Vec<String> = plan.changed_types.iter().cloned().collect();
    invalidated.extend(plan.new_types.iter().cloned());
    // What is served: the selection without the fields marks leave uncached.
    let cached = writer
        .apply_schema(ApplySchema {
            plan,
            desired: cached,
            snapshot,
        })
        .await?;
    Ok(Applied {
        site,
        cached,
        report,
        statements,
        invalidated,
    })
}

/// The loader's figures for `/status`.
#[derive(Debug, Default)]
pub struct SchemaLoaderStats {
    pub actor: ActorStats,
    pub loaded: AtomicBool,
    pub detail: Mutex<Option<SchemaLoadDetail>>,
}

/// What the last applied schema was.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SchemaLoadDetail {
    /// `site`, `file`, `snapshot` or `leader`.
    pub source: &'static str,
    pub loaded_at: String,
    pub types: usize,
    pub skipped_fields: usize,
    pub warnings: Vec<String>,
}

/// `/status` → `actors.schema_loader`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SchemaLoaderSnapshot {
    #[serde(flatten)]
    pub actor: super::ActorSnapshot,
    pub loaded: bool,
    #[serde(flatten)]
    pub detail: Option<SchemaLoadDetail>,
}

impl SchemaLoaderStats {
    /// A schema is in use: from `source` (`site`, `file`, `snapshot`, or `leader` on a
    /// follower, see [`crate::cluster::follow`]).
    pub fn record_load(
        &self,
        source: &'static str,
        cached: &CachedSchema,
        report: &SelectionReport,
    ) {
        self.actor.handled();
        self.loaded.store(true, Ordering::Relaxed);
        if let Ok(mut detail) = self.detail.lock() {
            *detail = Some(SchemaLoadDetail {
                source,
                loaded_at: crate::time::now(),
                types: cached.types.len(),
                skipped_fields: report.skipped.len(),
                warnings: report.warnings.clone(),
            });
        }
    }

    pub fn snapshot(&self) -> SchemaLoaderSnapshot {
        SchemaLoaderSnapshot {
            actor: self.actor.snapshot(),
            loaded: self.loaded.load(Ordering::Relaxed),
            detail: self.detail.lock().map(|d| d.clone()).unwrap_or_default(),
        }
    }
}

pub struct SchemaLoader {
    parts: Parts,
    upstream: Option<Rc<UpstreamClient>>,
    stats: Arc<SchemaLoaderStats>,
    refresh_interval: Duration,
    runs: Runs,
    /// The one scheduled next load: a [`Reload`] replaces it instead of starting a second
    /// refresh loop beside it.
    next_load: Option<SpawnHandle>,
}

impl SchemaLoader {
    pub fn new(
        config: Arc<Config>,
        pools: Pools,
        writer: DbWriterHandle,
        cache: Arc<CacheState>,
        stats: Arc<SchemaLoaderStats>,
    ) -> Self {
        let parts = Parts::new(config, pools, writer, cache);
        SchemaLoader {
            refresh_interval: parts.config.schema.refresh_interval,
            upstream: parts.site_client(),
            parts,
            stats,
            runs: Runs::default(),
            next_load: None,
        }
    }

    /// Schedules the next load after `delay`, replacing any scheduled one.
    fn schedule(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        if let Some(previous) = self.next_load.take() {
            ctx.cancel_future(previous);
        }
        self.next_load = Some(ctx.run_later(delay, |act, ctx| {
            act.next_load = None;
            act.load(ctx);
        }));
    }

    fn load(&mut self, ctx: &mut Context<Self>) {
        if self.runs.skip(&self.stats.actor, true) {
            return;
        }
        self.runs.start();
        let config = self.parts.config.clone();
        let pools = self.parts.pools.clone();
        let writer = self.parts.writer.clone();
        let upstream = self.upstream.clone();
        let first = !self.stats.loaded.load(Ordering::Relaxed);
        let fut = async move {
            let fetched = fetch_schema(&config, upstream.as_deref()).await;
            match fetched {
                Ok(src) => apply_schema(&src, &config, &pools, &writer)
                    .await
                    .map(|a| (a, src.source, None)),
                Err(err) if first => {
                    // Start from what we stored last time; keep trying the site.
                    match stored_schema(&pools).await {
                        Ok(Some(src)) => apply_schema(&src, &config, &pools, &writer)
                            .await
                            .map(|a| (a, src.source, Some(err.to_string()))),
                        _ => Err(err),
                    }
                }
                Err(err) => Err(err),
            }
        };
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.runs.end();
            let delay = act.loaded(result).unwrap_or(act.refresh_interval);
            act.schedule(delay, ctx);
        }));
    }

    /// Records the outcome of a load; gives the delay before the next try when the load failed
    /// or fell back to the stored snapshot (`fetch_error`).
    fn loaded(
        &mut self,
        result: Result<(Applied, &'static str, Option<String>), LoadError>,
    ) -> Option<Duration> {
        let (applied, source, fetch_error) = match result {
            Ok(loaded) => loaded,
            Err(err) => {
                warn!(error = %err, "cannot load the schema");
                self.stats.actor.error(&err);
                return Some(self.failed());
            }
        };
        info!(
            source,
            types = applied.cached.types.len(),
            statements = applied.statements,
            invalidated = ?applied.invalidated,
            skipped_fields = applied.report.skipped.len(),
            "schema applied"
        );
        for warning in &applied.report.warnings {
            warn!(warning = %warning, "schema selection");
        }
        self.parts.cache.set_site(applied.site.clone());
        self.stats
            .record_load(source, &applied.cached, &applied.report);
        match fetch_error {
            // Running on a stored snapshot: try the site again soon.
            Some(err) => {
                self.stats.actor.error(&err);
                Some(self.failed())
            }
            None => {
                self.runs.succeeded();
                None
            }
        }
    }

    /// One more consecutive failure: the back-off before the next try.
    fn failed(&mut self) -> Duration {
        self.runs.failed(self.parts.config.shotgun.retry_backoff)
    }
}

impl Actor for SchemaLoader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.load(ctx);
    }
}

impl Handler<super::Stop> for SchemaLoader {
    type Result = ();

    fn handle(&mut self, _msg: super::Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Ask for an immediate reload (e.g. after a schema event).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload;

impl Handler<Reload> for SchemaLoader {
    type Result = ();

    fn handle(&mut self, _msg: Reload, ctx: &mut Self::Context) {
        self.load(ctx);
    }
}
