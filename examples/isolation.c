/* isolation.c - what the process pool is for: a task that crashes or never ends
   cannot take the program down.

   Eight tasks go to a pool of 2 worker processes with a 1-second task timeout. One
   dereferences NULL (SIGSEGV), one calls abort(), one loops forever, one exits with
   status 3, four compute a checksum. The program prints what happened to each: the
   crashes fail only their own task with CONCUR_EWORKERDIED and the signal or exit
   status, the endless task is killed at its timeout (-ETIMEDOUT), the dead workers
   are replaced, and the good tasks all succeed. Then the pool still serves.

   Build and run:
       cc -O2 -pthread examples/isolation.c -o isolation && ./isolation
   Exits 0 when every task ended as expected. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONCUR_IMPLEMENTATION
#include "../concur.h"

enum { GOOD, SEGFAULT, ABORT, FOREVER, EXIT3 };
static const char *const kind_name[] = {"checksum", "NULL dereference", "abort()", "endless loop",
                                        "exit(3)"};

static volatile int *volatile nowhere; /* NULL, out of the optimiser's sight */

/* Runs in a worker. Input: the kind of task, then a seed. */
static int task(const void *in, size_t len, concur_proc_out *out) {
    int req[2];
    if (len != sizeof req) return -EINVAL;
    memcpy(req, in, sizeof req);
    switch (req[0]) {
    case SEGFAULT: *nowhere = 1; break;
    case ABORT: abort();
    case FOREVER:
        for (volatile unsigned long spin = 0;; spin++) {
        }
    case EXIT3: exit(3);
    default: break;
    }
    uint32_t sum = (uint32_t)req[1];
    for (int i = 0; i < 1000000; i++) sum = sum * 1664525u + 1013904223u;
    return concur_proc_write(out, &sum, sizeof sum);
}

static uint32_t expected_sum(int seed) {
    uint32_t sum = (uint32_t)seed;
    for (int i = 0; i < 1000000; i++) sum = sum * 1664525u + 1013904223u;
    return sum;
}

int main(void) {
    concur_procpool_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.workers = 2;
    desc.task_timeout = 1.0;
    desc.kill_grace = 0.2;
    concur_procpool *pool = concur_procpool_create(&desc);
    if (!pool) {
        perror("concur_procpool_create");
        return 1;
    }
    static const int kinds[] = {GOOD, SEGFAULT, GOOD, FOREVER, ABORT, GOOD, EXIT3, GOOD};
    enum { N = sizeof kinds / sizeof kinds[0] };
    concur_future *fs[N];
    double t0 = concur_now();
    for (int i = 0; i < N; i++) {
        int req[2] = {kinds[i], 1000 + i};
        fs[i] = concur_procpool_submit(pool, task, req, sizeof req);
        if (!fs[i]) {
            perror("concur_procpool_submit");
            return 1;
        }
    }
    int bad = 0;
    for (int i = 0; i < N; i++) {
        concur_future_wait(fs[i], CONCUR_FOREVER);
        int err = concur_future_error(fs[i]), signo = 0, code = -1;
        printf("task %d (%-16s) after %.2f s: ", i, kind_name[kinds[i]], concur_now() - t0);
        if (err == 0) {
            uint32_t sum = 0;
            size_t n = 0;
            const void *bytes = concur_future_bytes(fs[i], &n);
            if (bytes && n == sizeof sum) memcpy(&sum, bytes, sizeof sum);
            printf("ok, checksum %08x\n", (unsigned)sum);
            bad += kinds[i] != GOOD || sum != expected_sum(1000 + i);
        } else if (err == CONCUR_EWORKERDIED && concur_future_death(fs[i], &signo, &code) == 0) {
            if (signo) printf("worker died of signal %d (%s)\n", signo, signo == SIGSEGV ? "SIGSEGV" : signo == SIGABRT ? "SIGABRT" : "other");
            else printf("worker exited with status %d\n", code);
            bad += !((kinds[i] == SEGFAULT && signo == SIGSEGV) || (kinds[i] == ABORT && signo == SIGABRT) ||
                     (kinds[i] == EXIT3 && code == 3));
        } else {
            printf("%s\n", concur_strerror(err));
            bad += !(kinds[i] == FOREVER && err == -ETIMEDOUT);
        }
        concur_future_release(fs[i]);
    }
    /* The pool replaced its workers and goes on serving. */
    int req[2] = {GOOD, 7};
    concur_future *after = concur_procpool_submit(pool, task, req, sizeof req);
    int rc = concur_future_result(after, 10, NULL);
    printf("after all that, a new task: %s\n", rc == 0 ? "ok" : concur_strerror(rc));
    bad += rc != 0;
    concur_future_release(after);
    concur_procpool_destroy(pool);
    printf("%s\n", bad ? "UNEXPECTED RESULTS" : "every failure stayed in its own task");
    return bad ? 1 : 0;
}
