/* Jobs across threads: a thread that exits with jobs paused leaves their
 * handles stale (resume: ASYNC_ERR, wait ctx: NULL) even after its records
 * serve other threads' jobs; and ASYNC_get_wait_ctx from another thread,
 * racing with the owner finishing jobs and starting new ones in the same
 * records, returns the job's own ctx or NULL, never a later job's. */
#include "check.h"
#include <pthread.h>

#define EXITING_THREADS 8
#define PAUSED_PER_THREAD 4
#define RACE_ROUNDS 200000

static ASYNC_WAIT_CTX *ctx_a, *ctx_b;
static ASYNC_JOB *left_paused[EXITING_THREADS][PAUSED_PER_THREAD];

static void *leave_jobs_paused(void *arg)
{
    ASYNC_JOB **jobs = arg;
    int i, ret = 0, n = 1;
    for (i = 0; i < PAUSED_PER_THREAD; i++) {
        jobs[i] = NULL;
        if (ASYNC_start_job(&jobs[i], ctx_a, &ret, pauses_n, &n, sizeof n) != ASYNC_PAUSE)
            jobs[i] = NULL;
    }
    for (i = 0; i < 50; i++) { /* and some that finish (records to reuse) */
        ASYNC_JOB *job = NULL;
        int zero = 0;
        if (ASYNC_start_job(&job, ctx_b, &ret, pauses_n, &zero, sizeof zero) != ASYNC_FINISH)
            jobs[0] = NULL; /* flagged below */
    }
    return NULL; /* thread exit: the paused jobs end here */
}

static pthread_mutex_t pub_lock = PTHREAD_MUTEX_INITIALIZER;
static ASYNC_JOB *pub_job;
static ASYNC_WAIT_CTX *pub_ctx;
static volatile int race_done;
static long wrong, seen_live, seen_null;

static void *watch(void *arg)
{
    (void)arg;
    while (!race_done) {
        ASYNC_JOB *job;
        ASYNC_WAIT_CTX *want, *got;
        pthread_mutex_lock(&pub_lock);
        job = pub_job;
        want = pub_ctx;
        pthread_mutex_unlock(&pub_lock);
        if (job == NULL)
            continue;
        got = ASYNC_get_wait_ctx(job);
        if (got == NULL)
            seen_null++;
        else if (got == want)
            seen_live++;
        else
            wrong++;
    }
    return NULL;
}

int main(void)
{
    pthread_t t[EXITING_THREADS], w;
    int i, j, ret = 0, one = 1;

    ctx_a = ASYNC_WAIT_CTX_new();
    ctx_b = ASYNC_WAIT_CTX_new();
    for (i = 0; i < EXITING_THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, leave_jobs_paused, left_paused[i]) == 0);
    for (i = 0; i < EXITING_THREADS; i++)
        pthread_join(t[i], NULL);
    /* Reuse the records the exited threads gave back, then try the old handles. */
    for (i = 0; i < EXITING_THREADS * PAUSED_PER_THREAD * 2; i++) {
        ASYNC_JOB *job = NULL;
        CHECK_EQ(ASYNC_start_job(&job, ctx_b, &ret, pauses_n, &one, sizeof one), ASYNC_PAUSE);
        CHECK_EQ(ASYNC_start_job(&job, ctx_b, &ret, NULL, NULL, 0), ASYNC_FINISH);
    }
    for (i = 0; i < EXITING_THREADS; i++)
        for (j = 0; j < PAUSED_PER_THREAD; j++) {
            ASYNC_JOB *job = left_paused[i][j];
            CHECK(job != NULL);
            CHECK(ASYNC_get_wait_ctx(job) == NULL);
            CHECK_EQ(ASYNC_start_job(&job, ctx_a, &ret, NULL, NULL, 0), ASYNC_ERR);
        }

    /* The race: alternate contexts so a reused record shows another one. */
    CHECK(pthread_create(&w, NULL, watch, NULL) == 0);
    for (i = 0; i < RACE_ROUNDS; i++) {
        ASYNC_JOB *job = NULL;
        ASYNC_WAIT_CTX *ctx = (i & 1) ? ctx_a : ctx_b;
        if (ASYNC_start_job(&job, ctx, &ret, pauses_n, &one, sizeof one) != ASYNC_PAUSE) {
            CHECK(0);
            break;
        }
        pthread_mutex_lock(&pub_lock);
        pub_job = job;
        pub_ctx = ctx;
        pthread_mutex_unlock(&pub_lock);
        CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
    }
    race_done = 1;
    pthread_join(w, NULL);
    CHECK_EQ(wrong, 0);
    CHECK(seen_live + seen_null > 0);
    ASYNC_WAIT_CTX_free(ctx_a);
    ASYNC_WAIT_CTX_free(ctx_b);
    ASYNC_cleanup_thread();
    return DONE();
}
