//! The SiteInfo actor: keeps the site's `info` reply (fetched at start-up and every
//! `schema.refresh_interval`, stored in `sgcache_site_info` so it survives restarts) and
//! whether the site answered the last time it was asked. `info` requests are answered from
//! here, also while the site is down.
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use serde_json::{Value as Json, json};
use tracing::warn;

use super::ActorStats;
use crate::config::Config;
use crate::db::writer::{Apply, DbWriterHandle, WriteOp};
use crate::db::{Pools, registry};
use crate::upstream::{UpstreamClient, backoff_delay};

const INFO_KEY: &str = "info";

/// The site's `info` and reachability, shared with the HTTP workers.
#[derive(Debug, Default)]
pub struct SiteInfoState {
    info: RwLock<Option<Json>>,
    reachable: AtomicBool,
    pub stats: ActorStats,
}

impl SiteInfoState {
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::Relaxed);
    }

    pub fn info(&self) -> Option<Json> {
        self.info.read().map(|i| i.clone()).unwrap_or_default()
    }

    fn set_info(&self, info: Json) {
        if let Ok(mut slot) = self.info.write() {
            *slot = Some(info);
        }
    }

    /// The reply sgcache gives to `info`: the site's, plus an `sgcache` key. The site's
    /// `api_max_entities_per_page` is kept as it is (never raised: pass-through reads must
    /// page the way the site does).
    pub fn reply(&self) -> Option<Json> {
        let mut info = self.info()?;
        if let Some(map) = info.as_object_mut() {
            map.insert(
                "sgcache".to_owned(),
                json!({"version": env!("CARGO_PKG_VERSION"), "upstream_reachable": self.reachable()}),
            );
        }
        Some(info)
    }
}

pub struct SiteInfo {
    state: Arc<SiteInfoState>,
    pools: Pools,
    writer: DbWriterHandle,
    upstream: Option<Rc<UpstreamClient>>,
    refresh: Duration,
    backoff: Duration,
    failures: u32,
}

impl SiteInfo {
    pub fn new(
        config: &Config,
        state: Arc<SiteInfoState>,
        pools: Pools,
        writer: DbWriterHandle,
    ) -> SiteInfo {
        SiteInfo {
            state,
            pools,
            writer,
            upstream: UpstreamClient::configured(&config.shotgun).map(Rc::new),
            refresh: config.schema.refresh_interval,
            backoff: config.shotgun.retry_backoff,
            failures: 0,
        }
    }

    fn refresh(&mut self, ctx: &mut Context<Self>) {
        let Some(upstream) = self.upstream.clone() else {
            return;
        };
        let state = self.state.clone();
        let writer = self.writer.clone();
        let fut = async move {
            let info = upstream.info().await?;
            if state.info().as_ref() != Some(&info) {
                let op = WriteOp::SiteInfo {
                    key: INFO_KEY.to_owned(),
                    value: info.clone(),
                };
                if let Err(e) = writer
                    .apply(Apply {
                        ops: vec![op],
                        checkpoint: None,
                    })
                    .await
                {
                    warn!(error = %e, "cannot store the site's info");
                }
            }
            Ok::<_, crate::upstream::UpstreamError>(info)
        };
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            let next = match result {
                Ok(info) => {
                    act.state.set_info(info);
                    act.state.set_reachable(true);
                    act.state.stats.handled();
                    act.failures = 0;
                    act.refresh
                }
                Err(err) => {
                    warn!(error = %err, "cannot fetch the site's info");
                    act.state.set_reachable(false);
                    act.state.stats.error(&err);
                    act.failures += 1;
                    backoff_delay(act.backoff, act.failures).min(act.refresh)
                }
            };
            ctx.run_later(next, |act, ctx| act.refresh(ctx));
        }));
    }
}

impl Actor for SiteInfo {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let state = self.state.clone();
        let pools = self.pools.clone();
        // What we stored last time first, so `info` works at once even with the site down.
        let load = async move {
            if let Ok(Some(info)) = registry::site_info(&pools.reader, INFO_KEY).await {
                state.set_info(info);
            }
        };
        ctx.wait(load.into_actor(self));
        self.refresh(ctx);
    }
}
