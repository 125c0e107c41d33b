//! The election on PostgreSQL: the lock, the fence, serialized migrations, and the election
//! task with stand-in duties.
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sgcache::actors::leader::{Election, ElectionParts, LeaderDuties};
use sgcache::actors::schema_loader::SchemaLoaderStats;
use sgcache::cluster::follow::Follower;
use sgcache::cluster::pg::{LockSession, fence};
use sgcache::cluster::{ClusterState, Fence};
use sgcache::db::writer::DbWriterHandle;
use sgcache::db::{self, StoreError};
use sgcache::state::CacheState;

use sea_orm::TransactionTrait;

use super::{pg_db, pools, terminate};
use crate::support::{eventually, test_config};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Tries the lock every 20 ms until it is taken (fails after [`TIMEOUT`]).
async fn take_lead(session: &mut LockSession) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !session.try_lead().await.expect("try the lock") {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was never free"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn one_session_leads_and_another_takes_over_when_its_connection_dies() {
    let Some(test_db) = pg_db().await else { return };
    let pools = pools(&test_db).await;
    let mut a = LockSession::connect(&pools.reader, "a:1:127.0.0.1:1", TIMEOUT)
        .await
        .expect("a");
    let mut b = LockSession::connect(&pools.reader, "b:2:127.0.0.1:2", TIMEOUT)
        .await
        .expect("b");
    assert!(a.try_lead().await.expect("a tries"));
    assert!(!b.try_lead().await.expect("b tries"), "two leaders");
    assert!(a.holds_lead().await.expect("a checks"));
    assert!(!b.holds_lead().await.expect("b checks"));

    terminate(&pools, a.pid()).await;
    assert!(
        a.holds_lead().await.is_err(),
        "a dead session cannot confirm its lock"
    );
    take_lead(&mut b).await;
    assert!(b.holds_lead().await.expect("b checks"));
}

#[actix_web::test]
async fn a_dead_leaders_fenced_transaction_ends_before_the_next_leader_starts() {
    let Some(test_db) = pg_db().await else { return };
    let pools = pools(&test_db).await;
    let mut a = LockSession::connect(&pools.reader, "a", TIMEOUT)
        .await
        .expect("a");
    let mut b = LockSession::connect(&pools.reader, "b", TIMEOUT)
        .await
        .expect("b");
    assert!(a.try_lead().await.expect("a tries"));
    let a_pid = a.pid();

    // A leader-only transaction of `a` passes its fence, then `a`'s lock session dies.
    let in_flight = pools.writer.begin().await.expect("begin");
    fence(&in_flight, Fence::Session(a_pid))
        .await
        .expect("a leads");
    terminate(&pools, a_pid).await;
    take_lead(&mut b).await;

    // `b`'s handover waits for that transaction to end.
    let handed_over = Arc::new(AtomicU32::new(0));
    let flag = handed_over.clone();
    let handover = actix_web::rt::spawn(async move {
        b.take_fence().await.expect("fence");
        flag.store(1, Ordering::SeqCst);
        b
    });
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        handed_over.load(Ordering::SeqCst),
        0,
        "the handover did not wait"
    );
    in_flight.commit().await.expect("commit");
    let b = handover.await.expect("handover");
    assert_eq!(handed_over.load(Ordering::SeqCst), 1);

    // From now on a's fence is closed, b's open.
    let late = pools.writer.begin().await.expect("begin");
    let refused = fence(&late, Fence::Session(a_pid)).await;
    assert!(matches!(refused, Err(StoreError::NotLeader)), "{refused:?}");
    drop(late);
    let next = pools.writer.begin().await.expect("begin");
    fence(&next, Fence::Session(b.pid()))
        .await
        .expect("b leads");
    next.commit().await.expect("commit");
    let closed = pools.writer.begin().await.expect("begin");
    assert!(matches!(
        fence(&closed, Fence::Closed).await,
        Err(StoreError::NotLeader)
    ));
}

