//! `POST /explain` (and `sgcache explain`): for a request body as `/api3/json` takes it, what
//! sgcache would do: the decision (`local`, `pass_through` or `fault`), the reason (the
//! pass-through reason's label), the calibrated rules the decision relied on with their state
//! and evidence, and for a local read the SQL for the database's backend.
//!
//! The decision is the read planner's for a trusted caller whose credentials the site accepts
//! (the credential gate and a pending write-back can still send a read to the site).
use actix_web::HttpResponse;
use actix_web::web::{self, Bytes};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::actors::calibrator::RuleStatus;
use crate::api3::envelope::Envelope;
use crate::api3::method::ApiMethod;
use crate::api3::read::ReadRequest;
use crate::error::ApiError;
use crate::http::api3::Api3State;
use crate::query::paths::Schemas;
use crate::query::plan::explain_read_at;
use crate::query::{Decision, PassReason};
use crate::schema::Backend;
use crate::state::CacheView;

/// What sgcache would do with one request.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// The method as sent (`null` when the envelope is invalid).
    pub method: Option<String>,
    /// `local`, `pass_through` or `fault`.
    pub decision: &'static str,
    /// The pass-through reason's label (as counted on `/status`), or the fault's code.
    pub reason: Option<&'static str>,
    /// The reason or fault in words.
    pub detail: Option<String>,
    /// The calibrated rules the decision relied on.
    pub rules: Vec<RuleStatus>,
    /// A local read's statements.
    pub sql: Option<ExplainSql>,
}

/// A local read's SQL as the backend runs it.
#[derive(Clone, Debug, Serialize)]
pub struct ExplainSql {
    pub backend: &'static str,
    /// The page (ids and sort keys in an inner query, the return fields around it).
    pub page: String,
    /// The page's bind values, in placeholder order.
    pub values: Vec<String>,
    /// The COUNT, run when counts are asked for and the page does not tell them.
    pub count: String,
    /// One statement per multi-entity return field, over the page's ids (run before it).
    pub multi_entity: Vec<String>,
}

impl Explanation {
    fn fault(method: Option<&ApiMethod>, e: &ApiError) -> Explanation {
        Explanation {
            method: method.map(ToString::to_string),
            decision: "fault",
            reason: Some("fault"),
            detail: Some(e.message.clone()),
            rules: Vec::new(),
            sql: None,
        }
    }

    fn pass(method: &ApiMethod, reason: &PassReason) -> Explanation {
        Explanation {
            method: Some(method.to_string()),
            decision: "pass_through",
            reason: Some(reason.label()),
            detail: Some(reason.to_string()),
            rules: Vec::new(),
            sql: None,
        }
    }

    fn local(method: &ApiMethod, detail: &str) -> Explanation {
        Explanation {
            method: Some(method.to_string()),
            decision: "local",
            reason: None,
            detail: Some(detail.to_owned()),
            rules: Vec::new(),
            sql: None,
        }
    }
}

/// Explains a request body against the cache as `view` shows it.
pub fn explain(
    body: &[u8],
    view: &CacheView,
    backend: Backend,
    projects: &[i64],
    now: DateTime<Utc>,
) -> Explanation {
    let envelope = match Envelope::parse(body) {
        Ok(e) => e,
        Err(e) => return Explanation::fault(None, &e),
    };
    let method = &envelope.method;
    match method {
        ApiMethod::Read => explain_read(&envelope, view, backend, projects, now),
        ApiMethod::Info => Explanation::local(method, "answered from the site's stored info reply"),
        ApiMethod::SchemaRead | ApiMethod::SchemaEntityRead | ApiMethod::SchemaFieldRead => {
            Explanation::local(
                method,
                "answered from the site's stored schema replies when called without a project",
            )
        }
        m if m.is_entity_write() => Explanation::pass(method, &PassReason::Write),
        _ => Explanation::pass(method, &PassReason::NotCachedMethod),
    }
}

fn explain_read(
    envelope: &Envelope,
    view: &CacheView,
    backend: Backend,
    projects: &[i64],
    now: DateTime<Utc>,
) -> Explanation {
    let method = &envelope.method;
    let Some(args) = envelope.args() else {
        let e = ApiError::bad_request("sgcache: read needs its parameters (params[1])");
        return Explanation::fault(Some(method), &e);
    };
    let request = match ReadRequest::parse(args) {
        Ok(r) => r,
        Err(e) => return Explanation::fault(Some(method), &e),
    };
    let schemas = Schemas {
        cached: &view.schema,
        site: &view.site,
        complete: &view.complete,
    };
    let plan = match explain_read_at(&request, schemas, &view.rules, backend, projects, now) {
        Ok(p) => p,
        Err(e) => return Explanation::fault(Some(method), &e),
    };
    let mut out = match &plan.decision {
        Decision::PassThrough(reason) => Explanation::pass(method, reason),
        Decision::Local(c) => {
            let (page, values) = c.page.render(c.dialect);
            let mut e = Explanation::local(method, "answered from the cache");
            e.sql = Some(ExplainSql {
                backend: backend.name(),
                page,
                values: values.iter().map(|v| format!("{v:?}")).collect(),
                count: c.count.render(c.dialect).0,
                multi_entity: (c.multis.iter())
                    .map(|m| m.over_rows(c.dialect, &c.ids, &[]).render(c.dialect).0)
                    .collect(),
            });
            e
        }
    };
    out.rules = plan
        .rules_used
        .iter()
        .map(|&r| RuleStatus::of(&view.rules, r))
        .collect();
    out
}

/// `POST /explain`: the body `/api3/json` takes; answers an [`Explanation`].
pub async fn handler(body: Bytes, state: web::Data<Api3State>) -> HttpResponse {
    let view = state.cache.view();
    let (backend, projects) = (state.pools.backend, &state.projects);
    HttpResponse::Ok().json(explain(&body, &view, backend, projects, Utc::now()))
}
