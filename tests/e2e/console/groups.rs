//! `groups.mjs`: groups and members, schedules and their next occurrences, flow control.

use crate::harness::{Backend, on_both_backends};

async fn groups(backend: Backend) {
    super::browser_suite("groups.mjs", backend).await;
}

on_both_backends!(groups);
