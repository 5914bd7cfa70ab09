//! `dms:plugin/channel-host`: publish, http-send and is-online. Granted to channel plugins
//! only; world detection refuses any other plugin that imports it.

use crate::sandbox::bindings::channel_host::{Host, HttpError, HttpRequest, HttpResponse};
use crate::sandbox::state::HostState;

/// Largest event a plugin may publish, in bytes: real-time frames are capped at 64 KiB too.
const MAX_EVENT: usize = 64 << 10;
/// HTTP requests one delivery may make. A webhook makes one; the cap keeps a plugin from
/// turning one delivery into a flood.
pub(crate) const MAX_REQUESTS_PER_CALL: u32 = 8;

impl Host for HostState {
    #[tracing::instrument(name = "dms.plugin.realtime.publish", skip(self, event), fields(plugin = %self.call.plugin, tenant_id = %self.call.tenant_id))]
    async fn publish(&mut self, user_id: String, event: String) -> Result<(), String> {
        if event.len() > MAX_EVENT {
            return Err(format!(
                "the event is {} bytes; the limit is {MAX_EVENT}",
                event.len()
            ));
        }
        let value: serde_json::Value = serde_json::from_str(&event)
            .map_err(|error| format!("the event is not JSON: {error}"))?;
        if !value.is_object() {
            return Err("the event must be a JSON object".to_owned());
        }
        let realtime = self.channel_context()?.realtime.clone();
        realtime
            .publish(&self.call.tenant_id, &user_id, value)
            .await
    }

    #[tracing::instrument(name = "dms.plugin.http.send", skip(self, request), fields(plugin = %self.call.plugin, url = %request.url))]
    async fn http_send(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let channel = self.channel_context().map_err(HttpError::InvalidRequest)?;
        if channel.requests >= MAX_REQUESTS_PER_CALL {
            return Err(HttpError::InvalidRequest(format!(
                "more than {MAX_REQUESTS_PER_CALL} HTTP requests in one delivery"
            )));
        }
        channel.requests += 1;
        let http = channel.http.clone();
        let to_endpoint = channel.endpoint.as_deref() == Some(request.url.as_str());
        let gone = channel.endpoint_gone.clone();
        let response = http.send(&self.binding.allowed_hosts, request).await;
        if to_endpoint && matches!(&response, Ok(response) if response.status == 410) {
            gone.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        response
    }

    async fn is_online(&mut self, user_id: String) -> bool {
        let Ok(channel) = self.channel_context() else {
            return false;
        };
        let realtime = channel.realtime.clone();
        realtime.is_online(&self.call.tenant_id, &user_id).await
    }
}
