//! `live.mjs`: the live feed shows events as they come and resumes from its cursor.

use crate::harness::{Backend, on_both_backends};

async fn live(backend: Backend) {
    super::browser_suite("live.mjs", backend).await;
}

on_both_backends!(live);
