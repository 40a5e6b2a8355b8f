/* stackjob_async_cancel_job: a paused job is cancelled, its frames are
 * unwound (C frames with unwind tables, gcc's default here) and its stack
 * goes back to the pool; its handle is stale afterwards; its wait ctx is
 * let go; misuse returns 0 and changes nothing. Frames without unwind
 * tables (nounwind.c) are quarantined instead. */
#include "check.h"
#include <stackjob/async.h>

static int continued = 0;
static int cleanups = 0;

static int pause_forever(void *arg)
{
    (void)arg;
    for (;;) {
        ASYNC_pause_job();
        continued++; /* a cancelled job never gets here */
    }
    return 0;
}

/* Deeper C frames between the job's entry and its pause. */
static int __attribute__((noinline)) deep(int n)
{
    volatile char buf[512];
    buf[0] = (char)n;
    if (n == 0) {
        ASYNC_pause_job();
        continued++;
        return buf[0];
    }
    return deep(n - 1) + buf[0];
}
static int deep_job(void *arg) { (void)arg; return deep(20); }

static void on_cleanup(ASYNC_WAIT_CTX *ctx, const void *key, OSSL_ASYNC_FD fd, void *data)
{
    (void)ctx; (void)key; (void)fd; (void)data;
    cleanups++;
}

int nounwind_job(void *arg); /* nounwind.c, built without unwind tables */

static ASYNC_JOB *victim = NULL;
static int cancel_from_inside(void *arg)
{
    int *result = *(int **)arg;
    /* Cancelling a job of this thread from inside another job works; the
     * running job itself cannot be cancelled. */
    *result = stackjob_async_cancel_job(victim) * 10
              + stackjob_async_cancel_job(ASYNC_get_current_job());
    CHECK(ASYNC_get_current_job() != NULL);
    return 1;
}

int main(void)
{
    ASYNC_JOB *job = NULL, *stale;
    ASYNC_WAIT_CTX *ctx;
    int ret = 0, i, result = 0;

    CHECK_EQ(ASYNC_init_thread(1, 0), 1); /* one stack: reuse is visible */

    /* The basic case, with a wait ctx whose fd cleanup must still run. */
    ctx = ASYNC_WAIT_CTX_new();
    CHECK(ASYNC_WAIT_CTX_set_wait_fd(ctx, &cleanups, 7, NULL, on_cleanup));
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, pause_forever, NULL, 0), ASYNC_PAUSE);
    stale = job;
    CHECK_EQ(stackjob_async_cancel_job(job), STACKJOB_CANCEL_UNWOUND);
    CHECK_EQ(continued, 0);
    /* The handle is stale: resuming, cancelling, waking do nothing. */
    CHECK_EQ(ASYNC_start_job(&stale, ctx, &ret, pause_forever, NULL, 0), ASYNC_ERR);
    CHECK_EQ(stackjob_async_cancel_job(job), 0);
    CHECK(ASYNC_get_wait_ctx(job) == NULL);
    /* The job's reference is gone: freeing the ctx runs the cleanup now. */
    ASYNC_WAIT_CTX_free(ctx);
    CHECK_EQ(cleanups, 1);

    /* The stack is back in the pool (max 1): many rounds, deep frames. */
    for (i = 0; i < 1000; i++) {
        job = NULL;
        CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, i % 2 ? deep_job : pause_forever, NULL, 0), ASYNC_PAUSE);
        CHECK_EQ(stackjob_async_cancel_job(job), STACKJOB_CANCEL_UNWOUND);
    }
    CHECK_EQ(continued, 0);
    /* And still serves a job that finishes. */
    job = NULL;
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, deep_job, NULL, 0), ASYNC_PAUSE);
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, deep_job, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(continued, 1);
    continued = 0;

    /* Misuse: NULL, invented handles. */
    CHECK_EQ(stackjob_async_cancel_job(NULL), 0);
    CHECK_EQ(stackjob_async_cancel_job((ASYNC_JOB *)(uintptr_t)0x12345), 0);

    /* From inside another job. */
    CHECK_EQ(ASYNC_init_thread(2, 0), 1);
    victim = NULL;
    CHECK_EQ(ASYNC_start_job(&victim, NULL, &ret, pause_forever, NULL, 0), ASYNC_PAUSE);
    {
        int *p = &result;
        job = NULL;
        CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, cancel_from_inside, &p, sizeof p), ASYNC_FINISH);
        CHECK_EQ(result, STACKJOB_CANCEL_UNWOUND * 10 + 0);
        CHECK_EQ(ASYNC_start_job(&victim, NULL, &ret, pause_forever, NULL, 0), ASYNC_ERR);
    }
    CHECK_EQ(continued, 0);

    /* Frames the unwinder cannot walk: quarantined, handle stale. */
    job = NULL;
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, nounwind_job, NULL, 0), ASYNC_PAUSE);
    stale = job;
    CHECK_EQ(stackjob_async_cancel_job(job), STACKJOB_CANCEL_QUARANTINED);
    CHECK_EQ(ASYNC_start_job(&stale, NULL, &ret, nounwind_job, NULL, 0), ASYNC_ERR);
    /* The quarantined stack no longer counts against max_size. */
    job = NULL;
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, pause_forever, NULL, 0), ASYNC_PAUSE);
    CHECK_EQ(stackjob_async_cancel_job(job), STACKJOB_CANCEL_UNWOUND);

    ASYNC_cleanup_thread();
    return DONE();
}
