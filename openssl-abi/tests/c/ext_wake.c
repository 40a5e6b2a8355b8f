/* stackjob_async_wake_handle / stackjob_async_wake: a wake reaches a live
 * job's wait ctx callback; once the job finished or was cancelled (and
 * its wait ctx freed, its record reused) a wake is a no-op. The teardown
 * race: a completion thread keeps waking while the owner finishes or
 * cancels the job and frees the callback's argument at once; under ASan or
 * Valgrind any callback that ran after the free would be reported. */
#include "check.h"
#include <stackjob/async.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

struct conn {
    int wakes;
};

static int on_wake(void *arg)
{
    struct conn *c = arg;
    c->wakes++; /* a use-after-free if it ran after the owner freed c */
    return 1;
}

static stackjob_async_wake_t published;
static int publish_and_pause(void *arg)
{
    int n = arg ? *(int *)arg : 1, i;
    published = stackjob_async_wake_handle(ASYNC_get_current_job());
    for (i = 0; i < n; i++)
        ASYNC_pause_job();
    return 7;
}

/* ---- the race */
static _Atomic(stackjob_async_wake_t) target;
static atomic_int stop;
static atomic_llong delivered, gone;

/* Wakes delivered to one job before the completion thread stands back and
 * yields until the next job is published. Natively the owner tears a job down
 * after a few hundred wakes, well inside this; under Valgrind, which runs one
 * thread at a time and may leave the waking thread on the CPU for whole
 * seconds, it bounds the count (a run once wrapped a 32-bit counter). */
#define WAKES_PER_JOB 2000

static void *completion_thread(void *arg)
{
    stackjob_async_wake_t last = 0;
    long long on_this_job = 0;
    (void)arg;
    while (!atomic_load(&stop)) {
        stackjob_async_wake_t w = atomic_load(&target);
        if (w == 0)
            continue;
        if (w != last) {
            last = w;
            on_this_job = 0;
        } else if (on_this_job >= WAKES_PER_JOB) {
            sched_yield();
            continue;
        }
        switch (stackjob_async_wake(w)) {
        case STACKJOB_WAKE_DELIVERED:
            atomic_fetch_add(&delivered, 1);
            on_this_job++;
            break;
        case STACKJOB_WAKE_GONE:
            atomic_fetch_add(&gone, 1);
            /* a late wake after the job ended: keep calling it a few times */
            break;
        default:
            break;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    ASYNC_JOB *job = NULL;
    ASYNC_WAIT_CTX *ctx = ASYNC_WAIT_CTX_new();
    struct conn c = {0};
    stackjob_async_wake_t w, old;
    int ret = 0, i, rounds = argc > 1 ? atoi(argv[1]) : 2000;
    pthread_t th;

    CHECK_EQ(stackjob_async_wake_handle(NULL), 0);
    CHECK_EQ(stackjob_async_wake(0), STACKJOB_WAKE_GONE);
    CHECK_EQ(stackjob_async_wake(0x123456789abcULL), STACKJOB_WAKE_GONE);

    /* Live job, no callback yet; then with one. */
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, publish_and_pause, NULL, 0), ASYNC_PAUSE);
    w = published;
    CHECK(w != 0);
    CHECK_EQ(stackjob_async_wake_handle(job), w); /* the starter may ask too */
    CHECK_EQ(stackjob_async_wake(w), STACKJOB_WAKE_NO_CALLBACK);
    CHECK(ASYNC_WAIT_CTX_set_callback(ctx, on_wake, &c));
    CHECK_EQ(stackjob_async_wake(w), STACKJOB_WAKE_DELIVERED);
    CHECK_EQ(c.wakes, 1);
    /* The user frees the ctx while the job is paused: still valid for the job. */
    ASYNC_WAIT_CTX_free(ctx);
    CHECK_EQ(stackjob_async_wake(w), STACKJOB_WAKE_DELIVERED);
    CHECK_EQ(c.wakes, 2);
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, publish_and_pause, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 7);
    /* Finished, the ctx gone with it: a late wake is a no-op. */
    CHECK_EQ(stackjob_async_wake(w), STACKJOB_WAKE_GONE);
    CHECK_EQ(c.wakes, 2);

    /* The record is reused by the next job: the old handle stays dead. */
    old = w;
    job = NULL;
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, publish_and_pause, NULL, 0), ASYNC_PAUSE);
    CHECK(published != old);
    CHECK_EQ(stackjob_async_wake(old), STACKJOB_WAKE_GONE);
    CHECK_EQ(stackjob_async_wake(published), STACKJOB_WAKE_NO_CALLBACK); /* no wait ctx */
    CHECK_EQ(stackjob_async_cancel_job(job), STACKJOB_CANCEL_UNWOUND);
    CHECK_EQ(stackjob_async_wake(published), STACKJOB_WAKE_GONE);

    /* The teardown race. */
    CHECK_EQ(pthread_create(&th, NULL, completion_thread, NULL), 0);
    for (i = 0; i < rounds; i++) {
        struct conn *conn = calloc(1, sizeof *conn);
        int pauses = 3;
        long long before = atomic_load(&delivered);
        ctx = ASYNC_WAIT_CTX_new();
        ASYNC_WAIT_CTX_set_callback(ctx, on_wake, conn);
        job = NULL;
        CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, publish_and_pause, &pauses, sizeof pauses), ASYNC_PAUSE);
        atomic_store(&target, published);
        /* Let the completion thread in, then tear down while it wakes. */
        while (atomic_load(&delivered) == before)
            ;
        if (i % 2) {
            CHECK(stackjob_async_cancel_job(job) != 0);
        } else {
            while (ASYNC_start_job(&job, ctx, &ret, publish_and_pause, &pauses, sizeof pauses) == ASYNC_PAUSE)
                ;
        }
        ASYNC_WAIT_CTX_free(ctx);
        free(conn); /* no callback may run with it from here on */
    }
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    CHECK(atomic_load(&delivered) >= rounds / 2);
    printf("race: %d rounds, %lld wakes delivered, %lld late wakes were no-ops\n", rounds,
           atomic_load(&delivered), atomic_load(&gone));
    ASYNC_cleanup_thread();
    return DONE();
}
