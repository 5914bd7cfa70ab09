//! One module per console section; each handler reads through the use cases and renders its
//! template. Query strings are the pages' state, so every view is a link to share.

pub(crate) mod sign_in;
pub(crate) mod users;

// Messages, a message's page, dead letters.
pub(crate) mod messages;

// Plugins, hooks and dry runs; the webhook endpoint.
pub(crate) mod plugins;
pub(crate) mod webhook;

// The overview, the live feed, groups, schedules and flow control.
pub(crate) mod flow;
pub(crate) mod groups;
pub(crate) mod live;
pub(crate) mod overview;
pub(crate) mod schedules;
