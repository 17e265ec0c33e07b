/* Soak: several threads throw a mixed workload at one pool for a bounded time (1 s by
   default; CONCUR_SOAK_SECONDS=600 by hand): plain tasks, fork-join tasks, tasks that
   wait on other tasks, tasks that fail, random cancellations and waits with short
   timeouts. Afterwards every task must have ended exactly once: it ran once and its
   future holds its outcome, or it never ran and its future says cancelled. A second
   soak does the same across the thread pool, a coroutine loop and a process pool. */
#include "test.h"

enum { KINDS = 4, SUBMITTERS = 3 };

typedef struct soak {
    concur_pool *pool;
    double until;
    long total_runs; /* every run of every task, to catch a second run at any time */
    long submitted, cancelled, failed, ran_ok, timeouts;
} soak;

typedef struct task { soak *s; int kind; unsigned runs; } task;

static void leaf(void *arg) { __atomic_add_fetch((long *)arg, 1, __ATOMIC_RELAXED); }

static void *small_value(void *arg) { return arg; }

static void *run_task(void *arg) {
    task *t = (task *)arg;
    __atomic_add_fetch(&t->runs, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&t->s->total_runs, 1, __ATOMIC_RELAXED);
    switch (t->kind) {
    case 0: /* plain */
        return t;
    case 1: { /* fork-join */
        long count = 0;
        concur_group g;
        concur_group_init(&g, NULL);
        for (int i = 0; i < 16; i++) concur_spawn(&g, leaf, &count);
        CHECK_EQ(concur_group_wait(&g), 0);
        CHECK_EQ(count, 16);
        return t;
    }
    case 2: { /* waits on another task of the same pool: the worker must help */
        concur_future *inner = concur_pool_submit(t->s->pool, small_value, t);
        if (!inner) return t;
        void *v = NULL;
        int rc = concur_future_result(inner, CONCUR_FOREVER, &v);
        CHECK(rc == 0 || rc == CONCUR_ESHUTDOWN);
        if (rc == 0) CHECK(v == t);
        concur_future_release(inner);
        return t;
    }
    default: /* fails like a raised exception */
        concur_task_fail(-EIO);
        return NULL;
    }
}

static unsigned next_rand(unsigned *seed) {
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 16;
}

enum { WINDOW = 128 };

static void settle(soak *s, concur_future *f, task *t) {
    void *v = NULL;
    int rc;
    /* Short timeouts race the completion on purpose; the loop ends when it is done. */
    while ((rc = concur_future_result(f, 0.0002, &v)) == -ETIMEDOUT)
        __atomic_add_fetch(&s->timeouts, 1, __ATOMIC_RELAXED);
    unsigned runs = __atomic_load_n(&t->runs, __ATOMIC_RELAXED);
    if (rc == -ECANCELED) {
        CHECK_EQ(runs, 0);
        __atomic_add_fetch(&s->cancelled, 1, __ATOMIC_RELAXED);
    } else {
        CHECK_EQ(runs, 1);
        if (t->kind == 3) {
            CHECK_EQ(rc, -EIO);
            __atomic_add_fetch(&s->failed, 1, __ATOMIC_RELAXED);
        } else {
            CHECK_EQ(rc, 0);
            CHECK(v == t);
            __atomic_add_fetch(&s->ran_ok, 1, __ATOMIC_RELAXED);
        }
    }
    concur_future_release(f);
}

static void *submitter(void *arg) {
    soak *s = (soak *)arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    concur_future *fs[WINDOW];
    task ts[WINDOW];
    while (concur_now() < s->until) {
        int n = 0;
        for (; n < WINDOW; n++) {
            ts[n].s = s;
            ts[n].runs = 0;
            ts[n].kind = (int)(next_rand(&seed) % KINDS);
            fs[n] = concur_pool_submit(s->pool, run_task, &ts[n]);
            REQUIRE(fs[n]);
            if (next_rand(&seed) % 4 == 0) concur_future_cancel(fs[n]); /* may or may not win */
        }
        __atomic_add_fetch(&s->submitted, n, __ATOMIC_RELAXED);
        for (int i = 0; i < n; i++) settle(s, fs[i], &ts[i]);
    }
    return NULL;
}

