//! Rate limits kept in Redis: shared by every node, with a per-node fallback when Redis is
//! down; and `/health/redis`.

use serde_json::json;

use crate::harness::{Backend, TestServer};

fn prefix() -> String {
    format!(
        "test-{}",
        dms::domain::ids::TenantId::new().as_str()[4..].to_lowercase()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_login_limits_through_redis() {
    let prefix = prefix();
    let tweak = |config: &mut dms::config::Config| {
        config.redis_url = dms::config::Secret::new("redis://127.0.0.1:6379");
        config.redis_prefix = prefix.clone();
        config.rate_limit_login_per_username = 3;
    };
    let a = TestServer::start_with(Backend::Sqlite, tweak).await;
    let b = TestServer::start_with(Backend::Sqlite, tweak).await;
    let attempt = |server: &TestServer| {
        let api = server.api();
        async move {
            api.post(
                "/auth/login",
                json!({ "username": "admin", "password": "wrong" }),
            )
            .await
        }
    };
    attempt(&a).await.problem(401, "invalid_credentials");
    attempt(&b).await.problem(401, "invalid_credentials");
    attempt(&a).await.problem(401, "invalid_credentials");
    // The fourth attempt for the name, on the other node: over the shared limit.
    attempt(&b).await.problem(429, "rate_limited");
    assert_eq!(
        b.api().get("/health/redis").await.expect(200).body["status"],
        "ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_limits_fall_back_to_the_node_and_health_says_so() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        // Nothing listens on port 1.
        config.redis_url = dms::config::Secret::new("redis://127.0.0.1:1");
        config.redis_prefix = prefix();
        config.rate_limit_login_per_username = 2;
    })
    .await;
    let admin = server.admin().await;
    let api = server.api();
    for _ in 0..2 {
        api.post(
            "/auth/login",
            json!({ "username": "bob", "password": "wrong" }),
        )
        .await
        .problem(401, "invalid_credentials");
    }
    api.post(
        "/auth/login",
        json!({ "username": "bob", "password": "wrong" }),
    )
    .await
    .problem(429, "rate_limited");
    let health = api
        .get("/health/redis")
        .await
        .problem(503, "service_unavailable");
    assert_eq!(health.body["detail"], "Redis is unavailable");
    // Everything else still works.
    admin.api.get("/users/me").await.expect(200);
}
