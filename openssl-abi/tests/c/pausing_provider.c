/* A small pausing "provider" for tests/tokio_foreign_jobs.rs, written the
 * way OpenSSL's dasync engine and Intel's QAT engine are: inside a job
 * (ASYNC_get_current_job) it hands the request to a "device" thread and
 * pauses (ASYNC_pause_job) until the device completes, which it learns
 * either through the wait ctx's callback (OpenSSL 3's callback mode: the
 * device calls it) or through a wait fd it registers in the job's wait ctx
 * (an eventfd the device writes; kept in the ctx for later jobs, closed by
 * the ctx's cleanup). Outside a job it computes in line.
 *
 * The work: FNV-1a over the input, 64 bits. Built as a shared library
 * linked with -lstackjob_openssl. */
#include <openssl/async.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static const char engine_key = 0;

struct request {
    const unsigned char *in;
    size_t len;
    uint64_t out;
    atomic_int done;
    ASYNC_callback_fn cb;
    void *cb_arg;
    int fd;
};

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void *device(void *arg) {
    struct request *r = arg;
    usleep(200); /* the device's latency */
    r->out = fnv1a(r->in, r->len);
    atomic_store(&r->done, 1);
    if (r->cb != NULL) {
        r->cb(r->cb_arg);
    } else {
        uint64_t one = 1;
        if (write(r->fd, &one, sizeof one) != sizeof one)
            abort();
    }
    return NULL;
}

static void close_fd(ASYNC_WAIT_CTX *ctx, const void *key, OSSL_ASYNC_FD fd, void *data) {
    (void)ctx; (void)key; (void)data;
    close(fd);
}

/* Statistics for the test. */
static atomic_long in_job_calls, callback_mode_calls, fd_mode_calls, pauses;

long pausing_provider_stat(int which) {
    switch (which) {
    case 0: return atomic_load(&in_job_calls);
    case 1: return atomic_load(&callback_mode_calls);
    case 2: return atomic_load(&fd_mode_calls);
    default: return atomic_load(&pauses);
    }
}

/* Returns 1 and the digest in *out, or 0 on failure. */
int pausing_provider_digest(const unsigned char *in, size_t len, uint64_t *out) {
    ASYNC_JOB *job = ASYNC_get_current_job();
    if (job == NULL) {
        *out = fnv1a(in, len);
        return 1;
    }
    atomic_fetch_add(&in_job_calls, 1);
    ASYNC_WAIT_CTX *ctx = ASYNC_get_wait_ctx(job);
    if (ctx == NULL)
        return 0;
    struct request r = { .in = in, .len = len, .fd = -1 };
    atomic_init(&r.done, 0);
    if (ASYNC_WAIT_CTX_get_callback(ctx, &r.cb, &r.cb_arg) && r.cb != NULL) {
        atomic_fetch_add(&callback_mode_calls, 1);
    } else {
        r.cb = NULL;
        OSSL_ASYNC_FD fd;
        void *data;
        if (!ASYNC_WAIT_CTX_get_fd(ctx, &engine_key, &fd, &data)) {
            fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            if (fd < 0 || !ASYNC_WAIT_CTX_set_wait_fd(ctx, &engine_key, fd, NULL, close_fd))
                return 0;
        }
        r.fd = fd;
        atomic_fetch_add(&fd_mode_calls, 1);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, device, &r) != 0)
        return 0;
    /* The job handle stays the same across the pause. */
    while (!atomic_load(&r.done)) {
        atomic_fetch_add(&pauses, 1);
        ASYNC_pause_job();
        if (ASYNC_get_current_job() != job)
            abort();
        if (r.fd >= 0) {
            uint64_t n;
            while (read(r.fd, &n, sizeof n) == sizeof n) {}
        }
    }
    pthread_join(t, NULL);
    *out = r.out;
    return 1;
}
