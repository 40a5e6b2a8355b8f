/* A job function built without unwind tables (-fno-asynchronous-unwind-tables
 * -fno-unwind-tables, see tests/c_programs.rs): the unwinder cannot walk its
 * frame, so stackjob_async_cancel_job must quarantine the job's stack
 * instead of unwinding it. */
#include <stackjob/async.h>

int nounwind_job(void *arg)
{
    (void)arg;
    for (;;)
        ASYNC_pause_job();
    return 0;
}
