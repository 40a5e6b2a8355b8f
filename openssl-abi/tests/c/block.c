/* Nested ASYNC_block_pause / ASYNC_unblock_pause. */
#include "check.h"

static int steps = 0;

static int nested(void *arg)
{
    (void)arg;
    ASYNC_block_pause();
    ASYNC_block_pause();
    if (ASYNC_pause_job() != 1) /* blocked: returns at once */
        return -1;
    steps = 1;
    ASYNC_unblock_pause();
    if (ASYNC_pause_job() != 1) /* still blocked once */
        return -2;
    steps = 2;
    ASYNC_unblock_pause();
    ASYNC_unblock_pause(); /* extra unblock: harmless */
    ASYNC_pause_job();     /* pauses */
    steps = 3;
    return 1;
}

static int ends_blocked(void *arg)
{
    (void)arg;
    ASYNC_block_pause();
    return 2;
}

static int pauses_once(void *arg)
{
    (void)arg;
    ASYNC_pause_job();
    return 3;
}

int main(void)
{
    ASYNC_JOB *job = NULL;
    ASYNC_WAIT_CTX *ctx = ASYNC_WAIT_CTX_new();
    int ret = 0;

    /* Outside a job: no effect. */
    ASYNC_block_pause();
    ASYNC_block_pause();
    ASYNC_unblock_pause();

    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, nested, NULL, 0), ASYNC_PAUSE);
    CHECK_EQ(steps, 2);
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(steps, 3);
    CHECK_EQ(ret, 1);

    /* A job that ends blocked does not block the next job (OpenSSL's
     * counter is per thread and would). */
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, ends_blocked, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 2);
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, pauses_once, NULL, 0), ASYNC_PAUSE);
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 3);

    ASYNC_WAIT_CTX_free(ctx);
    return DONE();
}
