/* concur-bench: runs the benchmark workloads for concur.h and for every peer that was
   found at build time, in the same invocation, and reports medians.

     concur-bench [--json] [--quick] [--runs N] [W1 W2 W3 ...]

   No workload ids means all. Table output by default; with --json one object per
   line: {"workload":"W1","impl":"concur","threads":2,"value":1.23,"unit":"s"}.
   --quick shrinks every workload (a smoke test that keeps the runner from rotting;
   its numbers mean nothing).

   W1 fib      fib(35): every call with n >= 2 spawns fib(n-1), runs fib(n-2) inline,
               joins; 1 and 2 threads; seq is the same recursion without spawns.
               concur uses typed tasks (CONCUR_TASK_1), concur-group the generic
               concur_group/concur_spawn; each run of either is paired with a run of
               seq, since this machine's speed drifts between runs
   W2 submit   an outside thread submits 1,000,000 empty tasks, each with a future
               (or the peer's nearest equivalent), then waits for all; 2 workers
   W3 pfor     out[i] = sqrt((double)i) * 1.0001 over 1e8 doubles; 2 threads
   W4-W7       coroutines and the I/O loop: bench_loop.c
   W8-W9       the process pool: bench_proc.c */
#define CONCUR_IMPLEMENTATION
#include "../../concur.h"
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#ifdef HAVE_OMP
#include <omp.h>
#endif

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "tests/bench"
#endif

int opt_json, opt_quick, opt_runs = 5;

/* ---- reporting ---- */

