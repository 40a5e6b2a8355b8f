//! No context-switch backend on this target: nothing switches registers.
//! Included by `tests/registers.rs` as `mod abi`, so that the harness builds
//! here too; every one of its tests says it skips.

use super::{Abi, Callee, Frame};

/// No calling convention the crate switches.
pub struct Native;

impl Abi for Native {
    const REGISTERS: &'static [&'static str] = &[];
    const PROBES: &'static [(Callee, &'static str)] = probes![];

    fn applies() -> Result<(), String> {
        Err(format!(
            "no stackjob backend on this target (backend {:?}), nothing switches registers",
            stackjob::backend()
        ))
    }

    fn with_sentinels(_: &mut Frame, _: Callee, _: usize) {
        unreachable!("no backend: the harness skips before it loads sentinels");
    }
}

#[test]
fn register_preservation_needs_a_backend() {
    assert!(!stackjob::is_capable(), "a backend exists here but has no register test");
    eprintln!("skipped: no stackjob backend on this target, nothing switches registers");
}
