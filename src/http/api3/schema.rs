//! `schema_read`, `schema_entity_read`, `schema_field_read` without a project: answered from
//! the site's replies that the schema loader stored (`sgcache_schema_snapshot`, newest row),
//! exactly as the site shaped them. The loader stores a new row when the site's schema changes
//! (at `schema.refresh_interval` and on schema events) and then publishes a new site schema in
//! the cache view; the replies are re-read from the database when that happens.
//!
//! Passed through: any `project` argument (the site then reports per-project visibility), a
//! type or field the stored schema does not have (the site's own error), arguments sgcache
//! does not know, and every call before a site reply is stored (or when the schema comes from
//! `[schema] file`, which is not the site's current answer).
use std::sync::{Arc, RwLock};

use actix_web::HttpResponse;
use actix_web::web::Bytes;
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value as Json, json};
use tracing::warn;

use super::{Gate, RequestContext};
use crate::api3::method::ApiMethod;
use crate::db::{StoreError, registry};
use crate::query::PassReason;
use crate::schema::SiteSchema;

/// One schema call without a project.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SchemaCall {
    Read,
    EntityRead,
    FieldRead {
        entity_type: String,
        field: Option<String>,
    },
}

impl SchemaCall {
    /// The call's form, or why it goes to the site.
    fn parse(method: &ApiMethod, args: Option<&Json>) -> Result<SchemaCall, PassReason> {
        let empty = Map::new();
        let args = match args {
            None | Some(Json::Null) => &empty,
            Some(Json::Object(map)) => map,
            Some(_) => return Err(unsupported(method, "arguments that are not a hash")),
        };
        if args.contains_key("project") {
            return Err(PassReason::SchemaWithProject);
        }
        let known: &[&str] = match method {
            ApiMethod::SchemaFieldRead => &["type", "field_name"],
            _ => &[],
        };
        if let Some(key) = args.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(unsupported(method, &format!("argument {key}")));
        }
        match method {
            ApiMethod::SchemaRead => Ok(SchemaCall::Read),
            ApiMethod::SchemaEntityRead => Ok(SchemaCall::EntityRead),
            _ => {
                let Some(Json::String(entity_type)) = args.get("type") else {
                    return Err(unsupported(method, "a type that is not a string"));
                };
                let field = match args.get("field_name") {
                    None | Some(Json::Null) => None,
                    Some(Json::String(f)) => Some(f.clone()),
                    Some(_) => {
                        return Err(unsupported(method, "a field_name that is not a string"));
                    }
                };
                Ok(SchemaCall::FieldRead {
                    entity_type: entity_type.clone(),
                    field,
                })
            }
        }
    }
}

fn unsupported(method: &ApiMethod, what: &str) -> PassReason {
    PassReason::UnsupportedFeature(format!("{method} with {what}"))
}

/// The site's stored replies, ready to send.
#[derive(Debug)]
struct StoredSchema {
    /// The `schema_read` reply: `{Type: {field: definition}}`.
    fields: Map<String, Json>,
    /// `{"results": …}` bodies of the whole replies.
    schema_read: Bytes,
    schema_entity_read: Option<Bytes>,
}

impl StoredSchema {
    fn from_row(schema_read: &str, schema_entity_read: Option<&str>) -> Option<StoredSchema> {
        let fields: Map<String, Json> = serde_json::from_str(schema_read).ok()?;
        let body = |results: &Json| Bytes::from(json!({ "results": results }).to_string());
        let schema_entity_read = match schema_entity_read {
            Some(text) => Some(body(&serde_json::from_str::<Json>(text).ok()?)),
            None => None,
        };
        Some(StoredSchema {
            schema_read: body(&Json::Object(fields.clone())),
            fields,
            schema_entity_read,
        })
    }

    /// The reply body, or why the site must answer.
    fn answer(&self, call: &SchemaCall) -> Result<Bytes, PassReason> {
        match call {
            SchemaCall::Read => Ok(self.schema_read.clone()),
            SchemaCall::EntityRead => self
                .schema_entity_read
                .clone()
                .ok_or(PassReason::SchemaNotStored),
            SchemaCall::FieldRead { entity_type, field } => {
                let Some(Json::Object(fields)) = self.fields.get(entity_type) else {
                    return Err(PassReason::SchemaUnknownName);
                };
                let results = match field {
                    None => Json::Object(fields.clone()),
                    Some(f) => {
                        let def = fields.get(f).ok_or(PassReason::SchemaUnknownName)?;
                        json!({ f.as_str(): def })
                    }
                };
                Ok(Bytes::from(json!({ "results": results }).to_string()))
            }
        }
    }
}

/// The replies read for one site schema (`stored: None`: none was stored).
#[derive(Debug)]
struct Loaded {
    site: Arc<SiteSchema>,
    stored: Option<Arc<StoredSchema>>,
}

/// The stored replies, re-read whenever the cache view carries a new site schema.
#[derive(Debug, Default)]
pub struct SchemaReplies {
    loaded: RwLock<Option<Loaded>>,
}