#[actix_web::test]
async fn instances_starting_together_migrate_one_after_the_other() {
    let Some(test_db) = pg_db().await else { return };
    let config = test_config(&test_db, None);
    let mut all = Vec::new();
    for _ in 0..4 {
        all.push(db::connect(&config.database).await.expect("connect"));
    }
    let results = futures_util::future::join_all(all.iter().map(db::migrate)).await;
    for result in results {
        result.expect("every instance migrates");
    }
}

/// Stand-in leader-only actors: counts starts and stops.
#[derive(Clone, Default)]
struct Counting {
    started: Arc<AtomicU32>,
    stopped: Arc<AtomicU32>,
}

impl LeaderDuties for Counting {
    fn start(&mut self) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }

    async fn stop(&mut self) {
        self.stopped.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counting {
    fn running(&self) -> bool {
        self.started.load(Ordering::SeqCst) > self.stopped.load(Ordering::SeqCst)
    }
}

#[actix_web::test]
async fn of_two_elections_exactly_one_leads_and_the_other_takes_over_within_the_bound() {
    let Some(test_db) = pg_db().await else { return };
    let mut config = test_config(&test_db, None);
    config.events.poll_interval = Duration::from_millis(200);
    let config = Arc::new(config);
    let pools = pools(&test_db).await;
    db::migrate(&pools).await.expect("migrate");
    let mut elections = Vec::new();
    for name in ["a:1:127.0.0.1:1", "b:2:127.0.0.1:2"] {
        let cache = CacheState::new();
        let cluster = Arc::new(ClusterState::elected(name.to_owned()));
        let (writer, _arbiter) =
            DbWriterHandle::start(pools.writer.clone(), pools.backend, cache.clone());
        let duties = Counting::default();
        let handle = Election::start(ElectionParts {
            config: config.clone(),
            cluster: cluster.clone(),
            pools: pools.clone(),
            writer,
            cache: cache.clone(),
            follower: Follower::new(
                config.clone(),
                pools.clone(),
                cache,
                Arc::new(SchemaLoaderStats::default()),
            ),
            duties: duties.clone(),
        });
        elections.push((cluster, duties, handle));
    }
    let leader = eventually(TIMEOUT, "a leader", || {
        let found = elections.iter().position(|(c, _, _)| c.is_leader());
        async move { found }
    })
    .await;
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    let leaders: Vec<bool> = elections.iter().map(|(c, _, _)| c.is_leader()).collect();
    assert_eq!(leaders.iter().filter(|l| **l).count(), 1, "{leaders:?}");
    let follower = 1 - leader;
    assert!(elections[leader].1.running());
    assert!(!elections[follower].1.running());
    eventually(TIMEOUT, "the follower knows the leader", || {
        let seen = elections[follower].0.leader().map(|l| l.instance);
        let leader_name = elections[leader].0.instance.clone();
        async move { (seen == Some(leader_name)).then_some(()) }
    })
    .await;

    // The leader's lock connection dies: the follower leads within one poll interval (plus
    // the time to start), and the old leader stops its duties.
    let Fence::Session(pid) = elections[leader].0.fence() else {
        panic!("the leader has no lock session")
    };
    let killed = std::time::Instant::now();
    terminate(&pools, pid).await;
    eventually(TIMEOUT, "the follower takes over", || {
        let led = elections[follower].0.is_leader();
        async move { led.then_some(()) }
    })
    .await;
    let failover = killed.elapsed();
    assert!(
        failover < Duration::from_millis(2 * 200 + 2000),
        "{failover:?}"
    );
    eventually(TIMEOUT, "the old leader steps down", || {
        let stepped = !elections[leader].0.is_leader() && !elections[leader].1.running();
        async move { stepped.then_some(()) }
    })
    .await;
    // The new leader publishes its role before it starts its duties: wait for them.
    eventually(TIMEOUT, "the new leader runs its duties", || {
        let running = elections[follower].1.running();
        async move { running.then_some(()) }
    })
    .await;
    let record = elections[follower].0.leader().expect("recorded");
    assert_eq!(record.term, 2);
    assert_eq!(record.takeovers(), 1);
    assert_eq!(elections[leader].0.leadership_lost(), 1);

    for (cluster, duties, handle) in elections {
        handle.stop().await;
        assert!(!duties.running());
        assert!(!cluster.is_leader());
    }
}
