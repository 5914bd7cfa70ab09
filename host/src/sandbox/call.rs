//! One plugin call: a fresh `Store` from the plugin's `InstancePre`, under the call's limits,
//! and a typed error when it goes wrong.
//!
//! A call's deadline counts the time the plugin runs and the time it waits in host calls, not
//! the time the machine spends on other work: on a busy server an honest 50 µs validator that
//! the OS preempts for 20 ms has not overrun, and failing it closed would reject messages
//! because of load. It is enforced twice, because each mechanism misses what the other catches:
//! - epoch interruption: every engine tick (1 ms) the running guest is charged the CPU time
//!   its thread spent since the last tick and, past the deadline, traps with `Interrupt`. This
//!   stops guest code that never calls out. After its first [`RUN_BEFORE_YIELDING`] a guest
//!   also yields to tokio at every tick, so a long call cannot pin a worker thread; a short call
//!   never yields, so it is not queued behind other tasks mid-call;
//! - a tokio timeout (wall clock) around the whole call: a guest blocked *inside a host call*
//!   (a WASI sleep, a slow HTTP request) runs no guest code, so only dropping its future
//!   cancels it. A call that never yields finishes before the timeout can be observed.

use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

use super::plugin::{Instantiate, Plugin};
use super::state::{CallInfo, ChannelContext, HostState};
use super::{Binding, CallError, Message, Sandbox, World};

/// What one call is about.
#[derive(Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) binding: &'a std::sync::Arc<Binding>,
    pub(crate) message: &'a Message,
    /// For deliveries: the recipient's endpoint, and where the host records what it observes.
    pub(crate) delivery: Option<(
        Option<&'a str>,
        &'a std::sync::Arc<std::sync::Mutex<super::state::Observed>>,
    )>,
    /// The time the plugin sees, when simulating (a dry run); `None` is the host's clock.
    pub(crate) now_ms: Option<u64>,
}

/// How long a guest runs before it starts yielding to tokio at every epoch tick. Honest calls
/// take microseconds and finish well within it; anything longer shares the worker threads.
const RUN_BEFORE_YIELDING: Duration = Duration::from_millis(1);

/// The end of guest stderr kept in a trap error, in bytes.
const STDERR_IN_ERROR: usize = 1024;

impl Sandbox {
    /// Runs `call` on a fresh instance of `plugin`, then `check`s the answer; records the
    /// outcome in the plugin's counters.
    pub(crate) async fn run<P: Instantiate, T>(
        &self,
        plugin: &Plugin,
        pre: &P,
        call: Call<'_>,
        run: impl AsyncFnOnce(&mut Store<HostState>, &P::Instance) -> wasmtime::Result<T>,
        check: impl FnOnce(&T, usize) -> Result<(), CallError>,
    ) -> Result<T, CallError> {
        let started = Instant::now();
        let result = self.run_once(plugin, pre, call, run).await;
        let result = result.and_then(|answer| {
            check(&answer, self.0.config.limits.output_bytes)?;
            Ok(answer)
        });
        plugin.stats.record(
            started.elapsed(),
            result.as_ref().err().map(CallError::kind),
        );
        result
    }

