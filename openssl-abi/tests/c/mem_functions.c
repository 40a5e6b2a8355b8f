/* ASYNC_set_mem_functions is honoured (OpenSSL >= 3.1 semantics): after
 * the functions are set, ASYNC_init_thread's stacks come from alloc_fn and
 * ASYNC_cleanup_thread gives them back to free_fn, which is what OpenSSL
 * 3.1's test_ASYNC_set_mem_functions (test/asynctest.c) checks; and jobs
 * run and pause on those blocks, each with a guard page inside it. Must
 * run before this process creates any job stack. */
#include "check.h"
#include <stackjob/async.h>
#include <stdint.h>
#include <unistd.h>

#define MAX_BLOCKS 16
static struct { char *p; size_t n; } blocks[MAX_BLOCKS];
static int allocs = 0, frees = 0;
static size_t asked = 0;

static void *count_alloc(size_t *num)
{
    void *p = malloc(*num);
    asked = *num;
    if (p != NULL && allocs < MAX_BLOCKS) {
        blocks[allocs].p = p;
        blocks[allocs].n = *num;
    }
    allocs++;
    return p;
}

static void count_free(void *addr)
{
    frees++;
    free(addr);
}

static int in_blocks(const void *addr)
{
    int i;
    for (i = 0; i < allocs && i < MAX_BLOCKS; i++)
        if ((const char *)addr >= blocks[i].p && (const char *)addr < blocks[i].p + blocks[i].n)
            return 1;
    return 0;
}

static int where(void *arg)
{
    volatile char here = 0;
    int inside = in_blocks((const void *)&here);
    (void)arg;
    ASYNC_pause_job();
    return inside && in_blocks((const void *)&here);
}

int main(void)
{
    ASYNC_stack_alloc_fn a = NULL;
    ASYNC_stack_free_fn f = NULL;
    ASYNC_JOB *job = NULL;
    int ret = 0;
    long page = sysconf(_SC_PAGESIZE);

    CHECK_EQ(ASYNC_set_mem_functions(count_alloc, count_free), 1);
    ASYNC_get_mem_functions(&a, &f);
    CHECK(a == count_alloc && f == count_free);

    CHECK_EQ(ASYNC_init_thread(1, 1), 1);
    CHECK_EQ(allocs, 1);
    CHECK_EQ(asked, stackjob_openssl_stack_size() + 2 * (size_t)page);
    ASYNC_cleanup_thread();
    CHECK_EQ(frees, 1);

    /* Jobs run and pause on the custom blocks. */
    CHECK_EQ(ASYNC_init_thread(2, 0), 1);
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, where, NULL, 0), ASYNC_PAUSE);
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, where, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 1);
    CHECK_EQ(allocs, 2);
    /* Too late to change them now. */
    CHECK_EQ(ASYNC_set_mem_functions(count_alloc, count_free), 0);
    ASYNC_cleanup_thread();
    CHECK_EQ(frees, 2);
    return DONE();
}
