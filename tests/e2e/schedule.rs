//! The schedule index: one conformance suite run against both implementations (in process,
//! and Redis under a key prefix of its own per test), and end to end, a rebuild (what the
//! reconciler runs every `RECONCILE_SECONDS`) while a delivery is in flight, which must leave
//! that delivery's lease alone so the delivering node's release still puts the message back at
//! the retry time its receiver asked for.
//!
//! Times in the suite are small made-up milliseconds: the index compares them and nothing else.

use std::sync::Arc;
use std::time::Duration;

use ::redis::Commands as _;
use dms::domain::ids::MessageId;
use dms::redis_link::RedisLink;
use dms::schedule::local::LocalSchedule;
use dms::schedule::redis::RedisSchedule;
use dms::schedule::{Claim, IndexStats, Release, Schedule};
use serde_json::json;

use crate::harness::{Answer, Backend, Receiver, TestServer, eventually, ms, status};

const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A key prefix no other test uses (the Redis is shared).
fn unique_prefix() -> String {
    format!(
        "test-schedule-{}",
        dms::domain::ids::TenantId::new().as_str()[4..].to_lowercase()
    )
}

/// A connection of its own to the shared Redis, for what tests do behind the schedule's back.
///
/// `::redis`: the crate, not the `redis` module of tests below.
fn redis_connection() -> ::redis::Connection {
    ::redis::Client::open(REDIS_URL)
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Deletes every key of a test's prefix when dropped, however the test ends.
struct PrefixKeys(String);

impl Drop for PrefixKeys {
    fn drop(&mut self) {
        let mut connection = redis_connection();
        let prefix = &self.0;
        for pattern in [format!("{{{prefix}}}:*"), format!("{prefix}:*")] {
            let keys: Vec<String> = connection
                .scan_match(&pattern)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for key in keys {
                ::redis::cmd("DEL")
                    .arg(&key)
                    .query::<u64>(&mut connection)
                    .unwrap();
            }
        }
    }
}

/// A schedule under test; a Redis one under a prefix of its own.
struct Subject {
    schedule: Arc<dyn Schedule>,
    /// The Redis schedule's prefix, whose keys go when the subject does.
    prefix: Option<PrefixKeys>,
}

impl Subject {
    fn local() -> Self {
        Self {
            schedule: Arc::new(LocalSchedule::new()),
            prefix: None,
        }
    }

    async fn redis() -> Self {
        let prefix = PrefixKeys(unique_prefix());
        let schedule = RedisSchedule::new(RedisLink::new(REDIS_URL, &prefix.0).unwrap());
        // The listener wakes the schedule once it has subscribed; from then on every wake-up
        // the test sees comes from a script's publish.
        tokio::time::timeout(Duration::from_secs(10), schedule.changed())
            .await
            .expect("the schedule's listener subscribes");
        // As after the rebuild a server runs at start.
        schedule.mark_intact().await.unwrap();
        Self {
            schedule: Arc::new(schedule),
            prefix: Some(prefix),
        }
    }

    fn schedule(&self) -> &dyn Schedule {
        self.schedule.as_ref()
    }

    /// Deletes the named keys of the Redis schedule (`due`, `leases`, `tokens`, `intact`): what
    /// a `FLUSHALL`, not allowed on this shared Redis, would do to them.
    fn delete_keys(&self, names: &[&str]) {
        let prefix = &self.prefix.as_ref().expect("a Redis schedule").0;
        let keys: Vec<String> = names
            .iter()
            .map(|name| format!("{{{prefix}}}:{name}"))
            .collect();
        ::redis::cmd("DEL")
            .arg(keys)
            .query::<u64>(&mut redis_connection())
            .unwrap();
    }
}

/// Runs each listed `async fn(&dyn Schedule)` as two tests: on the in-process schedule and on
/// a Redis schedule with its own prefix.
macro_rules! on_both_schedules {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    let subject = super::Subject::local();
                    super::$case(subject.schedule()).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    let subject = super::Subject::redis().await;
                    super::$case(subject.schedule()).await
                }
            )*
        }
    };
}

