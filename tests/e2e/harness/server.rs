//! A DMS server per test, and a client for its API.

use std::sync::Arc;

use dms::app;
use dms::clock::Clock;
use dms::config::{Config, Secret};
use dms::state::AppState;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The JWT secret of test servers (tests forge tokens with it).
pub(crate) const JWT_SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";
/// The content encryption keys of test servers.
pub(crate) const ENCRYPTION_KEYS: &str = "test1:dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMTIzNDU=";

/// The first-run admin's password on test servers.
pub(crate) const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// Which deployment a test runs on: the embedded default (SQLite, the in-process schedule), or
/// scale-out (PostgreSQL, the Redis schedule under a key prefix of the test's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The Redis of the scale-out test servers.
pub(crate) const TEST_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The server that hosts test databases; override with `TEST_DATABASE_URL`.
fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database, dropped when the test ends.
pub(crate) struct TestDb {
    pub(crate) url: String,
    name: String,
}

impl TestDb {
    pub(crate) async fn create() -> Self {
        let admin = postgres_admin_url();
        let mut connection = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|error| panic!("PostgreSQL must run at {admin}: {error}"));
        let name = format!(
            "dms_test_{}",
            dms::domain::ids::TenantId::new().as_str()[4..].to_lowercase()
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut connection)
            .await
            .unwrap();
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async; a thread with its own runtime does the cleanup.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut connection) = sqlx::PgConnection::connect(&postgres_admin_url()).await
                {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut connection)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A server's storage, not necessarily opened yet: a data directory and, on PostgreSQL, a
/// database of its own.
#[derive(Clone)]
pub(crate) struct TestStorage {
    pub(crate) backend: Backend,
    dir: Arc<tempfile::TempDir>,
    db: Option<Arc<TestDb>>,
}

impl TestStorage {
    /// New, empty storage (the SQLite file and PostgreSQL tables do not exist yet).
    pub(crate) async fn create(backend: Backend) -> Self {
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(Arc::new(TestDb::create().await)),
        };
        Self {
            backend,
            dir: Arc::new(tempfile::tempdir().unwrap()),
            db,
        }
    }

    /// The data directory.
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The real `dms` binary on this storage, with the test servers' secret and keys.
    pub(crate) fn dms(&self) -> tokio::process::Command {
        let mut command = crate::harness::dms(self.dir.path());
        if let Some(db) = &self.db {
            command.env("DATABASE_URL", &db.url);
        }
        command
            .env("JWT_SECRET", JWT_SECRET)
            .env("DMS_ENCRYPTION_KEYS", ENCRYPTION_KEYS);
        command
    }

    /// Rows in `table`.
    pub(crate) async fn count(&self, table: &str) -> i64 {
        let query = format!("SELECT COUNT(*) FROM {table}");
        match &self.db {
            None => {
                let url = format!("sqlite://{}", self.dir.path().join("dms.sqlite3").display());
                let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query_scalar(sqlx::AssertSqlSafe(query))
                    .fetch_one(&mut connection)
                    .await
                    .unwrap()
            }
            Some(db) => {
                let mut connection = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::query_scalar(sqlx::AssertSqlSafe(query))
                    .fetch_one(&mut connection)
                    .await
                    .unwrap()
            }
        }
    }

    /// Runs SQL (one or more statements, outside a transaction) on the database directly.
    pub(crate) async fn execute(&self, sql: &str) {
        match &self.db {
            None => {
                let url = format!("sqlite://{}", self.dir.path().join("dms.sqlite3").display());
                let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
            Some(db) => {
                let mut connection = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
        }
    }

    /// True while nothing was ever written: no SQLite file, or no table in the database.
    pub(crate) async fn untouched(&self) -> bool {
        match &self.db {
            None => !self.dir.path().join("dms.sqlite3").exists(),
            Some(db) => {
                let mut connection = sqlx::PgConnection::connect(&db.url).await.unwrap();
                let tables: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()",
                )
                .fetch_one(&mut connection)
                .await
                .unwrap();
                tables == 0
            }
        }
    }
}

