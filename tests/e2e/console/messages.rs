//! `messages.mjs`: sending and following a message live, cancel, reschedule, deliver now,
//! the timeline, XSS as text, filters and keyset pages, dead letters replayed with progress.

use crate::harness::{Backend, on_both_backends};

async fn messages(backend: Backend) {
    super::browser_suite("messages.mjs", backend).await;
}

on_both_backends!(messages);