void report(const char *workload, const char *impl, int threads, double value,
                   const char *unit, const char *note) {
    if (opt_json) {
        printf("{\"workload\":\"%s\",\"impl\":\"%s\",\"threads\":%d,\"value\":%.6g,\"unit\":\"%s\"}\n",
               workload, impl, threads, value, unit);
    } else {
        printf("%-6s %-16s %3d  %12.4f %-8s %s\n", workload, impl, threads, value, unit,
               note ? note : "");
    }
    fflush(stdout);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of opt_runs runs of fn; < 0 when any run failed. */
double median_of(double (*fn)(void *), void *arg) {
    double v[64];
    int n = opt_runs < 64 ? opt_runs : 64;
    for (int i = 0; i < n; i++) {
        v[i] = fn(arg);
        if (v[i] < 0) return -1;
    }
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void medians_interleaved(double (*const *fns)(void *), void *arg, int n, double *out) {
    double v[8][64];
    int runs = opt_runs < 64 ? opt_runs : 64;
    if (n > 8) n = 8;
    for (int k = 0; k < n; k++) out[k] = 0;
    for (int r = 0; r < runs; r++)
        for (int j = 0; j < n; j++) {
            int k = (r + j) % n;
            v[k][r] = fns[k](arg);
            if (v[k][r] < 0) out[k] = -1;
        }
    for (int k = 0; k < n; k++) {
        if (out[k] < 0) continue;
        qsort(v[k], (size_t)runs, sizeof v[k][0], cmp_double);
        out[k] = runs % 2 ? v[k][runs / 2] : (v[k][runs / 2 - 1] + v[k][runs / 2]) / 2;
    }
}

/* ---- W4's bare switch ----
   concur's context switch with no scheduler around it, as Boost's fcontext is
   measured: two contexts on mmap'd stacks switch to each other. Lives here because
   only this file compiles the implementation, whose switch is private. */
#ifndef CONCUR_CORO_UCONTEXT
static concur__ctx raw_main, raw_ctx[2];
static long raw_rounds;
static int raw_started;

static void raw_pingpong(void) {
    /* Both contexts run this function, so each switch returns to the call site the
       return-stack predictor expects, as with two coroutines running the same code. */
    int me = raw_started++;
    for (long i = 0; i < raw_rounds; i++) concur__ctx_swap(&raw_ctx[me], &raw_ctx[!me]);
    concur__ctx_swap(&raw_ctx[me], &raw_main);
}

double bench_raw_switch(long rounds) {
    concur__stack *a = concur__stack_new(64 * 1024), *b = concur__stack_new(64 * 1024);
    double t = -1;
    if (a && b) {
        raw_rounds = rounds;
        raw_started = 0;
        concur__ctx_make(&raw_ctx[0], concur__stack_lo(a), a->size, raw_pingpong);
        concur__ctx_make(&raw_ctx[1], concur__stack_lo(b), b->size, raw_pingpong);
        double t0 = concur_now();
        concur__ctx_swap(&raw_main, &raw_ctx[0]);
        t = (concur_now() - t0) / (2.0 * (double)rounds);
    }
    if (a) concur__stack_free(a);
    if (b) concur__stack_free(b);
    return t;
}
#else
double bench_raw_switch(long rounds) { (void)rounds; return -1; }
#endif

/* ---- W1 fib ---- */

typedef struct fib_cfg { int n; int threads; concur_pool *pool; long expect; } fib_cfg;

/* noinline on both sides: the compiler must not inline the sequential recursion
   eight levels deep (gcc does at -O2) and then compare it with the spawning one. */
__attribute__((noinline)) static long fib_seq(int n) {
    return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2);
}

static double run_fib_seq(void *arg) {
    fib_cfg *c = (fib_cfg *)arg;
    double t0 = concur_now();
    long r = fib_seq(c->n);
    double s = concur_now() - t0;
    return r == c->expect ? s : -1;
}

typedef struct fib_task_arg { int n; long result; } fib_task_arg;

__attribute__((noinline)) static void fib_task(void *p) {
    fib_task_arg *a = (fib_task_arg *)p;
    if (a->n < 2) { a->result = a->n; return; }
    fib_task_arg x = {a->n - 1, 0}, y = {a->n - 2, 0};
    concur_group g;
    concur_group_init(&g, NULL);
    concur_spawn(&g, fib_task, &x);
    fib_task(&y);
    concur_group_wait(&g);
    a->result = x.result + y.result;
}

static void *fib_root(void *p) {
    fib_task(p);
    return NULL;
}

static double run_fib_group(void *arg) {
    fib_cfg *c = (fib_cfg *)arg;
    fib_task_arg a = {c->n, 0};
    double t0 = concur_now();
    concur_future *f = concur_pool_submit(c->pool, fib_root, &a);
    concur_future_wait(f, CONCUR_FOREVER);
    double s = concur_now() - t0;
    concur_future_release(f);
    return a.result == c->expect ? s : -1;
}

CONCUR_TASK_1(long, fib_typed, int, n) {
    if (n < 2) return n;
    CONCUR_SPAWN(fib_typed, n - 1);
    long b = CONCUR_CALL(fib_typed, n - 2);
    return CONCUR_SYNC(fib_typed) + b;
}

static double run_fib_typed(void *arg) {
    fib_cfg *c = (fib_cfg *)arg;
    long r = 0;
    double t0 = concur_now();
    int rc = CONCUR_RUN(c->pool, fib_typed, &r, c->n);
    double s = concur_now() - t0;
    return rc == 0 && r == c->expect ? s : -1;
}

typedef struct fib_seq_job { fib_cfg *c; double t; } fib_seq_job;

static void *fib_seq_task(void *arg) {
    fib_seq_job *j = (fib_seq_job *)arg;
    j->t = run_fib_seq(j->c);
    return NULL;
}

/* The sequential fib on one of the pool's workers: the two vCPUs of the VM this was
   tuned on are not equally fast at all times (one-thread typed fib(35) measured
   0.035 s and 0.045 s in turns while the main thread's sequential fib held steady;
   pinned to either CPU, both slowed together), so the pair runs on the same thread. */
static double run_fib_seq_on_worker(fib_cfg *c) {
    fib_seq_job j = {c, -1};
    concur_future *f = concur_pool_submit(c->pool, fib_seq_task, &j);
    if (!f) return -1;
    concur_future_wait(f, CONCUR_FOREVER);
    concur_future_release(f);
    return j.t;
}

/* Medians of opt_runs runs of fn, each right after a run of the sequential fib on a
   worker of the same pool, so that both see the same speed of this machine. */
static int median_paired(double (*fn)(void *), fib_cfg *c, double *t, double *seq) {
    double v[64], sv[64];
    int n = opt_runs < 64 ? opt_runs : 64;
    for (int i = 0; i < n; i++) {
        sv[i] = run_fib_seq_on_worker(c);
        v[i] = fn(c);
        if (v[i] < 0 || sv[i] < 0) return -1;
    }
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    qsort(sv, (size_t)n, sizeof sv[0], cmp_double);
    *t = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    *seq = n % 2 ? sv[n / 2] : (sv[n / 2 - 1] + sv[n / 2]) / 2;
    return 0;
}

#ifdef HAVE_OMP
static long fib_omp(int n) {
    if (n < 2) return n;
    long x, y;
#pragma omp task shared(x)
    x = fib_omp(n - 1);
    y = fib_omp(n - 2);
#pragma omp taskwait
    return x + y;
}

static double run_fib_omp(void *arg) {
    fib_cfg *c = (fib_cfg *)arg;
    long r = 0;
    double t0 = concur_now();
#pragma omp parallel num_threads(c->threads)
#pragma omp single
    r = fib_omp(c->n);
    double s = concur_now() - t0;
    return r == c->expect ? s : -1;
}
#endif

#ifdef HAVE_TBB
static double run_fib_tbb(void *arg) {
    fib_cfg *c = (fib_cfg *)arg;
    long r = 0;
    double s = tbb_fib(c->n, c->threads, &r);
    return r == c->expect ? s : -1;
}
#endif

static void w1(void) {
    fib_cfg c;
    memset(&c, 0, sizeof c);
    c.n = opt_quick ? 25 : 35;
    c.expect = fib_seq(c.n);
    char note[96];
    double seq = median_of(run_fib_seq, &c), one_thread = -1;
    report("W1", "seq", 1, seq, "s", "baseline");
    for (int threads = 1; threads <= 2; threads++) {
        c.threads = threads;
        c.pool = concur_pool_create(&(concur_pool_desc){.threads = threads});
        run_fib_typed(&c); /* warm the workers and their deques */
        double t, pseq;
        if (median_paired(run_fib_typed, &c, &t, &pseq) < 0) t = pseq = -1;
        if (threads == 1) one_thread = t;
        if (threads == 2 && one_thread > 0)
            snprintf(note, sizeof note, "%.2fx seq (paired seq %.4f s); %.2fx faster than 1 thread",
                     t / pseq, pseq, one_thread / t);
        else
            snprintf(note, sizeof note, "%.2fx seq (paired seq %.4f s)", t / pseq, pseq);
        report("W1", "concur", threads, t, "s", note);
        if (median_paired(run_fib_group, &c, &t, &pseq) < 0) t = pseq = -1;
        snprintf(note, sizeof note, "%.2fx seq (paired seq %.4f s)", t / pseq, pseq);
        report("W1", "concur-group", threads, t, "s", note);
        concur_pool_destroy(c.pool);
#ifdef HAVE_OMP
        t = median_of(run_fib_omp, &c);
        snprintf(note, sizeof note, "%.2fx seq", t / seq);
        report("W1", "omp", threads, t, "s", note);
#endif
#ifdef HAVE_TBB
        t = median_of(run_fib_tbb, &c);
        snprintf(note, sizeof note, "%.2fx seq", t / seq);
        report("W1", "tbb", threads, t, "s", note);
#endif
    }
}

/* ---- W2 submit ---- */

typedef struct submit_cfg { long tasks; int threads; concur_pool *pool; concur_future **fs; } submit_cfg;

static void *empty_task(void *arg) { return arg; }

static double run_submit_concur(void *arg) {
    submit_cfg *c = (submit_cfg *)arg;
    double t0 = concur_now();
    for (long i = 0; i < c->tasks; i++) c->fs[i] = concur_pool_submit(c->pool, empty_task, NULL);
    int rc = concur_wait_all(c->fs, (size_t)c->tasks, CONCUR_FOREVER);
    double s = concur_now() - t0;
    for (long i = 0; i < c->tasks; i++) concur_future_release(c->fs[i]);
    return rc == 0 ? s : -1;
}

/* The naive peer: one mutex+condvar queue, a malloc'd mutex+condvar future per task. */
typedef struct naive_future {
    pthread_mutex_t m;
    pthread_cond_t c;
    int done;
} naive_future;

typedef struct naive_pool {
    pthread_mutex_t m;
    pthread_cond_t nonempty;
    naive_future **q;
    long cap, head, len;
    int stop, nthreads;
    pthread_t t[16];
} naive_pool;

static void *naive_worker(void *arg) {
    naive_pool *p = (naive_pool *)arg;
    for (;;) {
        pthread_mutex_lock(&p->m);
        while (p->len == 0 && !p->stop) pthread_cond_wait(&p->nonempty, &p->m);
        if (p->len == 0) { pthread_mutex_unlock(&p->m); return NULL; }
        naive_future *f = p->q[p->head];
        p->head = (p->head + 1) % p->cap;
        p->len--;
        pthread_mutex_unlock(&p->m);
        /* the (empty) task would run here */
        pthread_mutex_lock(&f->m);
        f->done = 1;
        pthread_cond_signal(&f->c);
        pthread_mutex_unlock(&f->m);
    }
}

static double run_submit_naive(void *arg) {
    submit_cfg *c = (submit_cfg *)arg;
    naive_pool p;
    memset(&p, 0, sizeof p);
    pthread_mutex_init(&p.m, NULL);
    pthread_cond_init(&p.nonempty, NULL);
    p.cap = c->tasks;
    p.q = (naive_future **)malloc((size_t)p.cap * sizeof *p.q);
    naive_future **fs = (naive_future **)malloc((size_t)c->tasks * sizeof *fs);
    p.nthreads = c->threads;
    for (int i = 0; i < p.nthreads; i++) pthread_create(&p.t[i], NULL, naive_worker, &p);
    double t0 = concur_now();
    for (long i = 0; i < c->tasks; i++) {
        naive_future *f = (naive_future *)malloc(sizeof *f);
        pthread_mutex_init(&f->m, NULL);
        pthread_cond_init(&f->c, NULL);
        f->done = 0;
        fs[i] = f;
        pthread_mutex_lock(&p.m);
        p.q[(p.head + p.len) % p.cap] = f;
        p.len++;
        pthread_cond_signal(&p.nonempty);
        pthread_mutex_unlock(&p.m);
    }
    for (long i = 0; i < c->tasks; i++) {
        pthread_mutex_lock(&fs[i]->m);
        while (!fs[i]->done) pthread_cond_wait(&fs[i]->c, &fs[i]->m);
        pthread_mutex_unlock(&fs[i]->m);
    }
    double s = concur_now() - t0;
    pthread_mutex_lock(&p.m);
    p.stop = 1;
    pthread_cond_broadcast(&p.nonempty);
    pthread_mutex_unlock(&p.m);
    for (int i = 0; i < p.nthreads; i++) pthread_join(p.t[i], NULL);
    for (long i = 0; i < c->tasks; i++) {
        pthread_mutex_destroy(&fs[i]->m);
        pthread_cond_destroy(&fs[i]->c);
        free(fs[i]);
    }
    free(fs);
    free(p.q);
    return s;
}

#ifdef HAVE_OMP
static long omp_by_submitter;
static double run_submit_omp(void *arg) {
    submit_cfg *c = (submit_cfg *)arg;
    long done = 0, by_submitter = 0;
    double t0 = concur_now();
    /* One extra thread creates the tasks; libgomp lets it run tasks too (it throttles
       the creator when the queue is long), so its share is reported. */
#pragma omp parallel num_threads(c->threads + 1)
#pragma omp single
    {
        int submitter = omp_get_thread_num();
        for (long i = 0; i < c->tasks; i++) {
#pragma omp task shared(done, by_submitter)
            {
                __atomic_add_fetch(&done, 1, __ATOMIC_RELAXED);
                if (omp_get_thread_num() == submitter) __atomic_add_fetch(&by_submitter, 1, __ATOMIC_RELAXED);
            }
        }
    }
    double s = concur_now() - t0;
    omp_by_submitter = by_submitter;
    return done == c->tasks ? s : -1;
}
#endif

#ifdef HAVE_TBB
static double run_submit_tbb(void *arg) {
    submit_cfg *c = (submit_cfg *)arg;
    return tbb_submit(c->tasks, c->threads);
}
#endif

/* Runs a peer's command (a Python script) and reads the one number it prints; < 0
   when it could not run. */
double run_peer_command(const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    double s = -1;
    if (fscanf(p, "%lf", &s) != 1) s = -1;
    int status = pclose(p);
    return status == 0 ? s : -1;
}

static double run_submit_python(void *arg) {
    submit_cfg *c = (submit_cfg *)arg;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 '%s/py_executor.py' submit %ld %d 2>/dev/null", BENCH_SOURCE_DIR,
             c->tasks, c->threads);
    return run_peer_command(cmd);
}

