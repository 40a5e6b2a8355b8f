/* Per-job overhead of whichever ASYNC_* implementation the program binds
 * to: run it as is (libcrypto) and under LD_PRELOAD=libstackjob_openssl.so.
 *   start+finish: a pooled job that returns at once (args copied)
 *   pause+resume: one job pausing N times (a round trip per pause)
 * Usage: bench_switch [N [sf|pr]] — N iterations (default 2000000) of both,
 * or of one (for callgrind: Ir(2N) - Ir(N) over N is the cost per op).
 * Not part of the test suite (timings); scripts/test-openssl-abi.sh runs it. */
#include <openssl/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int quick(void *arg) { return *(int *)arg; }

static int pauser(void *arg)
{
    long n = *(long *)arg, i;
    for (i = 0; i < n; i++)
        ASYNC_pause_job();
    return 1;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000, i;
    const char *mode = argc > 2 ? argv[2] : "";
    ASYNC_WAIT_CTX *ctx = ASYNC_WAIT_CTX_new();
    ASYNC_JOB *job = NULL;
    int ret = 1, arg = 1;
    double t;

    if (!ASYNC_init_thread(8, 8))
        return 1;
    for (i = 0; i < 1000; i++) /* warm up */
        ASYNC_start_job(&job, ctx, &ret, quick, &arg, sizeof arg);
    if (strcmp(mode, "pr") != 0) {
        t = now();
        for (i = 0; i < n; i++)
            if (ASYNC_start_job(&job, ctx, &ret, quick, &arg, sizeof arg) != ASYNC_FINISH)
                return 2;
        printf("start+finish: %6.1f ns/job\n", (now() - t) * 1e9 / n);
    }
    if (strcmp(mode, "sf") != 0) {
        t = now();
        if (ASYNC_start_job(&job, ctx, &ret, pauser, &n, sizeof n) != ASYNC_PAUSE)
            return 3;
        while (ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0) == ASYNC_PAUSE)
            ;
        printf("pause+resume: %6.1f ns/round trip\n", (now() - t) * 1e9 / n);
    }
    ASYNC_WAIT_CTX_free(ctx);
    ASYNC_cleanup_thread();
    return ret == 1 ? 0 : 4;
}
