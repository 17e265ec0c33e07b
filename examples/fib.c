/* fib.c - fork-join on the work-stealing pool.

   Computes fib(n) the naive doubly recursive way, where every call with n >= 2 spawns
   fib(n-1) as a child task, computes fib(n-2) itself and joins. That is millions of
   tiny tasks: it shows what a spawn costs and that the pool still scales. Compares
   with the plain sequential recursion and checks that both agree.

   Build and run:
       cc -O2 -pthread examples/fib.c -o fib && ./fib [n] [threads]
   (defaults: n = 36, threads = online CPUs). Exits 0 when the results agree. */
#include <stdio.h>
#include <stdlib.h>

#define CONCUR_IMPLEMENTATION
#include "../concur.h"

typedef struct fib_job { int n; long long result; } fib_job;

static long long fib_seq(int n) { return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2); }

/* Below the cutoff a task is too small to be worth a spawn, however cheap. */
enum { SEQ_CUTOFF = 12 };

static void fib_task(void *arg) {
    fib_job *job = (fib_job *)arg;
    if (job->n < SEQ_CUTOFF) {
        job->result = fib_seq(job->n);
        return;
    }
    fib_job left = {job->n - 1, 0}, right = {job->n - 2, 0};
    concur_group g;
    concur_group_init(&g, NULL);        /* the pool of the worker running us */
    concur_spawn(&g, fib_task, &left);  /* may run here later, or be stolen */
    fib_task(&right);                   /* meanwhile, do the other half */
    concur_group_wait(&g);              /* runs `left` here unless a thief has it */
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

    fib_job job = {n, 0};
    t0 = concur_now();
    concur_future *f = concur_pool_submit(pool, fib_root, &job);
    int rc = concur_future_wait(f, CONCUR_FOREVER);
    double par = concur_now() - t0;
    concur_future_release(f);

    printf("fib(%d) = %lld\n", n, job.result);
    printf("sequential        %8.3f s\n", seq);
    printf("pool, %2d threads  %8.3f s   (%.2fx)\n", concur_pool_threads(pool), par, seq / par);
    concur_pool_destroy(pool);
    if (rc != 0 || job.result != expect) {
        fprintf(stderr, "mismatch: pool %lld, sequential %lld\n", job.result, expect);
        return 1;
    }
    return 0;
}
