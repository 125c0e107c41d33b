//! `sgcache explain [FILE]`: what the daemon would do with a request body (FILE or standard
//! input), from the database's stored state: cached schema, complete types, calibrated rules
//! (and `calibration.pinned`). See [`crate::http::explain`].
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::Bootstrap;
use super::schema::site_schema;
use crate::config::Config;
use crate::state::CacheState;

pub async fn explain(config: &Config, file: Option<&Path>) -> anyhow::Result<()> {
    let body = match file {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        _ => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body)?;
            body
        }
    };
    let explanation = Bootstrap::open(config)
        .await?
        .run(async |boot| {
            let pools = &boot.pools;
            let site = site_schema(config, Some(pools)).await?;
            let (cached, _) = crate::schema::select(&site, &config.schema.rules())?;
            let state = CacheState::new();
            state.set_schema(Arc::new(cached));
            state.set_site(Arc::new(site));
            state.set_complete(crate::db::writer::load_complete(&pools.reader).await?);
            state.set_rules(crate::db::rules::load_rules(&pools.reader).await?);
            config.calibration.apply_pinned(&state);
            let now = chrono::Utc::now();
            let projects = &config.scanner.projects;
            let view = state.view();
            Ok(crate::http::explain::explain(
                &body,
                &view,
                pools.backend,
                projects,
                now,
            ))
        })
        .await?;
    println!("{}", serde_json::to_string_pretty(&explanation)?);
    Ok(())
}
