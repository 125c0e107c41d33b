//! Where the poller is in the event stream: the last event id processed and the open gaps,
//! stored together as the checkpoint.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::db::writer::Checkpoint;

/// Ids below the last event id processed that have not appeared yet → when first noticed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenGaps(pub BTreeMap<i64, DateTime<Utc>>);

/// The stored form of [`OpenGaps`] (`sgcache_event_cursor.open_gaps`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum StoredGaps {
    /// `{"<event id>": "YYYY-MM-DDTHH:MM:SSZ"}`: what is written.
    FirstSeen(BTreeMap<String, Json>),
    /// An old or hand-written list of ids: first seen now.
    Ids(Vec<Json>),
}

impl OpenGaps {
    /// The stored JSON: `{"<event id>": "<first seen>"}`.
    pub fn to_json(&self) -> Json {
        let stored = StoredGaps::FirstSeen(
            self.0
                .iter()
                .map(|(id, at)| (id.to_string(), Json::String(crate::time::format(*at))))
                .collect(),
        );
        serde_json::to_value(stored).unwrap_or_default()
    }

    /// Reads the stored JSON; anything unreadable is no gaps. A first-seen time that is not a
    /// time counts as long ago (the gap is declared missing at the next poll).
    pub fn parse(text: &str) -> OpenGaps {
        let now = Utc::now();
        let gaps = match serde_json::from_str::<StoredGaps>(text) {
            Ok(StoredGaps::FirstSeen(map)) => map
                .into_iter()
                .filter_map(|(k, v)| {
                    let at = match v.as_str() {
                        Some(s) => crate::time::parse(s).unwrap_or(DateTime::UNIX_EPOCH),
                        None => now,
                    };
                    Some((k.parse().ok()?, at))
                })
                .collect(),
            Ok(StoredGaps::Ids(ids)) => ids
                .iter()
                .filter_map(Json::as_i64)
                .map(|id| (id, now))
                .collect(),
            Err(_) => BTreeMap::new(),
        };
        OpenGaps(gaps)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where the poller is in the stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The highest event id processed (the stored checkpoint).
    pub last_event_id: i64,
    pub open_gaps: OpenGaps,
}

impl Cursor {
    pub(super) fn checkpoint(&self) -> Checkpoint {
        Checkpoint::Events {
            last_event_id: self.last_event_id,
            open_gaps: self.open_gaps.to_json(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_round_trip() {
        let at = crate::time::parse("2026-01-01T00:00:00Z").expect("time");
        let gaps = OpenGaps(BTreeMap::from([(7, at)]));
        let text = gaps.to_json().to_string();
        assert_eq!(text, r#"{"7":"2026-01-01T00:00:00Z"}"#);
        assert_eq!(OpenGaps::parse(&text), gaps);
        assert_eq!(
            OpenGaps::parse("[3]").0.keys().collect::<Vec<_>>(),
            vec![&3]
        );
        assert!(OpenGaps::parse("garbage").is_empty());
        assert!(OpenGaps::parse("{}").is_empty());
        // A first-seen time that is not a time: long ago.
        assert_eq!(
            OpenGaps::parse(r#"{"5": "yesterday"}"#).0.get(&5),
            Some(&DateTime::UNIX_EPOCH)
        );
    }
}
