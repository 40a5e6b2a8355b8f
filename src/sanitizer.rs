//! Telling Valgrind and AddressSanitizer about job stacks and the switches
//! between them.
//!
//! Both tools keep a picture of "the stack" of every thread, and both are
//! misled when the stack pointer jumps into memory they do not know as a
//! stack.
//!
//! **Valgrind** (always compiled in). Memcheck takes a stack-pointer move
//! of less than `--max-stackframe` (2 MB) for a frame being pushed or
//! popped, and marks everything in between undefined or inaccessible: a
//! switch between a thread stack and a nearby job stack shows up as
//! thousands of bogus "uninitialised value" and "invalid read" errors (a
//! longer jump draws "client switching stacks?" warnings). A move into
//! another *registered* stack is recognised as a switch instead, and
//! Valgrind remembers each registered stack's own stack pointer across
//! the switch. Valgrind registers the main stack and every thread's stack
//! itself (at `clone`); job stacks are registered here when they are
//! mapped and deregistered before they are unmapped. The requests are
//! Valgrind's client-request instruction sequences (`valgrind.h`,
//! `VALGRIND_DO_CLIENT_REQUEST_EXPR`) in inline asm: no C, no header, no
//! dependency. Outside Valgrind each is a few register rotations that
//! leave every register as it was; they run when a stack is created,
//! destroyed or scrubbed, never on a switch.
//!
//! **AddressSanitizer** (the `asan` feature, with nightly
//! `-Zsanitizer=address`). Every switch is bracketed by
//! `__sanitizer_start_switch_fiber` (on the side being left, naming the
//! stack about to run) and `__sanitizer_finish_switch_fiber` (first thing
//! on the side that runs next), the protocol of compiler-rt's
//! `sanitizer/common_interface_defs.h`. ASan then always knows the bounds
//! of the running stack (it needs them to unpoison the frames an unwind
//! skips, in `__asan_handle_no_return`) and keeps one fake stack (where
//! use-after-return detection puts address-taken locals) per side of the
//! switch instead of mixing both sides' frames in one. A job learns its
//! resumer's stack from `finish_switch_fiber`, which reports the stack
//! that was left, so no thread-stack query is needed. Job stacks are also
//! LeakSanitizer root regions: what a paused (or quarantined) job holds
//! stays reachable. Without the feature the hooks below are empty
//! `#[inline(always)]` functions and the switch path is unchanged.

cfg_if::cfg_if! {
    if #[cfg(target_arch = "x86_64")] {
        /// One Valgrind client request: `args` = [request, arg1..arg5];
        /// returns Valgrind's answer, or `default` outside Valgrind.
        ///
        /// # Safety
        /// The request must be one whose arguments Valgrind may act on
        /// without breaking the program (the stack requests below only
        /// update Valgrind's bookkeeping).
        #[inline(always)]
        unsafe fn client_request(default: usize, args: &[usize; 6]) -> usize {
            let result;
            // SAFETY: valgrind.h's amd64 sequence. The four rotations of rdi
            // add up to 128 bits, a whole number of turns, so rdi ends as it
            // began; `xchg rbx, rbx` changes nothing. Only the flags (not
            // preserved: no `preserves_flags`) and, under Valgrind, rdx (the
            // declared output) change. Valgrind reads `args` through rax,
            // which is why the block is not `nomem`.
            unsafe {
                core::arch::asm!(
                    "rol rdi, 3",
                    "rol rdi, 13",
                    "rol rdi, 61",
                    "rol rdi, 51",
                    "xchg rbx, rbx",
                    in("rax") args.as_ptr(),
                    inout("rdx") default => result,
                    options(nostack),
                );
            }
            result
        }
    } else if #[cfg(target_arch = "aarch64")] {
        /// One Valgrind client request; see the x86_64 version.
        ///
        /// # Safety
        /// As for the x86_64 version.
        #[inline(always)]
        unsafe fn client_request(default: usize, args: &[usize; 6]) -> usize {
            let result;
            // SAFETY: valgrind.h's arm64 sequence. The four rotations of x12
            // add up to 128 bits, so x12 ends as it began; `orr x10, x10,
            // x10` changes nothing. Under Valgrind only x3 (the declared
            // output) changes. Valgrind reads `args` through x4.
            unsafe {
                core::arch::asm!(
                    "ror x12, x12, #3",
                    "ror x12, x12, #13",
                    "ror x12, x12, #51",
                    "ror x12, x12, #61",
                    "orr x10, x10, x10",
                    in("x4") args.as_ptr(),
                    inout("x3") default => result,
                    options(nostack),
                );
            }
            result
        }
    } else {
        /// No client-request sequence confirmed for this target (riscv64
        /// among them): every request answers `default`, as it would
        /// outside Valgrind.
        ///
        /// # Safety
        /// None needed; `unsafe` to match the real versions.
        #[inline(always)]
        unsafe fn client_request(default: usize, _args: &[usize; 6]) -> usize {
            default
        }
    }
}