static void w2(void) {
    submit_cfg c;
    memset(&c, 0, sizeof c);
    c.tasks = opt_quick ? 20000 : 1000000;
    c.threads = 2;
    c.fs = (concur_future **)malloc((size_t)c.tasks * sizeof *c.fs);
    char note[96];
    c.pool = concur_pool_create(&(concur_pool_desc){.threads = c.threads});
    run_submit_concur(&c);
    double t = median_of(run_submit_concur, &c);
    double concur_rate = c.tasks / t;
    report("W2", "concur", c.threads, concur_rate, "tasks/s", "workers ran 100% (submit never runs tasks)");
    concur_pool_destroy(c.pool);
    free(c.fs);
    t = median_of(run_submit_naive, &c);
    snprintf(note, sizeof note, "concur is %.2fx", concur_rate / (c.tasks / t));
    report("W2", "naive", c.threads, c.tasks / t, "tasks/s", note);
#ifdef HAVE_OMP
    t = median_of(run_submit_omp, &c);
    snprintf(note, sizeof note, "concur is %.2fx; submitter ran %.0f%%", concur_rate / (c.tasks / t),
             100.0 * (double)omp_by_submitter / (double)c.tasks);
    report("W2", "omp", c.threads, c.tasks / t, "tasks/s", note);
#endif
#ifdef HAVE_TBB
    t = median_of(run_submit_tbb, &c);
    snprintf(note, sizeof note, "concur is %.2fx (arena enqueue, no futures)", concur_rate / (c.tasks / t));
    report("W2", "tbb", c.threads, c.tasks / t, "tasks/s", note);
#endif
    /* Python is ~100x slower: a tenth of the tasks keeps the run short. */
    submit_cfg py = c;
    py.tasks = c.tasks / 10;
    t = median_of(run_submit_python, &py);
    if (t > 0) {
        snprintf(note, sizeof note, "concur is %.0fx (%ld tasks)", concur_rate / (py.tasks / t), py.tasks);
        report("W2", "python-pool", c.threads, py.tasks / t, "tasks/s", note);
    } else if (!opt_json) {
        printf("W2     python-pool      skipped (python3 not runnable)\n");
    }
}

