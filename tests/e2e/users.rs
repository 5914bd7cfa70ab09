//! Users and the tenant boundary — on both storage backends.

use dms::domain::user::Role;
use dms::use_cases::accounts::NewAccount;
use serde_json::json;

use crate::harness::{Backend, Login, TestServer, on_both_backends};

on_both_backends!(
    admins_create_members_who_log_in,
    members_cannot_manage_users,
    listing_is_paginated_and_its_bounds_are_checked,
    usernames_are_unique_on_the_server,
    another_tenants_users_and_sessions_are_not_found,
    deleting_a_user_ends_their_sessions,
    changing_the_password_ends_the_other_sessions,
    strings_are_stored_and_returned_verbatim,
);

async fn admins_create_members_who_log_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let created = admin
        .api
        .post(
            "/users",
            json!({ "username": "bob", "password": "bob-password", "display_name": "Bob" }),
        )
        .await
        .expect(201);
    let id = created.body["id"].as_str().unwrap();
    assert_eq!(created.headers["location"], format!("/users/{id}"));
    assert_eq!(created.body["role"], "member");
    assert_eq!(created.body["tenant_id"], admin.user["tenant_id"]);

    let bob = server.login("bob", "bob-password").await;
    assert_eq!(bob.user["id"], id);
    let seen = bob
        .api
        .get(&format!("/users/{}", admin.user_id()))
        .await
        .expect(200);
    assert_eq!(seen.body["username"], "admin");

    // Validation names the field.
    for (body, field) in [
        (
            json!({ "username": "carol", "password": "short" }),
            "/password",
        ),
        (
            json!({ "username": "with space", "password": "long-enough" }),
            "/username",
        ),
        (
            json!({ "username": "", "password": "long-enough" }),
            "/username",
        ),
        (
            json!({ "username": "carol", "password": "long-enough", "role": "owner" }),
            "/role",
        ),
        (
            json!({ "username": "carol", "password": "long-enough", "display_name": "x".repeat(201) }),
            "/display_name",
        ),
        (json!({ "username": "carol" }), "/password"),
        (
            json!({ "username": "carol", "password": "long-enough", "colour": "red" }),
            "/colour",
        ),
    ] {
        let reply = admin
            .api
            .post("/users", body.clone())
            .await
            .problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{body}: {}", reply.body);
    }
}

async fn members_cannot_manage_users(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    bob.api
        .post(
            "/users",
            json!({ "username": "eve", "password": "eve-password" }),
        )
        .await
        .problem(403, "admin_required");
    bob.api.get("/users").await.problem(403, "admin_required");
    bob.api
        .delete(&format!("/users/{}", admin.user_id()))
        .await
        .problem(403, "admin_required");
    admin
        .api
        .delete(&format!("/users/{}", admin.user_id()))
        .await
        .problem(409, "conflict");
}

async fn listing_is_paginated_and_its_bounds_are_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    for name in ["bob", "carol", "dave"] {
        server.member(&admin, name).await;
    }
    let first = admin.api.get("/users?limit=3").await.expect(200).body;
    assert_eq!(first["total"], 4);
    assert_eq!(first["limit"], 3);
    let names: Vec<_> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].clone())
        .collect();
    assert_eq!(names, [json!("admin"), json!("bob"), json!("carol")]);
    let rest = admin
        .api
        .get("/users?limit=3&offset=3")
        .await
        .expect(200)
        .body;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["username"], "dave");
    assert_eq!(admin.api.get("/users").await.expect(200).body["limit"], 20);

    for query in ["limit=0", "limit=101", "limit=ten", "offset=-1"] {
        let reply = admin
            .api
            .get(&format!("/users?{query}"))
            .await
            .problem(400, "invalid_query");
        let field = query.split('=').next().unwrap();
        assert_eq!(reply.body["field"], field, "{query}");
    }
}

