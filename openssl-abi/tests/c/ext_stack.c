/* stackjob_async_set/get_thread_stack: per-thread stack and guard sizes,
 * in effect at once, checked, refused inside a job, per thread. */
#include "check.h"
#include <stackjob/async.h>
#include <pthread.h>

static int use_stack(void *arg)
{
    size_t n = *(size_t *)arg;
    volatile char *p = __builtin_alloca(n);
    p[0] = 1;
    p[n - 1] = 2;
    return p[0] + p[n - 1];
}

static int set_inside(void *arg)
{
    (void)arg;
    return stackjob_async_set_thread_stack(1 << 20, 0);
}

static void *other_thread(void *arg)
{
    size_t s = 0, g = 0;
    (void)arg;
    stackjob_async_get_thread_stack(&s, &g);
    CHECK_EQ(s, stackjob_openssl_stack_size()); /* the process default */
    return NULL;
}

int main(void)
{
    size_t s = 0, g = 0, use;
    ASYNC_JOB *job = NULL;
    int ret = 0;
    pthread_t th;

    /* (This program links no libcrypto: the OSSL_LIB_CTX swap, a run-time
     * lookup, is absent.) */
    CHECK_EQ(stackjob_openssl_libctx_swapping(), 0);

    CHECK_EQ(stackjob_async_get_thread_stack(&s, &g), 1);
    CHECK_EQ(s, stackjob_openssl_stack_size());
    CHECK_EQ(g, 1 << 20);

    /* A larger stack: a job can use nearly all of it. */
    CHECK_EQ(stackjob_async_set_thread_stack(2 << 20, 64 * 1024), 1);
    CHECK_EQ(stackjob_async_get_thread_stack(&s, &g), 1);
    CHECK_EQ(s, 2 << 20);
    CHECK_EQ(g, 64 * 1024);
    use = (2 << 20) - 16 * 1024;
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, use_stack, &use, sizeof use), ASYNC_FINISH);
    CHECK_EQ(ret, 3);

    /* Out of range: refused, nothing changed. */
    CHECK_EQ(stackjob_async_set_thread_stack(4096, 0), 0);
    CHECK_EQ(stackjob_async_set_thread_stack((size_t)1 << 31, 0), 0);
    CHECK_EQ(stackjob_async_set_thread_stack(0, (size_t)1 << 31), 0);
    stackjob_async_get_thread_stack(&s, &g);
    CHECK_EQ(s, 2 << 20);
    CHECK_EQ(g, 64 * 1024);

    /* Inside a job: refused. */
    job = NULL;
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, set_inside, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 0);

    /* Another thread keeps the process default. */
    CHECK_EQ(pthread_create(&th, NULL, other_thread, NULL), 0);
    pthread_join(th, NULL);

    /* The pool's limit survives the change (ASYNC_init_thread's sizes). */
    CHECK_EQ(ASYNC_init_thread(1, 0), 1);
    CHECK_EQ(stackjob_async_set_thread_stack(128 * 1024, 0), 1);
    {
        ASYNC_JOB *a = NULL, *b = NULL;
        CHECK_EQ(ASYNC_start_job(&a, NULL, &ret, pauses_n, &(int){1}, sizeof(int)), ASYNC_PAUSE);
        CHECK_EQ(ASYNC_start_job(&b, NULL, &ret, pauses_n, &(int){1}, sizeof(int)), ASYNC_NO_JOBS);
        CHECK_EQ(ASYNC_start_job(&a, NULL, &ret, pauses_n, NULL, 0), ASYNC_FINISH);
    }

    /* 0, 0: back to the defaults. */
    CHECK_EQ(stackjob_async_set_thread_stack(0, 0), 1);
    stackjob_async_get_thread_stack(&s, &g);
    CHECK_EQ(s, stackjob_openssl_stack_size());
    CHECK_EQ(g, 1 << 20);
    ASYNC_cleanup_thread();
    return DONE();
}
