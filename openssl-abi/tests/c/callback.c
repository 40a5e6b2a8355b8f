/* Callbacks and status, including a completion from another thread. */
#include "check.h"
#include <pthread.h>
#include <unistd.h>

static volatile int woken = 0;

static int wake(void *arg)
{
    *(volatile int *)arg = 1;
    return 1;
}

/* A completion thread, QAT-style: status, then the callback. */
static void *complete(void *job)
{
    ASYNC_WAIT_CTX *ctx = ASYNC_get_wait_ctx((ASYNC_JOB *)job);
    ASYNC_callback_fn cb = NULL;
    void *arg = NULL;
    usleep(1000);
    if (ctx == NULL || !ASYNC_WAIT_CTX_get_callback(ctx, &cb, &arg))
        return NULL;
    ASYNC_WAIT_CTX_set_status(ctx, ASYNC_STATUS_OK);
    cb(arg);
    return NULL;
}

static int offload(void *arg)
{
    ASYNC_JOB *self = ASYNC_get_current_job();
    ASYNC_WAIT_CTX *ctx = ASYNC_get_wait_ctx(self);
    pthread_t t;
    (void)arg;
    if (pthread_create(&t, NULL, complete, self) != 0)
        return -1;
    pthread_detach(t);
    while (ASYNC_WAIT_CTX_get_status(ctx) != ASYNC_STATUS_OK)
        ASYNC_pause_job(); /* spurious resumes are fine */
    return 42;
}

int main(void)
{
    ASYNC_WAIT_CTX *ctx = ASYNC_WAIT_CTX_new();
    ASYNC_callback_fn cb = (ASYNC_callback_fn)1;
    void *arg = (void *)1;
    ASYNC_JOB *job = NULL;
    int ret = 0, r;

    /* No callback: 0 and outputs untouched. */
    CHECK_EQ(ASYNC_WAIT_CTX_get_callback(ctx, &cb, &arg), 0);
    CHECK(cb == (ASYNC_callback_fn)1 && arg == (void *)1);
    CHECK_EQ(ASYNC_WAIT_CTX_set_callback(ctx, wake, (void *)&woken), 1);
    CHECK_EQ(ASYNC_WAIT_CTX_get_callback(ctx, &cb, &arg), 1);
    CHECK(cb == wake && arg == (void *)&woken);
    CHECK_EQ(ASYNC_WAIT_CTX_set_callback(ctx, NULL, NULL), 1);
    CHECK_EQ(ASYNC_WAIT_CTX_get_callback(ctx, &cb, &arg), 0);

    /* Status: starts UNSUPPORTED, stores any int. */
    CHECK_EQ(ASYNC_WAIT_CTX_get_status(ctx), ASYNC_STATUS_UNSUPPORTED);
    CHECK_EQ(ASYNC_WAIT_CTX_set_status(ctx, ASYNC_STATUS_EAGAIN), 1);
    CHECK_EQ(ASYNC_WAIT_CTX_get_status(ctx), ASYNC_STATUS_EAGAIN);
    CHECK_EQ(ASYNC_WAIT_CTX_set_status(ctx, 1234), 1);
    CHECK_EQ(ASYNC_WAIT_CTX_get_status(ctx), 1234);
    CHECK_EQ(ASYNC_WAIT_CTX_set_status(ctx, ASYNC_STATUS_UNSUPPORTED), 1);

    /* Callback mode with a completion thread. */
    CHECK_EQ(ASYNC_WAIT_CTX_set_callback(ctx, wake, (void *)&woken), 1);
    r = ASYNC_start_job(&job, ctx, &ret, offload, NULL, 0);
    while (r == ASYNC_PAUSE) {
        while (!woken)
            usleep(100);
        r = ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0);
    }
    CHECK_EQ(r, ASYNC_FINISH);
    CHECK_EQ(ret, 42);
    CHECK_EQ(woken, 1);
    CHECK_EQ(ASYNC_WAIT_CTX_get_status(ctx), ASYNC_STATUS_OK);

    ASYNC_WAIT_CTX_free(ctx);
    return DONE();
}
