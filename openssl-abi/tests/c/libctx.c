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
    OSSL_LIB_CTX_set0_default(orig);
    OSSL_LIB_CTX_free(C);
    OSSL_LIB_CTX_free(J);
    OSSL_LIB_CTX_free(G);
    return DONE();
}
