//! `overview.mjs`: the overview's charts update live; the deployment; its JSON needs a session.

use crate::harness::{Backend, on_both_backends};

async fn overview(backend: Backend) {
    super::browser_suite("overview.mjs", backend).await;
}

on_both_backends!(overview);