/* ---- W3 parallel for ---- */

typedef struct pfor_cfg { double *out; int64_t n; int threads; concur_pool *pool; } pfor_cfg;

static int pfor_check(const pfor_cfg *c) {
    int64_t probe[4] = {0, 1, c->n / 2, c->n - 1};
    for (int i = 0; i < 4; i++)
        if (c->out[probe[i]] != sqrt((double)probe[i]) * 1.0001) return 0;
    return 1;
}

static void pfor_clear(pfor_cfg *c) {
    c->out[0] = c->out[1] = c->out[c->n / 2] = c->out[c->n - 1] = -1;
}

static double run_pfor_seq(void *arg) {
    pfor_cfg *c = (pfor_cfg *)arg;
    pfor_clear(c);
    double t0 = concur_now();
    for (int64_t i = 0; i < c->n; i++) c->out[i] = sqrt((double)i) * 1.0001;
    double s = concur_now() - t0;
    return pfor_check(c) ? s : -1;
}

static void pfor_body(int64_t lo, int64_t hi, void *ctx) {
    double *out = (double *)ctx;
    for (int64_t i = lo; i < hi; i++) out[i] = sqrt((double)i) * 1.0001;
}

static double run_pfor_concur(void *arg) {
    pfor_cfg *c = (pfor_cfg *)arg;
    pfor_clear(c);
    double t0 = concur_now();
    int rc = concur_parallel_for(c->pool, 0, c->n, 0, pfor_body, c->out);
    double s = concur_now() - t0;
    return rc == 0 && pfor_check(c) ? s : -1;
}

