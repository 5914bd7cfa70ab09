//! A scale-out deployment for fault tests: one PostgreSQL database, a Redis server of the
//! test's own (so it can be stopped and flushed without touching other tests), a webhook
//! receiver, and any number of `dms serve` processes sharing them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::json;
use sqlx::{Connection, Row};
use tokio::process::{Child, Command};

use super::{
    ADMIN_PASSWORD, Answer, Api, ENCRYPTION_KEYS, JWT_SECRET, Receiver, Served, TestDb, dms, serve,
};

/// A `redis-server` of the test's own, on a free port, keeping nothing on disk.
pub(crate) struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub(crate) async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.start_again().await;
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again, empty) on the same port.
    pub(crate) async fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        for _ in 0..100 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    async fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        match client.get_multiplexed_async_connection().await {
            Ok(mut connection) => redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Kills the server; everything in it is lost.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// `FLUSHALL`.
    pub(crate) async fn flushall(&self) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let _: String = redis::cmd("FLUSHALL")
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}

/// The shared parts of a deployment, and how to start nodes on them.
pub(crate) struct Cluster {
    pub(crate) db: TestDb,
    pub(crate) redis: RedisServer,
    pub(crate) receiver: Receiver,
    dir: tempfile::TempDir,
    nodes: usize,
}

/// Seconds a claim lasts in fault tests: short, so takeovers happen within the test, yet long
/// enough for a node with 2000 deliveries in flight on a loaded 2-core machine to commit them
/// (at 5 s, a full parallel test run made nodes outlive their own leases: the duplicates that
/// follow are overload, not the fault under test).
pub(crate) const LEASE_SECONDS: u64 = 10;

impl Cluster {
    /// A database, a Redis, and a receiver answering with `answer`.
    pub(crate) async fn start(answer: Answer) -> Self {
        Self {
            db: TestDb::create().await,
            redis: RedisServer::start().await,
            receiver: Receiver::start(vec![answer]).await,
            dir: tempfile::tempdir().unwrap(),
            nodes: 0,
        }
    }

    /// Starts a `dms serve` node with the deployment's settings and `extra` ones; its stderr
    /// goes to the returned log file.
    pub(crate) async fn node(&mut self, extra: &[(&str, &str)]) -> (Served, PathBuf) {
        self.nodes += 1;
        let data = self.dir.path().join(format!("node{}", self.nodes));
        let log = self.dir.path().join(format!("node{}.log", self.nodes));
        let mut command = dms(&data);
        command
            .env("DATABASE_URL", &self.db.url)
            .env("REDIS_URL", self.redis.url())
            .env("DMS_REDIS_PREFIX", "faults")
            .env("JWT_SECRET", JWT_SECRET)
            .env("DMS_ENCRYPTION_KEYS", ENCRYPTION_KEYS)
            .env("DMS_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("DMS_ALLOW_PRIVATE_NETWORKS", "true")
            .env("DMS_LEASE_SECONDS", LEASE_SECONDS.to_string())
            .env("DMS_PLUGIN_CHANNEL_DEADLINE_MS", "4000")
            .env("DMS_RECONCILE_SECONDS", "2")
            .env("DMS_PLUGIN_MAX_INSTANCES", "2048")
            .env("DMS_PLUGIN_CACHE_DIR", super::cache_dir())
            .env("DMS_RATE_LIMIT_API_PER_SECOND", "1000000")
            .env("DMS_RATE_LIMIT_API_BURST", "1000000")
            .env("RUST_LOG", "warn,dms::dispatch=warn")
            .stderr(std::fs::File::create(&log).unwrap());
        for (name, value) in extra {
            command.env(name, value);
        }
        (serve(command).await, log)
    }

    /// Logs in as the admin on `node`, creates `bob` with a webhook to the receiver, and
    /// returns the admin's client and bob's id.
    pub(crate) async fn prepare(&self, node: &Served) -> (Api, String) {
        let api = Api::new(&node.url);
        let login = api
            .post(
                "/auth/login",
                json!({ "username": "admin", "password": ADMIN_PASSWORD }),
            )
            .await
            .expect(200);
        let admin = api.with_token(login.body["token"].as_str().unwrap());
        let bob = admin
            .post(
                "/users",
                json!({ "username": "bob", "password": "bob-password" }),
            )
            .await
            .expect(201);
        let bob_login = api
            .post(
                "/auth/login",
                json!({ "username": "bob", "password": "bob-password" }),
            )
            .await
            .expect(200);
        api.with_token(bob_login.body["token"].as_str().unwrap())
            .put("/users/me/webhook", json!({ "url": self.receiver.url }))
            .await
            .expect(200);
        (admin, bob.body["id"].as_str().unwrap().to_owned())
    }

    /// Submits `count` webhook messages to `recipient`, 32 at a time; all must be accepted.
    pub(crate) async fn submit(
        &self,
        api: &Api,
        recipient: &str,
        count: usize,
        delay_seconds: u64,
    ) {
        let mut pending = futures_util::stream::iter(0..count)
            .map(|n| {
                let api = api.clone();
                let body = json!({
                    "recipient_id": recipient,
                    "content": format!("message {n}"),
                    "channel": "webhook",
                    "delay_seconds": delay_seconds,
                });
                async move { api.post("/messages", body).await }
            })
            .buffer_unordered(32);
        while let Some(reply) = pending.next().await {
            reply.expect(201);
        }
    }

    async fn connection(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.db.url).await.unwrap()
    }

