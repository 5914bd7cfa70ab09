//! Ambiguous or hostile input: duplicate JSON keys, look-alike usernames, oracles, login
//! lock-outs, and bounds the API documents.
