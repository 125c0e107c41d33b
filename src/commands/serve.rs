//! `sgcache serve` and `sgcache migrate`.
use std::net::TcpListener;

use anyhow::Context as _;

use super::Bootstrap;
use crate::config::{Config, mask_url_password};

/// Runs the daemon until SIGTERM/SIGINT or until a fatal failure of one of its parts.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&config.server.bind)
        .with_context(|| format!("cannot listen on {}", config.server.bind))?;
    let daemon = crate::Daemon::start(config, listener).await?;
    daemon.run_until_stopped().await?;
    Ok(())
}

/// Creates or upgrades sgcache's own tables.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    Bootstrap::open(config).await?.close().await;
    println!("migrated {}", mask_url_password(&config.database.url));
    Ok(())
}
