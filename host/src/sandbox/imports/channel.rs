//! `dms:plugin/channel-host`: publish, http-send and is-online. Granted to channel plugins
//! only; world detection refuses any other plugin that imports it.

use crate::sandbox::bindings::channel_host::{Host, HttpError, HttpRequest, HttpResponse};
use crate::sandbox::state::{HostState, Published};

/// Largest event a plugin may publish, in bytes: real-time frames are capped at 64 KiB too.
const MAX_EVENT: usize = 64 << 10;
/// Events one delivery may publish: the inbox publishes one.
pub(crate) const MAX_EVENTS_PER_CALL: usize = 16;
/// HTTP requests one delivery may make. A webhook makes one; the cap keeps a plugin from
/// turning one delivery into a flood.
pub(crate) const MAX_REQUESTS_PER_CALL: u32 = 8;

impl Host for HostState {
    #[tracing::instrument(name = "dms.plugin.publish", skip(self, event), fields(plugin = %self.call.plugin, tenant_id = %self.call.tenant_id))]
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
        if user_id.parse::<crate::domain::ids::UserId>().is_err() {
            return Err(format!("{user_id:?} is not a user id"));
        }
        let channel = self.channel_context()?;
        let mut observed = channel.observed.lock().expect("observed lock");
        if observed.published.len() >= MAX_EVENTS_PER_CALL {
            return Err(format!(
                "more than {MAX_EVENTS_PER_CALL} events in one delivery"
            ));
        }
        // Recorded with the delivery's commit, and pushed to live connections after it.
        observed.published.push(Published {
            user_id,
            event: value,
        });
        Ok(())
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
        let observed = channel.observed.clone();
        let response = http.send(&self.binding.allowed_hosts, request).await;
        if to_endpoint && matches!(&response, Ok(response) if response.status == 410) {
            observed.lock().expect("observed lock").endpoint_gone = true;
        }
        response
    }

    async fn is_online(&mut self, user_id: String) -> bool {
        let Ok(channel) = self.channel_context() else {
            return false;
        };
        let presence = channel.presence.clone();
        presence.is_online(&self.call.tenant_id, &user_id).await
    }
}