on_both_schedules!(
    claim_takes_expired_leases_first_then_due_ids_by_time_and_id,
    a_leased_id_is_not_claimed_again_until_its_lease_expires,
    an_expired_lease_is_taken_over_by_another_token,
    a_stale_tokens_release_changes_nothing,
    release_with_a_retry_time_puts_the_id_back_at_that_time,
    restore_adds_only_missing_ids_and_leaves_leases_alone,
    add_many_moves_a_due_id_and_takes_an_id_out_of_its_lease,
    changed_fires_only_for_a_due_time_earlier_than_any_held,
    next_due_spans_due_ids_and_leases,
    count_counts_each_id_once_whether_due_or_leased,
    stats_counts_due_overdue_and_leased_ids,
);

/// `N` new ids in ascending order (the order a claim breaks ties in).
fn ids<const N: usize>() -> [MessageId; N] {
    let mut ids: Vec<MessageId> = (0..N).map(|_| MessageId::new()).collect();
    ids.sort();
    ids.try_into().unwrap()
}

/// Claims as the dispatcher does; the index must report itself intact.
async fn claim(
    schedule: &dyn Schedule,
    now_ms: u64,
    max: usize,
    lease_ms: u64,
    token: &str,
) -> Vec<MessageId> {
    let Claim { ids, intact } = schedule.claim(now_ms, max, lease_ms, token).await.unwrap();
    assert!(intact, "the index reports itself intact");
    ids
}

fn release(id: &MessageId, token: &str, due_ms: Option<u64>) -> Release {
    Release {
        id: id.clone(),
        token: token.to_owned(),
        due_ms,
    }
}

fn stats(due: u64, overdue: u64, oldest: Option<u64>, leased: u64, expired: u64) -> IndexStats {
    IndexStats {
        due,
        overdue,
        oldest_overdue_ms: oldest,
        leased,
        leases_expired: expired,
    }
}

/// Whether `changed()` resolves soon (a wake-up crosses Redis pub/sub within milliseconds).
async fn fires(schedule: &dyn Schedule) -> bool {
    tokio::time::timeout(Duration::from_secs(5), schedule.changed())
        .await
        .is_ok()
}

/// Whether `changed()` stays pending for a while.
async fn quiet(schedule: &dyn Schedule) -> bool {
    tokio::time::timeout(Duration::from_millis(300), schedule.changed())
        .await
        .is_err()
}

async fn claim_takes_expired_leases_first_then_due_ids_by_time_and_id(s: &dyn Schedule) {
    let [a, b, c, d, e] = ids();
    s.add_many(&[(a.clone(), 10), (b.clone(), 20)])
        .await
        .unwrap();
    assert_eq!(claim(s, 20, 1, 1_000, "t1").await, vec![a.clone()]); // until 1020
    assert_eq!(claim(s, 20, 1, 500, "t2").await, vec![b.clone()]); // until 520
    s.add_many(&[(e.clone(), 300), (d.clone(), 300), (c.clone(), 100)])
        .await
        .unwrap();
    // Expired leases by expiry (b before a, against their id order), then due ids by time
    // (c, though due before either lease expired), then by id (d before e, added after it).
    assert_eq!(
        claim(s, 2_000, 3, 1_000, "t3").await,
        [b.clone(), a.clone(), c.clone()]
    );
    assert_eq!(claim(s, 2_000, 10, 1_000, "t3").await, [d, e]);
    assert_eq!(claim(s, 2_000, 10, 1_000, "t4").await, []);
    assert_eq!(s.count().await.unwrap(), 5);
}

async fn a_leased_id_is_not_claimed_again_until_its_lease_expires(s: &dyn Schedule) {
    let [a, b] = ids();
    s.add_many(&[(a.clone(), 100), (b.clone(), 5_000)])
        .await
        .unwrap();
    assert_eq!(claim(s, 99, 10, 1_000, "t1").await, []);
    assert_eq!(claim(s, 100, 10, 1_000, "t1").await, vec![a.clone()]);
    assert_eq!(claim(s, 100, 10, 1_000, "t2").await, []);
    assert_eq!(claim(s, 1_099, 10, 1_000, "t2").await, []);
    assert_eq!(s.next_due().await.unwrap(), Some(1_100));
    assert_eq!(s.stats(1_099).await.unwrap(), stats(1, 0, None, 1, 0));
}

