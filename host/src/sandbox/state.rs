//! What one plugin call carries in its wasmtime `Store`: the locked-down WASI context, the
//! memory limiter, who is calling (for logs), the binding's configuration and grants, and for
//! channels the network and real-time handles.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::Binding;
use super::imports::http::HttpClient;
use super::imports::presence::Presence;
use super::imports::wasi::{self, CapturedOutput};
use super::limits::MemoryLimiter;
use crate::clock::Clock;

/// Who is calling, for log lines.
pub(crate) struct CallInfo {
    pub(crate) plugin: Arc<str>,
    pub(crate) digest: String,
    pub(crate) tenant_id: String,
    pub(crate) message_id: String,
}

/// An event a channel published during a delivery, for the host to append to the user's feed
/// when it commits the delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The user it is for, as the plugin named them.
    pub user_id: String,
    /// The event: a JSON object.
    pub event: serde_json::Value,
}

/// What the host observed during one delivery, read by the caller after the call.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// The recipient's endpoint answered 410 Gone.
    pub(crate) endpoint_gone: bool,
    /// Events published, in order.
    pub(crate) published: Vec<Published>,
}

/// Handles only channel calls get.
pub(crate) struct ChannelContext {
    pub(crate) http: HttpClient,
    pub(crate) presence: Arc<dyn Presence>,
    /// HTTP requests made so far in this call.
    pub(crate) requests: u32,
    /// The recipient's endpoint.
    pub(crate) endpoint: Option<String>,
    pub(crate) observed: Arc<std::sync::Mutex<Observed>>,
}

pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) call: CallInfo,
    pub(crate) clock: Clock,
    pub(crate) binding: Arc<Binding>,
    pub(crate) channel: Option<ChannelContext>,
    pub(crate) log_lines: u32,
    pub(crate) log_dropped: u32,
    /// The guest's CPU time against its deadline (see `call.rs`).
    pub(crate) cpu: super::call::CpuBudget,
}

/// The guest's captured stdout and stderr, readable after the store is gone.
pub(crate) struct Stdio {
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
}

impl HostState {
    pub(crate) fn new(
        call: CallInfo,
        clock: Clock,
        binding: Arc<Binding>,
        memory_limit: usize,
        channel: Option<ChannelContext>,
    ) -> (Self, Stdio) {
        let stdio = Stdio {
            stdout: CapturedOutput::default(),
            stderr: CapturedOutput::default(),
        };
        let state = Self {
            wasi: wasi::locked_down(&clock, &stdio.stdout, &stdio.stderr),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            call,
            clock,
            binding,
            channel,
            log_lines: 0,
            log_dropped: 0,
            cpu: super::call::CpuBudget::default(),
        };
        (state, stdio)
    }

    pub(crate) fn channel_context(&mut self) -> Result<&mut ChannelContext, String> {
        self.channel
            .as_mut()
            .ok_or_else(|| "only channel plugins may use this import".to_owned())
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
