//! What a receiver or a plugin can put into a delivery's outcome: control characters, secrets
//! in URLs, and data the database refuses; none of it may leave a message undeliverable.