#ifdef HAVE_OMP
static double run_pfor_omp(void *arg) {
    pfor_cfg *c = (pfor_cfg *)arg;
    pfor_clear(c);
    double *out = c->out;
    int64_t n = c->n;
    double t0 = concur_now();
#pragma omp parallel for num_threads(c->threads) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = sqrt((double)i) * 1.0001;
    double s = concur_now() - t0;
    return pfor_check(c) ? s : -1;
}
#endif

#ifdef HAVE_TBB
static double run_pfor_tbb(void *arg) {
    pfor_cfg *c = (pfor_cfg *)arg;
    pfor_clear(c);
    double s = tbb_pfor(c->out, c->n, c->threads);
    return pfor_check(c) ? s : -1;
}
#endif

static void w3(void) {
    pfor_cfg c;
    c.n = opt_quick ? 1000000 : 100000000;
    c.threads = 2;
    c.out = (double *)malloc((size_t)c.n * sizeof *c.out);
    if (!c.out) { fprintf(stderr, "W3: cannot allocate %lld doubles\n", (long long)c.n); return; }
    memset(c.out, 0, (size_t)c.n * sizeof *c.out); /* fault the pages in before timing */
    char note[64];
    double seq = median_of(run_pfor_seq, &c);
    report("W3", "seq", 1, seq, "s", "baseline");
    c.pool = concur_pool_create(&(concur_pool_desc){.threads = c.threads});
    run_pfor_concur(&c);
    double t = median_of(run_pfor_concur, &c);
    snprintf(note, sizeof note, "%.2fx faster than seq", seq / t);
    report("W3", "concur", c.threads, t, "s", note);
    concur_pool_destroy(c.pool);
#ifdef HAVE_OMP
    t = median_of(run_pfor_omp, &c);
    snprintf(note, sizeof note, "%.2fx faster than seq", seq / t);
    report("W3", "omp", c.threads, t, "s", note);
#endif
#ifdef HAVE_TBB
    t = median_of(run_pfor_tbb, &c);
    snprintf(note, sizeof note, "%.2fx faster than seq", seq / t);
    report("W3", "tbb", c.threads, t, "s", note);
#endif
    free(c.out);
}

