//! The "not capable" backend (OpenSSL's `async_null` idea): the crate builds
//! on every target, `is_capable()` is `false` and `start` returns
//! [`Error::NotCapable`](crate::Error::NotCapable). None of these functions
//! is reachable, because every path to them first checks [`CAPABLE`].

use super::{Entry, Regs};

/// No context-switch backend exists for this target.
pub(crate) const CAPABLE: bool = false;

/// Name of the backend, for messages.
pub(crate) const BACKEND: &str = "none";

pub(crate) unsafe fn enter(_regs: *mut Regs, _top: *mut u8, _entry: Entry, _fp_env: bool) {
    unreachable!("stackjob: no context-switch backend on this target")
}

pub(crate) unsafe fn switch_in(_regs: *mut Regs, _fp_env: bool) {
    unreachable!("stackjob: no context-switch backend on this target")
}

pub(crate) unsafe fn switch_out(_regs: *mut Regs, _fp_env: bool) -> bool {
    unreachable!("stackjob: no context-switch backend on this target")
}

/// No record exists on this target (never read: nothing switches out).
pub(crate) const RESUME_PC: usize = 0;

/// No cancel path exists on this target (never read).
pub(crate) const CANCEL_PATH: usize = 0;

pub(crate) unsafe fn exit(_regs: *mut Regs, _fp_env: bool) -> ! {
    unreachable!("stackjob: no context-switch backend on this target")
}

/// No job stack exists on this target: an address in no stack.
pub(crate) fn stack_pointer() -> usize {
    0
}
