//! `webhook.mjs`: a member's webhook endpoint, its secret shown once after a rotation, and the
//! latest attempts to deliver to it with their HTTP status and latency.

use crate::harness::{Backend, on_both_backends};

async fn webhook(backend: Backend) {
    super::browser_suite("webhook.mjs", backend).await;
}

on_both_backends!(webhook);
