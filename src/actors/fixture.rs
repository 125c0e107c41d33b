//! Test support: the cached schema selected from the fixture site schema
//! (`tests/fixtures/schema_read.json`).
use crate::schema::{CachedSchema, SelectionRules, SiteSchema};

/// The cached schema of the fixture site with `include` selected.
pub fn schema(include: &[&str]) -> CachedSchema {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/schema_read.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    let site =
        SiteSchema::from_json(&serde_json::from_str(&text).expect("JSON"), None).expect("schema");
    let rules = SelectionRules {
        include: include.iter().map(|t| (*t).to_owned()).collect(),
        exclude: vec![],
    };
    crate::schema::select(&site, &rules).expect("select").0
}
