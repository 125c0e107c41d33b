//! `create`, `update`, `delete`, `revive`, `batch`: forwarded unchanged; a successful write's
//! effect is cached (the write-back) before the client is answered.
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use actix_web::HttpResponse;
use serde_json::Value as Json;
use tracing::warn;

use super::{Api3State, RequestContext};
use crate::actors::write_back::AfterWrite;
use crate::api3::method::ApiMethod;
use crate::query::PassReason;

pub(super) async fn write(ctx: &RequestContext) -> HttpResponse {
    let (response, results) = ctx.forward(None, PassReason::Write).await;
    if let (Some(results), Some(args)) = (results, ctx.args()) {
        write_back(&ctx.state, &ctx.method, args.clone(), results).await;
    }
    response
}

/// Entity types a write request names.
fn written_types(method: &ApiMethod, args: &Json) -> BTreeSet<String> {
    let items: Vec<&Json> = if *method == ApiMethod::Batch {
        args.as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    } else {
        vec![args]
    };
    items
        .into_iter()
        .filter_map(|i| i.get("type").and_then(Json::as_str).map(str::to_owned))
        .collect()
}

/// Caches a successful write's effect before the client is answered, waiting at most
/// `server.write_back_wait`. While it runs, reads of the written types pass through; if the
/// wait runs out the client is answered anyway and those reads keep passing through until the
/// write-back lands.
async fn write_back(state: &Api3State, method: &ApiMethod, args: Json, results: Json) {
    let types = written_types(method, &args);
    for t in &types {
        state.cache.add_pending_write(t);
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let addr = state.write_back.clone();
    let cache = state.cache.clone();
    let msg = AfterWrite {
        method: method.name().to_owned(),
        args,
        results,
    };
    state
        .stats
        .metrics
        .write_backs_sent
        .fetch_add(1, Ordering::Relaxed);
    // Spawned so that it completes even when the wait below gives up.
    actix_web::rt::spawn(async move {
        let outcome = addr.send(msg).await;
        for t in &types {
            cache.finish_pending_write(t);
        }
        let _ = done_tx.send(outcome);
    });
    if actix_web::rt::time::timeout(state.write_back_wait, done_rx)
        .await
        .is_err()
    {
        state
            .write_back_stats
            .wait_exceeded
            .fetch_add(1, Ordering::Relaxed);
        warn!(
            method = method.name(),
            wait_ms = state.write_back_wait.as_millis() as u64,
            "write-back still running; answering the client"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn written_types_are_named_by_the_write_or_each_batch_item() {
        let one = written_types(&ApiMethod::Update, &json!({"type": "Shot", "id": 1}));
        assert_eq!(one.into_iter().collect::<Vec<_>>(), ["Shot"]);
        let batch = written_types(
            &ApiMethod::Batch,
            &json!([{"type": "Task"}, {"type": "Shot"}, {"type": "Task"}, {"id": 3}]),
        );
        assert_eq!(batch.into_iter().collect::<Vec<_>>(), ["Shot", "Task"]);
    }
}
