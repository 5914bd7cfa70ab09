//! Recurses without bound: the guest's stack runs off its linear memory and traps.
use dms_plugin_sdk::{Message, Rejection, validator::Guest};

/// The hostile validator.
pub struct DeepRecursion;

#[inline(never)]
#[allow(unconditional_recursion, reason = "the point of this guest")]
fn descend(depth: u64, frame: [u8; 256]) -> u64 {
    let frame = std::hint::black_box(frame);
    descend(depth + 1, frame) + u64::from(frame[(depth % 256) as usize])
}

impl Guest for DeepRecursion {
    fn validate(_message: Message) -> Result<(), Rejection> {
        let depth = descend(0, [1; 256]);
        Err(Rejection::new("unreachable", depth.to_string()))
    }
}

dms_plugin_sdk::export_validator!(DeepRecursion);