/// A running server with its own storage.
pub(crate) struct TestServer {
    pub(crate) url: String,
    pub(crate) state: AppState,
    pub(crate) clock: Clock,
    pub(crate) backend: Backend,
    config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    dir: Arc<tempfile::TempDir>,
    db: Option<Arc<TestDb>>,
}

impl TestServer {
    /// A server on `backend` with the test defaults.
    pub(crate) async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// A server on `backend` with the test defaults changed by `tweak`.
    pub(crate) async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let storage = TestStorage::create(backend).await;
        Self::start_on(storage, Clock::manual(Clock::System.now_ms()), tweak).await
    }

    /// A server on existing `storage` (a restored database, say) with the test defaults
    /// changed by `tweak`, on `clock`.
    pub(crate) async fn start_on(
        storage: TestStorage,
        clock: Clock,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let TestStorage { backend, dir, db } = storage;
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            database_url: Secret::new(db.as_ref().map(|db| db.url.clone()).unwrap_or_default()),
            jwt_secret: Secret::new(JWT_SECRET),
            admin_password: Secret::new(ADMIN_PASSWORD),
            db_max_connections: 8,
            shutdown_grace_seconds: 2,
            encryption_keys: Secret::new(ENCRYPTION_KEYS),
            // Tests drive the dispatcher by hand (`dispatch`), on the manual clock.
            worker_enabled: false,
            // Webhook receivers run on loopback.
            allow_private_networks: true,
            plugin_max_instances: 64,
            plugin_cache_dir: crate::harness::cache_dir(),
            ..Config::defaults()
        };
        if backend == Backend::Postgres {
            config.redis_url = Secret::new(TEST_REDIS_URL);
            config.redis_prefix = format!("test:{}", dms::domain::ids::TenantId::new());
        }
        tweak(&mut config);
        Self::boot(backend, config, dir, db, clock).await
    }

    /// This server's storage, to run the real `dms` binary on it.
    pub(crate) fn storage(&self) -> TestStorage {
        TestStorage {
            backend: self.backend,
            dir: self.dir.clone(),
            db: self.db.clone(),
        }
    }

    async fn boot(
        backend: Backend,
        config: Config,
        dir: Arc<tempfile::TempDir>,
        db: Option<Arc<TestDb>>,
        clock: Clock,
    ) -> Self {
        let (state, _) = AppState::build(config.clone(), clock.clone())
            .await
            .expect("the test server starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                app::serve(state, listener, async {
                    let _ = stopped.await;
                })
                .await;
            }
        });
        Self {
            url,
            state,
            clock,
            backend,
            config,
            stop: Some(stop),
            task: Some(task),
            dir,
            db,
        }
    }

    /// A second node beside `other`: the same database and clock, its own data directory,
    /// with `tweak` applied to a copy of `other`'s configuration.
    pub(crate) async fn start_beside(other: &TestServer, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..other.config.clone()
        };
        tweak(&mut config);
        Self::boot(
            other.backend,
            config,
            dir,
            other.db.clone(),
            other.clock.clone(),
        )
        .await
    }

    /// Stops the server and starts a new one on the same storage and configuration.
    pub(crate) async fn restart(mut self) -> Self {
        self.stop().await;
        let (backend, config, dir, db, clock) = (
            self.backend,
            self.config.clone(),
            self.dir.clone(),
            self.db.clone(),
            self.clock.clone(),
        );
        drop(self);
        Self::boot(backend, config, dir, db, clock).await
    }

    /// Like [`restart`](Self::restart), with the configuration changed by `tweak`.
    pub(crate) async fn restart_with(mut self, tweak: impl FnOnce(&mut Config)) -> Self {
        tweak(&mut self.config);
        self.restart().await
    }

    /// Stops the server gracefully.
    pub(crate) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Delivers everything due now (on the manual clock), as the worker would.
    pub(crate) async fn dispatch(&self) -> dms::dispatch::Report {
        self.state
            .dispatcher
            .dispatch_until_idle()
            .await
            .expect("a dispatch round")
    }

    /// The PostgreSQL URL of the server's database (`None` on SQLite).
    pub(crate) fn database_url(&self) -> Option<&str> {
        self.db.as_ref().map(|db| db.url.as_str())
    }

    /// Runs SQL against the server's database directly (to inspect or damage raw rows).
    pub(crate) async fn sql(&self, statement: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut connection = sqlx::SqliteConnection::connect(&self.sqlite_url())
                    .await
                    .unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                let url = self.db.as_ref().unwrap().url.clone();
                let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
        }
    }

    /// Messages per status, from the states themselves and from the counts the store keeps
    /// (shards and tenants summed): the two must agree.
    pub(crate) async fn status_counts(
        &self,
    ) -> (
        std::collections::BTreeMap<String, u64>,
        std::collections::BTreeMap<String, u64>,
    ) {
        let truth = self
            .sql_column(
                "SELECT status || ':' || CAST(COUNT(*) AS TEXT) FROM message_states GROUP BY status",
            )
            .await
            .into_iter()
            .map(|row| {
                let (status, count) = row.split_once(':').unwrap();
                (status.to_owned(), count.parse().unwrap())
            })
            .collect();
        let mut kept = std::collections::BTreeMap::new();
        for row in self.state.store.status_counts().await.unwrap() {
            *kept.entry(row.status.as_str().to_owned()).or_insert(0) += row.count;
        }
        (truth, kept)
    }

    /// The first column of every row `query` returns, as text.
    pub(crate) async fn sql_column(&self, query: &str) -> Vec<String> {
        use sqlx::Row;
        match self.backend {
            Backend::Sqlite => {
                let mut connection = sqlx::SqliteConnection::connect(&self.sqlite_url())
                    .await
                    .unwrap();
                let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(query.to_owned()))
                    .fetch_all(&mut connection)
                    .await
                    .unwrap();
                rows.iter().map(|row| row.get::<String, _>(0)).collect()
            }
            Backend::Postgres => {
                let url = self.db.as_ref().unwrap().url.clone();
                let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
                let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(query.to_owned()))
                    .fetch_all(&mut connection)
                    .await
                    .unwrap();
                rows.iter().map(|row| row.get::<String, _>(0)).collect()
            }
        }
    }

    /// Every byte of the database as stored: the SQLite files, or a PostgreSQL dump of the
    /// messages table's raw bytes.
    pub(crate) async fn raw_bytes(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sqlite => {
                let mut bytes = Vec::new();
                for entry in std::fs::read_dir(self.dir.path()).unwrap() {
                    let path = entry.unwrap().path();
                    if path
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("dms.sqlite3")
                    {
                        bytes.extend(std::fs::read(path).unwrap());
                    }
                }
                bytes
            }
            Backend::Postgres => {
                use sqlx::Row;
                let url = self.db.as_ref().unwrap().url.clone();
                let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
                let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(
                    "SELECT convert_to(m::text, 'UTF8') AS raw FROM messages m".to_owned(),
                ))
                .fetch_all(&mut connection)
                .await
                .unwrap();
                rows.iter()
                    .flat_map(|row| row.get::<Vec<u8>, _>("raw"))
                    .collect()
            }
        }
    }

    /// Points a `dms` command (see [`dms`](crate::harness::dms)) at this server's storage and
    /// keys, as an operator's shell on the same machine would be.
    pub(crate) fn operator_env(&self, command: &mut tokio::process::Command) {
        command
            .env("DATA_DIR", self.dir.path())
            .env("JWT_SECRET", JWT_SECRET)
            .env("DMS_ENCRYPTION_KEYS", ENCRYPTION_KEYS);
        if let Some(db) = &self.db {
            command.env("DATABASE_URL", &db.url);
        }
        if let Some(url) = self.config.redis_url.expose() {
            command
                .env("REDIS_URL", url)
                .env("DMS_REDIS_PREFIX", &self.config.redis_prefix);
        }
    }

    fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("dms.sqlite3").display())
    }

    /// An anonymous client.
    pub(crate) fn api(&self) -> Api {
        Api::new(&self.url)
    }

    /// A client logged in as `username`.
    pub(crate) async fn login(&self, username: &str, password: &str) -> Login {
        let reply = self
            .api()
            .post(
                "/auth/login",
                json!({ "username": username, "password": password }),
            )
            .await
            .expect(200);
        Login::from_reply(&self.url, reply.body)
    }

    /// A client logged in as the first-run admin.
    pub(crate) async fn admin(&self) -> Login {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// Creates tenant `name` with an admin (`{name}-admin`) through the account use cases, as
    /// `dms tenant create` and `dms user create` do, and logs the admin in.
    pub(crate) async fn tenant_admin(&self, name: &str) -> Login {
        let tenant = self.state.accounts.create_tenant(name).await.unwrap();
        let password = format!("{name}-admin-password");
        let username = format!("{name}-admin");
        self.state
            .accounts
            .create_user(
                &tenant.id,
                dms::use_cases::accounts::NewAccount {
                    username: username.clone(),
                    password: password.clone(),
                    display_name: None,
                    role: dms::domain::user::Role::Admin,
                },
            )
            .await
            .unwrap();
        self.login(&username, &password).await
    }

    /// Creates a user in the admin's tenant and logs them in.
    pub(crate) async fn member(&self, admin: &Login, username: &str) -> Login {
        admin
            .api
            .post(
                "/users",
                json!({ "username": username, "password": "member-password" }),
            )
            .await
            .expect(201);
        self.login(username, "member-password").await
    }
}

