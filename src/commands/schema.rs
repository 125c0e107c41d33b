//! `sgcache schema fetch` and `sgcache schema show`.
use std::fmt::Write as _;
use std::path::Path;

use super::Bootstrap;
use crate::actors::schema_loader::{apply_schema, fetch_schema, stored_schema};
use crate::config::Config;
use crate::db::Pools;
use crate::schema::{CachedSchema, SelectionReport, SiteSchema};
use crate::upstream::UpstreamClient;

/// Fetches the schema from the site (or `[schema] file`), creates/alters the cache tables and
/// records it in the schema registry; optionally saves the site's `schema_read` reply.
pub async fn fetch(config: &Config, output: Option<&Path>) -> anyhow::Result<()> {
    let boot = Bootstrap::open(config).await?;
    let upstream = UpstreamClient::configured(&config.shotgun);
    let applied = boot
        .run(async |boot| {
            let src = fetch_schema(config, upstream.as_ref()).await?;
            if let Some(path) = output {
                std::fs::write(path, serde_json::to_vec_pretty(&src.schema_read)?)?;
                println!("saved schema_read to {}", path.display());
            }
            let applied = apply_schema(&src, config, &boot.pools, &boot.writer).await?;
            Ok((src.source, applied))
        })
        .await?;
    let (source, applied) = applied;
    println!(
        "schema from {}: {} cached types, {} DDL statements, {} fields skipped; needs a full scan: {}",
        source,
        applied.cached.types.len(),
        applied.statements,
        applied.report.skipped.len(),
        if applied.invalidated.is_empty() {
            "none".to_owned()
        } else {
            applied.invalidated.join(", ")
        }
    );
    Ok(())
}

/// The site schema: `[schema] file`, else the one stored by the last fetch (in the database
/// of `pools`, or of a bootstrap opened for the purpose).
pub async fn site_schema(config: &Config, pools: Option<&Pools>) -> anyhow::Result<SiteSchema> {
    let src = match pools {
        _ if config.schema.file.is_some() => Some(fetch_schema(config, None).await?),
        Some(pools) => stored_schema(pools).await?,
        None => {
            Bootstrap::open(config)
                .await?
                .run(async |boot| Ok(stored_schema(&boot.pools).await?))
                .await?
        }
    };
    let src = src
        .ok_or_else(|| anyhow::anyhow!("no schema stored yet: run `sgcache schema fetch` first"))?;
    Ok(src.parse()?)
}

/// Shows which types and fields are cached, and which are skipped and why.
pub async fn show(config: &Config, json: bool) -> anyhow::Result<()> {
    let site = site_schema(config, None).await?;
    let (cached, report) = crate::schema::select(&site, &config.schema.rules())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"cached": cached, "report": report}))?
        );
    } else {
        print!("{}", describe(&cached, &report));
    }
    Ok(())
}

/// The text form of `schema show`.
fn describe(cached: &CachedSchema, report: &SelectionReport) -> String {
    let mut out = String::new();
    for entity in cached.types.values() {
        let _ = writeln!(
            out,
            "{} -> table {} (link name from {})",
            entity.name,
            entity.table,
            entity.display_field.as_deref().unwrap_or("-")
        );
        for field in entity.fields.values() {
            let _ = writeln!(
                out,
                "  {:<32} {:<14} {}",
                field.name,
                field.data_type,
                field.layout.columns().join(", ")
            );
        }
    }
    if !report.skipped.is_empty() {
        let _ = writeln!(out, "not cached (reads that need these pass through):");
        for skipped in &report.skipped {
            let _ = writeln!(
                out,
                "  {}.{}: {}",
                skipped.entity_type, skipped.field, skipped.reason
            );
        }
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}
