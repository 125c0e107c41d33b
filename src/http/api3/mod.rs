//! `POST /api3/json` (and `POST /<prefix>/api3/json`): the endpoint clients talk to.
//!
//! The envelope is parsed once into a [`RequestContext`] (method, params, body, timing), then
//! routed by [`ApiMethod`]: `read` to [`read`] (answered from the database when
//! [`crate::query::plan_read`] says the cache can answer it fully, otherwise passed through),
//! entity writes to [`write`] (passed through, then written back), everything else to
//! [`other`] (`info` from the stored site info, the rest passed through unchanged).
mod other;
mod read;
mod schema;
mod stats;
mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::Value as Json;
use tracing::{info, warn};

pub use schema::SchemaReplies;
pub use stats::{RequestStats, RequestsSnapshot};

use crate::actors::site_info::SiteInfoState;
use crate::actors::verifier::VerifierHandle;
use crate::actors::write_back::{WriteBack, WriteBackStats};
use crate::api3::envelope::Envelope;
use crate::api3::method::ApiMethod;
use crate::db::Pools;
use crate::error::ApiError;
use crate::http::auth::{AuthDecision, AuthGate};
use crate::metrics::Served;
use crate::query::PassReason;
use crate::state::CacheState;
use crate::upstream::passthrough::{PassThrough, Validation};

/// What the endpoint needs, shared by all workers.
pub struct Api3State {
    pub cache: Arc<CacheState>,
    pub site_info: Arc<SiteInfoState>,
    pub pools: Pools,
    pub max_body_bytes: usize,
    pub write_back_wait: Duration,
    pub write_back: Addr<WriteBack>,
    pub write_back_stats: Arc<WriteBackStats>,
    pub stats: Arc<RequestStats>,
    pub auth: Arc<AuthGate>,
    /// Locally answered reads to re-run against the site (`None`: verification off).
    pub verifier: Option<VerifierHandle>,
    /// `scanner.projects`: reads must be restricted to these projects to be local.
    pub projects: Vec<i64>,
    /// The site's stored schema replies (schema calls without a project).
    pub schema_replies: SchemaReplies,
}

/// One request, parsed: what every handler needs.
pub(super) struct RequestContext {
    req: HttpRequest,
    body: Bytes,
    state: web::Data<Api3State>,
    pass: web::Data<PassThrough>,
    method: ApiMethod,
    /// `params` of the envelope (`[auth, args]` for most methods).
    params: Vec<Json>,
    started: Instant,
}

/// What the credential gate says about answering this request locally.
pub(super) enum Gate {
    Local,
    Pass(PassReason),
    /// The site's authentication fault, remembered or just received.
    Fault(ApiError),
}

pub async fn api3(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<Api3State>,
    pass: web::Data<PassThrough>,
) -> HttpResponse {
    let started = Instant::now();
    let stats = state.stats.clone();
    let _in_flight = stats.metrics.start();
    stats
        .total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ctx = match RequestContext::parse(req, payload, state, pass, started).await {
        Ok(ctx) => ctx,
        Err(fault) => {
            stats.fault();
            return fault.response();
        }
    };
    match ctx.method {
        ApiMethod::Info => other::info(&ctx).await,
        ApiMethod::Read => read::read(&ctx).await,
        ApiMethod::SchemaRead | ApiMethod::SchemaEntityRead | ApiMethod::SchemaFieldRead => {
            schema::schema_call(&ctx).await
        }
        ref m if m.is_entity_write() => write::write(&ctx).await,
        _ => other::not_cached(&ctx).await,
    }
}

/// Reads the body up to the limit; a larger body is refused with a clear fault.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("sgcache: reading the request body failed: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::bad_request(format!(
                "sgcache: the request body exceeds {limit} bytes (server.max_body_bytes)"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

impl RequestContext {
    /// Reads and checks the envelope: JSON, a `method_name` string, `params` a list.
    async fn parse(
        req: HttpRequest,
        payload: web::Payload,
        state: web::Data<Api3State>,
        pass: web::Data<PassThrough>,
        started: Instant,
    ) -> Result<RequestContext, ApiError> {
        let body = read_body(payload, state.max_body_bytes).await?;
        let Envelope { method, params } = Envelope::parse(&body)?;
        state.stats.received(&method);
        Ok(RequestContext {
            req,
            body,
            state,
            pass,
            method,
            params,
            started,
        })
    }

