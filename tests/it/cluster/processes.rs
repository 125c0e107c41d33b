//! `kill -9` of the leader process among three `sgcache serve` processes on one PostgreSQL
//! database, in the middle of a stream of site writes.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::pg_db;
use crate::crash::{Sgcache, compare, seed};
use crate::support::{MockSite, eventually, every_type_complete};

/// `events.poll_interval` of [`Sgcache::spawn`].
const POLL: Duration = Duration::from_millis(50);

async fn statuses(instances: &[Sgcache]) -> Option<Vec<Value>> {
    let mut all = Vec::new();
    for instance in instances {
        all.push(instance.status().await?);
    }
    Some(all)
}

fn leaders(statuses: &[Value]) -> Vec<usize> {
    (0..statuses.len())
        .filter(|i| statuses[*i]["cluster"]["role"] == "leader")
        .collect()
}

#[actix_web::test]
async fn kill_9_of_the_leader_mid_stream_a_follower_leads_and_the_cache_equals_the_site() {
    let Some(test_db) = pg_db().await else { return };
    let site = MockSite::start();
    seed(&site, 300);
    let mut instances: Vec<Sgcache> = (0..3)
        .map(|_| Sgcache::spawn(&site, &test_db.url))
        .collect();
    let leader = eventually(
        Duration::from_secs(120),
        "three instances up, one leader, every type complete everywhere",
        || async {
            let all = statuses(&instances).await?;
            let leaders = leaders(&all);
            let primed = all.iter().all(every_type_complete);
            (leaders.len() == 1 && primed).then(|| leaders[0])
        },
    )
    .await;
    let leader = instances.swap_remove(leader);

    let mut killed = None;
    for round in 0..3i64 {
        for id in 1..=100i64 {
            site.update(
                "Shot",
                id,
                json!({"code": format!("r{round}-{id}"), "sg_cut_in": round * 1000 + id}),
            );
        }
        if round == 1 {
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            killed = Some(Instant::now());
            leader.kill9();
            break;
        }
    }
    let killed = killed.expect("the leader was killed");
    for id in 101..=150i64 {
        site.update(
            "Shot",
            id,
            json!({"assets": [{"type": "Asset", "id": 1 + (id % 20)}]}),
        );
    }
    site.delete("Shot", 151);

    let new = eventually(Duration::from_secs(10), "a new leader", || async {
        let found = leaders(&statuses(&instances).await?);
        (found.len() == 1).then(|| found[0])
    })
    .await;
    let failover = killed.elapsed();
    assert!(
        failover <= POLL * 2 + Duration::from_secs(3),
        "{failover:?}"
    );
    let last_event = site.last_event_id();
    eventually(
        Duration::from_secs(60),
        "the new leader caught up",
        || async {
            let s = instances[new].status().await?;
            (s["actors"]["event_poller"]["checkpoint"].as_i64() >= Some(last_event)).then_some(())
        },
    )
    .await;
    let status = instances[new].status().await.expect("status");
    assert_eq!(status["cluster"]["takeovers"], 1, "{}", status["cluster"]);
    drop(instances);
    compare(&test_db.url, &site).await;
}
