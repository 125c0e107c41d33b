//! `read`: answered from the database when the planner, the pending writes and the credential
//! gate allow it; otherwise passed through, and what the site answers about cached types is
//! written back in the background.
use std::sync::atomic::Ordering;

use actix_web::HttpResponse;
use serde_json::Value as Json;
use tracing::{info, warn};

use super::{Gate, RequestContext};
use crate::actors::verifier::VerifyJob;
use crate::actors::write_back::AfterRead;
use crate::api3::read::ReadRequest;
use crate::error::ApiError;
use crate::query::{CompiledRead, Decision, PassReason, plan_read_restricted};

pub(super) async fn read(ctx: &RequestContext) -> HttpResponse {
    let Some(args) = ctx.args() else {
        return ctx.fault(ApiError::bad_request(
            "sgcache: read needs its parameters (params[1])",
        ));
    };
    let request = match ReadRequest::parse(args) {
        Ok(r) => r,
        Err(fault) => return ctx.fault(fault),
    };
    let view = ctx.state.cache.view();
    let decision = plan_read_restricted(
        &request,
        &view.schema,
        &view.site,
        &view.complete,
        &view.rules,
        ctx.state.pools.backend,
        &ctx.state.projects,
    );
    let entity_type = request.entity_type.as_str();
    match decision {
        Err(fault) => ctx.fault(fault),
        Ok(Decision::PassThrough(reason)) => pass_read(ctx, entity_type, reason).await,
        // A write of this type is still being written back: the site has the truth.
        Ok(Decision::Local(_)) if ctx.state.cache.has_pending_write(entity_type) => {
            pass_read(ctx, entity_type, PassReason::PendingWrite).await
        }
        Ok(Decision::Local(compiled)) => match ctx.gate().await {
            Gate::Local => local_read(ctx, args, &compiled).await,
            Gate::Pass(reason) => pass_read(ctx, entity_type, reason).await,
            Gate::Fault(fault) => ctx.fault(fault),
        },
    }
}

/// Runs the compiled read and answers it; hands a copy to the verifier.
async fn local_read(ctx: &RequestContext, args: &Json, compiled: &CompiledRead) -> HttpResponse {
    let entity_type = compiled.entity_type.as_str();
    let answered_at = chrono::Utc::now();
    match crate::db::reader::execute_body(compiled, &ctx.state.pools).await {
        Ok(body) => {
            // A copy for the verifier: never waits (a full queue drops it).
            if let Some(verifier) = &ctx.state.verifier
                && verifier.wants()
                && let Ok(mut value) = serde_json::from_slice::<Json>(&body.bytes)
            {
                verifier.offer(VerifyJob {
                    entity_type: entity_type.to_owned(),
                    args: args.clone(),
                    response: value["results"].take(),
                    answered_at,
                });
            }
            info!(
                method = "read",
                entity_type,
                served = "local",
                entities = body.entities,
                elapsed_ms = ctx.started.elapsed().as_millis() as u64,
                "api3"
            );
            ctx.local_body(body.bytes.into())
        }
        Err(e) => {
            // The database failed: the site can still answer.
            warn!(error = %e, entity_type, "local read failed, passing through");
            pass_read(ctx, entity_type, PassReason::LocalError).await
        }
    }
}

/// A read the cache does not answer: the site's reply goes to the client, and what it says
/// about cached types is written back in the background.
async fn pass_read(ctx: &RequestContext, entity_type: &str, reason: PassReason) -> HttpResponse {
    let (response, results) = ctx.forward(Some(entity_type), reason).await;
    let state = &ctx.state;
    if let Some(results) = results
        && state.cache.view().schema.types.contains_key(entity_type)
    {
        state
            .stats
            .metrics
            .write_backs_sent
            .fetch_add(1, Ordering::Relaxed);
        let msg = AfterRead {
            entity_type: entity_type.to_owned(),
            results,
        };
        let addr = state.write_back.clone();
        actix_web::rt::spawn(async move {
            let _ = addr.send(msg).await;
        });
    }
    response
}
