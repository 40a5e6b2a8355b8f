/* The default OSSL_LIB_CTX is swapped around every job segment, as OpenSSL
 * 3 does (openssl-async-semantics.md §2.7). Linked with libcrypto. */
#include "check.h"
#include <openssl/crypto.h>

int stackjob_openssl_libctx_swapping(void);

static OSSL_LIB_CTX *C, *J, *G;
static int job_saw_start = 0, job_saw_resume = 0;

static OSSL_LIB_CTX *cur(void) { return OSSL_LIB_CTX_set0_default(NULL); }

static int job(void *arg)
{
    (void)arg;
    job_saw_start = cur() == C;
    OSSL_LIB_CTX_set0_default(J);
    ASYNC_pause_job();
    job_saw_resume = cur() == J;
    OSSL_LIB_CTX_set0_default(C); /* discarded when the job returns */
    return 1;
}

/* A job that sees the default it was started with, changes it and returns
 * at once: the caller must get its own back (start+finish, no pause). */
static OSSL_LIB_CTX *quick_saw;
static int quick(void *arg)
{
    quick_saw = cur();
    OSSL_LIB_CTX_set0_default((OSSL_LIB_CTX *)*(void **)arg);
    return 2;
}

/* Start+finish jobs around changes of the caller's default: each job sees
 * the default of the moment it starts (nothing remembered from the last
 * job), and whatever the job sets is gone when it returns. */
static int quick_jobs(void)
{
    ASYNC_JOB *j = NULL;
    int ret = 0, round;
    OSSL_LIB_CTX *callers[3] = { C, G, C };

    for (round = 0; round < 3; round++) {
        void *arg = J;
        OSSL_LIB_CTX_set0_default(callers[round]);
        CHECK_EQ(ASYNC_start_job(&j, NULL, &ret, quick, &arg, sizeof arg), ASYNC_FINISH);
        CHECK_EQ(ret, 2);
        CHECK(quick_saw == callers[round]);
        CHECK(cur() == callers[round]);
    }
    /* A job that leaves the default alone: still the caller's afterwards. */
    {
        void *arg = G;
        OSSL_LIB_CTX_set0_default(G);
        CHECK_EQ(ASYNC_start_job(&j, NULL, &ret, quick, &arg, sizeof arg), ASYNC_FINISH);
        CHECK(quick_saw == G);
        CHECK(cur() == G);
    }
    return 1;
}

int main(void)
{
    ASYNC_JOB *j = NULL;
    int ret = 0;
    OSSL_LIB_CTX *orig = cur();

    CHECK_EQ(stackjob_openssl_libctx_swapping(), 1);
    C = OSSL_LIB_CTX_new();
    J = OSSL_LIB_CTX_new();
    G = OSSL_LIB_CTX_new();
    OSSL_LIB_CTX_set0_default(C);
    CHECK_EQ(ASYNC_start_job(&j, NULL, &ret, job, NULL, 0), ASYNC_PAUSE);
    CHECK_EQ(job_saw_start, 1);
    CHECK(cur() == C);
    OSSL_LIB_CTX_set0_default(G);
    CHECK_EQ(ASYNC_start_job(&j, NULL, &ret, NULL, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(job_saw_resume, 1);
    CHECK(cur() == G);
    CHECK_EQ(quick_jobs(), 1);
    OSSL_LIB_CTX_set0_default(orig);
    OSSL_LIB_CTX_free(C);
    OSSL_LIB_CTX_free(J);
    OSSL_LIB_CTX_free(G);
    return DONE();
}