async fn an_expired_lease_is_taken_over_by_another_token(s: &dyn Schedule) {
    let [a] = ids();
    s.add(&a, 100).await.unwrap();
    assert_eq!(claim(s, 100, 10, 1_000, "t1").await, vec![a.clone()]);
    assert_eq!(claim(s, 1_100, 10, 1_000, "t2").await, vec![a.clone()]);
    assert_eq!(s.next_due().await.unwrap(), Some(2_100));
    // The first holder's release is stale now; the new holder's ends the lease.
    s.release_many(&[release(&a, "t1", None)]).await.unwrap();
    assert_eq!(s.count().await.unwrap(), 1);
    assert_eq!(s.next_due().await.unwrap(), Some(2_100));
    s.release_many(&[release(&a, "t2", None)]).await.unwrap();
    assert_eq!(s.count().await.unwrap(), 0);
    assert_eq!(s.next_due().await.unwrap(), None);
}

async fn a_stale_tokens_release_changes_nothing(s: &dyn Schedule) {
    let [a, b, c, d] = ids();
    s.add_many(&[
        (a.clone(), 0),
        (b.clone(), 0),
        (c.clone(), 0),
        (d.clone(), 50),
    ])
    .await
    .unwrap();
    assert_eq!(
        claim(s, 0, 3, 100, "old").await,
        [a.clone(), b.clone(), c.clone()]
    );
    // Every lease expired at 100; a and b are taken over, c is left to its holder.
    assert_eq!(claim(s, 100, 2, 100, "new").await, [a.clone(), b.clone()]);
    s.release_many(&[
        release(&a, "old", Some(10)),  // stale: "new" holds a
        release(&b, "new", Some(500)), // current: due again at 500
        release(&c, "old", None),      // expired but still "old"'s: done
        release(&d, "old", None),      // due, not leased: no token holds it
    ])
    .await
    .unwrap();
    // Due: d at 50, b at 500; leased: a, until 200.
    assert_eq!(s.stats(100).await.unwrap(), stats(2, 1, Some(50), 1, 0));
    assert_eq!(s.next_due().await.unwrap(), Some(50));
    assert_eq!(claim(s, 200, 10, 1_000, "x").await, [a.clone(), d.clone()]);
    assert_eq!(claim(s, 499, 10, 100, "y").await, []);
    assert_eq!(claim(s, 500, 10, 100, "y").await, vec![b.clone()]);
    assert_eq!(s.count().await.unwrap(), 3);
}

async fn release_with_a_retry_time_puts_the_id_back_at_that_time(s: &dyn Schedule) {
    let [a] = ids();
    s.add(&a, 100).await.unwrap();
    assert_eq!(claim(s, 100, 10, 1_000, "t").await, vec![a.clone()]);
    s.release_many(&[release(&a, "t", Some(5_000))])
        .await
        .unwrap();
    assert_eq!(s.stats(1_100).await.unwrap(), stats(1, 0, None, 0, 0));
    assert_eq!(s.next_due().await.unwrap(), Some(5_000));
    // Neither at the old lease's expiry nor before the retry time.
    assert_eq!(claim(s, 1_100, 10, 1_000, "u").await, []);
    assert_eq!(claim(s, 4_999, 10, 1_000, "u").await, []);
    assert_eq!(claim(s, 5_000, 10, 1_000, "u").await, vec![a.clone()]);
    s.release_many(&[release(&a, "u", None)]).await.unwrap();
    assert_eq!(s.count().await.unwrap(), 0);
}

