//! `sgcache events --from ID`.
use serde_json::json;

use super::Bootstrap;
use crate::config::Config;
use crate::db::registry;
use crate::db::writer::{Apply, Checkpoint};

/// Stores the checkpoint `ID - 1` (no open gaps), so the daemon replays the event log from
/// event `ID` on (inclusive) at its next start. Run it while the daemon is stopped: a running
/// poller keeps its own position and would overwrite it.
pub async fn set_checkpoint(config: &Config, from: i64) -> anyhow::Result<()> {
    let previous = Bootstrap::open(config)
        .await?
        .run(async |boot| {
            let previous = registry::event_cursor(&boot.pools.reader)
                .await?
                .map(|c| c.last_event_id);
            boot.writer
                .apply(Apply {
                    ops: vec![],
                    checkpoint: Some(Checkpoint::Events {
                        last_event_id: (from - 1).max(0),
                        open_gaps: json!({}),
                    }),
                })
                .await?;
            Ok(previous)
        })
        .await?;
    println!(
        "event checkpoint set to {} (was {}): the daemon replays from event {from}",
        (from - 1).max(0),
        previous.map_or("none".to_owned(), |p| p.to_string())
    );
    Ok(())
}
