/* ASYNC_set_mem_functions / ASYNC_get_mem_functions (OpenSSL 3.1 API). */
#include "check.h"

static void *my_alloc(size_t *num) { return malloc(*num); }
static void my_free(void *p) { free(p); }
static int noop(void *arg) { (void)arg; return 1; }

int main(void)
{
    ASYNC_stack_alloc_fn a = NULL;
    ASYNC_stack_free_fn f = NULL;
    ASYNC_JOB *job = NULL;
    int ret = 0;

    /* Defaults are usable functions. */
    ASYNC_get_mem_functions(&a, &f);
    CHECK(a != NULL && f != NULL);
    {
        size_t n = 64;
        void *p = a(&n);
        CHECK(p != NULL);
        f(p);
    }
    ASYNC_get_mem_functions(NULL, NULL); /* NULL outs skipped */

    /* Before any job stack exists: accepted, and reported back. NULL keeps. */
    CHECK_EQ(ASYNC_set_mem_functions(my_alloc, my_free), 1);
    CHECK_EQ(ASYNC_set_mem_functions(NULL, NULL), 1);
    ASYNC_get_mem_functions(&a, &f);
    CHECK(a == my_alloc && f == my_free);

    /* Once a job ran: refused, as in OpenSSL. */
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, noop, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ASYNC_set_mem_functions(my_alloc, my_free), 0);
    ASYNC_get_mem_functions(&a, &f);
    CHECK(a == my_alloc && f == my_free);
    return DONE();
}
