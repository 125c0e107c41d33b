//! `sgcache events --from ID`.
use serde_json::json;

use crate::config::Config;
use crate::db::registry;
use crate::db::writer::{Apply, Checkpoint, DbWriterHandle};
use crate::state::CacheState;

/// `sgcache events --from ID`: stores the checkpoint `ID - 1` (no open gaps), so the daemon
/// replays the event log from event `ID` on (inclusive) at its next start. Run it while the
/// daemon is stopped: a running poller keeps its own position and would overwrite it.
/// Returns the previous checkpoint, if any.
pub async fn set_checkpoint_command(config: &Config, from: i64) -> anyhow::Result<Option<i64>> {
    let pools = crate::db::connect(&config.database).await?;
    crate::db::migrate(&pools).await?;
    let previous = registry::event_cursor(&pools.reader)
        .await?
        .map(|c| c.last_event_id);
    let (writer, arbiter) =
        DbWriterHandle::start(pools.writer.clone(), pools.backend, CacheState::new());
    let result = writer
        .apply(Apply {
            ops: vec![],
            checkpoint: Some(Checkpoint::Events {
                last_event_id: (from - 1).max(0),
                open_gaps: json!({}),
            }),
        })
        .await;
    arbiter.stop();
    result?;
    Ok(previous)
}
