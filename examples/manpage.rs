//! The example program of OpenSSL's `ASYNC_start_job(3)` man page, written
//! with stackjob.
//!
//! `main` starts a job and, each time it pauses, waits for the single fd the
//! job registered in its wait context before resuming it. The job creates a
//! pipe, registers the read end, writes one byte into the pipe itself (so
//! the wait ends at once; a real engine would write it when its hardware is
//! done), pauses, and reads the byte back when resumed. Output:
//!
//! ```text
//! Starting...
//! Executing within a job
//! Passed in message is: Hello world!
//! Job was paused
//! Waiting for the job to be woken up
//! Resumed the job after a pause
//! Job finished with return value 1
//! Finishing
//! ```
//!
//! Where jobs cannot run (`stackjob::is_capable()` is false), `start` fails
//! and the program prints "Starting...", "An error occurred", "Finishing".
//!
//! Run it with `cargo run --example manpage`.

use std::ffi::{CStr, c_int};
use std::io;
use std::process;

use stackjob::{Step, WaitCtx, WaitKey};

/// The key the job's wait fd is registered under: the address of something
/// the "engine" owns, as in OpenSSL.
static PIPE_KEY: u8 = 0;

fn main() {
    println!("Starting...");

    let ctx = WaitCtx::new();
    // The job gets its own copy of the message (OpenSSL copies `size` bytes
    // of `args`); the closure moves it onto the job's stack.
    let msg: [u8; 13] = *b"Hello world!\0";
    let mut step = stackjob::start(Some(&ctx), move || jobfunc(msg));
    loop {
        match step {
            Err(err) => {
                println!("An error occurred");
                eprintln!("manpage: {err}");
                break;
            }
            Ok(Step::Paused(job)) => {
                println!("Job was paused");
                println!("Waiting for the job to be woken up");
                wait_readable(only_fd(&ctx));
                step = job.resume();
            }
            Ok(Step::Finished(ret)) => {
                println!("Job finished with return value {ret}");
                break;
            }
        }
    }

    // The last handle to the context: its cleanup closes the pipe.
    drop(ctx);
    println!("Finishing");
}

/// The job: pause once, woken through a pipe registered in its wait context.
fn jobfunc(msg: [u8; 13]) -> c_int {
    if !stackjob::in_job() {
        println!("Not executing within a job - should not happen");
        return 0;
    }
    println!("Executing within a job");

    let Some(ctx) = stackjob::current_wait_ctx() else {
        println!("No wait context - should not happen");
        return 0;
    };
    let text = CStr::from_bytes_until_nul(&msg).ok().and_then(|s| s.to_str().ok()).unwrap_or("<not a C string>");
    println!("Passed in message is: {text}");

    let mut fds: [c_int; 2] = [-1; 2];
    // SAFETY: `fds` is an array of two c_ints, which is what pipe(2) fills.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) }, "pipe");
    let [read_fd, write_fd] = fds;

    // The write end travels as the entry's data word; the cleanup, run when
    // the last handle to the context is dropped, closes both ends.
    let Ok(data) = usize::try_from(write_fd) else {
        fail("pipe", "it returned a negative file descriptor");
    };
    ctx.set_wait_fd(
        WaitKey::of(&PIPE_KEY),
        read_fd,
        data,
        Some(Box::new(|_key, fd, data| {
            // SAFETY: `fd` is the pipe's read end, registered by this job and
            // closed only here.
            check(unsafe { libc::close(fd) }, "close (read end)");
            let Ok(write_fd) = c_int::try_from(data) else {
                fail("close (write end)", "the data word is not a file descriptor");
            };
            // SAFETY: `data` holds the pipe's write end, closed only here.
            check(unsafe { libc::close(write_fd) }, "close (write end)");
        })),
    );

    // Signal the wake-up before pausing: the resumer's wait returns at once.
    let byte = [b'X'];
    // SAFETY: `byte` is one readable byte; `write_fd` is open.
    let written = unsafe { libc::write(write_fd, byte.as_ptr().cast(), 1) };
    if written != 1 {
        fail("write", io::Error::last_os_error());
    }

    stackjob::pause();

    // Consume the wake-up so the fd is quiet for the next pause.
    let mut buf = [0u8; 1];
    // SAFETY: `buf` is one writable byte; `read_fd` is open.
    let got = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), 1) };
    if got != 1 {
        fail("read", io::Error::last_os_error());
    }
    println!("Resumed the job after a pause");
    1
}

/// The one fd the paused job registered; anything else is a bug here.
fn only_fd(ctx: &WaitCtx) -> c_int {
    if ctx.fd_count() != 1 {
        fail("wait", format_args!("expected exactly one wait fd, found {}", ctx.fd_count()));
    }
    ctx.all_fds()[0]
}

/// Blocks until `fd` is readable (the man page uses select(2)).
fn wait_readable(fd: c_int) {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: `pfd` is one valid pollfd and we pass a count of 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, -1) };
        if rc > 0 {
            return;
        }
        let err = io::Error::last_os_error();
        if rc == 0 || err.kind() != io::ErrorKind::Interrupted {
            fail("poll", err);
        }
    }
}

/// Exits with an error message if a libc call returned -1.
fn check(rc: c_int, what: &str) {
    if rc == -1 {
        fail(what, io::Error::last_os_error());
    }
}

fn fail(what: &str, why: impl std::fmt::Display) -> ! {
    eprintln!("manpage: {what} failed: {why}");
    process::exit(1);
}
