/* fib.c - fork-join on the work-stealing pool.

   Computes fib(n) the naive doubly recursive way, where every call with n >= 2 spawns
   fib(n-1) as a child task, computes fib(n-2) itself and joins. That is millions of
   tiny tasks: it shows what a spawn costs and that the pool still scales. Two ways to
   write it:
   - typed tasks (CONCUR_TASK_1, CONCUR_SPAWN, CONCUR_SYNC): the fastest fork-join,
     for recursion whose children are known where they are spawned;
   - a concur_group with concur_spawn: any void (*)(void *) child, from anywhere in
     the pool; it costs more per spawn, so here it stops spawning below a cutoff.
   Both are compared with the plain sequential recursion and checked against it.

   Build and run:
       cc -O2 -pthread examples/fib.c -o fib && ./fib [n] [threads]
   (defaults: n = 36, threads = online CPUs). Exits 0 when the results agree. */
#include <stdio.h>
#include <stdlib.h>

#define CONCUR_IMPLEMENTATION
#include "../concur.h"

static long long fib_seq(int n) { return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2); }

/* ---- typed tasks ---- */

/* A spawn for every call: millions of spawns, which shows what one costs. */
CONCUR_TASK_1(long long, fib_every, int, n) {
    if (n < 2) return n;
    CONCUR_SPAWN(fib_every, n - 1);                  /* may run here later, or be stolen */
    long long right = CONCUR_CALL(fib_every, n - 2); /* meanwhile, do the other half */
    return CONCUR_SYNC(fib_every) + right;           /* runs the spawn here unless stolen */
}

/* Below the cutoff a call is too small to be worth even a cheap spawn: the plain
   recursion, which the compiler optimises hard, does it faster. */
enum { SEQ_CUTOFF = 12 };

CONCUR_TASK_1(long long, fib_typed, int, n) {
    if (n < SEQ_CUTOFF) return fib_seq(n);
    CONCUR_SPAWN(fib_typed, n - 1);
    long long right = CONCUR_CALL(fib_typed, n - 2);
    return CONCUR_SYNC(fib_typed) + right;
}

/* ---- a group ---- */

typedef struct fib_job { int n; long long result; } fib_job;

static void fib_task(void *arg) {
    fib_job *job = (fib_job *)arg;
    if (job->n < SEQ_CUTOFF) {
        job->result = fib_seq(job->n);
        return;
    }
    fib_job left = {job->n - 1, 0}, right = {job->n - 2, 0};
    concur_group g;
    concur_group_init(&g, NULL);        /* the pool of the worker running us */
    concur_spawn(&g, fib_task, &left);
    fib_task(&right);
    concur_group_wait(&g);
    job->result = left.result + right.result;
}

static void *fib_root(void *arg) {
    fib_task(arg);
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 36;
    int threads = argc > 2 ? atoi(argv[2]) : 0;
    if (n < 0 || n > 60 || threads < 0) {
        fprintf(stderr, "usage: fib [n 0..60] [threads]\n");
        return 2;
    }
    concur_pool *pool = concur_pool_create(&(concur_pool_desc){.threads = threads});
    if (!pool) {
        perror("concur_pool_create");
        return 1;
    }

    double t0 = concur_now();
    long long expect = fib_seq(n);
    double seq = concur_now() - t0;

    long long every = -1, typed = -1;
    t0 = concur_now();
    int rc = CONCUR_RUN(pool, fib_every, &every, n);
    double par_every = concur_now() - t0;

    t0 = concur_now();
    rc |= CONCUR_RUN(pool, fib_typed, &typed, n);
    double par_typed = concur_now() - t0;

    fib_job job = {n, 0};
    t0 = concur_now();
    concur_future *f = concur_pool_submit(pool, fib_root, &job);
    rc |= concur_future_wait(f, CONCUR_FOREVER);
    double par_group = concur_now() - t0;
    concur_future_release(f);

    int nthreads = concur_pool_threads(pool);
    /* fib_every spawns once per call with n >= 2: fib(n + 1) - 1 times. */
    long long f_prev = 0, f_cur = 1; /* fib(0), fib(1) */
    for (int i = 1; i <= n; i++) {
        long long next = f_prev + f_cur;
        f_prev = f_cur;
        f_cur = next;
    }
    double spawns = (double)(f_cur - 1);
    printf("fib(%d) = %lld on %d threads\n", n, typed, nthreads);
    printf("sequential                       %8.3f s\n", seq);
    printf("typed tasks, a spawn per call    %8.3f s   (%.1f ns per spawn and join)\n", par_every,
           par_every * 1e9 * nthreads / spawns);
    printf("typed tasks, cutoff %d           %8.3f s   (%.2fx sequential)\n", SEQ_CUTOFF,
           par_typed, seq / par_typed);
    printf("group, cutoff %d                 %8.3f s   (%.2fx sequential)\n", SEQ_CUTOFF, par_group,
           seq / par_group);
    concur_pool_destroy(pool);
    if (rc != 0 || every != expect || typed != expect || job.result != expect) {
        fprintf(stderr, "mismatch: typed %lld and %lld, group %lld, sequential %lld\n", every, typed,
                job.result, expect);
        return 1;
    }
    return 0;
}