async fn restore_adds_only_missing_ids_and_leaves_leases_alone(s: &dyn Schedule) {
    let [a, b, c] = ids();
    s.add_many(&[(a.clone(), 100), (b.clone(), 100)])
        .await
        .unwrap();
    assert_eq!(claim(s, 100, 1, 1_000, "t").await, vec![a.clone()]); // until 1100
    assert_eq!(
        s.restore(&[(a.clone(), 50), (b.clone(), 300), (c.clone(), 700)])
            .await
            .unwrap(),
        1
    );
    // b keeps its time, a its lease; only c was added.
    assert_eq!(s.stats(100).await.unwrap(), stats(2, 1, Some(100), 1, 0));
    // a's token still holds it: its holder's release puts it at its retry time.
    s.release_many(&[release(&a, "t", Some(9_000))])
        .await
        .unwrap();
    assert_eq!(
        claim(s, 1_100, 10, 1_000, "u").await,
        [b.clone(), c.clone()]
    );
    assert_eq!(s.next_due().await.unwrap(), Some(2_100));
    assert_eq!(
        s.restore(&[(a.clone(), 1), (b.clone(), 1), (c.clone(), 1)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        claim(s, 8_999, 10, 1_000, "v").await,
        [b.clone(), c.clone()]
    );
    assert_eq!(claim(s, 9_000, 10, 1_000, "w").await, vec![a.clone()]);
}

async fn add_many_moves_a_due_id_and_takes_an_id_out_of_its_lease(s: &dyn Schedule) {
    let [a, b] = ids();
    s.add_many(&[(a.clone(), 100), (b.clone(), 100)])
        .await
        .unwrap();
    assert_eq!(claim(s, 100, 1, 1_000, "t").await, vec![a.clone()]); // until 1100
    s.add_many(&[(a.clone(), 300), (b.clone(), 700)])
        .await
        .unwrap();
    assert_eq!(s.stats(100).await.unwrap(), stats(2, 0, None, 0, 0));
    // a's lease is gone with its token: the old holder's release changes nothing.
    s.release_many(&[release(&a, "t", None)]).await.unwrap();
    assert_eq!(s.count().await.unwrap(), 2);
    assert_eq!(s.next_due().await.unwrap(), Some(300));
    assert_eq!(claim(s, 299, 10, 1_000, "u").await, []);
    assert_eq!(claim(s, 300, 10, 1_000, "u").await, vec![a.clone()]);
    assert_eq!(claim(s, 699, 10, 1_000, "u").await, []);
    assert_eq!(claim(s, 700, 10, 1_000, "u").await, vec![b.clone()]);
}

async fn changed_fires_only_for_a_due_time_earlier_than_any_held(s: &dyn Schedule) {
    let [a, b, c, d, e, f, g] = ids();
    assert!(quiet(s).await, "nothing happened yet");
    s.add_many(&[(a.clone(), 1_000)]).await.unwrap();
    assert!(fires(s).await, "the first id of an empty index wakes");
    s.add_many(&[(b.clone(), 2_000)]).await.unwrap();
    assert!(quiet(s).await, "a later id does not wake");
    s.add_many(&[(c.clone(), 1_000)]).await.unwrap();
    assert!(quiet(s).await, "an id at the same time does not wake");
    s.add_many(&[(d.clone(), 500), (e.clone(), 3_000)])
        .await
        .unwrap();
    assert!(fires(s).await, "an earlier id wakes");
    assert!(quiet(s).await, "once per call");
    s.add_many(&[(b.clone(), 400)]).await.unwrap();
    assert!(fires(s).await, "an id moved earlier than any wakes");

    assert_eq!(s.restore(&[(f.clone(), 100)]).await.unwrap(), 1);
    assert!(fires(s).await, "an earlier restored id wakes");
    assert_eq!(
        s.restore(&[(f.clone(), 50), (g.clone(), 4_000)])
            .await
            .unwrap(),
        1
    );
    assert!(
        quiet(s).await,
        "a restore adding only later ids does not wake"
    );

    // A lease's expiry is something the dispatchers wait for too.
    assert_eq!(claim(s, 100, 1, 150, "t").await, vec![f.clone()]); // until 250
    s.add_many(&[(g.clone(), 300)]).await.unwrap();
    assert!(quiet(s).await, "due after the earliest lease expiry");
    s.release_many(&[release(&f, "t", Some(260))])
        .await
        .unwrap();
    assert!(
        quiet(s).await,
        "a retry after the lease it ends does not wake"
    );
    assert_eq!(claim(s, 260, 1, 1_000, "t").await, vec![f.clone()]); // until 1260; g at 300 first
    s.release_many(&[release(&f, "t", Some(200))])
        .await
        .unwrap();
    assert!(fires(s).await, "a retry earlier than anything held wakes");
    assert_eq!(claim(s, 260, 1, 1_000, "t").await, vec![f.clone()]);
    s.release_many(&[release(&f, "stale", Some(1))])
        .await
        .unwrap();
    assert!(quiet(s).await, "a stale release does not wake");
    s.remove(&f).await.unwrap();
    assert!(quiet(s).await, "a removal does not wake");
}

async fn next_due_spans_due_ids_and_leases(s: &dyn Schedule) {
    let [a, b] = ids();
    assert_eq!(s.next_due().await.unwrap(), None);
    s.add(&a, 500).await.unwrap();
    assert_eq!(s.next_due().await.unwrap(), Some(500));
    s.add(&b, 100).await.unwrap();
    assert_eq!(s.next_due().await.unwrap(), Some(100));
    assert_eq!(claim(s, 100, 1, 200, "t").await, vec![b.clone()]);
    assert_eq!(s.next_due().await.unwrap(), Some(300), "b's lease expiry");
    s.release_many(&[release(&b, "t", Some(900))])
        .await
        .unwrap();
    assert_eq!(s.next_due().await.unwrap(), Some(500));
    assert_eq!(claim(s, 500, 1, 1_000, "t").await, vec![a.clone()]);
    assert_eq!(s.next_due().await.unwrap(), Some(900));
    s.remove(&b).await.unwrap();
    assert_eq!(s.next_due().await.unwrap(), Some(1_500), "a's lease expiry");
    s.remove(&a).await.unwrap();
    assert_eq!(s.next_due().await.unwrap(), None);
}

async fn count_counts_each_id_once_whether_due_or_leased(s: &dyn Schedule) {
    let [a, b, c, unknown] = ids();
    assert_eq!(s.count().await.unwrap(), 0);
    s.add_many(&[(a.clone(), 100), (b.clone(), 200), (c.clone(), 300)])
        .await
        .unwrap();
    assert_eq!(s.count().await.unwrap(), 3);
    s.add(&a, 150).await.unwrap();
    assert_eq!(s.count().await.unwrap(), 3);
    assert_eq!(claim(s, 200, 2, 1_000, "t").await, [a.clone(), b.clone()]);
    assert_eq!(s.count().await.unwrap(), 3);
    assert_eq!(
        s.restore(&[(a.clone(), 1), (b.clone(), 1), (c.clone(), 1)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.count().await.unwrap(), 3);
    s.remove(&a).await.unwrap();
    assert_eq!(s.count().await.unwrap(), 2);
    s.release_many(&[release(&b, "t", None)]).await.unwrap();
    assert_eq!(s.count().await.unwrap(), 1);
    s.remove(&unknown).await.unwrap();
    assert_eq!(s.count().await.unwrap(), 1);
    s.remove(&c).await.unwrap();
    assert_eq!(s.count().await.unwrap(), 0);
}

async fn stats_counts_due_overdue_and_leased_ids(s: &dyn Schedule) {
    let [a, b, c, d] = ids();
    assert_eq!(s.stats(1_000).await.unwrap(), IndexStats::default());
    s.add_many(&[
        (a.clone(), 100),
        (b.clone(), 200),
        (c.clone(), 5_000),
        (d.clone(), 300),
    ])
    .await
    .unwrap();
    assert_eq!(s.stats(99).await.unwrap(), stats(4, 0, None, 0, 0));
    assert_eq!(s.stats(200).await.unwrap(), stats(4, 2, Some(100), 0, 0));
    assert_eq!(claim(s, 300, 1, 100, "t").await, vec![a.clone()]); // until 400
    assert_eq!(claim(s, 300, 1, 1_000, "t").await, vec![b.clone()]); // until 1300
    assert_eq!(s.stats(299).await.unwrap(), stats(2, 0, None, 2, 0));
    assert_eq!(s.stats(350).await.unwrap(), stats(2, 1, Some(300), 2, 0));
    // A lease is expired at its expiry time, when a claim may take it.
    assert_eq!(s.stats(400).await.unwrap(), stats(2, 1, Some(300), 2, 1));
    assert_eq!(s.stats(5_000).await.unwrap(), stats(2, 2, Some(300), 2, 2));
}

/// Redis only (nothing outside the process can empty the in-process index): a lost `intact`
/// marker is reported by `intact()` and by every claim, which still claims what is there.
#[tokio::test]
async fn redis_reports_a_lost_intact_marker_in_claims() {
    let subject = Subject::redis().await;
    let s = subject.schedule();
    let [a, b] = ids();
    assert!(s.intact().await.unwrap());
    s.add_many(&[(a.clone(), 100), (b.clone(), 200)])
        .await
        .unwrap();
    assert_eq!(
        s.claim(100, 10, 1_000, "t").await.unwrap(),
        Claim {
            ids: vec![a.clone()],
            intact: true
        }
    );
    subject.delete_keys(&["intact"]);
    assert!(!s.intact().await.unwrap());
    assert_eq!(
        s.claim(200, 10, 1_000, "u").await.unwrap(),
        Claim {
            ids: vec![b.clone()],
            intact: false
        }
    );
    // The whole index gone, as after a flush.
    subject.delete_keys(&["due", "leases", "tokens"]);
    assert_eq!(s.count().await.unwrap(), 0);
    assert_eq!(
        s.claim(5_000, 10, 1_000, "v").await.unwrap(),
        Claim {
            ids: Vec::new(),
            intact: false
        }
    );
    s.mark_intact().await.unwrap();
    assert!(s.intact().await.unwrap());
    assert!(s.claim(5_000, 10, 1_000, "v").await.unwrap().intact);
}

/// A receiver asks for 100 s (503 with `Retry-After: 100`) while the reconciler's rebuild runs
/// during the attempt. The rebuild must not take the id out of the delivering node's lease, or
/// the node's release finds no lease and the retry comes at the lease's expiry, 70 s early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_during_a_delivery_keeps_the_receivers_retry_after() {
    let prefix = PrefixKeys(unique_prefix());
    let server = TestServer::start_with(Backend::Postgres, |config| {
        config.redis_url = dms::config::Secret::new(REDIS_URL);
        config.redis_prefix = prefix.0.clone();
    })
    .await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    // The first answer comes late enough for the rebuild to run while the attempt is in flight.
    let receiver = Receiver::start(vec![
        Answer::status(503)
            .header("retry-after", "100")
            .after(Duration::from_secs(3)),
        Answer::status(200),
    ])
    .await;
    bob.api
        .put("/users/me/webhook", json!({ "url": receiver.url }))
        .await
        .expect(200);
    let id = admin
        .api
        .post(
            "/messages",
            json!({ "recipient_id": bob.user_id(), "content": "hello bob", "channel": "webhook" }),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let attempted_at = server.clock.now_ms();

    let attempt = tokio::spawn({
        let dispatcher = server.state.dispatcher.clone();
        async move { dispatcher.dispatch_once().await }
    });
    eventually("the receiver gets the first attempt", || async {
        !receiver.received().is_empty()
    })
    .await;
    // The reconciler's rebuild, while the message is `delivering` under this node's lease.
    server.state.dispatcher.rebuild().await.unwrap();
    assert!(
        !attempt.is_finished(),
        "the rebuild must run while the attempt is in flight"
    );
    let report = attempt.await.unwrap().unwrap();
    assert_eq!((report.claimed, report.retried), (1, 1), "{report:?}");

    let retrying = status(&admin, &id).await;
    assert_eq!(retrying["status"], "retrying");
    let retry_at = ms(&retrying["deliver_at"]);
    assert!(
        retry_at >= attempted_at + 100_000,
        "the retry honours Retry-After: {retry_at} vs {attempted_at}"
    );
    // The release found its lease and put the id back at the retry time (a rebuild that moved
    // leased ids would have left it due at the lease's expiry, 30 s after the claim).
    let schedule = &server.state.schedule;
    assert_eq!(schedule.next_due().await.unwrap(), Some(retry_at));
    assert_eq!(
        schedule.stats(server.clock.now_ms()).await.unwrap(),
        stats(1, 0, None, 0, 0),
        "due once, at the retry time, and not leased"
    );
    // Another reconciliation changes nothing.
    server.state.dispatcher.rebuild().await.unwrap();
    assert_eq!(schedule.next_due().await.unwrap(), Some(retry_at));
    assert_eq!(schedule.count().await.unwrap(), 1);

    // Past the lease (30 s), nothing is due yet.
    server.clock.advance(31_000);
    assert_eq!(server.dispatch().await.claimed, 0);
    assert_eq!(receiver.received().len(), 1);
    // At the retry time it is delivered.
    server.clock.advance(retry_at - server.clock.now_ms());
    assert_eq!(server.dispatch().await.delivered, 1);
    assert_eq!(receiver.received().len(), 2);
    assert_eq!(status(&admin, &id).await["status"], "delivered");
    assert_eq!(schedule.count().await.unwrap(), 0);
}
