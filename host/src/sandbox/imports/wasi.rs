//! WASI for plugins: linked because Rust's standard library (and Python's and JavaScript's
//! runtimes) import it, but with nothing ambient behind it.
//!
//! `WasiCtxBuilder::new()` already grants no preopened directories, no environment or
//! arguments, and denies every socket address. On top of that, the clocks read the host's
//! [`Clock`] (the same source as `now-ms`), and stdout/stderr go to capped buffers that are
//! written to the server log after the call, so a chatty or hostile guest can neither fill the
//! log nor the host's memory.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use crate::clock::Clock;

/// Bytes of stdout and of stderr kept per call. Enough for a panic message with a backtrace
/// or a Python traceback; the rest is counted and dropped.
pub(crate) const STDIO_CAP: usize = 8 << 10;

/// A guest's stdout or stderr: keeps the first [`STDIO_CAP`] bytes, drops the rest.
#[derive(Clone, Default)]
pub(crate) struct CapturedOutput(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

impl CapturedOutput {
    fn push(&self, bytes: &[u8]) {
        let mut captured = self.0.lock().expect("output lock");
        let room = STDIO_CAP.saturating_sub(captured.bytes.len());
        let kept = room.min(bytes.len());
        captured.bytes.extend_from_slice(&bytes[..kept]);
        captured.dropped += bytes.len() - kept;
    }

    /// What was written, as text, and how many bytes were dropped.
    pub(crate) fn take(&self) -> (String, usize) {
        let mut captured = self.0.lock().expect("output lock");
        let text = String::from_utf8_lossy(&captured.bytes)
            .trim_end()
            .to_owned();
        captured.bytes.clear();
        (text, std::mem::take(&mut captured.dropped))
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// WASI's wall clock, reading the host clock.
struct WallClock(Clock);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now_ms())
    }
}

/// WASI's monotonic clock: nanoseconds since the call started, from the host clock when it is
/// manual (so tests control it) and from `Instant` otherwise.
struct MonotonicClock {
    clock: Clock,
    started_ms: u64,
    started: Instant,
}

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        match &self.clock {
            Clock::System => u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Clock::Manual(_) => self
                .clock
                .now_ms()
                .saturating_sub(self.started_ms)
                .saturating_mul(1_000_000),
        }
    }
}

/// A WASI context with nothing ambient: see the module docs.
pub(crate) fn locked_down(
    clock: &Clock,
    stdout: &CapturedOutput,
    stderr: &CapturedOutput,
) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(WallClock(clock.clone()))
        .monotonic_clock(MonotonicClock {
            clock: clock.clone(),
            started_ms: clock.now_ms(),
            started: Instant::now(),
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}