/// A logged-in client and what login returned.
pub(crate) struct Login {
    pub(crate) api: Api,
    pub(crate) token: String,
    pub(crate) refresh_token: String,
    pub(crate) user: Value,
}

impl Login {
    pub(crate) fn from_reply(url: &str, body: Value) -> Self {
        let token = body["token"].as_str().unwrap().to_owned();
        Self {
            api: Api::new(url).with_token(&token),
            refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
            user: body["user"].clone(),
            token,
        }
    }

    pub(crate) fn user_id(&self) -> &str {
        self.user["id"].as_str().unwrap()
    }

    pub(crate) fn tenant_id(&self) -> &str {
        self.user["tenant_id"].as_str().unwrap()
    }
}

/// An HTTP client for the API.
#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A response: status, headers and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    /// Asserts the status, showing the body when it is not the one expected.
    #[track_caller]
    pub(crate) fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Asserts a problem response: status, code, `application/problem+json`, and the
    /// request id in the body matching the header.
    #[track_caller]
    pub(crate) fn problem(self, status: u16, code: &str) -> Self {
        let reply = self.expect(status);
        assert_eq!(reply.body["code"], code, "body: {}", reply.body);
        assert_eq!(reply.body["status"], status);
        assert_eq!(reply.body["type"], format!("/problems/{code}"));
        assert_eq!(
            reply.headers["content-type"], "application/problem+json",
            "body: {}",
            reply.body
        );
        assert_eq!(
            reply.body["request_id"],
            reply.headers["x-request-id"].to_str().unwrap()
        );
        reply
    }
}

impl Api {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            base: base.to_owned(),
            token: None,
        }
    }

    pub(crate) fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// Sends a request with an optional raw body and content type.
    pub(crate) async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.body(body).send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        match body {
            Some(body) => {
                self.raw(
                    method,
                    path,
                    Some("application/json"),
                    body.to_string().into_bytes(),
                )
                .await
            }
            None => self.raw(method, path, None, Vec::new()).await,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }
}

/// A message's `GET /messages/{id}/status`, as `who` sees it.
pub(crate) async fn status(who: &Login, id: &str) -> Value {
    who.api
        .get(&format!("/messages/{id}/status"))
        .await
        .expect(200)
        .body
}

/// An RFC 3339 time of the API as Unix milliseconds.
pub(crate) fn ms(rfc3339: &Value) -> u64 {
    dms::clock::parse_rfc3339(rfc3339.as_str().unwrap()).unwrap()
}

/// Waits until `check` holds (up to 15 s, looking every 100 ms); panics naming `what`.
pub(crate) async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    for _ in 0..150 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}
