//! `sgcache verify --sample N [--types A,B]`.
use std::collections::BTreeSet;

use tracing::info;

use super::Bootstrap;
use crate::actors::schema_loader::{fetch_schema, stored_schema};
use crate::actors::verifier::{SampleReport, verify_sample};
use crate::config::Config;
use crate::upstream::UpstreamClient;

/// Compares `sample` random cached rows per type with the site; prints one line per type and
/// fails when anything mismatched. Does not change the cache.
pub async fn verify(config: &Config, sample: u64, types: &[String]) -> anyhow::Result<()> {
    let reports = Bootstrap::open(config)
        .await?
        .run(async |boot| sample_types(config, boot, sample, types).await)
        .await?;
    for r in &reports {
        let fields = if r.fields.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = r.fields.iter().map(|(f, n)| format!("{f} ({n})")).collect();
            format!("; fields: {}; ids: {:?}", list.join(", "), r.ids)
        };
        println!(
            "{}: checked {}, matched {}, mismatched {}{}",
            r.entity_type, r.checked, r.matched, r.mismatched, fields
        );
    }
    let checked: u64 = reports.iter().map(|r| r.checked).sum();
    let mismatched: u64 = reports.iter().map(|r| r.mismatched).sum();
    println!("total: checked {checked}, mismatched {mismatched}");
    info!(checked, mismatched, "verify done");
    if mismatched > 0 {
        anyhow::bail!("{mismatched} cached rows differ from the site");
    }
    Ok(())
}

/// The cached types whose tables exist (recorded in `sgcache_entity_state`), restricted to
/// `types` when given, each sampled against the site.
async fn sample_types(
    config: &Config,
    boot: &Bootstrap,
    sample: u64,
    types: &[String],
) -> anyhow::Result<Vec<SampleReport>> {
    let src = if config.schema.file.is_some() {
        fetch_schema(config, None).await?
    } else {
        stored_schema(&boot.pools)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no schema stored yet: nothing is cached"))?
    };
    let site = src.parse()?;
    let (mut cached, _) = crate::schema::select(&site, &config.schema.rules())?;
    let states = crate::db::registry::entity_states(&boot.pools.reader).await?;
    let present: BTreeSet<String> = states
        .into_iter()
        .filter(|s| s.cached)
        .map(|s| s.entity_type)
        .collect();
    cached
        .types
        .retain(|name, _| present.contains(name) && (types.is_empty() || types.contains(name)));
    let upstream = UpstreamClient::new(&config.shotgun);
    verify_sample(&upstream, &boot.pools.reader, &cached, sample).await
}
