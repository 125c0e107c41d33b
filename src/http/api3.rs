//! `POST /api3/json` (and `POST /<prefix>/api3/json`): the endpoint clients talk to.
//!
//! `info` is answered from the stored site info; `read` is answered from the database when
//! [`crate::query::plan_read`] says the cache can answer it fully, otherwise it is passed
//! through; every other method is passed through unchanged.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{Value as Json, json};
use tracing::{info, warn};

use crate::actors::site_info::SiteInfoState;
use crate::actors::verifier::{VerifierHandle, VerifyJob};
use crate::actors::write_back::{AfterRead, AfterWrite, WriteBack, WriteBackStats};
use crate::api3::read::ReadRequest;
use crate::db::Pools;
use crate::error::ApiError;
use crate::http::auth::{AuthDecision, AuthGate};
use crate::metrics::Served;
use crate::query::{Decision, plan_read};
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
}

/// Methods whose success changes entities: their effect is written back before answering.
const WRITE_METHODS: &[&str] = &["create", "update", "delete", "revive", "batch"];

/// Request counters for `/status`.
#[derive(Debug, Default)]
pub struct RequestStats {
    pub total: AtomicU64,
    pub local: AtomicU64,
    pub passed_through: AtomicU64,
    pub faults: AtomicU64,
    pub by_method: Mutex<BTreeMap<String, u64>>,
    pub pass_reasons: Mutex<BTreeMap<String, u64>>,
    /// Latency histograms, requests in flight, write-backs sent (`/metrics`, `/status`).
    pub metrics: crate::metrics::RequestMetrics,
}

impl RequestStats {
    fn count(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
        if let Ok(mut map) = map.lock() {
            *map.entry(key.to_owned()).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> Json {
        json!({
            "total": self.total.load(Ordering::Relaxed),
            "served_locally": self.local.load(Ordering::Relaxed),
            "passed_through": self.passed_through.load(Ordering::Relaxed),
            "faults": self.faults.load(Ordering::Relaxed),
            "by_method": self.by_method.lock().map(|m| m.clone()).unwrap_or_default(),
            "pass_through_reasons": self.pass_reasons.lock().map(|m| m.clone()).unwrap_or_default(),
        })
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

fn results(value: Json) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .json(json!({ "results": value }))
}

pub async fn api3(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<Api3State>,
    pass: web::Data<PassThrough>,
) -> HttpResponse {
    let started = Instant::now();
    let _in_flight = state.stats.metrics.start();
    state.stats.total.fetch_add(1, Ordering::Relaxed);
    let body = match read_body(payload, state.max_body_bytes).await {
        Ok(body) => body,
        Err(fault) => return fault_response(&state, fault),
    };
    let envelope: Json = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return fault_response(
                &state,
                ApiError::bad_request(format!("sgcache: the request body is not valid JSON: {e}")),
            );
        }
    };
    let Some(method) = envelope.get("method_name").and_then(Json::as_str) else {
        return fault_response(
            &state,
            ApiError::bad_request("sgcache: the request has no method_name string"),
        );
    };
    let method = method.to_owned();
    RequestStats::count(&state.stats.by_method, &method);
    let params = match envelope.get("params") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(params)) => params.clone(),
        Some(_) => {
            return fault_response(
                &state,
                ApiError::bad_request("sgcache: params must be a list"),
            );
        }
    };

    match method.as_str() {
        "info" => match state.site_info.reply() {
            Some(reply) => {
                state.stats.local.fetch_add(1, Ordering::Relaxed);
                state
                    .stats
                    .metrics
                    .observe("info", Served::Local, started.elapsed());
                results(reply)
            }
            None => {
                forward(
                    &req,
                    body,
                    &state,
                    &pass,
                    &method,
                    None,
                    "info_unknown",
                    started,
                )
                .await
                .0
            }
        },
        m if WRITE_METHODS.contains(&m) => {
            let (response, results) =
                forward(&req, body, &state, &pass, &method, None, "write", started).await;
            if let (Some(results), Some(args)) = (results, params.get(1)) {
                write_back(&state, &method, args.clone(), results).await;
            }
            response
        }
        "read" => {
            let Some(args) = params.get(1) else {
                return fault_response(
                    &state,
                    ApiError::bad_request("sgcache: read needs its parameters (params[1])"),
                );
            };
            let request = match ReadRequest::parse(args) {
                Ok(r) => r,
                Err(fault) => return fault_response(&state, fault),
            };
            let view = state.cache.view();
            let decision = plan_read(
                &request,
                &view.schema,
                &view.site,
                &view.complete,
                state.pools.backend,
            );
            match decision {
                Err(fault) => fault_response(&state, fault),
                Ok(Decision::PassThrough(reason)) => {
                    pass_read(
                        &req,
                        body,
                        &state,
                        &pass,
                        &request.entity_type,
                        reason.label(),
                        started,
                    )
                    .await
                }
                // A write of this type is still being written back: the site has the truth.
                Ok(Decision::Local(_)) if state.cache.has_pending_write(&request.entity_type) => {
                    pass_read(
                        &req,
                        body,
                        &state,
                        &pass,
                        &request.entity_type,
                        "pending_write",
                        started,
                    )
                    .await
                }
                Ok(Decision::Local(compiled)) => {
                    let auth = params.first().cloned().unwrap_or(Json::Null);
                    if let Some(refusal) = authorize(
                        &req,
                        &body,
                        &state,
                        &pass,
                        &auth,
                        &request.entity_type,
                        started,
                    )
                    .await
                    {
                        return refusal;
                    }
                    let answered_at = chrono::Utc::now();
                    match crate::db::reader::execute(&compiled, &state.pools.reader).await {
                        Ok(value) => {
                            // A copy for the verifier: never waits (a full queue drops it).
                            if let Some(verifier) = &state.verifier
                                && verifier.wants()
                            {
                                verifier.offer(VerifyJob {
                                    entity_type: request.entity_type.clone(),
                                    args: args.clone(),
                                    response: value.clone(),
                                    answered_at,
                                });
                            }
                            state.stats.local.fetch_add(1, Ordering::Relaxed);
                            state
                                .stats
                                .metrics
                                .observe("read", Served::Local, started.elapsed());
                            let count = value
                                .get("entities")
                                .and_then(Json::as_array)
                                .map_or(0, Vec::len);
                            info!(method, entity_type = %request.entity_type, served = "local", entities = count,
                                  elapsed_ms = started.elapsed().as_millis() as u64, "api3");
                            results(value)
                        }
                        Err(e) => {
                            // The database failed: the site can still answer.
                            warn!(error = %e, entity_type = %request.entity_type, "local read failed, passing through");
                            pass_read(
                                &req,
                                body,
                                &state,
                                &pass,
                                &request.entity_type,
                                "local_error",
                                started,
                            )
                            .await
                        }
                    }
                }
            }
        }
        _ => {
            forward(
                &req,
                body,
                &state,
                &pass,
                &method,
                None,
                "not_cached_method",
                started,
            )
            .await
            .0
        }
    }
}

