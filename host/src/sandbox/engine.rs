//! The one wasmtime engine: its configuration, the pooling allocator and the epoch ticker.
//!
//! Every setting here says why it has its value; `Limits` holds the per-call caps.

use std::thread;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::SetupError;

/// How often the engine's epoch advances. Each tick lets a running guest check its wall-clock
/// deadline (and yield to tokio), so a CPU-bound guest overshoots its deadline by at most
/// about one tick. 1 ms keeps the 10 ms decision deadline precise; the ticker thread costs a
/// wake-up per millisecond and nothing else.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Native stack a guest may use. wasmtime's default; the guest's own (shadow) stack lives in
/// its linear memory and is bounded by the memory cap.
const MAX_WASM_STACK: usize = 512 << 10;

/// Memory reset in place (memset) per pooled slot when an instance is dropped, instead of being
/// handed back to the kernel with `madvise` — which costs a TLB-shootdown interrupt on every
/// other core running the process and a page fault per page on the next call.
///
/// With `PAGEMAP_SCAN` (Linux 6.7+) wasmtime finds exactly the pages a call dirtied and resets
/// only those, up to this many bytes: a Rust plugin dirties a few dozen pages, so 1 MiB keeps
/// them all resident and a fresh-instance call drops from about 30 µs to 12 µs
/// (docs/BENCHMARKS.md). Without the ioctl this many *low* bytes are memset whether dirty or
/// not, so the value falls back to 64 KiB, where it helps rather than hurts.
fn keep_resident() -> usize {
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        1 << 20
    } else {
        64 << 10
    }
}

/// Builds the engine: Cranelift, component model, async, epoch interruption, and a pooling
/// allocator sized for `max_instances` concurrent calls with memories of up to `max_memory`.
pub(crate) fn build(max_instances: u32, max_memory: usize) -> Result<Engine, SetupError> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(max_instances)
        // A wasm32-wasip2 Rust component instantiates a handful of core instances; Python and
        // JavaScript runtimes a few more. Eight per component leaves room for both.
        .total_core_instances(max_instances.saturating_mul(8))
        .total_memories(max_instances.saturating_mul(2))
        .total_tables(max_instances.saturating_mul(8))
        .total_stacks(max_instances)
        .max_memory_size(max_memory)
        .linear_memory_keep_resident(keep_resident())
        .table_keep_resident(keep_resident())
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).map_err(|error| SetupError::Engine(format!("{error:#}")))?;
    start_epoch_ticker(&engine);
    Ok(engine)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a dedicated thread, which stops by
/// itself once the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    thread::Builder::new()
        .name("dms-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}
