/* start/resume return values, the current job, args copies, ret. */
#include "check.h"
#include <pthread.h>

static ASYNC_JOB *seen_inside = NULL;
static ASYNC_WAIT_CTX *seen_ctx = NULL;

static int record_self(void *arg)
{
    (void)arg;
    seen_inside = ASYNC_get_current_job();
    seen_ctx = ASYNC_get_wait_ctx(seen_inside);
    ASYNC_pause_job();
    if (ASYNC_get_current_job() != seen_inside)
        return -1;
    ASYNC_pause_job();
    return 7;
}

struct big { unsigned char bytes[300]; };

static int sum_big(void *arg)
{
    struct big *b = arg;
    int s = 0, i;
    if (((size_t)arg & 15) != 0)
        return -2; /* the copy is 16-byte aligned, as malloc's */
    ASYNC_pause_job();
    for (i = 0; i < 300; i++)
        s += b->bytes[i];
    b->bytes[0] = 0; /* the job owns its copy */
    return s;
}

static int small_args(void *arg)
{
    char *s = arg;
    if (((size_t)arg & 15) != 0)
        return -2;
    ASYNC_pause_job();
    return s[0] == 'h' && strcmp(s, "hello") == 0 ? 1 : 0;
}

static int null_args(void *arg)
{
    return arg == NULL ? 5 : -5;
}

static int zero_size(void *arg)
{
    return arg == NULL ? 6 : -6;
}

static int depth(int n)
{
    volatile char pad[1024];
    pad[0] = (char)n;
    return n == 0 ? pad[0] : depth(n - 1) + 1 + pad[0] - pad[0];
}

static int deep(void *arg)
{
    (void)arg;
    /* ~100 KiB of stack: more than OpenSSL's 32 KiB stacks hold. */
    return depth(100);
}

static void *from_other_thread(void *job)
{
    return ASYNC_get_wait_ctx((ASYNC_JOB *)job);
}

int main(void)
{
    ASYNC_JOB *job = NULL;
    ASYNC_WAIT_CTX *ctx = ASYNC_WAIT_CTX_new();
    int ret = -1, i;
    pthread_t t;
    void *other = NULL;

    /* Outside a job. */
    CHECK(ASYNC_get_current_job() == NULL);
    CHECK_EQ(ASYNC_pause_job(), 1);

    /* The handle in *job is what the job sees as its current job, stays the
     * same across pauses, and gives the wait ctx from any thread. */
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, record_self, NULL, 0), ASYNC_PAUSE);
    CHECK(job != NULL);
    CHECK(job == seen_inside);
    CHECK(seen_ctx == ctx);
    CHECK(ASYNC_get_wait_ctx(job) == ctx);
    CHECK(pthread_create(&t, NULL, from_other_thread, job) == 0);
    CHECK(pthread_join(t, &other) == 0);
    CHECK(other == ctx);
    CHECK(ASYNC_get_current_job() == NULL);
    {
        ASYNC_JOB *before = job;
        /* func/args/ctx are ignored on resume. */
        CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, null_args, NULL, 0), ASYNC_PAUSE);
        CHECK(job == before);
    }
    CHECK_EQ(ret, -1);
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
    CHECK(job == NULL);
    CHECK_EQ(ret, 7);

    /* Large args (heap copy) and small args (inline copy): the caller's
     * buffer may change as soon as start returns. */
    {
        struct big b;
        int expect = 0;
        for (i = 0; i < 300; i++) {
            b.bytes[i] = (unsigned char)i;
            expect += (unsigned char)i;
        }
        CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, sum_big, &b, sizeof b), ASYNC_PAUSE);
        memset(&b, 0, sizeof b);
        CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
        CHECK_EQ(ret, expect);
    }
    {
        char s[6] = "hello";
        CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, small_args, s, sizeof s), ASYNC_PAUSE);
        strcpy(s, "xxxxx");
        CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
        CHECK_EQ(ret, 1);
    }
    /* NULL args, and args of size 0 (as OpenSSL 3.0.x): NULL in the job. */
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, null_args, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 5);
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, zero_size, &ret, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 6);

    /* Many pauses; many jobs in flight. */
    {
        int n = 1000;
        int r = ASYNC_start_job(&job, ctx, &ret, pauses_n, &n, sizeof n);
        int count = 0;
        while (r == ASYNC_PAUSE) {
            count++;
            r = ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0);
        }
        CHECK_EQ(r, ASYNC_FINISH);
        CHECK_EQ(count, 1000);
        CHECK_EQ(ret, 1100);
    }
    {
        ASYNC_JOB *many[64] = {0};
        int one = 1, done = 0;
        for (i = 0; i < 64; i++)
            CHECK_EQ(ASYNC_start_job(&many[i], ctx, &ret, pauses_n, &one, sizeof one), ASYNC_PAUSE);
        for (i = 63; i >= 0; i--) {
            ret = 0;
            if (ASYNC_start_job(&many[i], ctx, &ret, NULL, NULL, 0) == ASYNC_FINISH && ret == 101)
                done++;
        }
        CHECK_EQ(done, 64);
    }

    /* The default stacks hold what OpenSSL's 32 KiB ones cannot. */
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, deep, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 100);

    /* NULL ret: the result is dropped (OpenSSL would crash). */
    CHECK_EQ(ASYNC_start_job(&job, ctx, NULL, null_args, NULL, 0), ASYNC_FINISH);

    ASYNC_WAIT_CTX_free(ctx);
    ASYNC_cleanup_thread();
    return DONE();
}
