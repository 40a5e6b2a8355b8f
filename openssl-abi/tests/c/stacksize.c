/* STACKJOB_STACK_SIZE: the size in use is the one asked for (argv[1]), and
 * a job can use nearly all of it. */
#include "check.h"

size_t stackjob_openssl_stack_size(void);

static int use_stack(void *arg)
{
    size_t n = *(size_t *)arg;
    volatile char *p = __builtin_alloca(n);
    p[0] = 1;
    p[n - 1] = 2;
    return p[0] + p[n - 1];
}

int main(int argc, char **argv)
{
    size_t want = argc > 1 ? strtoul(argv[1], NULL, 0) : 0;
    size_t use = want - 16 * 1024;
    ASYNC_JOB *job = NULL;
    int ret = 0;
    CHECK_EQ(stackjob_openssl_stack_size(), want);
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, use_stack, &use, sizeof use), ASYNC_FINISH);
    CHECK_EQ(ret, 3);
    return DONE();
}
