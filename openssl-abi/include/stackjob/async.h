/*
 * stackjob/async.h: OpenSSL's <openssl/async.h> API (3.0, plus 3.1's
 * ASYNC_set/get_mem_functions) served by libstackjob_openssl, with no
 * OpenSSL on the machine; and this library's extensions, all named
 * stackjob_* / STACKJOB_*.
 *
 *   cc app.c $(pkg-config --cflags --libs stackjob-async)
 *
 * The pkg-config flags also put <openssl/async.h> on the include path as
 * a wrapper around this header, so code written for OpenSSL compiles
 * unchanged. Kept by hand; openssl-abi/tests/c_programs.rs checks every
 * declaration here against the library's exports, and the constants
 * against the library's own.
 */
#ifndef STACKJOB_ASYNC_H
#define STACKJOB_ASYNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------ OpenSSL's API, as is */

#ifndef OPENSSL_ASYNC_H
/* Not already declared by OpenSSL's own header (included first). */
#define OSSL_ASYNC_FD int
#define OSSL_BAD_ASYNC_FD -1

typedef struct async_job_st ASYNC_JOB;
typedef struct async_wait_ctx_st ASYNC_WAIT_CTX;
typedef int (*ASYNC_callback_fn)(void *arg);

#define ASYNC_ERR 0
#define ASYNC_NO_JOBS 1
#define ASYNC_PAUSE 2
#define ASYNC_FINISH 3

#define ASYNC_STATUS_UNSUPPORTED 0
#define ASYNC_STATUS_ERR 1
#define ASYNC_STATUS_OK 2
#define ASYNC_STATUS_EAGAIN 3

int ASYNC_init_thread(size_t max_size, size_t init_size);
void ASYNC_cleanup_thread(void);

ASYNC_WAIT_CTX *ASYNC_WAIT_CTX_new(void);
void ASYNC_WAIT_CTX_free(ASYNC_WAIT_CTX *ctx);
int ASYNC_WAIT_CTX_set_wait_fd(ASYNC_WAIT_CTX *ctx, const void *key,
                               OSSL_ASYNC_FD fd, void *custom_data,
                               void (*cleanup)(ASYNC_WAIT_CTX *, const void *,
                                               OSSL_ASYNC_FD, void *));
int ASYNC_WAIT_CTX_get_fd(ASYNC_WAIT_CTX *ctx, const void *key,
                          OSSL_ASYNC_FD *fd, void **custom_data);
int ASYNC_WAIT_CTX_get_all_fds(ASYNC_WAIT_CTX *ctx, OSSL_ASYNC_FD *fd,
                               size_t *numfds);
int ASYNC_WAIT_CTX_get_callback(ASYNC_WAIT_CTX *ctx,
                                ASYNC_callback_fn *callback,
                                void **callback_arg);
int ASYNC_WAIT_CTX_set_callback(ASYNC_WAIT_CTX *ctx,
                                ASYNC_callback_fn callback,
                                void *callback_arg);
int ASYNC_WAIT_CTX_set_status(ASYNC_WAIT_CTX *ctx, int status);
int ASYNC_WAIT_CTX_get_status(ASYNC_WAIT_CTX *ctx);
int ASYNC_WAIT_CTX_get_changed_fds(ASYNC_WAIT_CTX *ctx, OSSL_ASYNC_FD *addfd,
                                   size_t *numaddfds, OSSL_ASYNC_FD *delfd,
                                   size_t *numdelfds);
int ASYNC_WAIT_CTX_clear_fd(ASYNC_WAIT_CTX *ctx, const void *key);

int ASYNC_is_capable(void);

int ASYNC_start_job(ASYNC_JOB **job, ASYNC_WAIT_CTX *ctx, int *ret,
                    int (*func)(void *), void *args, size_t size);
int ASYNC_pause_job(void);

ASYNC_JOB *ASYNC_get_current_job(void);
ASYNC_WAIT_CTX *ASYNC_get_wait_ctx(ASYNC_JOB *job);
void ASYNC_block_pause(void);
void ASYNC_unblock_pause(void);
#endif /* OPENSSL_ASYNC_H */

/* OpenSSL 3.1; absent from 3.0's header. Stacks come from alloc_fn (see
 * README "For C code"): the stack size plus two pages is asked for, and
 * the block's first whole page becomes a guard page when the block is
 * large enough. Returns 0 once any job stack was created. */
#if !defined(OPENSSL_VERSION_NUMBER) || OPENSSL_VERSION_NUMBER < 0x30100000L
#ifndef STACKJOB_ASYNC_MEM_FUNCTIONS_DECLARED
#define STACKJOB_ASYNC_MEM_FUNCTIONS_DECLARED
typedef void *(*ASYNC_stack_alloc_fn)(size_t *num);
typedef void (*ASYNC_stack_free_fn)(void *addr);
int ASYNC_set_mem_functions(ASYNC_stack_alloc_fn alloc_fn,
                            ASYNC_stack_free_fn free_fn);
