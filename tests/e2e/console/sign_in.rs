//! `sign_in.mjs`: signing in and out, cookies, sessions, users, the anti-forgery rule, 404s.

use crate::harness::{Backend, on_both_backends};

async fn sign_in(backend: Backend) {
    super::browser_suite("sign_in.mjs", backend).await;
}

on_both_backends!(sign_in);
