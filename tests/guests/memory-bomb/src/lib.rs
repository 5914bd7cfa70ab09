//! Allocates 1 MiB blocks until memory runs out: the host's memory limit must stop it. The
//! blocks are reserved, not written, so the guest reaches the limit in microseconds rather
//! than spending its deadline on page faults.
use dms_plugin_sdk::{Message, Rejection, validator::Guest};

/// The hostile validator.
pub struct MemoryBomb;

impl Guest for MemoryBomb {
    fn validate(_message: Message) -> Result<(), Rejection> {
        let mut blocks = Vec::new();
        loop {
            blocks.push(std::hint::black_box(Vec::<u8>::with_capacity(1 << 20)));
        }
    }
}

dms_plugin_sdk::export_validator!(MemoryBomb);