/* ---- driver ---- */

typedef struct workload { const char *id; void (*run)(void); const char *what; } workload;

static const workload workloads[] = {
    {"W1", w1, "fib(35) fork-join, 1 and 2 threads"},
    {"W2", w2, "1e6 submits with futures from an outside thread, 2 workers"},
    {"W3", w3, "parallel for over 1e8 doubles, 2 threads"},
    {"W4", w4, "two coroutines ping-pong by yield, 1e7 times each"},
    {"W5", w5, "create, run (one yield) and free 1e6 coroutines, 1e4 alive; RSS per coroutine"},
    {"W6", w6, "TCP echo, one server thread, 100 connections x 64 B, 5 s"},
    {"W7", w7, "HTTP/1.1 hello world, one server thread, wrk -t1 -c100 -d5s"},
    {"W8", w8, "2 worker processes map square over 1e5 int64s in order; round trip; crash"},
    {"W9", w9, "2 worker processes, 256 tasks of 1 MiB in, 1 MiB out"},
};
enum { NWORKLOADS = sizeof workloads / sizeof workloads[0] };

static void usage(FILE *to) {
    fprintf(to, "usage: concur-bench [--json] [--quick] [--runs N] [WORKLOAD...]\n");
    for (int i = 0; i < NWORKLOADS; i++) fprintf(to, "  %-4s %s\n", workloads[i].id, workloads[i].what);
}

int main(int argc, char **argv) {
    int selected[NWORKLOADS] = {0}, any = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) opt_json = 1;
        else if (strcmp(argv[i], "--quick") == 0) opt_quick = 1;
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) opt_runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) { usage(stdout); return 0; }
        else {
            int found = 0;
            for (int w = 0; w < NWORKLOADS; w++)
                if (strcmp(argv[i], workloads[w].id) == 0) selected[w] = found = any = 1;
            if (!found) {
                fprintf(stderr, "concur-bench: unknown workload or option '%s'\n", argv[i]);
                usage(stderr);
                return 2;
            }
        }
    }
    if (opt_runs < 1 || opt_runs > 64) {
        fprintf(stderr, "concur-bench: --runs must be 1..64\n");
        return 2;
    }
    if (!opt_json)
        printf("concur-bench (concur.h %s), medians of %d runs%s\n%-6s %-16s %3s  %12s %-8s %s\n",
               concur_version(), opt_runs, opt_quick ? ", --quick sizes" : "", "id", "impl", "thr",
               "value", "unit", "notes");
    for (int w = 0; w < NWORKLOADS; w++)
        if (!any || selected[w]) workloads[w].run();
    return 0;
}