impl SchemaReplies {
    async fn current(
        &self,
        site: &Arc<SiteSchema>,
        db: &DatabaseConnection,
    ) -> Result<Option<Arc<StoredSchema>>, StoreError> {
        if let Ok(loaded) = self.loaded.read()
            && let Some(loaded) = loaded.as_ref()
            && Arc::ptr_eq(&loaded.site, site)
        {
            return Ok(loaded.stored.clone());
        }
        let stored = match registry::latest_snapshot(db).await? {
            Some(row) if row.source == "site" => {
                let stored =
                    StoredSchema::from_row(&row.schema_read, row.schema_entity_read.as_deref());
                if stored.is_none() {
                    warn!(
                        snapshot = row.id,
                        "the stored schema replies are not valid JSON"
                    );
                }
                stored.map(Arc::new)
            }
            _ => None,
        };
        if let Ok(mut loaded) = self.loaded.write() {
            *loaded = Some(Loaded {
                site: site.clone(),
                stored: stored.clone(),
            });
        }
        Ok(stored)
    }
}

pub(super) async fn schema_call(ctx: &RequestContext) -> HttpResponse {
    let body = match stored_answer(ctx).await {
        Ok(body) => body,
        Err(reason) => return ctx.forward(None, reason).await.0,
    };
    match ctx.gate().await {
        Gate::Local => ctx.local_body(body),
        Gate::Pass(reason) => ctx.forward(None, reason).await.0,
        Gate::Fault(fault) => ctx.fault(fault),
    }
}

/// The stored reply to this call, or why the site must answer it.
async fn stored_answer(ctx: &RequestContext) -> Result<Bytes, PassReason> {
    let call = SchemaCall::parse(&ctx.method, ctx.args())?;
    let site = ctx.state.cache.view().site;
    let stored = ctx
        .state
        .schema_replies
        .current(&site, &ctx.state.pools.reader)
        .await
        .map_err(|e| {
            warn!(error = %e, "reading the stored schema failed, passing through");
            PassReason::LocalError
        })?
        .ok_or(PassReason::SchemaNotStored)?;
    stored.answer(&call)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: &str, args: Json) -> Result<SchemaCall, PassReason> {
        SchemaCall::parse(&ApiMethod::parse(method), Some(&args))
    }

    #[test]
    fn forms_without_a_project_are_local_and_the_rest_pass_through() {
        assert_eq!(
            SchemaCall::parse(&ApiMethod::SchemaRead, None),
            Ok(SchemaCall::Read)
        );
        assert_eq!(parse("schema_read", json!({})), Ok(SchemaCall::Read));
        assert_eq!(
            parse("schema_entity_read", Json::Null),
            Ok(SchemaCall::EntityRead)
        );
        assert_eq!(
            parse(
                "schema_field_read",
                json!({"type": "Shot", "field_name": "code"})
            ),
            Ok(SchemaCall::FieldRead {
                entity_type: "Shot".into(),
                field: Some("code".into())
            })
        );
        assert_eq!(
            parse("schema_field_read", json!({"type": "Shot"})),
            Ok(SchemaCall::FieldRead {
                entity_type: "Shot".into(),
                field: None
            })
        );
        let project = json!({"type": "Project", "id": 1});
        for method in ["schema_read", "schema_entity_read", "schema_field_read"] {
            assert_eq!(
                parse(method, json!({"type": "Shot", "project": project})),
                Err(PassReason::SchemaWithProject)
            );
        }
        for (method, args) in [
            ("schema_read", json!({"locale": "auto"})),
            ("schema_field_read", json!({})),
            ("schema_field_read", json!({"type": 3})),
            (
                "schema_field_read",
                json!({"type": "Shot", "field_name": ["code"]}),
            ),
            ("schema_entity_read", json!([])),
        ] {
            assert_eq!(
                parse(method, args.clone()).map_err(|r| r.label()),
                Err("unsupported_feature"),
                "{method} {args}"
            );
        }
    }

    #[test]
    fn answers_are_the_stored_replies_and_unknown_names_pass_through() {
        let read = r#"{"Shot":{"code":{"data_type":{"editable":false,"value":"text"}},"id":{"data_type":{"editable":false,"value":"number"}}}}"#;
        let stored = StoredSchema::from_row(read, None).expect("valid");
        let body = |call| String::from_utf8(stored.answer(&call).expect("local").to_vec());
        assert_eq!(
            body(SchemaCall::Read),
            Ok(format!("{{\"results\":{read}}}"))
        );
        let field = |entity_type: &str, field: Option<&str>| SchemaCall::FieldRead {
            entity_type: entity_type.into(),
            field: field.map(Into::into),
        };
        assert_eq!(
            body(field("Shot", Some("code"))),
            Ok(r#"{"results":{"code":{"data_type":{"editable":false,"value":"text"}}}}"#.into())
        );
        assert_eq!(
            body(field("Shot", None)),
            Ok(format!("{{\"results\":{}}}", &read[8..read.len() - 1]))
        );
        for call in [field("Nope", None), field("Shot", Some("nope"))] {
            assert_eq!(stored.answer(&call), Err(PassReason::SchemaUnknownName));
        }
        assert_eq!(
            stored.answer(&SchemaCall::EntityRead),
            Err(PassReason::SchemaNotStored)
        );
        assert!(StoredSchema::from_row("not json", None).is_none());
    }
}
