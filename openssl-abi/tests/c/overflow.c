/* A job that runs off its stack is reported on stderr, naming the setting a
 * C program has (STACKJOB_STACK_SIZE), and the process aborts.
 *
 * argv[1] is the mode: "recurse" (deep recursion), or "frame": one alloca
 * frame, built without -fstack-clash-protection so that no probe touches
 * its pages, whose first store lands up to argv[2] (the guard size in use)
 * bytes below the stack. Two jobs are paused on neighbouring stacks; the one
 * on the upper stack overflows towards the lower one. The SIGABRT handler,
 * which runs after the report, says whether the lower job's marks kept
 * every byte. */
#include "check.h"
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#define MARKS 8192
#define MARK 0xa5

size_t stackjob_openssl_stack_size(void);

static unsigned char *job_marks[2];
static uintptr_t job_sp[2];
static volatile int overshooter = -1;
static const char *mode;
static size_t reach;
static unsigned char *volatile neighbour;

static void check_neighbour(int sig)
{
    static const char intact[] = "\nneighbour intact\n";
    static const char corrupted[] = "\nneighbour CORRUPTED\n";
    int ok = neighbour != NULL;
    (void)sig;
    for (size_t i = 0; ok && i < MARKS; i++)
        ok = neighbour[i] == MARK;
    if (ok)
        write(2, intact, sizeof intact - 1);
    else
        write(2, corrupted, sizeof corrupted - 1);
}

static int recurse(int depth)
{
    volatile char frame[1024];
    frame[0] = (char)depth;
    return recurse(depth + 1) + frame[0];
}

static int body(void *arg)
{
    int index = *(int *)arg;
    unsigned char marks[MARKS];
    memset(marks, MARK, sizeof marks);
    job_marks[index] = marks;
    job_sp[index] = (uintptr_t)__builtin_frame_address(0);
    ASYNC_pause_job();
    if (overshooter == index) {
        if (strcmp(mode, "recurse") == 0)
            return recurse(0);
        volatile char *frame = __builtin_alloca(reach);
        frame[0] = 1; /* the lowest byte first, as an unprobed frame does */
        return frame[0];
    }
    return marks[0] + marks[MARKS - 1];
}

int main(int argc, char **argv)
{
    ASYNC_JOB *job[2] = {NULL, NULL};
    int index[2] = {0, 1}, ret = 0;
    size_t guard = argc > 2 ? strtoul(argv[2], NULL, 0) : 0;
    mode = argc > 1 ? argv[1] : "recurse";
    /* From the frame's top (near the stack's top, below the marks) down to
     * 32 KiB short of the guard's far end. */
    reach = stackjob_openssl_stack_size() + guard - 32 * 1024;
    for (int i = 0; i < 2; i++)
        CHECK_EQ(ASYNC_start_job(&job[i], NULL, &ret, body, &index[i], sizeof index[i]), ASYNC_PAUSE);
    int upper = job_sp[0] > job_sp[1] ? 0 : 1;
    neighbour = job_marks[1 - upper];
    printf("layout: stacks %lu bytes apart\n", (unsigned long)(job_sp[upper] - job_sp[1 - upper]));
    fflush(stdout);
    signal(SIGABRT, check_neighbour);
    overshooter = upper;
    ASYNC_start_job(&job[upper], NULL, &ret, body, &index[upper], sizeof index[upper]);
    printf("the overflow was not caught\n");
    return 1;
}