void ASYNC_get_mem_functions(ASYNC_stack_alloc_fn *alloc_fn,
                             ASYNC_stack_free_fn *free_fn);
#endif
#endif

/* ------------------------------------------ stackjob's extensions */

/* The library version these declarations describe. */
#define STACKJOB_ASYNC_VERSION_MAJOR 0
#define STACKJOB_ASYNC_VERSION_MINOR 1

/* Cancels a paused job of the calling thread. Its frames are unwound when
 * every one of them has unwind information (gcc and clang emit it by
 * default on x86_64 and aarch64: -fasynchronous-unwind-tables); C frames
 * run no cleanup, Rust frames drop what they own. The stack then goes back
 * to the pool. Frames without unwind information cannot be unwound: the
 * stack is then quarantined (kept mapped, never reused). Either way the
 * job never runs again, its wait ctx reference is dropped and the handle
 * is stale from now on (ASYNC_start_job with it returns ASYNC_ERR, a wake
 * handle of it does nothing).
 * Returns STACKJOB_CANCEL_UNWOUND or STACKJOB_CANCEL_QUARANTINED, or 0 if
 * `job` is not a paused job of this thread (stale, invented, running, or
 * another thread's): then nothing happens. */
#define STACKJOB_CANCEL_UNWOUND 1
#define STACKJOB_CANCEL_QUARANTINED 2
int stackjob_async_cancel_job(ASYNC_JOB *job);

/* The calling thread's job stacks: usable bytes and guard region bytes
 * (0 = the process default: STACKJOB_STACK_SIZE / STACKJOB_GUARD_SIZE or
 * 256 KiB / 1 MiB). Takes effect at once: the thread's pool is replaced as
 * by a second ASYNC_init_thread with the same sizes (paused jobs keep
 * their stacks). Returns 1; 0, changing nothing, if a size is out of range
 * (stack 64 KiB to 1 GiB, guard one page to 1 GiB), when called inside a
 * job, or when the pool's stacks cannot be created. */
int stackjob_async_set_thread_stack(size_t stack_size, size_t guard_size);
/* What the calling thread's stacks are, rounded to pages (NULL outs are
 * skipped). Returns 1. */
int stackjob_async_get_thread_stack(size_t *stack_size, size_t *guard_size);

/* A wake handle: a value naming one job for its whole life, safe to use
 * from any thread at any time, also after the job finished or was
 * cancelled and after its wait ctx was freed (0 is never a valid one). */
typedef uint64_t stackjob_async_wake_t;
/* The wake handle of `job`, a live job of the calling thread (call it
 * inside the job with ASYNC_get_current_job(), or from its starter);
 * 0 otherwise. */
stackjob_async_wake_t stackjob_async_wake_handle(ASYNC_JOB *job);
/* From any thread: if the job is still alive (paused or running) and its
 * wait ctx has a callback (ASYNC_WAIT_CTX_set_callback), calls it with its
 * argument and returns STACKJOB_WAKE_DELIVERED. The call is made under a
 * lock the job's end also takes: once ASYNC_start_job returned
 * ASYNC_FINISH for the job, or stackjob_async_cancel_job returned, no
 * callback of it is running or will run, so the callback argument may be
 * freed then. The callback must not call stackjob_async_wake itself, and
 * should not block (the job's end waits for it): post an event, write an
 * eventfd, and return.
 * Returns STACKJOB_WAKE_NO_CALLBACK for a live job without a wait ctx or
 * callback, and STACKJOB_WAKE_GONE (doing nothing) for a job that ended,
 * whatever reused its memory since. */
#define STACKJOB_WAKE_GONE 0
#define STACKJOB_WAKE_DELIVERED 1
#define STACKJOB_WAKE_NO_CALLBACK 2
int stackjob_async_wake(stackjob_async_wake_t wake);

/* Probes: job counters (with STACKJOB_DEBUG=1 in the environment), the
 * process-wide stack size, and whether libcrypto's default library
 * context is swapped around jobs (1 only when libcrypto is in the
 * process: looked up at run time). */
void stackjob_openssl_counters(uint64_t out[4]);
size_t stackjob_openssl_stack_size(void);
int stackjob_openssl_libctx_swapping(void);

/* The hook through which the stackjob Rust crate, in the same process,
 * makes the jobs it starts itself visible to C code as ASYNC_JOBs (the
 * current job, its wait ctx, pausing it). Not for C code: the table it
 * returns is versioned and private to stackjob. */
const void *stackjob_openssl_foreign_api(void);

#ifdef __cplusplus
}
#endif
#endif /* STACKJOB_ASYNC_H */
