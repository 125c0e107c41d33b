//! `sgcache scan [--full] [--types A,B] [--projects 1,2]`: the daemon's scans in the
//! foreground, with a progress bar per type.
use std::time::Duration;

use super::Bootstrap;
use crate::actors::scanner::{
    ScanError, ScanObserver, ScanOptions, ScanProgress, ScanSummary, reset_full_scan,
    scan_type_full, scan_type_incremental,
};
use crate::actors::schema_loader::{apply_schema, fetch_schema};
use crate::config::Config;
use crate::db::registry;
use crate::schema::CachedEntity;
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

/// Loads the schema like `sgcache schema fetch`, then scans the chosen types (default: every
/// cached type). Incomplete types get a full scan resuming from their stored cursor; with
/// `full`, complete types are first marked incomplete and scanned from scratch. Without it,
/// complete types get an incremental scan. Prints a summary per type.
pub async fn scan(
    config: &Config,
    full: bool,
    types: &[String],
    projects: &[i64],
) -> anyhow::Result<()> {
    let upstream = UpstreamClient::new(&config.shotgun);
    let summaries = Bootstrap::open(config)
        .await?
        .run(async |boot| {
            let src = fetch_schema(config, Some(&upstream)).await?;
            let applied = apply_schema(&src, config, &boot.pools, &boot.writer).await?;
            let chosen = chosen_types(&applied.cached, types)?;
            let mut opts = ScanOptions::from_config(config);
            if !projects.is_empty() {
                opts.projects = projects.to_vec();
            }
            let mut summaries = Vec::new();
            for entity in chosen {
                summaries.push(scan_one(boot, &upstream, entity, full, &opts).await?);
            }
            Ok(summaries)
        })
        .await?;
    print_summaries(&summaries);
    Ok(())
}

/// The cached types named in `types` (all when empty); an uncached name is an error.
fn chosen_types<'a>(
    schema: &'a crate::schema::CachedSchema,
    types: &[String],
) -> anyhow::Result<Vec<&'a CachedEntity>> {
    if let Some(ty) = types.iter().find(|ty| !schema.types.contains_key(*ty)) {
        anyhow::bail!(
            "{ty} is not a cached type (cached: {})",
            schema.types.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(schema
        .types
        .values()
        .filter(|e| types.is_empty() || types.contains(&e.name))
        .collect())
}

/// One type's scan, full or incremental as its stored state says, with a progress bar.
async fn scan_one(
    boot: &Bootstrap,
    upstream: &UpstreamClient,
    entity: &CachedEntity,
    full: bool,
    opts: &ScanOptions,
) -> anyhow::Result<ScanSummary> {
    let mut state = registry::entity_states(&boot.pools.reader)
        .await?
        .into_iter()
        .find(|s| s.entity_type == entity.name)
        .ok_or_else(|| anyhow::anyhow!("no scan state for {}", entity.name))?;
    if full && state.complete {
        reset_full_scan(&boot.writer, &entity.name).await?;
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
    let checkpoint = state.scan_checkpoint.as_deref();
    let summary = if state.complete {
        scan_type_incremental(
            upstream,
            &boot.writer,
            entity,
            checkpoint,
            opts,
            &mut observer,
        )
        .await?
    } else {
        scan_type_full(upstream, &boot.writer, entity, &state, opts, &mut observer).await?
    };
    bar.finish();
    Ok(summary)
}

fn print_summaries(summaries: &[ScanSummary]) {
    println!(
        "{:<24} {:<12} {:>10} {:>8} {:>10} {:>12}",
        "type", "scan", "entities", "pages", "seconds", "entities/s"
    );
    let (mut entities, mut seconds) = (0u64, 0f64);
    for s in summaries {
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
}