// Request codes from valgrind.h (`Vg_ClientRequest`).
const STACK_REGISTER: usize = 0x1501;
const STACK_DEREGISTER: usize = 0x1502;

/// Registers `[lowest, top]` as a stack with Valgrind and returns its id
/// (0 outside Valgrind). `top` is the stack pointer of the empty stack:
/// Valgrind's bounds are inclusive, and a full-descending stack pointer
/// takes every value from `top` down to `lowest`.
fn valgrind_register(lowest: *mut u8, top: *mut u8) -> usize {
    // SAFETY: STACK_REGISTER only records the range in Valgrind's list of
    // stacks; it touches no client memory.
    unsafe { client_request(0, &[STACK_REGISTER, lowest as usize, top as usize, 0, 0, 0]) }
}

/// Undoes [`valgrind_register`].
fn valgrind_deregister(id: usize) {
    // Outside Valgrind every id is 0 and the request does nothing. Under
    // Valgrind 0 is the main thread's stack, which Valgrind registered
    // itself and never hands out again: never deregister it.
    if id != 0 {
        // SAFETY: STACK_DEREGISTER only drops the id from Valgrind's list.
        unsafe { client_request(0, &[STACK_DEREGISTER, id, 0, 0, 0, 0]) };
    }
}

// Memcheck's requests (memcheck.h): VG_USERREQ_TOOL_BASE('M', 'C') + n.
const MAKE_MEM_UNDEFINED: usize = 0x4d43_0001;
const MAKE_MEM_DEFINED: usize = 0x4d43_0002;

/// Runs `f`, which reads and overwrites `[from, from + len)`: dead frames
/// of a finished job's stack, being scrubbed. Memcheck may hold memory that
/// lay below a stack pointer inaccessible, so it is made accessible for
/// `f`. Afterwards it is left addressable but undefined, as an idle stack's
/// memory is: the next job's frames grow down from its top. (Under a
/// Valgrind tool
/// other than memcheck the two requests go unhandled, and Valgrind may say
/// so.)
pub(crate) fn scrubbing_dead_stack<T>(from: *mut u8, len: usize, f: impl FnOnce() -> T) -> T {
    // SAFETY: the memcheck requests change only memcheck's view of the
    // range, never its contents.
    unsafe { client_request(0, &[MAKE_MEM_DEFINED, from as usize, len, 0, 0, 0]) };
    let result = f();
    // SAFETY: as above.
    unsafe { client_request(0, &[MAKE_MEM_UNDEFINED, from as usize, len, 0, 0, 0]) };
    result
}

/// A job stack's registrations, stored in the stack's own header.
#[derive(Debug)]
pub(crate) struct StackRegistration {
    valgrind: usize,
}

/// Announces a newly mapped job stack: the stack pointer will range over
/// `[lowest, top]`; `[lowest, end)` is readable memory of the stack (its
/// frames, and above `top` the job slot and header).
#[cold]
#[inline(never)]
pub(crate) fn stack_created(lowest: *mut u8, top: *mut u8, end: *mut u8) -> StackRegistration {
    #[cfg(feature = "asan")]
    {
        // SAFETY: the range is readable memory we own until
        // `stack_destroyed`, which unregisters exactly this region before
        // it is unmapped.
        unsafe { asan::__lsan_register_root_region(lowest.cast(), end as usize - lowest as usize) };
    }
    #[cfg(not(feature = "asan"))]
    let _ = end;
    StackRegistration { valgrind: valgrind_register(lowest, top) }
}