/// Decides whether the caller may be answered from the cache (see [`crate::http::auth`]).
/// `None` = go ahead; `Some(response)` = the response to send instead (passed through or the
/// site's authentication fault).
async fn authorize(
    req: &HttpRequest,
    body: &Bytes,
    state: &Api3State,
    pass: &PassThrough,
    auth: &Json,
    entity_type: &str,
    started: Instant,
) -> Option<HttpResponse> {
    let creds = state.auth.credentials(auth);
    match state
        .auth
        .decide(creds.as_ref(), state.site_info.reachable())
    {
        AuthDecision::Local => None,
        AuthDecision::PassThrough(reason) => {
            Some(pass_read(req, body.clone(), state, pass, entity_type, reason, started).await)
        }
        AuthDecision::Reject(fault) => Some(fault_response(state, fault)),
        AuthDecision::Validate => {
            let creds = creds?;
            match pass.validate(auth).await {
                Validation::Accepted => {
                    state.auth.record(&creds, Ok(()));
                    None
                }
                Validation::Rejected(fault) => {
                    state.auth.record(&creds, Err(fault.clone()));
                    Some(fault_response(state, fault))
                }
                Validation::Unreachable(_) => {
                    state.site_info.set_reachable(false);
                    Some(
                        pass_read(
                            req,
                            body.clone(),
                            state,
                            pass,
                            entity_type,
                            "credentials_unverified",
                            started,
                        )
                        .await,
                    )
                }
            }
        }
    }
}

/// A read the cache does not answer: the site's reply goes to the client, and what it says
/// about cached types is written back in the background.
async fn pass_read(
    req: &HttpRequest,
    body: Bytes,
    state: &Api3State,
    pass: &PassThrough,
    entity_type: &str,
    reason: &str,
    started: Instant,
) -> HttpResponse {
    let (response, results) = forward(
        req,
        body,
        state,
        pass,
        "read",
        Some(entity_type),
        reason,
        started,
    )
    .await;
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

/// Entity types a write request names.
fn written_types(method: &str, args: &Json) -> BTreeSet<String> {
    let items: Vec<&Json> = if method == "batch" {
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
async fn write_back(state: &Api3State, method: &str, args: Json, results: Json) {
    let types = written_types(method, &args);
    for t in &types {
        state.cache.add_pending_write(t);
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let addr = state.write_back.clone();
    let cache = state.cache.clone();
    let msg = AfterWrite {
        method: method.to_owned(),
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
            method,
            wait_ms = state.write_back_wait.as_millis() as u64,
            "write-back still running; answering the client"
        );
    }
}

fn fault_response(state: &Api3State, fault: ApiError) -> HttpResponse {
    state.stats.faults.fetch_add(1, Ordering::Relaxed);
    fault.response()
}

/// Forwards the request unchanged; returns the client's response and, when the site answered
/// successfully, its `results`.
#[allow(clippy::too_many_arguments)] // one private helper, all request context
async fn forward(
    req: &HttpRequest,
    body: Bytes,
    state: &Api3State,
    pass: &PassThrough,
    method: &str,
    entity_type: Option<&str>,
    reason: &str,
    started: Instant,
) -> (HttpResponse, Option<Json>) {
    state.stats.passed_through.fetch_add(1, Ordering::Relaxed);
    RequestStats::count(&state.stats.pass_reasons, reason);
    let forwarded = pass.forward(req, body).await;
    state
        .stats
        .metrics
        .observe(method, Served::PassThrough, started.elapsed());
    match forwarded {
        Ok(forwarded) => {
            state.site_info.set_reachable(true);
            info!(
                method,
                entity_type,
                served = "pass_through",
                reason,
                status = forwarded.status,
                elapsed_ms = started.elapsed().as_millis() as u64,
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
            (fault_response(state, fault), None)
        }
    }
}