/* 1 s in CI, 0.3 s under valgrind, CONCUR_SOAK_SECONDS by hand. */
static double soak_seconds(void) {
    const char *secs = getenv("CONCUR_SOAK_SECONDS");
    if (getenv("CONCUR_TEST_QUICK")) return 0.3;
    return secs ? atof(secs) : 1.0;
}

static void test_soak(void) {
    soak s;
    memset(&s, 0, sizeof s);
    double seconds = soak_seconds();
    s.pool = concur_pool_create(&(concur_pool_desc){.threads = 3});
    REQUIRE(s.pool);
    double start = concur_now();
    s.until = start + seconds;
    test_threads ts;
    test_threads_start(&ts, SUBMITTERS, submitter, &s);
    test_threads_join(&ts);
    CHECK_EQ(concur_pool_destroy(s.pool), 0);
    double elapsed = concur_now() - start;
    CHECK_EQ(s.cancelled + s.failed + s.ran_ok, s.submitted);
    /* After destroy every queued record has been dealt with: a task run a second time
       (say by a stale queued record after an inline run) would show here. */
    CHECK_EQ(s.total_runs, s.ran_ok + s.failed);
    CHECK(s.submitted > 0);
    printf("soak: %.1f s, %ld tasks: %ld ran, %ld failed, %ld cancelled; %ld waits timed out\n",
           elapsed, s.submitted, s.ran_ok, s.failed, s.cancelled, s.timeouts);
}

#if !defined(CONCUR_NO_IO) && !defined(CONCUR_NO_PROCESS)
/* Every engine at once: pool tasks start coroutines on a loop thread and join them
   (cancelling some), coroutines await a pool future and a process future, pool tasks
   wait on process tasks. Each job must end exactly once with the right value, or as
   cancelled. */
typedef struct engines {
    concur_pool *pool;
    concur_procpool *procs;
    concur_loop *loop;
    concur_event stop;
    double until;
    long jobs, coroutines_ok, coroutines_cancelled, process_ok;
} engines;

typedef struct job { engines *e; int64_t n; unsigned coroutine_runs; int cancel; } job;

static int proc_square(const void *in, size_t len, concur_proc_out *out) {
    int64_t x;
    if (len != sizeof x) return -EINVAL;
    memcpy(&x, in, sizeof x);
    x *= x;
    return concur_proc_write(out, &x, sizeof x);
}

static int64_t process_value(concur_future *f) {
    int64_t v = -1;
    size_t len = 0;
    const void *b = concur_future_bytes(f, &len);
    if (b && len == sizeof v) memcpy(&v, b, sizeof v);
    return v;
}

static void *coroutine_job(void *arg) { /* on the loop thread */
    job *j = (job *)arg;
    __atomic_add_fetch(&j->coroutine_runs, 1, __ATOMIC_RELAXED);
    concur_future *pf = concur_pool_submit(j->e->pool, small_value, j);
    concur_future *xf = concur_procpool_submit(j->e->procs, proc_square, &j->n, sizeof j->n);
    REQUIRE(pf && xf);
    void *v = NULL;
    int rc1 = concur_future_result(pf, CONCUR_FOREVER, &v);
    int rc2 = concur_future_wait(xf, CONCUR_FOREVER);
    intptr_t out = -1; /* cancelled */
    if (rc1 == 0 && rc2 == 0) {
        CHECK(v == j);
        CHECK_EQ(concur_future_error(xf), 0);
        out = (intptr_t)process_value(xf);
    } else {
        CHECK(rc1 == -ECANCELED || rc2 == -ECANCELED);
    }
    concur_future_release(pf);
    concur_future_release(xf);
    return (void *)out;
}

