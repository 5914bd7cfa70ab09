//! Faults on the scale-out deployment (PostgreSQL + Redis + `dms` processes), each checked by
//! counting: nothing lost, nothing committed twice, and duplicates (at-least-once) no more than
//! the leases held when the fault struck.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{Answer, Cluster, LEASE_SECONDS};

const ALL_DONE: Duration = Duration::from_secs(180);

/// Waits until the receiver has `count` requests.
async fn wait_received(cluster: &Cluster, count: usize) {
    let started = std::time::Instant::now();
    while cluster.received().0 < count {
        assert!(
            started.elapsed() < ALL_DONE,
            "the receiver got {:?}",
            cluster.received()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_2000_deliveries_in_flight_loses_nothing() {
    // A receiver slow enough that every claimed delivery is still in flight at the kill.
    let mut cluster = Cluster::start(Answer::status(200).after(Duration::from_secs(2))).await;
    let (api_node, _) = cluster.node(&[("DMS_WORKER_ENABLED", "false")]).await;
    let (admin, bob) = cluster.prepare(&api_node).await;
    cluster.submit(&admin, &bob, 2000, 0).await;

    let wide = [("DMS_DISPATCH_CONCURRENCY", "2000")];
    let (worker, _) = cluster.node(&wide).await;
    wait_received(&cluster, 1000).await;
    worker.kill9().await;
    let held = cluster
        .counts()
        .await
        .get("delivering")
        .copied()
        .unwrap_or(0);
    assert!(held > 0, "the kill struck with deliveries in flight");

    let (replacement, _) = cluster.node(&wide).await;
    cluster.wait_delivered(2000, ALL_DONE).await;
    let counts = cluster.counts().await;
    assert_eq!(counts.values().sum::<i64>(), 2000, "lost: {counts:?}");
    assert_eq!(cluster.double_commits().await, 0);
    let (requests, distinct) = cluster.received();
    assert_eq!(distinct, 2000, "every message reached the receiver");
    assert!(
        (requests - distinct) as i64 <= held,
        "{} duplicates, {held} leases held at the kill",
        requests - distinct
    );
    replacement.terminate().await;
    api_node.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushall_with_2000_scheduled_loses_nothing() {
    let mut cluster = Cluster::start(Answer::status(200)).await;
    let (node, _) = cluster.node(&[]).await;
    let (admin, bob) = cluster.prepare(&node).await;
    // Long enough that the flush finds the messages still scheduled even on a slow CI machine
    // (submitting 2000 under a parallel test run takes 5 to 10 s here, and machines differ by
    // 2 to 3 times from day to day).
    let submitting = std::time::Instant::now();
    cluster.submit(&admin, &bob, 2000, 60).await;
    let before = cluster.counts().await;
    assert!(
        before.get("scheduled").copied().unwrap_or(0) > 1000,
        "the flush strikes while most messages wait: {before:?} after submitting for {:?}",
        submitting.elapsed()
    );
    let in_flight = before.get("delivering").copied().unwrap_or(0);
    cluster.redis.flushall().await;

    cluster.wait_delivered(2000, ALL_DONE).await;
    assert_eq!(cluster.double_commits().await, 0);
    let (requests, distinct) = cluster.received();
    assert_eq!(distinct, 2000, "no loss");
    assert!(
        (requests - distinct) as i64 <= in_flight,
        "{requests} requests: duplicates only for the {in_flight} deliveries in flight"
    );
    node.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_while_redis_is_down_are_kept_and_delivered_when_it_returns() {
    let mut cluster = Cluster::start(Answer::status(200)).await;
    let (node, _) = cluster.node(&[]).await;
    let (admin, bob) = cluster.prepare(&node).await;
    cluster.redis.stop().await;
    // Every submit is answered 201: the row is committed, the index entry waits for Redis.
    cluster.submit(&admin, &bob, 200, 0).await;
    assert_eq!(cluster.counts().await.get("scheduled"), Some(&200));
    assert_eq!(cluster.received().0, 0);

    cluster.redis.start_again().await;
    cluster.wait_delivered(200, ALL_DONE).await;
    assert_eq!(cluster.double_commits().await, 0);
    assert_eq!(cluster.received(), (200, 200));
    node.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_work_and_one_dying_loses_nothing() {
    let mut cluster = Cluster::start(Answer::status(200).after(Duration::from_millis(200))).await;
    let (a, _) = cluster.node(&[]).await;
    let (b, _) = cluster.node(&[]).await;
    let (admin, bob) = cluster.prepare(&a).await;
    cluster.submit(&admin, &bob, 1000, 0).await;
    wait_received(&cluster, 300).await;
    a.kill9().await;
    let held = cluster
        .counts()
        .await
        .get("delivering")
        .copied()
        .unwrap_or(0);

    cluster.wait_delivered(1000, ALL_DONE).await;
    assert_eq!(cluster.double_commits().await, 0);
    let (requests, distinct) = cluster.received();
    assert_eq!(distinct, 1000);
    assert!(
        (requests - distinct) as i64 <= held,
        "{requests} requests, {held} leases held"
    );
    b.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_whose_lease_expired_cannot_commit() {
    let mut cluster = Cluster::start(Answer::status(200).after(Duration::from_secs(1))).await;
    let (paused, paused_log) = cluster.node(&[]).await;
    let (admin, bob) = cluster.prepare(&paused).await;
    cluster.submit(&admin, &bob, 1, 0).await;
    // The first node is delivering it: freeze it mid-delivery, past its lease.
    wait_received(&cluster, 1).await;
    paused.signal(Signal::SIGSTOP);
    let (other, _) = cluster.node(&[]).await;
    cluster
        .wait_delivered(1, Duration::from_secs(LEASE_SECONDS * 6))
        .await;
    paused.signal(Signal::SIGCONT);

    // The paused node wakes up with a stale lease: its commit is refused, and it says so.
    let started = std::time::Instant::now();
    loop {
        let log = std::fs::read_to_string(&paused_log).unwrap_or_default();
        if log.contains("Delivery outcome refused") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no refusal logged: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cluster.double_commits().await, 0);
    assert_eq!(cluster.counts().await.get("delivered"), Some(&1));
    assert_eq!(
        cluster.received(),
        (2, 1),
        "delivered twice at most: once per lease"
    );
    other.terminate().await;
    paused.terminate().await;
}
