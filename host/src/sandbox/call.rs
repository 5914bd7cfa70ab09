//! One plugin call: a fresh `Store` from the plugin's `InstancePre`, under the call's limits,
//! and a typed error when it goes wrong.
//!
//! A call's deadline counts the CPU time the plugin's own code runs, not the time the machine
//! spends on other work: on a busy server an honest 50 µs validator that the OS preempts for
//! 20 ms has not overrun, and failing it closed would reject messages because of load. It is
//! enforced twice, because each mechanism misses what the other catches:
//! - epoch interruption: every engine tick (1 ms) the running guest is charged the CPU time
//!   its thread spent in guest code since it last looked (host calls are not charged: wasmtime's
//!   call hook stops the meter while the host runs), and, past the deadline, traps with
//!   `Interrupt`. This stops guest code that never calls out. After its first
//!   [`RUN_BEFORE_YIELDING`] a guest also yields to tokio at every tick, so a long call cannot
//!   pin a worker thread; a short call never yields, so it is not queued behind other tasks
//!   mid-call;
//! - a tokio timeout (wall clock) around the whole call: a guest blocked *inside a host call*
//!   (a WASI sleep, a slow HTTP request) runs no guest code, so only dropping its future
//!   cancels it. When that timeout passes while the guest has used less than its CPU budget,
//!   the time went elsewhere (the host was busy, or the guest waited in a host call). A
//!   decision (validator, delay policy) has no side effects, so it is then made once more on a
//!   fresh instance before its fail-safe applies; a channel call, which may have sent
//!   something, is not repeated.

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
        run: impl AsyncFnOnce(&mut Store<HostState>, &P::Instance) -> wasmtime::Result<T> + Clone,
        check: impl FnOnce(&T, usize) -> Result<(), CallError>,
    ) -> Result<T, CallError> {
        let started = Instant::now();
        let (mut result, overrun) = self.run_once(plugin, pre, call, run.clone()).await;
        if overrun == Overrun::WallClock && plugin.world != World::Channel {
            tracing::debug!(
                target: "dms::plugin",
                message = "A decision passed its deadline on the wall clock with CPU budget left; calling it once more.",
                plugin = %plugin.name,
                message_id = %call.message.id,
            );
            result = self.run_once(plugin, pre, call, run).await.0;
        }
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
    ) -> (Result<T, CallError>, Overrun) {
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
        store.data_mut().cpu = CpuBudget::new(deadline);
        store.epoch_deadline_callback(|mut store| Ok(store.data_mut().cpu.tick()));
        store.call_hook(|mut store, hook| {
            let cpu = &mut store.data_mut().cpu;
            if hook.entering_host() {
                cpu.stop();
            } else {
                cpu.start();
            }
            Ok(())
        });
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
        let budget_left = store.data().cpu.charged < deadline;
        let log_dropped = store.data().log_dropped;
        drop(store);
        // Guest output is logged and may end up in errors that are stored: made safe for both.
        let stdout = crate::text::cleaned(stdio.stdout.take().0);
        let stderr = crate::text::cleaned(stdio.stderr.take().0);
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
            Err(_elapsed) => (
                Err(CallError::Timeout { deadline }),
                if budget_left {
                    Overrun::WallClock
                } else {
                    Overrun::Cpu
                },
            ),
            Ok(Ok(answer)) => {
                if !stderr.is_empty() {
                    tracing::warn!(target: "dms::plugin", plugin = %call, message_id = %message.id, "stderr: {stderr}");
                }
                (Ok(answer), Overrun::No)
            }
            Ok(Err(phase)) => (
                Err(classify(
                    phase,
                    memory_hit,
                    limits.memory_bytes,
                    deadline,
                    &stderr,
                )),
                Overrun::No,
            ),
        }
    }
}

/// Whether, and how, a call ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overrun {
    /// It did not (it answered, or failed for another reason, or its CPU budget trapped it).
    No,
    /// The wall-clock timeout passed while the guest had CPU budget left.
    WallClock,
    /// The wall-clock timeout passed and the guest had used its whole budget.
    Cpu,
}

/// The CPU time a call's guest code has used, from its thread's CPU clock: measured from each
/// entry into guest code (wasmtime's call hook) to the next exit or epoch tick.
///
/// The meter only runs while guest code runs: a host call stops it, and so does a yield to
/// tokio, after which the next tick only restarts it (the guest may resume on another thread,
/// and the time the thread spent on other tasks meanwhile is not the guest's). At most one
/// tick of running time per yield goes uncharged.
#[derive(Debug, Default)]
pub(crate) struct CpuBudget {
    deadline: Duration,
    /// Guest CPU time charged so far.
    pub(crate) charged: Duration,
    /// Where and when the meter last started, while guest code runs.
    running: Option<(ThreadId, Duration)>,
}

impl CpuBudget {
    fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            charged: Duration::ZERO,
            running: None,
        }
    }

    /// Guest code starts (or resumes after a host call) on this thread.
    fn start(&mut self) {
        self.running = Some((thread::current().id(), thread_cpu_time()));
    }

    /// Guest code stops: charges what it ran since it started.
    fn stop(&mut self) {
        if let Some((thread, since)) = self.running.take()
            && thread == thread::current().id()
        {
            self.charged += thread_cpu_time().saturating_sub(since);
        }
    }

    fn tick(&mut self) -> UpdateDeadline {
        // Not running at a tick: the guest resumed after a yield, with no call hook to say so.
        let resumed = self.running.is_none();
        self.stop();
        if self.charged >= self.deadline {
            return UpdateDeadline::Interrupt;
        }
        if !resumed && self.charged >= RUN_BEFORE_YIELDING {
            // Suspended until tokio polls it again, maybe on another thread: the meter
            // restarts at the next tick.
            return UpdateDeadline::Yield(1);
        }
        self.start();
        UpdateDeadline::Continue(1)
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