static void *engine_task(void *arg) { /* on a pool worker */
    job *j = (job *)arg;
    engines *e = j->e;
    if (j->n % 2) { /* a process task, waited for by a worker */
        concur_future *xf = concur_procpool_submit(e->procs, proc_square, &j->n, sizeof j->n);
        REQUIRE(xf);
        CHECK_EQ(concur_future_wait(xf, CONCUR_FOREVER), 0);
        CHECK_EQ(process_value(xf), j->n * j->n);
        concur_future_release(xf);
        __atomic_add_fetch(&e->process_ok, 1, __ATOMIC_RELAXED);
        return j;
    }
    concur_co *co = concur_go(e->loop, coroutine_job, j);
    REQUIRE(co);
    if (j->cancel) concur_cancel(co);
    void *r = NULL;
    int rc = concur_join(co, CONCUR_FOREVER, &r);
    unsigned runs = __atomic_load_n(&j->coroutine_runs, __ATOMIC_RELAXED);
    if (rc == -ECANCELED) { /* cancelled before it started */
        CHECK_EQ(runs, 0);
        __atomic_add_fetch(&e->coroutines_cancelled, 1, __ATOMIC_RELAXED);
    } else {
        CHECK_EQ(rc, 0);
        CHECK_EQ(runs, 1);
        if ((intptr_t)r == -1) {
            CHECK(j->cancel);
            __atomic_add_fetch(&e->coroutines_cancelled, 1, __ATOMIC_RELAXED);
        } else {
            CHECK_EQ((intptr_t)r, j->n * j->n);
            __atomic_add_fetch(&e->coroutines_ok, 1, __ATOMIC_RELAXED);
        }
    }
    return j;
}

static void *loop_keeper(void *arg) { /* keeps the loop running until the soak ends */
    engines *e = (engines *)arg;
    CHECK_EQ(concur_event_wait(&e->stop, CONCUR_FOREVER), 0);
    return NULL;
}

static void *loop_thread(void *arg) {
    engines *e = (engines *)arg;
    CHECK_EQ(concur_loop_run(e->loop), 0);
    return NULL;
}

static void *engine_submitter(void *arg) {
    engines *e = (engines *)arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    enum { JOBS = 16 };
    job js[JOBS];
    concur_future *fs[JOBS];
    while (concur_now() < e->until) {
        for (int i = 0; i < JOBS; i++) {
            js[i].e = e;
            /* The square travels back as a coroutine's void *: keep it within 31 bits. */
            js[i].n = (int64_t)(next_rand(&seed) % 40000);
            js[i].coroutine_runs = 0;
            js[i].cancel = next_rand(&seed) % 4 == 0;
            fs[i] = concur_pool_submit(e->pool, engine_task, &js[i]);
            REQUIRE(fs[i]);
        }
        for (int i = 0; i < JOBS; i++) {
            void *v = NULL;
            CHECK_EQ(concur_future_result(fs[i], CONCUR_FOREVER, &v), 0);
            CHECK(v == &js[i]);
            concur_future_release(fs[i]);
        }
        __atomic_add_fetch(&e->jobs, JOBS, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_soak_engines(void) {
    engines e;
    memset(&e, 0, sizeof e);
    double seconds = soak_seconds();
    e.procs = concur_procpool_create(&(concur_procpool_desc){.workers = 2}); /* before threads */
    REQUIRE(e.procs);
    e.pool = concur_pool_create(&(concur_pool_desc){.threads = 3});
    e.loop = concur_loop_create(NULL);
    REQUIRE(e.pool && e.loop);
    concur_event_init(&e.stop);
    concur_detach(concur_go(e.loop, loop_keeper, &e));
    concur_thread *lt = concur_thread_create(loop_thread, &e);
    REQUIRE(lt);
    double start = concur_now();
    e.until = start + seconds;
    test_threads ts;
    test_threads_start(&ts, 2, engine_submitter, &e);
    test_threads_join(&ts);
    concur_event_set(&e.stop);
    CHECK_EQ(concur_thread_join(lt, NULL), 0);
    CHECK_EQ(concur_loop_destroy(e.loop), 0);
    CHECK_EQ(concur_pool_destroy(e.pool), 0);
    CHECK_EQ(concur_procpool_destroy(e.procs), 0);
    CHECK(e.jobs > 0);
    CHECK_EQ(e.coroutines_ok + e.coroutines_cancelled + e.process_ok, e.jobs);
    printf("soak across engines: %.1f s, %ld jobs: %ld coroutines (each awaiting a pool and a "
           "process future), %ld of them cancelled, %ld process tasks awaited by workers\n",
           concur_now() - start, e.jobs, e.coroutines_ok + e.coroutines_cancelled,
           e.coroutines_cancelled, e.process_ok);
}
#endif

int main(void) {
    test_begin(240);
    RUN(test_soak);
#if !defined(CONCUR_NO_IO) && !defined(CONCUR_NO_PROCESS)
    RUN(test_soak_engines);
#endif
    return test_end();
}