    /// How many messages are in each status; checks, in the same snapshot, that the counts
    /// the store keeps as statuses change (what /metrics reports) say the same.
    pub(crate) async fn counts(&self) -> BTreeMap<String, i64> {
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(
            "SELECT COALESCE(a.status, k.status) AS status, COALESCE(a.n, 0) AS n, \
             COALESCE(k.n, 0) AS kept \
             FROM (SELECT status, COUNT(*) AS n FROM message_states GROUP BY status) a \
             FULL JOIN (SELECT status, CAST(SUM(count) AS BIGINT) AS n FROM message_counts \
             GROUP BY status) k ON k.status = a.status"
                .to_owned(),
        ))
        .fetch_all(&mut self.connection().await)
        .await
        .unwrap();
        for row in &rows {
            assert_eq!(
                row.get::<i64, _>("n"),
                row.get::<i64, _>("kept"),
                "the kept count of {} messages",
                row.get::<String, _>("status")
            );
        }
        rows.iter()
            .filter(|row| row.get::<i64, _>("n") != 0)
            .map(|row| (row.get::<String, _>("status"), row.get::<i64, _>("n")))
            .collect()
    }

    /// Messages committed as delivered more than once (must always be zero).
    pub(crate) async fn double_commits(&self) -> i64 {
        let row = sqlx::raw_sql(sqlx::AssertSqlSafe(
            "SELECT COUNT(*) AS n FROM (SELECT message_id FROM message_events \
             WHERE to_status = 'delivered' GROUP BY message_id HAVING COUNT(*) > 1) twice"
                .to_owned(),
        ))
        .fetch_one(&mut self.connection().await)
        .await
        .unwrap();
        row.get("n")
    }

    /// Waits until `count` messages are delivered, or fails after `timeout`.
    pub(crate) async fn wait_delivered(&self, count: i64, timeout: Duration) {
        let started = std::time::Instant::now();
        loop {
            let counts = self.counts().await;
            if counts.get("delivered").copied().unwrap_or(0) == count {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "not all delivered within {timeout:?}: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Requests the receiver got, and how many distinct message ids among them.
    pub(crate) fn received(&self) -> (usize, usize) {
        let requests = self.receiver.received();
        let distinct: std::collections::HashSet<String> = requests
            .iter()
            .map(|request| request.headers["webhook-id"].to_str().unwrap().to_owned())
            .collect();
        (requests.len(), distinct.len())
    }
}