    async fn run_once<P: Instantiate, T>(
        &self,
        plugin: &Plugin,
        pre: &P,
        Call {
            binding,
            message,
            delivery,
            now_ms,
        }: Call<'_>,
        call: impl AsyncFnOnce(&mut Store<HostState>, &P::Instance) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        let inner = &self.0;
        let limits = inner.config.limits.lowered_by(&binding.limits);
        let deadline = match plugin.world {
            World::Channel => limits.channel_deadline,
            World::Validator | World::DelayPolicy => limits.decision_deadline,
        };
        let _slot = inner
            .slots
            .acquire()
            .await
            .expect("the slot semaphore is never closed");

        let channel = (plugin.world == World::Channel).then(|| ChannelContext {
            http: inner.http.clone(),
            presence: inner.presence.clone(),
            requests: 0,
            endpoint: delivery.and_then(|(url, _)| url.map(str::to_owned)),
            observed: delivery.map_or_else(Default::default, |(_, observed)| observed.clone()),
        });
        let info = CallInfo {
            plugin: plugin.name.clone(),
            digest: plugin.digest.short(),
            tenant_id: message.tenant_id.clone(),
            message_id: message.id.clone(),
        };
        let (state, stdio) = HostState::new(
            info,
            now_ms.map_or_else(|| inner.config.clock.clone(), crate::clock::Clock::manual),
            binding.clone(),
            limits.memory_bytes,
            channel,
        );
        let mut store = Store::new(&inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        let mut budget = CpuBudget::start(deadline);
        store.epoch_deadline_callback(move |_| Ok(budget.tick()));
        store.set_epoch_deadline(1);

        let outcome = tokio::time::timeout(deadline, async {
            let instance = pre
                .instantiate(&mut store)
                .await
                .map_err(Phase::Instantiate)?;
            call(&mut store, &instance).await.map_err(Phase::Call)
        })
        .await;

        let memory_hit = store.data().limiter.hit;
        let log_dropped = store.data().log_dropped;
        drop(store);
        let (stdout, _) = stdio.stdout.take();
        let (stderr, _) = stdio.stderr.take();
        let call = &plugin.name;
        if !stdout.is_empty() {
            tracing::info!(target: "dms::plugin", plugin = %call, message_id = %message.id, "stdout: {stdout}");
        }
        if log_dropped > 0 {
            tracing::warn!(
                target: "dms::plugin",
                message = "Plugin log lines dropped: over the per-call cap.",
                plugin = %call,
                message_id = %message.id,
                dropped = log_dropped,
            );
        }

        match outcome {
            Err(_elapsed) => Err(CallError::Timeout { deadline }),
            Ok(Ok(answer)) => {
                if !stderr.is_empty() {
                    tracing::warn!(target: "dms::plugin", plugin = %call, message_id = %message.id, "stderr: {stderr}");
                }
                Ok(answer)
            }
            Ok(Err(phase)) => Err(classify(
                phase,
                memory_hit,
                limits.memory_bytes,
                deadline,
                &stderr,
            )),
        }
    }
}

/// The CPU time a call has used, sampled at each epoch tick from its thread's CPU clock.
///
/// A call that yielded may resume on another worker thread; the first tick there only takes a
/// new baseline, so at most one tick of running time per yield goes uncharged.
struct CpuBudget {
    deadline: Duration,
    charged: Duration,
    last: (ThreadId, Duration),
}

impl CpuBudget {
    fn start(deadline: Duration) -> Self {
        Self {
            deadline,
            charged: Duration::ZERO,
            last: (thread::current().id(), thread_cpu_time()),
        }
    }

    fn tick(&mut self) -> UpdateDeadline {
        let now = (thread::current().id(), thread_cpu_time());
        if now.0 == self.last.0 {
            self.charged += now.1.saturating_sub(self.last.1);
        }
        self.last = now;
        if self.charged >= self.deadline {
            UpdateDeadline::Interrupt
        } else if self.charged >= RUN_BEFORE_YIELDING {
            UpdateDeadline::Yield(1)
        } else {
            UpdateDeadline::Continue(1)
        }
    }
}

/// CPU time consumed by the current thread.
fn thread_cpu_time() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        // Cannot fail on Linux for the calling thread; charging nothing is the safe fallback,
        // as the wall-clock timeout still bounds the call.
        .unwrap_or(Duration::ZERO)
}

/// Which part of the call failed: instantiating (the guest's start code, or the host) or the
/// call itself (the guest's code, or lifting its answer).
enum Phase {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

fn classify(
    phase: Phase,
    memory_hit: bool,
    memory_limit: usize,
    deadline: Duration,
    stderr: &str,
) -> CallError {
    if memory_hit {
        return CallError::MemoryLimit {
            limit: memory_limit,
        };
    }
    let (Phase::Instantiate(error) | Phase::Call(error)) = &phase;
    if let Some(trap) = error.downcast_ref::<Trap>() {
        if *trap == Trap::Interrupt {
            return CallError::Timeout { deadline };
        }
        return CallError::Trap {
            trap: trap.to_string(),
            stderr: tail(stderr, STDERR_IN_ERROR),
        };
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return CallError::Trap {
            trap: format!("the plugin exited with status {}", exit.0),
            stderr: tail(stderr, STDERR_IN_ERROR),
        };
    }
    match phase {
        Phase::Instantiate(error) => CallError::Instantiate(format!("{error:#}")),
        // Not a trap, yet the call failed: wasmtime could not lift the answer (invalid UTF-8,
        // a bad discriminant, an out-of-bounds pointer).
        Phase::Call(error) => CallError::InvalidOutput {
            what: "answer",
            reason: format!("{error:#}"),
        },
    }
}

/// The last `max` bytes of `text`, at a character boundary.
fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}
