/* Tiny test helpers for the C suite: CHECK(cond) reports file:line and
 * counts failures; main() returns DONE(). */
#ifndef STACKJOB_CHECK_H
#define STACKJOB_CHECK_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/async.h>
#if defined(__has_include)
#if __has_include(<openssl/opensslv.h>)
#include <openssl/opensslv.h>
#endif
#endif

static int check_failures = 0;
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            check_failures++;                                                  \
        }                                                                      \
    } while (0)
#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long check_a = (long long)(a), check_b = (long long)(b);          \
        if (check_a != check_b) {                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld vs %lld)\n",  \
                    __FILE__, __LINE__, #a, #b, check_a, check_b);             \
            check_failures++;                                                  \
        }                                                                      \
    } while (0)
#define DONE()                                                                 \
    (check_failures == 0 ? (printf("%s: ok\n", __FILE__), 0)                   \
                         : (printf("%s: %d failures\n", __FILE__,              \
                                   check_failures), 1))

/* OpenSSL 3.0 headers predate ASYNC_set/get_mem_functions (3.1);
 * stackjob/async.h declares them (and says so). */
#if (!defined(OPENSSL_VERSION_NUMBER) || OPENSSL_VERSION_NUMBER < 0x30100000L) \
    && !defined(STACKJOB_ASYNC_MEM_FUNCTIONS_DECLARED)
#define STACKJOB_ASYNC_MEM_FUNCTIONS_DECLARED
typedef void *(*ASYNC_stack_alloc_fn)(size_t *num);
typedef void (*ASYNC_stack_free_fn)(void *addr);
int ASYNC_set_mem_functions(ASYNC_stack_alloc_fn alloc_fn,
                            ASYNC_stack_free_fn free_fn);
void ASYNC_get_mem_functions(ASYNC_stack_alloc_fn *alloc_fn,
                             ASYNC_stack_free_fn *free_fn);
#endif

/* A job function that pauses `*(int *)arg` times and returns 100 + that. */
static int pauses_n(void *arg)
{
    int n = *(int *)arg, i;
    for (i = 0; i < n; i++)
        if (ASYNC_pause_job() != 1)
            return -1;
    return 100 + n;
}

#endif
