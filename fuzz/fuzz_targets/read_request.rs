//! Any bytes as an api3 request body: parse the envelope and the read arguments, then plan and
//! compile the read for both backends against the fixture schema. Nothing may panic.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sgcache::api3::read::ReadRequest;
use sgcache::query::plan_read;
use sgcache::query::rules::Rules;
use sgcache::schema::{Backend, CachedSchema, SelectionRules, SiteSchema, select};

struct Schemas {
    site: SiteSchema,
    cached: CachedSchema,
    complete: BTreeSet<String>,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let json = serde_json::from_str(include_str!("../../tests/fixtures/schema_read.json")).expect("fixture");
        let site = SiteSchema::from_json(&json, None).expect("schema");
        let rules = SelectionRules { include: vec!["*".into()], exclude: vec![] };
        let (cached, _) = select(&site, &rules).expect("select");
        let complete = cached.types.keys().cloned().collect();
        Schemas { site, cached, complete }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let args = body.get("params").and_then(|p| p.get(1)).unwrap_or(&body);
    let Ok(request) = ReadRequest::parse(args) else { return };
    let s = schemas();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let _ = plan_read(&request, &s.cached, &s.site, &s.complete, &Rules::assumed(), backend);
    }
});