/// Undoes [`stack_created`] (same `lowest` and `end`), before the stack is
/// unmapped.
pub(crate) fn stack_destroyed(reg: &StackRegistration, lowest: *mut u8, end: *mut u8) {
    valgrind_deregister(reg.valgrind);
    #[cfg(feature = "asan")]
    {
        // SAFETY: `stack_created` registered exactly this region.
        unsafe { asan::__lsan_unregister_root_region(lowest.cast(), end as usize - lowest as usize) };
    }
    #[cfg(not(feature = "asan"))]
    let _ = (lowest, end);
}

// ---------------------------------------------------------------------------
// AddressSanitizer fiber annotations
// ---------------------------------------------------------------------------

#[cfg(feature = "asan")]
mod asan {
    use core::ffi::c_void;

    // compiler-rt: sanitizer/common_interface_defs.h and sanitizer/lsan_interface.h.
    // Present in every binary built with -Zsanitizer=address (the `asan`
    // feature without it fails to link, by design).
    unsafe extern "C" {
        pub(super) fn __sanitizer_start_switch_fiber(
            fake_stack_save: *mut *mut c_void,
            bottom: *const c_void,
            size: usize,
        );
        pub(super) fn __sanitizer_finish_switch_fiber(
            fake_stack_save: *mut c_void,
            bottom_old: *mut *const c_void,
            size_old: *mut usize,
        );
        // sanitizer/asan_interface.h
        pub(super) fn __asan_unpoison_memory_region(addr: *const c_void, size: usize);
        pub(super) fn __lsan_register_root_region(p: *const c_void, size: usize);
        pub(super) fn __lsan_unregister_root_region(p: *const c_void, size: usize);
    }
}

/// Resumer side, once a job has finished: the job's frames ended without
/// returning (a job leaves its stack by a switch), so the redzones
/// AddressSanitizer poisoned in them are still poisoned. They are cleared
/// before the stack is scrubbed or lent to the next job, whose frames
/// would otherwise run into them.
#[inline(always)]
pub(crate) fn job_finished(bounds: impl FnOnce() -> (*mut u8, usize)) {
    #[cfg(feature = "asan")]
    {
        let (bottom, size) = bounds();
        // SAFETY: changes only ASan's shadow of the job's own usable stack,
        // on which nothing runs any more.
        unsafe { asan::__asan_unpoison_memory_region(bottom.cast(), size) };
    }
    #[cfg(not(feature = "asan"))]
    let _ = bounds;
}

/// Whether the AddressSanitizer annotations are compiled in (the `asan`
/// feature).
pub(crate) const ENABLED: bool = cfg!(feature = "asan");

/// The stack a running job switches back to (its latest resumer's), as ASan
/// reported it when the job was last switched in. Kept in the job's slot.
/// Zero-sized without the `asan` feature.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResumerStack {
    #[cfg(feature = "asan")]
    bottom: *const core::ffi::c_void,
    #[cfg(feature = "asan")]
    size: usize,
}

impl ResumerStack {
    pub(crate) const UNKNOWN: ResumerStack = ResumerStack {
        #[cfg(feature = "asan")]
        bottom: core::ptr::null(),
        #[cfg(feature = "asan")]
        size: 0,
    };
}

/// What the side that switches away keeps on its own stack until it runs
/// again: its ASan fake stack. Zero-sized without the `asan` feature.
#[must_use]
pub(crate) struct Departure {
    #[cfg(feature = "asan")]
    fake_stack: *mut core::ffi::c_void,
}

/// Resumer side, right before `switch_in`: the job's stack, `(lowest
/// usable address, usable size)`, is about to run. `bounds` is only called
/// with the `asan` feature.
#[inline(always)]
pub(crate) fn switching_to_job(bounds: impl FnOnce() -> (*mut u8, usize)) -> Departure {
    #[cfg(feature = "asan")]
    {
        let (bottom, size) = bounds();
        let mut fake_stack = core::ptr::null_mut();
        // SAFETY: announces the switch that follows at once; the resumer's
        // fake stack is saved in `fake_stack` and handed back by
        // `back_from_job` when this side runs again.
        unsafe { asan::__sanitizer_start_switch_fiber(&mut fake_stack, bottom.cast(), size) };
        Departure { fake_stack }
    }
    #[cfg(not(feature = "asan"))]
    {
        let _ = bounds;
        Departure {}
    }
}

