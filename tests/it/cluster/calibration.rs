//! Calibration on several instances: only the leader probes the site's rules; the followers
//! take the rules it stored from the database.
use std::time::Duration;

use serde_json::Value;
use sgcache_mock_site::MockSite;

use super::instances::{config, one_leader, start_all, stop_all};
use super::pg_db;
use crate::support::{eventually, eventually_explained, status_of};
use crate::writes::seed;

/// The decided rules on a `/status`: `(rule, value)`.
fn decided(status: &Value) -> Vec<(String, String)> {
    status["calibration"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["state"] == "decided")
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("rule"), s("value"))
        })
        .collect()
}

#[actix_web::test]
async fn only_the_leader_calibrates_and_the_followers_take_its_rules() {
    let Some(test_db) = pg_db().await else { return };
    let site = MockSite::start();
    seed(&site);
    let mut config = config(&test_db, &site);
    config.calibration.enabled = true;
    config.calibration.pinned = Default::default();
    let daemons = start_all(&config, 2).await;
    let leader = one_leader(&daemons).await;
    let follower = 1 - leader;

    eventually(Duration::from_secs(60), "the leader decides rules", || {
        let daemon = &daemons[leader];
        async move {
            let status = status_of(daemon).await;
            (status["calibration"]["runs"].as_u64() >= Some(1) && !decided(&status).is_empty())
                .then_some(())
        }
    })
    .await;
    // Against the leader's rules as they are now, not as they were at its first run: a type
    // primed after that run starts another one, which may decide more rules. On a timeout, both
    // instances' calibration and cluster state (a follower's failing syncs among them).
    eventually_explained(
        Duration::from_secs(20),
        "the follower serves the leader's rules",
        || {
            let daemons = &daemons;
            async move {
                let (l, f) = (
                    status_of(&daemons[leader]).await,
                    status_of(&daemons[follower]).await,
                );
                if decided(&l) == decided(&f) {
                    return Ok(());
                }
                Err(format!(
                    "leader: {} {}\nfollower: {} {}",
                    l["cluster"], l["calibration"], f["cluster"], f["calibration"]
                ))
            }
        },
    )
    .await;
    let status = status_of(&daemons[follower]).await;
    assert_eq!(status["calibration"]["runs"], 0, "the follower probed");
    assert_eq!(status["calibration"]["requests"], 0, "the follower probed");
    stop_all(daemons).await;
}