async fn usernames_are_unique_on_the_server(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    server.member(&admin, "bob").await;
    let reply = admin
        .api
        .post(
            "/users",
            json!({ "username": "bob", "password": "another-password" }),
        )
        .await
        .problem(409, "conflict");
    let taken = "the username \"bob\" is not available: usernames are unique on the whole server, and this one, or one that looks like it, is in use";
    assert_eq!(reply.body["detail"], taken);

    // Taken across tenants too: login stays {username, password}.
    let other = server.state.accounts.create_tenant("other").await.unwrap();
    let refused = server
        .state
        .accounts
        .create_user(
            &other.id,
            NewAccount {
                username: "bob".into(),
                password: "whatever-password".into(),
                display_name: None,
                role: Role::Member,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.to_string(), taken);
}

/// A second tenant with an admin.
async fn second_tenant(server: &TestServer) -> Login {
    server.tenant_admin("acme").await
}

async fn another_tenants_users_and_sessions_are_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let acme = second_tenant(&server).await;
    let acme_member = server.member(&acme, "acme-bob").await;
    let acme_sessions = acme_member.api.get("/auth/sessions").await.expect(200).body;
    let acme_session = acme_sessions["items"][0]["id"].as_str().unwrap().to_owned();
    let target = acme_member.user_id().to_owned();

    admin
        .api
        .get(&format!("/users/{target}"))
        .await
        .problem(404, "not_found");
    admin
        .api
        .delete(&format!("/users/{target}"))
        .await
        .problem(404, "not_found");
    admin
        .api
        .delete(&format!("/auth/sessions/{acme_session}"))
        .await
        .problem(404, "not_found");
    let listed = admin.api.get("/users").await.expect(200).body;
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["tenant_id"] == admin.user["tenant_id"])
    );
    assert_eq!(listed["total"], 1);

    // Nothing of acme's changed.
    acme_member.api.get("/users/me").await.expect(200);
    acme.api.get(&format!("/users/{target}")).await.expect(200);
    assert_eq!(acme.api.get("/users").await.expect(200).body["total"], 2);
}

async fn deleting_a_user_ends_their_sessions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let bob = server.member(&admin, "bob").await;
    admin
        .api
        .delete(&format!("/users/{}", bob.user_id()))
        .await
        .expect(204);
    bob.api.get("/users/me").await.problem(401, "session_ended");
    server
        .api()
        .post(
            "/auth/refresh",
            json!({ "refresh_token": bob.refresh_token }),
        )
        .await
        .problem(401, "invalid_refresh_token");
    server
        .api()
        .post(
            "/auth/login",
            json!({ "username": "bob", "password": "member-password" }),
        )
        .await
        .problem(401, "invalid_credentials");
    admin
        .api
        .get(&format!("/users/{}", bob.user_id()))
        .await
        .problem(404, "not_found");
    admin
        .api
        .delete(&format!("/users/{}", bob.user_id()))
        .await
        .problem(404, "not_found");
    // The name is free again.
    server.member(&admin, "bob").await;
}

async fn changing_the_password_ends_the_other_sessions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let laptop = server.member(&admin, "bob").await;
    let phone = server.login("bob", "member-password").await;

    laptop
        .api
        .put(
            "/users/me/password",
            json!({ "current_password": "wrong", "new_password": "new-password" }),
        )
        .await
        .problem(403, "wrong_password");
    let reply = laptop
        .api
        .put(
            "/users/me/password",
            json!({ "current_password": "member-password", "new_password": "short" }),
        )
        .await
        .problem(422, "invalid_field");
    assert_eq!(reply.body["field"], "/new_password");
    phone.api.get("/users/me").await.expect(200);

    laptop
        .api
        .put(
            "/users/me/password",
            json!({ "current_password": "member-password", "new_password": "new-password" }),
        )
        .await
        .expect(204);
    laptop.api.get("/users/me").await.expect(200);
    phone
        .api
        .get("/users/me")
        .await
        .problem(401, "session_ended");
    server
        .api()
        .post(
            "/auth/login",
            json!({ "username": "bob", "password": "member-password" }),
        )
        .await
        .problem(401, "invalid_credentials");
    server.login("bob", "new-password").await;
}

async fn strings_are_stored_and_returned_verbatim(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let username = "robert');DROP_TABLE_users;--";
    let display_name = "'; DROP TABLE users;-- \"Zoë\" 🦀 \\ %s $1";
    let created = admin
        .api
        .post(
            "/users",
            json!({ "username": username, "password": "a'password\"--", "display_name": display_name }),
        )
        .await
        .expect(201);
    assert_eq!(created.body["username"], username);
    assert_eq!(created.body["display_name"], display_name);
    let bobby = server.login(username, "a'password\"--").await;
    let me = bobby.api.get("/users/me").await.expect(200);
    assert_eq!(me.body["display_name"], display_name);
    assert_eq!(admin.api.get("/users").await.expect(200).body["total"], 2);
}