    /// `params[1]`, the method's arguments.
    fn args(&self) -> Option<&Json> {
        self.params.get(1)
    }

    /// A fault sgcache answers itself (counted).
    fn fault(&self, fault: ApiError) -> HttpResponse {
        self.state.stats.fault();
        fault.response()
    }

    /// Answers `value` as the `results` of a locally served request (counted).
    fn local(&self, value: Json) -> HttpResponse {
        #[derive(serde::Serialize)]
        struct Results<'a> {
            results: &'a Json,
        }
        match serde_json::to_vec(&Results { results: &value }) {
            Ok(body) => self.local_body(Bytes::from(body)),
            Err(e) => self.fault(ApiError::new(
                crate::error::codes::GENERIC,
                format!("sgcache: encoding the reply: {e}"),
            )),
        }
    }

    /// Answers a locally served request with a ready `{"results": …}` body (counted).
    fn local_body(&self, body: Bytes) -> HttpResponse {
        self.state.stats.answered_locally(&self.method);
        self.state
            .stats
            .metrics
            .observe(&self.method, Served::Local, self.started.elapsed());
        HttpResponse::Ok()
            .content_type("application/json; charset=utf-8")
            .body(body)
    }

    /// Decides whether the caller may be answered from the cache (see [`crate::http::auth`]),
    /// asking the site about credentials it has not judged yet.
    async fn gate(&self) -> Gate {
        let state = &self.state;
        let auth = self.params.first().unwrap_or(&Json::Null);
        let creds = state.auth.credentials(auth);
        match state
            .auth
            .decide(creds.as_ref(), state.site_info.reachable())
        {
            AuthDecision::Local => Gate::Local,
            AuthDecision::PassThrough(reason) => Gate::Pass(reason),
            AuthDecision::Reject(fault) => Gate::Fault(fault),
            AuthDecision::Validate => {
                let Some(creds) = creds else {
                    return Gate::Pass(PassReason::NoCredentials);
                };
                match self.pass.validate(auth).await {
                    Validation::Accepted => {
                        state.auth.record(&creds, Ok(()));
                        Gate::Local
                    }
                    Validation::Rejected(fault) => {
                        state.auth.record(&creds, Err(fault.clone()));
                        Gate::Fault(fault)
                    }
                    Validation::Unreachable(_) => {
                        state.site_info.set_reachable(false);
                        Gate::Pass(PassReason::CredentialsUnverified)
                    }
                }
            }
        }
    }

    /// Forwards the request unchanged; returns the client's response and, when the site
    /// answered successfully, its `results`.
    async fn forward(
        &self,
        entity_type: Option<&str>,
        reason: PassReason,
    ) -> (HttpResponse, Option<Json>) {
        let state = &self.state;
        state.stats.passed(&reason);
        let forwarded = self.pass.forward(&self.req, self.body.clone()).await;
        let elapsed = self.started.elapsed();
        state
            .stats
            .metrics
            .observe(&self.method, Served::PassThrough, elapsed);
        let detail = reason.to_string();
        let (method, reason) = (self.method.name(), reason.label());
        match forwarded {
            Ok(forwarded) => {
                state.site_info.set_reachable(true);
                info!(
                    method,
                    entity_type,
                    served = "pass_through",
                    reason,
                    detail,
                    status = forwarded.status,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "api3"
                );
                let results = (forwarded.status == 200)
                    .then(|| serde_json::from_slice::<Json>(&forwarded.body).ok())
                    .flatten()
                    .filter(|v| v.get("exception").is_none_or(|e| e == &Json::Bool(false)))
                    .and_then(|mut v| v.get_mut("results").map(Json::take));
                (forwarded.into_response(), results)
            }
            Err(fault) => {
                state.site_info.set_reachable(false);
                warn!(method, entity_type, reason, error = %fault.message, "pass-through failed");
                (self.fault(fault), None)
            }
        }
    }
}
