//! A fake host for testing plugin logic natively with `cargo test`.
//!
//! Each test thread has its own [`FakeHost`]; [`install`] replaces it and [`take`] returns it
//! for assertions (logs written, events published, HTTP requests sent).
//!
//! ```
//! use dms_plugin_sdk::{config, testing::FakeHost};
//!
//! FakeHost::new().config("max_bytes", "10").install();
//! assert_eq!(config::get("max_bytes").as_deref(), Some("10"));
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::{Level, http};

/// What the host looks like to a plugin running natively.
#[derive(Debug, Clone)]
pub struct FakeHost {
    /// What [`now_ms`](crate::now_ms) returns.
    pub now_ms: u64,
    /// The binding configuration that [`config::get`](crate::config::get) reads.
    pub config: BTreeMap<String, String>,
    /// Every line logged, in order.
    pub logs: Vec<(Level, String)>,
    /// Every event published, as `(user id, event)`.
    pub published: Vec<(String, String)>,
    /// When set, [`publish`](crate::realtime::publish) fails with this error.
    pub publish_error: Option<String>,
    /// The users [`is_online`](crate::realtime::is_online) reports as online.
    pub online: BTreeSet<String>,
    /// Every HTTP request sent, in order.
    pub http_requests: Vec<http::Request>,
    /// The answers to the next HTTP requests, in order.
    pub http_responses: VecDeque<Result<http::Response, http::Error>>,
}

/// 2023-11-14T22:13:20Z: a fixed default so tests do not depend on the machine's clock.
const DEFAULT_NOW_MS: u64 = 1_700_000_000_000;

impl Default for FakeHost {
    fn default() -> Self {
        Self {
            now_ms: DEFAULT_NOW_MS,
            config: BTreeMap::new(),
            logs: Vec::new(),
            published: Vec::new(),
            publish_error: None,
            online: BTreeSet::new(),
            http_requests: Vec::new(),
            http_responses: VecDeque::new(),
        }
    }
}

impl FakeHost {
    /// A host at a fixed time (2023-11-14T22:13:20Z) with no configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the time [`now_ms`](crate::now_ms) returns.
    pub fn at(mut self, now_ms: u64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// Sets one configuration value.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Marks a user as online.
    pub fn online(mut self, user_id: &str) -> Self {
        self.online.insert(user_id.to_owned());
        self
    }

    /// Queues the answer to the next HTTP request.
    pub fn respond(mut self, answer: Result<http::Response, http::Error>) -> Self {
        self.http_responses.push_back(answer);
        self
    }

    /// Makes this the current thread's host.
    pub fn install(self) {
        install(self);
    }
}

thread_local! {
    static HOST: RefCell<FakeHost> = RefCell::new(FakeHost::default());
}

/// Makes `host` the current thread's host.
pub fn install(host: FakeHost) {
    HOST.with(|cell| *cell.borrow_mut() = host);
}

/// Takes the current thread's host out (leaving a default one), to assert on what it recorded.
pub fn take() -> FakeHost {
    HOST.with(|cell| cell.take())
}

pub(crate) fn with<R>(f: impl FnOnce(&mut FakeHost) -> R) -> R {
    HOST.with(|cell| f(&mut cell.borrow_mut()))
}