/// Resumer side, right after `switch_in` returned: the job switched out.
#[inline(always)]
pub(crate) fn back_from_job(departure: Departure) {
    #[cfg(feature = "asan")]
    // SAFETY: completes the switch the job started; `departure` holds this
    // side's fake stack from `switching_to_job`. The job's bounds (the old
    // ones) are not needed here: `switching_to_job` asks the stack again.
    unsafe {
        asan::__sanitizer_finish_switch_fiber(departure.fake_stack, core::ptr::null_mut(), core::ptr::null_mut())
    };
    #[cfg(not(feature = "asan"))]
    let _ = departure;
}

/// Job side, first thing of every job on its stack: completes the resumer's
/// switch and records the resumer's stack in `resumer`. The job starts with
/// no fake stack of its own (ASan makes one when needed).
///
/// # Safety
/// Must run on the job stack right after the switch in; `resumer` must be
/// valid for writes.
#[inline(always)]
pub(crate) unsafe fn job_begins(resumer: *mut ResumerStack) {
    #[cfg(feature = "asan")]
    // SAFETY: completes the switch started by `switching_to_job`; the
    // caller guarantees `resumer` is writable.
    unsafe {
        asan::__sanitizer_finish_switch_fiber(
            core::ptr::null_mut(),
            &raw mut (*resumer).bottom,
            &raw mut (*resumer).size,
        )
    };
    #[cfg(not(feature = "asan"))]
    let _ = resumer;
}

/// Job side, right before `switch_out` in a pause: the resumer's stack is
/// about to run; the job's fake stack is kept for its resumption.
///
/// # Safety
/// Must run on the job stack, with `resumer` as `job_begins` or
/// `job_resumed` last wrote it.
#[inline(always)]
pub(crate) unsafe fn job_pausing(resumer: *const ResumerStack) -> Departure {
    #[cfg(feature = "asan")]
    {
        let mut fake_stack = core::ptr::null_mut();
        // SAFETY: announces the switch out that follows at once, to the
        // stack ASan reported for the resumer; the caller guarantees
        // `resumer` is readable.
        unsafe { asan::__sanitizer_start_switch_fiber(&mut fake_stack, (*resumer).bottom, (*resumer).size) };
        Departure { fake_stack }
    }
    #[cfg(not(feature = "asan"))]
    {
        let _ = resumer;
        Departure {}
    }
}

/// Job side, right after `switch_out` returned in a pause: the job was
/// resumed, perhaps by another resumer (from another job's stack), whose
/// stack is recorded in `resumer`.
///
/// # Safety
/// Must run on the job stack right after the switch in; `resumer` must be
/// valid for writes.
#[inline(always)]
pub(crate) unsafe fn job_resumed(departure: Departure, resumer: *mut ResumerStack) {
    #[cfg(feature = "asan")]
    // SAFETY: completes the resumer's switch and gives the job back its
    // fake stack; the caller guarantees `resumer` is writable.
    unsafe {
        asan::__sanitizer_finish_switch_fiber(
            departure.fake_stack,
            &raw mut (*resumer).bottom,
            &raw mut (*resumer).size,
        )
    };
    #[cfg(not(feature = "asan"))]
    let _ = (departure, resumer);
}

/// Job side, right before the final `switch_out` of a finished job: every
/// frame of the job has returned, so its fake stack is released (the
/// protocol's null `fake_stack_save`). The stack's next job starts at
/// [`job_begins`].
///
/// # Safety
/// As for [`job_pausing`].
#[inline(always)]
pub(crate) unsafe fn job_ends(resumer: *const ResumerStack) {
    #[cfg(feature = "asan")]
    // SAFETY: as in `job_pausing`; a null save pointer tells ASan this
    // fiber's fake stack may be destroyed.
    unsafe {
        asan::__sanitizer_start_switch_fiber(core::ptr::null_mut(), (*resumer).bottom, (*resumer).size)
    };
    #[cfg(not(feature = "asan"))]
    let _ = resumer;
}
