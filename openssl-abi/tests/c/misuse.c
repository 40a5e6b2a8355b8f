/* Every use OpenSSL leaves undefined (it crashes or corrupts memory, see
 * openssl-async-semantics.md §2.6/§6.6): here each returns ASYNC_ERR (or
 * NULL / 0) and the library stays usable. */
#include "check.h"
#include <pthread.h>

static int pauses_once(void *arg) { (void)arg; ASYNC_pause_job(); return 11; }
static int returns_22(void *arg) { (void)arg; return 22; }

static int nested_result = -1, nested_after = -1;
static ASYNC_JOB *other_paused = NULL;

static int nests(void *arg)
{
    ASYNC_JOB *inner = NULL, *self = ASYNC_get_current_job();
    int r = 0;
    (void)arg;
    /* a fresh nested start */
    nested_result = ASYNC_start_job(&inner, NULL, &r, returns_22, NULL, 0);
    if (inner != NULL || ASYNC_get_current_job() != self)
        return -1;
    /* resuming another paused job from inside a job */
    if (ASYNC_start_job(&other_paused, NULL, &r, NULL, NULL, 0) != ASYNC_ERR)
        return -2;
    /* resuming itself */
    if (ASYNC_start_job(&self, NULL, &r, NULL, NULL, 0) != ASYNC_ERR)
        return -3;
    ASYNC_cleanup_thread(); /* from inside a job: ignored */
    ASYNC_pause_job();
    nested_after = 1;
    return 33;
}

static int null_ctx_job(void *arg)
{
    (void)arg;
    if (ASYNC_get_wait_ctx(ASYNC_get_current_job()) != NULL)
        return -1;
    ASYNC_pause_job();
    ASYNC_pause_job();
    return 44;
}

static volatile int ran_after_cleanup = 0;
static int cancelled_job(void *arg)
{
    (void)arg;
    ASYNC_pause_job();
    ran_after_cleanup = 1; /* must never run */
    return 55;
}

static int cleanups = 0;
static void count_cleanup(ASYNC_WAIT_CTX *c, const void *k, OSSL_ASYNC_FD fd, void *d)
{
    (void)k; (void)fd; (void)d;
    if (ASYNC_WAIT_CTX_get_status(c) == 77) /* ctx still valid */
        cleanups++;
}
static int key;
static int registers_fd(void *arg)
{
    ASYNC_WAIT_CTX *ctx = ASYNC_get_wait_ctx(ASYNC_get_current_job());
    (void)arg;
    ASYNC_WAIT_CTX_set_wait_fd(ctx, &key, 5, NULL, count_cleanup);
    ASYNC_pause_job();
    ASYNC_WAIT_CTX_set_status(ctx, 77);
    return 66;
}

struct cross { ASYNC_JOB *job; int result; };
static void *resume_elsewhere(void *p)
{
    struct cross *c = p;
    int r = 0;
    c->result = ASYNC_start_job(&c->job, NULL, &r, NULL, NULL, 0);
    return NULL;
}

static void *start_and_exit(void *p)
{
    int r = 0;
    ASYNC_JOB *j = NULL;
    if (ASYNC_start_job(&j, NULL, &r, pauses_once, NULL, 0) == ASYNC_PAUSE)
        *(ASYNC_JOB **)p = j;
    return NULL; /* thread exits with its job paused */
}

