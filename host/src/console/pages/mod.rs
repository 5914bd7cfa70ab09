//! One module per console section; each handler reads through the use cases and renders its
//! template. Query strings are the pages' state, so every view is a link to share.

pub(crate) mod sign_in;
pub(crate) mod users;

// Messages, a message's page, dead letters.
pub(crate) mod messages;

// Plugins, hooks and dry runs; the webhook endpoint.

// The overview, the live feed, groups, schedules and flow control.
