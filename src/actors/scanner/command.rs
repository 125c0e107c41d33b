//! `sgcache scan`: the same scans in the foreground, with a progress bar per type.
use std::time::Duration;

use super::ScanError;
use super::reconcile::reset_full_scan;
use super::scan::{
    ScanObserver, ScanOptions, ScanProgress, ScanSummary, scan_type_full, scan_type_incremental,
};
use crate::config::Config;
use crate::db::registry;
use crate::db::writer::DbWriterHandle;
use crate::schema::CachedEntity;
use crate::state::CacheState;
use crate::upstream::UpstreamClient;

struct BarObserver(indicatif::ProgressBar);

impl ScanObserver for BarObserver {
    fn progress(&mut self, progress: &ScanProgress) {
        if let Some(total) = progress.total {
            self.0.set_length(total);
        }
        self.0.set_position(progress.scanned);
        self.0
            .set_message(format!("{} pass, page {}", progress.pass, progress.page));
    }

    fn retrying(&mut self, error: &ScanError, delay: Duration) {
        self.0.println(format!(
            "warning: {error}; retrying the same page in {:.1}s",
            delay.as_secs_f64()
        ));
    }
}

/// `sgcache scan [--full] [--types A,B] [--projects 1,2]`: connects and migrates the database,
/// loads the schema like `sgcache schema fetch`, then scans the chosen types (default: every
/// cached type). Incomplete types get a full scan resuming from their stored cursor; with
/// `--full`, complete types are first marked incomplete and scanned from scratch. Without
/// `--full`, complete types get an incremental scan. Prints a summary per type.
pub async fn run_scan_command(
    config: &Config,
    full: bool,
    types: &[String],
    projects: &[i64],
) -> anyhow::Result<Vec<ScanSummary>> {
    use crate::actors::schema_loader::{apply_schema, fetch_schema};

    let pools = crate::db::connect(&config.database).await?;
    crate::db::migrate(&pools).await?;
    let upstream = UpstreamClient::new(&config.shotgun);
    let src = fetch_schema(config, Some(&upstream)).await?;
    let (writer, arbiter) =
        DbWriterHandle::start(pools.writer.clone(), pools.backend, CacheState::new());
    let result = async {
        let applied = apply_schema(&src, config, &pools, &writer).await?;
        let schema = applied.cached;
        for ty in types {
            if !schema.types.contains_key(ty) {
                anyhow::bail!(
                    "{ty} is not a cached type (cached: {})",
                    schema.types.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let mut opts = ScanOptions::from_config(config);
        if !projects.is_empty() {
            opts.projects = projects.to_vec();
        }
        let chosen: Vec<&CachedEntity> = schema
            .types
            .values()
            .filter(|e| types.is_empty() || types.contains(&e.name))
            .collect();
        let mut summaries = Vec::new();
        for entity in chosen {
            let mut state = registry::entity_states(&pools.reader)
                .await?
                .into_iter()
                .find(|s| s.entity_type == entity.name)
                .ok_or_else(|| anyhow::anyhow!("no scan state for {}", entity.name))?;
            if full && state.complete {
                reset_full_scan(&writer, &entity.name).await?;
                state.complete = false;
                state.full_scan_cursor = None;
                state.full_scan_started_at = None;
            }
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>16} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(entity.name.clone());
            let mut observer = BarObserver(bar.clone());
            let summary = if state.complete {
                scan_type_incremental(
                    &upstream,
                    &writer,
                    entity,
                    state.scan_checkpoint.as_deref(),
                    &opts,
                    &mut observer,
                )
                .await?
            } else {
                scan_type_full(&upstream, &writer, entity, &state, &opts, &mut observer).await?
            };
            bar.finish();
            summaries.push(summary);
        }
        Ok(summaries)
    }
    .await;
    arbiter.stop();
    pools.reader.close().await.ok();
    let summaries = result?;
    println!(
        "{:<24} {:<12} {:>10} {:>8} {:>10} {:>12}",
        "type", "scan", "entities", "pages", "seconds", "entities/s"
    );
    let (mut entities, mut seconds) = (0u64, 0f64);
    for s in &summaries {
        println!(
            "{:<24} {:<12} {:>10} {:>8} {:>10.1} {:>12.0}",
            s.entity_type,
            s.kind,
            s.entities,
            s.pages,
            s.seconds,
            s.entities as f64 / s.seconds.max(1e-3)
        );
        entities += s.entities;
        seconds += s.seconds;
    }
    println!(
        "{:<24} {:<12} {:>10} {:>8} {:>10.1} {:>12.0}",
        "total",
        "",
        entities,
        summaries.iter().map(|s| s.pages).sum::<u64>(),
        seconds,
        entities as f64 / seconds.max(1e-3)
    );
    Ok(summaries)
}
