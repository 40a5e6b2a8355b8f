/* Wait-fd bookkeeping across pauses: get_fd, get_all_fds (newest first),
 * get_changed_fds per segment, clear_fd, cleanup timing and order. */
#include "check.h"

static int key_a, key_b, key_c;
static int cleanup_log[8];
static int cleanup_count = 0;
static int cleanup_saw_callback = -1;

static int cb_fn(void *arg) { (void)arg; return 1; }

static void cleanup(ASYNC_WAIT_CTX *ctx, const void *key, OSSL_ASYNC_FD fd, void *data)
{
    ASYNC_callback_fn f = NULL;
    void *a = NULL;
    (void)key;
    (void)data;
    if (cleanup_count < 8)
        cleanup_log[cleanup_count] = fd;
    cleanup_count++;
    /* The ctx is still valid inside its cleanups (QAT relies on this). */
    cleanup_saw_callback = ASYNC_WAIT_CTX_get_callback(ctx, &f, &a);
}

static size_t nadd, ndel;
static OSSL_ASYNC_FD addv[8], delv[8];

static void changed(ASYNC_WAIT_CTX *ctx)
{
    nadd = ndel = 99;
    CHECK_EQ(ASYNC_WAIT_CTX_get_changed_fds(ctx, NULL, &nadd, NULL, &ndel), 1);
    CHECK(nadd <= 8 && ndel <= 8);
    CHECK_EQ(ASYNC_WAIT_CTX_get_changed_fds(ctx, addv, &nadd, delv, &ndel), 1);
}

static int job(void *arg)
{
    ASYNC_WAIT_CTX *ctx = ASYNC_get_wait_ctx(ASYNC_get_current_job());
    (void)arg;
    /* segment 1: add A(10) and B(11) */
    ASYNC_WAIT_CTX_set_wait_fd(ctx, &key_a, 10, (void *)0xA, cleanup);
    ASYNC_WAIT_CTX_set_wait_fd(ctx, &key_b, 11, (void *)0xB, cleanup);
    ASYNC_pause_job();
    /* segment 2: delete A (older), add C(12) then clear it (net nothing) */
    if (!ASYNC_WAIT_CTX_clear_fd(ctx, &key_a))
        return -1;
    ASYNC_WAIT_CTX_set_wait_fd(ctx, &key_c, 12, NULL, cleanup);
    if (!ASYNC_WAIT_CTX_clear_fd(ctx, &key_c))
        return -2;
    ASYNC_pause_job();
    /* segment 3: nothing */
    ASYNC_pause_job();
    /* segment 4: add C(13) and finish */
    ASYNC_WAIT_CTX_set_wait_fd(ctx, &key_c, 13, NULL, cleanup);
    return 9;
}

int main(void)
{
    ASYNC_JOB *j = NULL;
    ASYNC_WAIT_CTX *ctx = ASYNC_WAIT_CTX_new();
    int ret = 0, fd = -1;
    void *data = NULL;
    size_t n = 0;
    OSSL_ASYNC_FD all[8];

    CHECK(ctx != NULL);
    CHECK_EQ(ASYNC_WAIT_CTX_get_all_fds(ctx, NULL, &n), 1);
    CHECK_EQ(n, 0);
    CHECK_EQ(ASYNC_WAIT_CTX_get_fd(ctx, &key_a, &fd, &data), 0);

    CHECK_EQ(ASYNC_start_job(&j, ctx, &ret, job, NULL, 0), ASYNC_PAUSE);
    changed(ctx);
    CHECK_EQ(nadd, 2);
    CHECK_EQ(ndel, 0);
    CHECK_EQ(addv[0], 11); /* newest first */
    CHECK_EQ(addv[1], 10);
    CHECK_EQ(ASYNC_WAIT_CTX_get_all_fds(ctx, NULL, &n), 1);
    CHECK_EQ(n, 2);
    CHECK_EQ(ASYNC_WAIT_CTX_get_all_fds(ctx, all, &n), 1);
    CHECK_EQ(all[0], 11);
    CHECK_EQ(all[1], 10);
    CHECK_EQ(ASYNC_WAIT_CTX_get_fd(ctx, &key_a, &fd, &data), 1);
    CHECK_EQ(fd, 10);
    CHECK(data == (void *)0xA);

    CHECK_EQ(ASYNC_start_job(&j, ctx, &ret, NULL, NULL, 0), ASYNC_PAUSE);
    changed(ctx);
    CHECK_EQ(nadd, 0);
    CHECK_EQ(ndel, 1);
    CHECK_EQ(delv[0], 10);
    CHECK_EQ(ASYNC_WAIT_CTX_get_fd(ctx, &key_a, &fd, &data), 0); /* deleted: invisible */
    CHECK_EQ(ASYNC_WAIT_CTX_get_all_fds(ctx, all, &n), 1);
    CHECK_EQ(n, 1);
    CHECK_EQ(all[0], 11);

    CHECK_EQ(ASYNC_start_job(&j, ctx, &ret, NULL, NULL, 0), ASYNC_PAUSE);
    changed(ctx);
    CHECK_EQ(nadd, 0);
    CHECK_EQ(ndel, 0);

    CHECK_EQ(ASYNC_start_job(&j, ctx, &ret, NULL, NULL, 0), ASYNC_FINISH);
    CHECK_EQ(ret, 9);
    /* After FINISH: the last segment's changes; no cleanup ran yet. */
    changed(ctx);
    CHECK_EQ(nadd, 1);
    CHECK_EQ(addv[0], 13);
    CHECK_EQ(cleanup_count, 0);

    /* Duplicate keys: the newer entry shadows the older; clear removes the newer. */
    ASYNC_WAIT_CTX_set_wait_fd(ctx, &key_b, 14, NULL, cleanup);
    CHECK_EQ(ASYNC_WAIT_CTX_get_fd(ctx, &key_b, &fd, &data), 1);
    CHECK_EQ(fd, 14);
    CHECK_EQ(ASYNC_WAIT_CTX_clear_fd(ctx, &key_b), 1);
    CHECK_EQ(ASYNC_WAIT_CTX_get_fd(ctx, &key_b, &fd, &data), 1);
    CHECK_EQ(fd, 11);
    CHECK_EQ(ASYNC_WAIT_CTX_clear_fd(ctx, &key_a), 0); /* already gone */
    CHECK_EQ(cleanup_count, 0);                      /* clear never cleans up */

    /* free: cleanup for each live entry (C=13 then B=11), newest first,
     * with the ctx still usable. */
    CHECK_EQ(ASYNC_WAIT_CTX_set_callback(ctx, cb_fn, NULL), 1);
    ASYNC_WAIT_CTX_free(ctx);
    CHECK_EQ(cleanup_count, 2);
    CHECK_EQ(cleanup_log[0], 13);
    CHECK_EQ(cleanup_log[1], 11);
    CHECK_EQ(cleanup_saw_callback, 1);

    ASYNC_WAIT_CTX_free(NULL); /* tolerated */
    return DONE();
}
