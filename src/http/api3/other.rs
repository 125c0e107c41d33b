//! Every method that is neither `read` nor an entity write: `info` is answered from the
//! site's stored `info` reply; the rest go to the site unchanged.
use actix_web::HttpResponse;

use super::RequestContext;
use crate::query::PassReason;

/// `info`, from the stored site reply (plus an `sgcache` key); passed through until one is
/// stored.
pub(super) async fn info(ctx: &RequestContext) -> HttpResponse {
    match ctx.state.site_info.reply() {
        Some(reply) => ctx.local(reply),
        None => not_answered(ctx, PassReason::InfoUnknown).await,
    }
}

/// A method sgcache never answers itself.
pub(super) async fn not_cached(ctx: &RequestContext) -> HttpResponse {
    not_answered(ctx, PassReason::NotCachedMethod).await
}

async fn not_answered(ctx: &RequestContext, reason: PassReason) -> HttpResponse {
    ctx.forward(None, reason).await.0
}
