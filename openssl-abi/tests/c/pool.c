/* Pool limits, ASYNC_NO_JOBS, init_thread argument checks. */
#include "check.h"
#include <limits.h>

int main(void)
{
    ASYNC_JOB *jobs[4] = {NULL, NULL, NULL, NULL};
    ASYNC_WAIT_CTX *ctx = ASYNC_WAIT_CTX_new();
    int ret = -7, one = 1, i;

    CHECK_EQ(ASYNC_is_capable(), 1);
    /* init_size > max_size and max_size > INT_MAX are refused (as OpenSSL's
     * current source does; Debian's 3.0.x build accepts the latter). */
    CHECK_EQ(ASYNC_init_thread(2, 3), 0);
    CHECK_EQ(ASYNC_init_thread((size_t)INT_MAX + 1, 0), 0);
    CHECK_EQ(ASYNC_init_thread(3, 3), 1);

    /* Three jobs may exist; the fourth start finds none. */
    for (i = 0; i < 3; i++)
        CHECK_EQ(ASYNC_start_job(&jobs[i], ctx, &ret, pauses_n, &one, sizeof one),
                 ASYNC_PAUSE);
    CHECK_EQ(ASYNC_start_job(&jobs[3], ctx, &ret, pauses_n, &one, sizeof one),
             ASYNC_NO_JOBS);
    CHECK(jobs[3] == NULL);
    CHECK_EQ(ret, -7); /* not written on PAUSE or NO_JOBS */

    /* Finishing one makes room again. */
    CHECK_EQ(ASYNC_start_job(&jobs[0], ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
    CHECK(jobs[0] == NULL);
    CHECK_EQ(ret, 101);
    CHECK_EQ(ASYNC_start_job(&jobs[3], ctx, &ret, pauses_n, &one, sizeof one),
             ASYNC_PAUSE);
    for (i = 1; i < 4; i++) {
        CHECK_EQ(ASYNC_start_job(&jobs[i], ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
        CHECK(jobs[i] == NULL);
    }

    /* A limit of 1: jobs that finish without pausing reuse the one job. */
    CHECK_EQ(ASYNC_init_thread(1, 0), 1);
    for (i = 0; i < 100; i++) {
        int zero = 0;
        ret = 0;
        CHECK_EQ(ASYNC_start_job(&jobs[0], ctx, &ret, pauses_n, &zero, sizeof zero),
                 ASYNC_FINISH);
        CHECK_EQ(ret, 100);
    }
    CHECK_EQ(ASYNC_start_job(&jobs[0], ctx, &ret, pauses_n, &one, sizeof one),
             ASYNC_PAUSE);
    CHECK_EQ(ASYNC_start_job(&jobs[1], ctx, &ret, pauses_n, &one, sizeof one),
             ASYNC_NO_JOBS);
    CHECK_EQ(ASYNC_start_job(&jobs[0], ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);

    /* Unlimited (0, 0), and a fresh pool after cleanup. */
    CHECK_EQ(ASYNC_init_thread(0, 0), 1);
    ASYNC_cleanup_thread();
    CHECK_EQ(ASYNC_start_job(&jobs[0], ctx, &ret, pauses_n, &one, sizeof one),
             ASYNC_PAUSE);
    CHECK_EQ(ASYNC_start_job(&jobs[0], ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
    ASYNC_cleanup_thread();
    ASYNC_WAIT_CTX_free(ctx);
    return DONE();
}