int main(void)
{
    ASYNC_JOB *job = NULL, *stale = NULL, *job2 = NULL;
    ASYNC_WAIT_CTX *ctx = ASYNC_WAIT_CTX_new();
    int ret = 0, x = 0;

    /* Stale handle: resumed after it finished, and after its record was
     * reused by another job. */
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, pauses_once, NULL, 0), ASYNC_PAUSE);
    stale = job;
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 11);
    ret = -1;
    CHECK_EQ(ASYNC_start_job(&stale, ctx, &ret, NULL, NULL, 0), ASYNC_ERR);
    CHECK_EQ(ret, -1);
    CHECK(ASYNC_get_wait_ctx(stale) == NULL);
    CHECK_EQ(ASYNC_start_job(&job2, ctx, &ret, pauses_once, NULL, 0), ASYNC_PAUSE);
    CHECK(job2 != stale);
    CHECK_EQ(ASYNC_start_job(&stale, ctx, &ret, NULL, NULL, 0), ASYNC_ERR);
    CHECK(ASYNC_get_wait_ctx(job2) == ctx);
    /* job2 is unharmed */
    CHECK_EQ(ASYNC_start_job(&job2, ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 11);

    /* Handles that were never handles. */
    job = (ASYNC_JOB *)(size_t)0x1234;
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_ERR);
    job = (ASYNC_JOB *)&x;
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_ERR);
    CHECK(ASYNC_get_wait_ctx((ASYNC_JOB *)&x) == NULL);
    CHECK(ASYNC_get_wait_ctx(NULL) == NULL);
    /* NULL job pointer, NULL func. */
    CHECK_EQ(ASYNC_start_job(NULL, ctx, &ret, returns_22, NULL, 0), ASYNC_ERR);
    job = NULL;
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_ERR);

    /* Resume from another thread: refused there, fine here afterwards. */
    {
        struct cross c;
        pthread_t t;
        job = NULL;
        CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, pauses_once, NULL, 0), ASYNC_PAUSE);
        c.job = job;
        c.result = -1;
        CHECK(pthread_create(&t, NULL, resume_elsewhere, &c) == 0);
        pthread_join(t, NULL);
        CHECK_EQ(c.result, ASYNC_ERR);
        CHECK(c.job == job);
        CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
        CHECK_EQ(ret, 11);
    }

    /* Nested starts and resumes inside a job. */
    CHECK_EQ(ASYNC_start_job(&other_paused, ctx, &ret, pauses_once, NULL, 0), ASYNC_PAUSE);
    job = NULL;
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, nests, NULL, 0), ASYNC_PAUSE);
    CHECK_EQ(nested_result, ASYNC_ERR);
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 33);
    CHECK_EQ(nested_after, 1);
    CHECK_EQ(ASYNC_start_job(&other_paused, ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 11);

    /* NULL wait ctx: pause and resume work (OpenSSL crashes on resume). */
    job = NULL;
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, null_ctx_job, NULL, 0), ASYNC_PAUSE);
    CHECK(ASYNC_get_wait_ctx(job) == NULL);
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, NULL, NULL, 0), ASYNC_PAUSE);
    CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, NULL, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 44);

    /* NULL ctx in the wait-ctx functions: 0, no crash. */
    {
        size_t n = 0;
        int fd = 0;
        ASYNC_callback_fn cb;
        void *a;
        CHECK_EQ(ASYNC_WAIT_CTX_set_wait_fd(NULL, &key, 1, NULL, NULL), 0);
        CHECK_EQ(ASYNC_WAIT_CTX_get_fd(NULL, &key, &fd, NULL), 0);
        CHECK_EQ(ASYNC_WAIT_CTX_get_all_fds(NULL, NULL, &n), 0);
        CHECK_EQ(ASYNC_WAIT_CTX_get_changed_fds(NULL, NULL, &n, NULL, &n), 0);
        CHECK_EQ(ASYNC_WAIT_CTX_clear_fd(NULL, &key), 0);
        CHECK_EQ(ASYNC_WAIT_CTX_set_callback(NULL, NULL, NULL), 0);
        CHECK_EQ(ASYNC_WAIT_CTX_get_callback(NULL, &cb, &a), 0);
        CHECK_EQ(ASYNC_WAIT_CTX_set_status(NULL, 1), 0);
        CHECK_EQ(ASYNC_WAIT_CTX_get_status(NULL), 0);
    }

    /* The wait ctx freed while its job is paused (a use-after-free in
     * OpenSSL): the job keeps it alive; cleanups run when the job ends,
     * with the ctx still valid. */
    {
        ASYNC_WAIT_CTX *c2 = ASYNC_WAIT_CTX_new();
        job = NULL;
        CHECK_EQ(ASYNC_start_job(&job, c2, &ret, registers_fd, NULL, 0), ASYNC_PAUSE);
        ASYNC_WAIT_CTX_free(c2);
        CHECK_EQ(cleanups, 0);
        CHECK_EQ(ASYNC_start_job(&job, NULL, &ret, NULL, NULL, 0), ASYNC_FINISH);
        CHECK_EQ(ret, 66);
        CHECK_EQ(cleanups, 1);
    }

    /* Resume after ASYNC_cleanup_thread (a use-after-free in OpenSSL): the
     * job is ended, never runs again, and its handle is refused. */
    job = NULL;
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, cancelled_job, NULL, 0), ASYNC_PAUSE);
    ASYNC_cleanup_thread();
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, NULL, NULL, 0), ASYNC_ERR);
    CHECK_EQ(ran_after_cleanup, 0);
    CHECK(ASYNC_get_wait_ctx(job) == NULL);
    /* and the thread can start jobs again */
    job = NULL;
    CHECK_EQ(ASYNC_start_job(&job, ctx, &ret, returns_22, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 22);

    /* A job whose thread exited while it was paused. */
    {
        pthread_t t;
        ASYNC_JOB *orphan = NULL;
        CHECK(pthread_create(&t, NULL, start_and_exit, &orphan) == 0);
        pthread_join(t, NULL);
        CHECK(orphan != NULL);
        CHECK_EQ(ASYNC_start_job(&orphan, ctx, &ret, NULL, NULL, 0), ASYNC_ERR);
        CHECK(ASYNC_get_wait_ctx(orphan) == NULL);
    }

    ASYNC_WAIT_CTX_free(ctx);
    ASYNC_cleanup_thread();
    return DONE();
}
