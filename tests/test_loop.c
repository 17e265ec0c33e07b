/* Coroutines and the I/O loop: scheduling order, timers, join/detach/cancel, the
   waiter seam (channels, semaphores, futures from the thread pool, threads waiting for
   coroutines), sockets and pipes through the fd wrappers in both worlds, closing an
   fd under a waiter, stack overflow reporting, bad input. */
#include "test.h"

#ifdef CONCUR_NO_IO
int main(void) {
    printf("skipped: built with CONCUR_NO_IO\n");
    return 77;
}
#else
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <fenv.h>

static int test_tsan(void) {
    const char *cfg = getenv("CONCUR_TEST_CONFIG");
    return cfg && strcmp(cfg, "tsan") == 0;
}

static concur_loop *new_loop(void) {
    /* the poll configuration forces its backend with CONCUR_IO_POLL */
    concur_loop *L = concur_loop_create(NULL);
    REQUIRE(L != NULL);
    return L;
}

/* ---- ordering ---- */
typedef struct order_log { char buf[64]; int n; } order_log;
typedef struct yield_arg { order_log *log; char tag; int rounds; } yield_arg;

static void *yielder(void *p) {
    yield_arg *a = (yield_arg *)p;
    for (int i = 0; i < a->rounds; i++) {
        a->log->buf[a->log->n++] = a->tag;
        CHECK_EQ(concur_yield(), 0);
    }
    return (void *)(intptr_t)a->tag;
}

static void test_yield_interleaves(void) {
    concur_loop *L = new_loop();
    order_log log;
    memset(&log, 0, sizeof log);
    yield_arg a = {&log, 'a', 3}, b = {&log, 'b', 3};
    concur_co *ca = concur_go(L, yielder, &a);
    concur_co *cb = concur_go(L, yielder, &b);
    REQUIRE(ca && cb);
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK(strcmp(log.buf, "ababab") == 0);
    void *r = NULL;
    CHECK_EQ(concur_join(ca, 0, &r), 0);
    CHECK(r == (void *)(intptr_t)'a');
    CHECK_EQ(concur_join(cb, CONCUR_FOREVER, &r), 0);
    CHECK(r == (void *)(intptr_t)'b');
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* ---- what a switch keeps ----
   Values live across yields, more than there are callee-saved registers, plus doubles
   and a long double: a switch that lost a register, or a hand-off inlined into this
   loop that the compiler was not told clobbers one, changes the result. */
__attribute__((noinline)) static unsigned long keep_values(unsigned long seed, int yield) {
    unsigned long a = seed, b = seed * 3 + 1, c = seed ^ 0x5a5a, d = seed + 77,
                  e = seed * seed, f = 11 - seed, g = seed << 3, h = seed | 0x100,
                  i2 = seed * 7;
    double x = (double)seed / 3.0, y = 1.5 - (double)seed;
    long double z = (long double)seed / 7.0L;
    for (int i = 0; i < 600; i++) {
        if (yield && concur_yield() != 0) return 0;
        a += b; b ^= c + i; c += d; d -= e; e += f * 3; f ^= g; g += h; h -= a; i2 += a ^ h;
        x = x * 1.0000001 + (double)(a & 7);
        y = y - x * 0.5;
        z = z * 1.0000001L + (long double)(b & 3);
    }
    return a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ i2 ^ (unsigned long)(long)x ^
           (unsigned long)(long)y ^ (unsigned long)(long)z;
}

typedef struct keep_arg { unsigned long seed, got; } keep_arg;
static void *value_keeper(void *p) {
    keep_arg *k = (keep_arg *)p;
    k->got = keep_values(k->seed, 1);
    return NULL;
}

static void test_yield_keeps_values(void) {
    concur_loop *L = new_loop();
    keep_arg k[5];
    for (int i = 0; i < 5; i++) {
        k[i].seed = 1000 + i * 37;
        k[i].got = 0;
        concur_detach(concur_go(L, value_keeper, &k[i]));
    }
    CHECK_EQ(concur_loop_run(L), 0);
    for (int i = 0; i < 5; i++) CHECK_EQ(k[i].got, keep_values(k[i].seed, 0));
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* Each coroutine keeps its own floating-point rounding mode across switches, in SSE
   (MXCSR) and x87 arithmetic alike, and the loop's thread gets its own back. 1/3
   rounds down to nearest, so upward gives a different quotient. */
#if defined(FE_UPWARD) && defined(FE_TONEAREST) && (defined(__x86_64__) || defined(__aarch64__))
static double third(void) {
    volatile double one = 1.0, three = 3.0;
    return one / three;
}
static long double third_long(void) {
    volatile long double one = 1.0L, three = 3.0L;
    return one / three;
}
static int same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }
static int same_long(long double a, long double b) { return !(a < b) && !(a > b); }

typedef struct round_arg { int mode, ok; } round_arg;
static void *rounder(void *p) {
    round_arg *r = (round_arg *)p;
    if (fesetround(r->mode) != 0) return NULL;
    double want = third();
    long double want_long = third_long();
    for (int i = 0; i < 600; i++) {
        if (concur_yield() != 0) return NULL;
        if (fegetround() != r->mode || !same_double(third(), want) ||
            !same_long(third_long(), want_long))
            return NULL;
    }
    r->ok = 1;
    return NULL;
}

static void test_yield_keeps_rounding_mode(void) {
    double nearest = third();
    /* valgrind computes SSE arithmetic to nearest whatever MXCSR says; there only
       the control words themselves (fegetround) are compared */
    CHECK_EQ(fesetround(FE_UPWARD), 0);
    int arithmetic_rounds = !same_double(third(), nearest);
    fesetround(FE_TONEAREST);
    if (!arithmetic_rounds) printf("     (rounding modes do not reach arithmetic here)\n");
    concur_loop *L = new_loop();
    round_arg r[3] = {{FE_UPWARD, 0}, {FE_TONEAREST, 0}, {FE_UPWARD, 0}};
    for (int i = 0; i < 3; i++) concur_detach(concur_go(L, rounder, &r[i]));
    CHECK_EQ(concur_loop_run(L), 0);
    for (int i = 0; i < 3; i++) CHECK_EQ(r[i].ok, 1);
    CHECK_EQ(fegetround(), FE_TONEAREST);
    CHECK(same_double(third(), nearest));
    const char *cfg = getenv("CONCUR_TEST_CONFIG");
    if (!cfg || strcmp(cfg, "valgrind") != 0) CHECK(arithmetic_rounds);
    CHECK_EQ(concur_loop_destroy(L), 0);
}
#else
static void test_yield_keeps_rounding_mode(void) {
    /* elsewhere swapcontext switches, which keeps what the C library's port keeps */
    printf("     (skipped: the switch's own FP handling is x86_64 and aarch64 code)\n");
}
#endif

/* Coroutines that compute between yields must not starve I/O or timers: a pipe that
   becomes readable, and a sleep that ends, wake their coroutines within a bounded
   number of the others' compute slices. Slices are 200 us of spinning on the clock,
   so the bound (100 slices, 20 ms) is about slices, not about how fast the machine
   is; polling every 32 turns of 256 hand-offs took thousands. */
typedef struct starve_state {
    int fds[2];
    long slices;
    long written_at, read_at, slept_from, slept_at;
    int done;
} starve_state;

static void *starve_worker(void *p) {
    starve_state *st = (starve_state *)p;
    while (st->done < 2) {
        double t0 = concur_now();
        while (concur_now() - t0 < 200e-6) {
        }
        if (++st->slices == 20) {
            CHECK_EQ(write(st->fds[1], "x", 1), 1);
            st->written_at = st->slices;
        }
        CHECK_EQ(concur_yield(), 0);
    }
    return NULL;
}

static void *starve_reader(void *p) {
    starve_state *st = (starve_state *)p;
    char c;
    CHECK_EQ(concur_read(st->fds[0], &c, 1, 10.0), 1);
    st->read_at = st->slices;
    st->done++;
    return NULL;
}

static void *starve_sleeper(void *p) {
    starve_state *st = (starve_state *)p;
    concur_yield();
    st->slept_from = st->slices;
    CHECK_EQ(concur_sleep(0.001), 0);
    st->slept_at = st->slices;
    st->done++;
    return NULL;
}

static void test_compute_does_not_starve_io(void) {
    concur_loop *L = new_loop();
    starve_state st;
    memset(&st, 0, sizeof st);
    REQUIRE(pipe(st.fds) == 0);
    concur_detach(concur_go(L, starve_reader, &st));
    concur_detach(concur_go(L, starve_sleeper, &st));
    concur_detach(concur_go(L, starve_worker, &st));
    concur_detach(concur_go(L, starve_worker, &st));
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK(st.written_at == 20);
    CHECK(st.read_at - st.written_at <= 100);
    CHECK(st.slept_at - st.slept_from <= 100);
    if (st.read_at - st.written_at > 100 || st.slept_at - st.slept_from > 100)
        printf("  pipe seen after %ld slices, sleep of 1 ms ended after %ld\n",
               st.read_at - st.written_at, st.slept_at - st.slept_from);
    close(st.fds[0]);
    close(st.fds[1]);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

typedef struct sleep_arg { order_log *log; char tag; double s; } sleep_arg;

static void *sleeper(void *p) {
    sleep_arg *a = (sleep_arg *)p;
    CHECK(concur_co_current() != NULL);
    CHECK(concur_loop_current() != NULL);
    CHECK_EQ(concur_sleep(a->s), 0);
    a->log->buf[a->log->n++] = a->tag;
    return NULL;
}

static void test_sleep_order(void) {
    concur_loop *L = new_loop();
    order_log log;
    memset(&log, 0, sizeof log);
    sleep_arg s[4] = {{&log, '3', 0.15}, {&log, '1', 0.05}, {&log, '2', 0.10}, {&log, '0', 0}};
    double t0 = concur_now();
    for (int i = 0; i < 4; i++) CHECK_EQ(concur_detach(concur_go(L, sleeper, &s[i])), 0);
    CHECK_EQ(concur_loop_run(L), 0);
    double took = test_since(t0);
    CHECK(strcmp(log.buf, "0123") == 0);
    CHECK(took >= 0.145);
    CHECK(concur_loop_current() == NULL);
    CHECK(concur_co_current() == NULL);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* Many coroutines, many timers: each sleeps a pseudo-random time, and none wakes
   before its deadline (the heap keeps them in order). */
typedef struct timer_arg { double at; double woke; } timer_arg;
static double timer_base;

static void *timed(void *p) {
    timer_arg *a = (timer_arg *)p;
    double left = a->at - (concur_now() - timer_base);
    concur_sleep(left > 0 ? left : 0);
    a->woke = concur_now() - timer_base;
    return NULL;
}

static void test_many_timers(void) {
    concur_loop *L = new_loop();
    enum { N = 2000 };
    timer_arg *a = (timer_arg *)calloc(N, sizeof *a);
    REQUIRE(a);
    uint32_t x = 12345;
    timer_base = concur_now();
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        a[i].at = 0.02 + (double)(x % 1000) / 10000.0; /* 20..120 ms */
        CHECK_EQ(concur_detach(concur_go(L, timed, &a[i])), 0);
    }
    CHECK_EQ(concur_loop_run(L), 0);
    for (int i = 0; i < N; i++) CHECK(a[i].woke >= a[i].at - 0.0005);
    free(a);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* ---- join, detach, cancel ---- */
static void *forever(void *p) {
    int *rc = (int *)p;
    *rc = concur_sleep(1e6);
    /* the cancel is delivered once: the next wait is a normal one */
    int again = concur_sleep(0.001);
    return (void *)(intptr_t)again;
}

static void *canceller(void *p) {
    concur_co *victim = (concur_co *)p;
    concur_sleep(0.01);
    CHECK_EQ(concur_cancel(victim), 0);
    return NULL;
}

static void *never_runs(void *p) {
    *(int *)p = 1;
    return NULL;
}

static void test_cancel_local(void) {
    concur_loop *L = new_loop();
    int rc = 0, ran = 0;
    concur_co *v = concur_go(L, forever, &rc);
    concur_co *c = concur_go(L, canceller, v);
    concur_co *n = concur_go(L, never_runs, &ran);
    REQUIRE(v && c && n);
    CHECK_EQ(concur_cancel(n), 0); /* before it started: it never runs */
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(rc, -ECANCELED);
    void *r = (void *)1;
    CHECK_EQ(concur_join(v, 0, &r), 0);
    CHECK(r == (void *)0);
    CHECK_EQ(concur_join(c, 0, NULL), 0);
    CHECK_EQ(concur_join(n, 0, &r), -ECANCELED);
    CHECK_EQ(ran, 0);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

typedef struct remote_arg { concur_loop *loop; concur_event started; int rc; } remote_arg;

static void *remote_victim(void *p) {
    remote_arg *a = (remote_arg *)p;
    concur_event_set(&a->started);
    a->rc = concur_sleep(1e6);
    return (void *)42;
}

static void *loop_thread(void *p) {
    concur_loop *L = (concur_loop *)p;
    CHECK_EQ(concur_loop_run(L), 0);
    return NULL;
}

/* Starts fn(arg) on L, runs L on a thread of its own, and waits until fn has set
   *started: from then on the coroutine is the other thread's. */
static concur_thread *go_on_thread(concur_loop *L, void *(*fn)(void *), void *arg, concur_event *started,
                                   concur_co **co) {
    concur_event_init(started);
    *co = concur_go(L, fn, arg);
    REQUIRE(*co);
    concur_thread *t = concur_thread_create(loop_thread, L);
    REQUIRE(t);
    CHECK_EQ(concur_event_wait(started, 10), 0);
    return t;
}

/* A coroutine that never blocks, only computes and yields, until cancelled. */
static void *yield_until_cancelled(void *p) {
    long *turns = (long *)p;
    int rc;
    while ((rc = concur_yield()) == 0) __atomic_fetch_add(turns, 1, __ATOMIC_RELAXED);
    /* delivered once: the next yield is a normal one */
    return (void *)(intptr_t)(rc == -ECANCELED && concur_yield() == 0);
}

static void *cancel_after_turns(void *p) {
    concur_co *victim = (concur_co *)p;
    for (int i = 0; i < 100; i++) concur_yield();
    CHECK_EQ(concur_cancel(victim), 0);
    return NULL;
}

static void test_cancel_yielding(void) {
    concur_loop *L = new_loop();
    long turns = 0;
    concur_co *v = concur_go(L, yield_until_cancelled, &turns);
    concur_co *c = concur_go(L, cancel_after_turns, v);
    REQUIRE(v && c);
    CHECK_EQ(concur_loop_run(L), 0);
    void *r = NULL;
    CHECK_EQ(concur_join(v, 0, &r), 0);
    CHECK(r == (void *)1);
    CHECK(turns >= 99);
    CHECK_EQ(concur_join(c, 0, NULL), 0);
    /* from another thread, while the victim keeps the loop busy */
    turns = 0;
    v = concur_go(L, yield_until_cancelled, &turns);
    REQUIRE(v);
    concur_thread *t = concur_thread_create(loop_thread, L);
    REQUIRE(t);
    while (__atomic_load_n(&turns, __ATOMIC_RELAXED) == 0) sched_yield();
    CHECK_EQ(concur_cancel(v), 0);
    CHECK_EQ(concur_join(v, 10, &r), 0);
    CHECK(r == (void *)1);
    CHECK_EQ(concur_thread_join(t, NULL), 0);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* A coroutine that takes cancels one after another until told to stop. */
typedef struct cancel_storm { concur_event started; int stop; long woken_otherwise; } cancel_storm;

static void *storm_victim(void *p) {
    cancel_storm *a = (cancel_storm *)p;
    concur_event_set(&a->started);
    /* Only a cancel can end a sleep this long. */
    while (!__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE))
        if (concur_sleep(1e6) != -ECANCELED) a->woken_otherwise++;
    return (void *)7;
}

/* Cancels from another thread while the loop is still working through the previous
   ones: a cancel may queue the coroutine again while the loop walks its cancel list
   (TSan caught the loop reading a link that the next cancel was rewriting). */
static void test_cancel_storm_from_thread(void) {
    concur_loop *L = new_loop();
    cancel_storm a;
    memset(&a, 0, sizeof a);
    concur_co *co;
    concur_thread *t = go_on_thread(L, storm_victim, &a, &a.started, &co);
    long n = test_scale(5000);
    for (long i = 0; i < n; i++) CHECK_EQ(concur_cancel(co), 0);
    __atomic_store_n(&a.stop, 1, __ATOMIC_RELEASE);
    CHECK_EQ(concur_cancel(co), 0); /* wakes it to see stop */
    void *r = NULL;
    CHECK_EQ(concur_join(co, 10, &r), 0);
    CHECK(r == (void *)7);
    CHECK_EQ(a.woken_otherwise, 0);
    CHECK_EQ(concur_thread_join(t, NULL), 0);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

static void test_cancel_and_join_from_thread(void) {
    concur_loop *L = new_loop();
    remote_arg a;
    memset(&a, 0, sizeof a);
    concur_co *co;
    concur_thread *t = go_on_thread(L, remote_victim, &a, &a.started, &co);
    CHECK_EQ(concur_join(co, 0.02, NULL), -ETIMEDOUT); /* a thread waits on a coroutine */
    CHECK_EQ(concur_loop_destroy(L), -EBUSY);
    CHECK_EQ(concur_cancel(co), 0);
    int again = concur_cancel(co); /* merges with the first, or finds co finished */
    CHECK(again == 0 || again == -EALREADY);
    void *r = NULL;
    CHECK_EQ(concur_join(co, 10, &r), 0);
    CHECK(r == (void *)42);
    CHECK_EQ(a.rc, -ECANCELED);
    CHECK_EQ(concur_thread_join(t, NULL), 0);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* Coroutines started from other threads while the loop runs; a keeper coroutine holds
   the loop open until every one has come in. */
typedef struct go_arg { concur_loop *loop; concur_wg wg; int64_t sum; } go_arg;

static void *adder(void *p) {
    go_arg *a = (go_arg *)p;
    a->sum++; /* every coroutine of a loop runs on the loop's thread */
    concur_yield();
    concur_wg_done(&a->wg);
    return NULL;
}

static void *keeper(void *p) {
    go_arg *a = (go_arg *)p;
    CHECK_EQ(concur_wg_wait(&a->wg, 30), 0); /* parks the coroutine, not the loop */
    return NULL;
}

static void *remote_starter(void *p) {
    go_arg *a = (go_arg *)p;
    for (int i = 0; i < 500; i++) {
        concur_co *co = concur_go(a->loop, adder, a);
        CHECK(co != NULL);
        concur_detach(co);
    }
    return NULL;
}

static void test_go_from_threads(void) {
    go_arg a;
    memset(&a, 0, sizeof a);
    a.loop = new_loop();
    concur_wg_init(&a.wg);
    concur_wg_add(&a.wg, 2000);
    concur_detach(concur_go(a.loop, keeper, &a));
    test_threads ts;
    test_threads_start(&ts, 4, remote_starter, &a);
    CHECK_EQ(concur_loop_run(a.loop), 0);
    test_threads_join(&ts);
    CHECK_EQ(a.sum, 2000);
    CHECK_EQ(concur_loop_destroy(a.loop), 0);
}

/* ---- the waiter seam ---- */
typedef struct pc_arg { concur_chan *ch; int64_t sum; concur_sem sem; int in_cs, max_in_cs; } pc_arg;

static void *producer(void *p) {
    pc_arg *a = (pc_arg *)p;
    for (int i = 1; i <= 1000; i++) CHECK_EQ(concur_chan_send(a->ch, &i, 10), 0);
    concur_chan_close(a->ch);
    return NULL;
}

static void *consumer(void *p) {
    pc_arg *a = (pc_arg *)p;
    int v;
    while (concur_chan_recv(a->ch, &v, 10) == 0) a->sum += v;
    return NULL;
}

static void *critical(void *p) {
    pc_arg *a = (pc_arg *)p;
    for (int i = 0; i < 20; i++) {
        CHECK_EQ(concur_sem_acquire(&a->sem, 10), 0);
        a->in_cs++;
        if (a->in_cs > a->max_in_cs) a->max_in_cs = a->in_cs;
        concur_yield();
        a->in_cs--;
        concur_sem_release(&a->sem, 1);
    }
    return NULL;
}

static void test_channel_and_sem_between_coroutines(void) {
    concur_loop *L = new_loop();
    pc_arg a;
    memset(&a, 0, sizeof a);
    a.ch = concur_chan_create(sizeof(int), 1);
    REQUIRE(a.ch);
    concur_sem_init(&a.sem, 2);
    concur_detach(concur_go(L, consumer, &a));
    concur_detach(concur_go(L, consumer, &a));
    concur_detach(concur_go(L, producer, &a));
    for (int i = 0; i < 5; i++) concur_detach(concur_go(L, critical, &a));
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(a.sum, 500500);
    CHECK_EQ(a.max_in_cs, 2);
    CHECK_EQ(concur_chan_destroy(a.ch), 0);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* The pool tasks cannot finish before the ticker coroutine has run, and the ticker
   runs only if the loop keeps going while the awaiter is parked on a future. */
static concur_event gate;

static void *gated_square(void *p) {
    intptr_t v = (intptr_t)p;
    CHECK_EQ(concur_event_wait(&gate, 30), 0);
    return (void *)(v * v);
}

typedef struct exec_arg { concur_pool *pool; int64_t sum; } exec_arg;

static void *awaiter(void *p) {
    exec_arg *a = (exec_arg *)p;
    concur_future *fs[8];
    for (int i = 0; i < 8; i++) {
        fs[i] = concur_pool_submit(a->pool, gated_square, (void *)(intptr_t)(i + 1));
        REQUIRE(fs[i]);
    }
    for (int i = 0; i < 8; i++) {
        void *v;
        CHECK_EQ(concur_future_result(fs[i], 30, &v), 0);
        a->sum += (intptr_t)v;
        concur_future_release(fs[i]);
    }
    return NULL;
}

static void *opener(void *p) {
    (void)p;
    concur_event_set(&gate);
    return NULL;
}

static void test_await_pool_future(void) {
    concur_loop *L = new_loop();
    exec_arg a;
    memset(&a, 0, sizeof a);
    concur_event_init(&gate);
    a.pool = concur_pool_create(&(concur_pool_desc){.threads = 2});
    REQUIRE(a.pool);
    concur_detach(concur_go(L, awaiter, &a)); /* runs first, parks on its futures */
    concur_detach(concur_go(L, opener, NULL));
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(a.sum, 204);
    CHECK_EQ(concur_pool_destroy(a.pool), 0);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* A waker on another thread publishes "notified" and only then hands the coroutine
   to the loop. A coroutine that sees the first before the second arrives must still
   wait for it: otherwise the hand-over lands later and resumes a coroutine that has
   finished (and whose record may already serve another one), or queues a running one
   twice. A completer thread spins on a slot and settles each future after a delay
   that sweeps across the waiter's way from queueing to parking. */
typedef struct wake_race {
    concur_future *slot;
    int stop;
    int want, rounds, finished, yields;
} wake_race;

static void *race_completer(void *p) {
    wake_race *r = (wake_race *)p;
    unsigned delay = 0, idle = 0;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        concur_future *f = __atomic_exchange_n(&r->slot, (concur_future *)NULL, __ATOMIC_ACQ_REL);
        if (!f) {
            if (++idle % 256 == 0) sched_yield(); /* valgrind runs one thread at a time */
            continue;
        }
        delay = (delay + 7) % 1024;
        for (volatile unsigned k = 0; k < delay; k++) {}
        CHECK_EQ(concur_future_set_value(f, f), 0);
        concur_future_release(f);
    }
    return NULL;
}

static void *race_once(void *p) { /* waits once and finishes at once */
    wake_race *r = (wake_race *)p;
    concur_future *f = concur_future_create();
    REQUIRE(f);
    concur_future_retain(f); /* the completer's */
    __atomic_store_n(&r->slot, f, __ATOMIC_RELEASE);
    void *v = NULL;
    CHECK_EQ(concur_future_result(f, 10, &v), 0);
    CHECK(v == f);
    concur_future_release(f);
    r->rounds++;
    return NULL;
}

static void *race_driver(void *p) {
    wake_race *r = (wake_race *)p;
    for (int i = 0; i < r->want; i++) {
        concur_co *co = concur_go(NULL, race_once, r);
        REQUIRE(co);
        CHECK_EQ(concur_join(co, 10, NULL), 0);
    }
    r->finished = 1;
    return NULL;
}

static void *race_yielder(void *p) { /* keeps the ready queue busy meanwhile */
    wake_race *r = (wake_race *)p;
    while (!r->finished) {
        r->yields++;
        CHECK_EQ(concur_yield(), 0);
    }
    for (int i = 0; i < 1000; i++) CHECK_EQ(concur_yield(), 0);
    __atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_remote_wake_while_parking(void) {
    concur_loop *L = new_loop();
    wake_race r;
    memset(&r, 0, sizeof r);
    /* Without the fix, ASan catches a use after free within the first few thousand. */
    r.want = getenv("CONCUR_TEST_QUICK") || test_tsan() ? 1000 : 20000;
    concur_thread *t = concur_thread_create(race_completer, &r);
    REQUIRE(t);
    concur_detach(concur_go(L, race_driver, &r));
    concur_detach(concur_go(L, race_yielder, &r));
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(concur_thread_join(t, NULL), 0);
    CHECK_EQ(r.rounds, r.want);
    CHECK(r.yields > 0);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* ---- sockets ---- */
typedef struct echo_arg { int lfd; int port; int clients; int rounds; int64_t bytes; int errors; } echo_arg;

static void *echo_conn(void *p) {
    int fd = (int)(intptr_t)p;
    char buf[256];
    for (;;) {
        ssize_t n = concur_recv(fd, buf, sizeof buf, 0, 10);
        if (n <= 0) break;
        if (concur_send(fd, buf, (size_t)n, 0, 10, NULL) != n) break;
    }
    concur_close(fd);
    return NULL;
}

static void *echo_server(void *p) {
    echo_arg *a = (echo_arg *)p;
    for (int i = 0; i < a->clients; i++) {
        int c = concur_accept(a->lfd, NULL, NULL, 10);
        CHECK(c >= 0);
        if (c < 0) break;
        concur_detach(concur_go(NULL, echo_conn, (void *)(intptr_t)c));
    }
    concur_close(a->lfd);
    return NULL;
}

static void *echo_client(void *p) {
    echo_arg *a = (echo_arg *)p;
    int fd = concur_tcp_dial("127.0.0.1", a->port, 10);
    CHECK(fd >= 0);
    if (fd < 0) { a->errors++; return NULL; }
    char out[100], in[100];
    for (int r = 0; r < a->rounds; r++) {
        size_t len = 1 + (size_t)r % sizeof out;
        for (size_t i = 0; i < len; i++) out[i] = (char)(r + (int)i);
        size_t sent = 0;
        CHECK_EQ(concur_write(fd, out, len, 10, &sent), (ssize_t)len);
        CHECK_EQ(sent, len);
        size_t got = 0;
        while (got < len) {
            ssize_t n = concur_read(fd, in + got, len - got, 10);
            CHECK(n > 0);
            if (n <= 0) { a->errors++; break; }
            got += (size_t)n;
        }
        CHECK(memcmp(in, out, len) == 0);
        a->bytes += (int64_t)got;
    }
    CHECK_EQ(concur_close(fd), 0);
    return NULL;
}

static void test_tcp_echo(void) {
    concur_loop *L = new_loop();
    echo_arg a;
    memset(&a, 0, sizeof a);
    a.lfd = concur_tcp_listen("127.0.0.1", 0, 128);
    REQUIRE(a.lfd >= 0);
    a.port = concur_tcp_local_port(a.lfd);
    CHECK(a.port > 0);
    a.clients = 50;
    a.rounds = (int)test_scale(200);
    concur_detach(concur_go(L, echo_server, &a));
    for (int i = 0; i < a.clients; i++) concur_detach(concur_go(L, echo_client, &a));
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(a.errors, 0);
    int64_t per = 0;
    for (int r = 0; r < a.rounds; r++) per += 1 + r % 100;
    CHECK_EQ(a.bytes, per * a.clients);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* A plain thread talks to a coroutine server: the same calls block the thread. */
static void *thread_client(void *p) {
    echo_arg *a = (echo_arg *)p;
    int fd = concur_tcp_dial("localhost", a->port, 10);
    CHECK(fd >= 0);
    if (fd < 0) return NULL;
    char buf[16];
    CHECK_EQ(concur_read(fd, buf, sizeof buf, 0.02), -ETIMEDOUT); /* server only echoes */
    CHECK_EQ(concur_send(fd, "ping", 4, 0, 10, NULL), 4);
    ssize_t n = concur_recv(fd, buf, sizeof buf, 0, 10);
    CHECK_EQ(n, 4);
    CHECK(n == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK_EQ(concur_close(fd), 0);
    return NULL;
}

static void test_thread_client_coroutine_server(void) {
    concur_loop *L = new_loop();
    echo_arg a;
    memset(&a, 0, sizeof a);
    a.lfd = concur_tcp_listen(NULL, 0, 16);
    REQUIRE(a.lfd >= 0);
    a.port = concur_tcp_local_port(a.lfd);
    a.clients = 1;
    concur_detach(concur_go(L, echo_server, &a));
    concur_thread *t = concur_thread_create(thread_client, &a);
    REQUIRE(t);
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(concur_thread_join(t, NULL), 0);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* ---- closing under a waiter; timeouts; pipes ---- */
typedef struct close_arg { int fds[2]; int rc_read, rc_wait; } close_arg;

static void *blocked_reader(void *p) {
    close_arg *a = (close_arg *)p;
    char c;
    a->rc_read = (int)concur_read(a->fds[0], &c, 1, 10);
    return NULL;
}

static void *closer(void *p) {
    close_arg *a = (close_arg *)p;
    concur_yield();
    concur_yield();
    CHECK_EQ(concur_close(a->fds[0]), 0);
    /* the number is reused at once by a new pipe: no stale event may reach it */
    int again[2];
    CHECK_EQ(pipe(again), 0);
    a->rc_wait = concur_wait_fd(again[0], CONCUR_READABLE, 0.03);
    concur_close(again[0]);
    concur_close(again[1]);
    return NULL;
}

static void test_close_wakes_waiter(void) {
    concur_loop *L = new_loop();
    close_arg a;
    memset(&a, 0, sizeof a);
    REQUIRE(pipe(a.fds) == 0);
    concur_detach(concur_go(L, blocked_reader, &a));
    concur_detach(concur_go(L, closer, &a));
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(a.rc_read, -EBADF);
    CHECK_EQ(a.rc_wait, -ETIMEDOUT);
    close(a.fds[1]);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

typedef struct pipe_arg { int fds[2]; int rc_timeout, rc_busy; size_t written; int64_t got; } pipe_arg;

static void *pipe_reader(void *p) {
    pipe_arg *a = (pipe_arg *)p;
    char buf[4096];
    a->rc_timeout = (int)concur_read(a->fds[0], buf, sizeof buf, 0.02);
    for (;;) {
        ssize_t n = concur_read(a->fds[0], buf, sizeof buf, 10);
        if (n <= 0) break;
        a->got += n;
    }
    return NULL;
}

static void *second_reader(void *p) {
    pipe_arg *a = (pipe_arg *)p;
    concur_sleep(0.03);
    a->rc_busy = concur_wait_fd(a->fds[0], CONCUR_READABLE, 1);
    return NULL;
}

static void *pipe_writer(void *p) {
    pipe_arg *a = (pipe_arg *)p;
    enum { LEN = 1 << 20 };
    char *big = (char *)malloc(LEN);
    REQUIRE(big);
    memset(big, 'x', LEN);
    concur_sleep(0.05);
    /* 1 MiB through a 64 KiB pipe: the writer parks on a full pipe many times */
    CHECK_EQ(concur_write(a->fds[1], big, LEN, 10, &a->written), LEN);
    concur_close(a->fds[1]);
    free(big);
    return NULL;
}

static void test_pipe_wrappers(void) {
    concur_loop *L = new_loop();
    pipe_arg a;
    memset(&a, 0, sizeof a);
    REQUIRE(pipe(a.fds) == 0);
    concur_detach(concur_go(L, pipe_reader, &a));
    concur_detach(concur_go(L, second_reader, &a));
    concur_detach(concur_go(L, pipe_writer, &a));
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(a.rc_timeout, -ETIMEDOUT);
    CHECK_EQ(a.rc_busy, -EBUSY);
    CHECK_EQ(a.written, 1 << 20);
    CHECK_EQ(a.got, 1 << 20);
    concur_close(a.fds[0]);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* A stream read that comes back short lets the next read park without a system call
   until epoll reports new data; these make sure that shortcut never strands data:
   data written after a short read arrives, and queued datagrams (where a short read
   says nothing about what else is queued) are all read with no further event. */
typedef struct short_read_arg { int fd, peer, dgram, count; int got[6]; int rc_last, rc_eof; } short_read_arg;

static void *short_reader(void *arg) {
    short_read_arg *a = (short_read_arg *)arg;
    char buf[256];
    for (int i = 0; i < 6; i++) {
        ssize_t n = concur_recv(a->fd, buf, sizeof buf, 0, 5.0);
        if (n != 1) { a->rc_last = n < 0 ? (int)n : -1000 - (int)n; return NULL; }
        a->got[i] = buf[0];
        a->count++;
    }
    /* The stream's end came right behind its last byte, possibly in the same edge. */
    if (!a->dgram) a->rc_eof = (int)concur_recv(a->fd, buf, sizeof buf, 0, 5.0);
    return NULL;
}

static void *short_sender(void *arg) {
    short_read_arg *a = (short_read_arg *)arg;
    for (int i = 0; i < 6; i++) {
        char c = (char)('a' + i);
        if (send(a->peer, &c, 1, 0) != 1) return (void *)1;
        if (!a->dgram && i == 5 && shutdown(a->peer, SHUT_WR) != 0) return (void *)1;
        /* Stream bytes one at a time, each after the reader emptied the socket; the
           last four datagrams in one burst, queued behind a single event. */
        if (!a->dgram || i < 2)
            for (int spins = 0; a->count <= i && spins < 100000; spins++) concur_yield();
    }
    return NULL;
}

static void run_short_reads(int type) {
    concur_loop *L = new_loop();
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) == 0);
    short_read_arg a;
    memset(&a, 0, sizeof a);
    a.fd = sv[0];
    a.peer = sv[1];
    a.dgram = type == SOCK_DGRAM;
    concur_co *reader = concur_go(L, short_reader, &a);
    concur_co *sender = concur_go(L, short_sender, &a); /* the reader parks first */
    CHECK_EQ(concur_loop_run(L), 0);
    void *r = (void *)2;
    CHECK_EQ(concur_join(sender, 0, &r), 0);
    CHECK(r == NULL);
    CHECK_EQ(concur_join(reader, 0, NULL), 0);
    CHECK_EQ(a.rc_last, 0);
    CHECK_EQ(a.count, 6);
    CHECK_EQ(a.rc_eof, 0);
    for (int i = 0; i < 6; i++) CHECK_EQ(a.got[i], 'a' + i);
    concur_close(sv[0]);
    close(sv[1]);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

static void test_short_reads_never_strand_data(void) {
    run_short_reads(SOCK_STREAM);
    run_short_reads(SOCK_DGRAM);
}

static void test_sigpipe_never_raised(void) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    close(fds[0]);
    size_t w = 99;
    /* the default SIGPIPE action would kill the test here */
    CHECK_EQ(concur_write(fds[1], "x", 1, 1, &w), -EPIPE);
    CHECK_EQ(w, 0);
    close(fds[1]);
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[1]);
    CHECK_EQ(concur_send(sv[0], "x", 1, 0, 1, NULL), -EPIPE);
    close(sv[0]);
}

/* ---- bad input ---- */
static void *nested_run(void *p) {
    concur_loop *L = (concur_loop *)p;
    CHECK_EQ(concur_loop_run(L), -EBUSY);
    CHECK_EQ(concur_join(concur_co_current(), 0, NULL), -EDEADLK);
    CHECK_EQ(concur_loop_destroy(L), -EBUSY);
    CHECK_EQ(concur_wait_fd(-1, CONCUR_READABLE, 0), -EBADF);
    CHECK_EQ(concur_wait_fd(0, 0, 0), -EINVAL);
    CHECK_EQ(concur_wait_fd(1000000, CONCUR_READABLE, 0), -EBADF);
    CHECK_EQ(concur_sleep(0.0 / 0.0), -EINVAL);
    char c;
    CHECK_EQ(concur_read(-1, &c, 1, 0), -EBADF);
    CHECK_EQ(concur_read(5000, &c, 1, 0), -EBADF);
    return NULL;
}

static void test_bad_input(void) {
    errno = 0;
    CHECK(concur_go(NULL, nested_run, NULL) == NULL); /* no current loop */
    CHECK_EQ(errno, EINVAL);
    CHECK(concur_loop_create(&(concur_loop_desc){.backend = 9}) == NULL);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(concur_loop_run(NULL), -EINVAL);
    CHECK_EQ(concur_loop_destroy(NULL), -EINVAL);
    CHECK_EQ(concur_join(NULL, 0, NULL), -EINVAL);
    CHECK_EQ(concur_detach(NULL), -EINVAL);
    CHECK_EQ(concur_cancel(NULL), -EINVAL);
    CHECK_EQ(concur_sleep(-1), -EINVAL);
    CHECK_EQ(concur_yield(), 0);
    CHECK_EQ(concur_tcp_listen("127.0.0.1", 70000, 1), -EINVAL);
    CHECK_EQ(concur_tcp_listen("not an address", 0, 1), -EINVAL);
    CHECK_EQ(concur_tcp_dial(NULL, 80, 1), -EINVAL);
    CHECK_EQ(concur_tcp_dial("127.0.0.1", 0, 1), -EINVAL);
    CHECK_EQ(concur_tcp_local_port(-1), -EBADF);
    CHECK_EQ(concur_close(-1), -EBADF);
    CHECK_EQ(concur_connect(0, NULL, 0, 1), -EINVAL);
    char c;
    CHECK_EQ(concur_read(0, NULL, 1, 0), -EINVAL);
    CHECK_EQ(concur_read(-1, &c, 1, 0.0 / 0.0), -EINVAL);

    /* a refused connection */
    int l = concur_tcp_listen("127.0.0.1", 0, 1);
    REQUIRE(l >= 0);
    int port = concur_tcp_local_port(l);
    close(l);
    CHECK_EQ(concur_tcp_dial("127.0.0.1", port, 5), -ECONNREFUSED);

    concur_loop *L = new_loop();
    concur_co *co = concur_go(L, nested_run, L);
    REQUIRE(co);
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(concur_cancel(co), -EALREADY);
    CHECK_EQ(concur_join(co, 0, NULL), 0);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* A name that cannot resolve fails cleanly, with the resolver on its own thread. */
static void *dial_name(void *p) {
    int *rc = (int *)p;
    *rc = concur_tcp_dial("no-such-host.invalid", 80, 2);
    return NULL;
}

static void test_dial_unknown_name(void) {
    concur_loop *L = new_loop();
    int rc = 0;
    concur_detach(concur_go(L, dial_name, &rc));
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK(rc == -ENOENT || rc == -EHOSTUNREACH || rc == -ETIMEDOUT || rc == -EAFNOSUPPORT);
    CHECK_EQ(concur_loop_destroy(L), 0);
}


/* ---- cancel a coroutine parked on read, on a channel, on a future, on join ---- */
typedef struct parked_arg { int fds[2]; concur_chan *ch; concur_future *f; int rc[3]; } parked_arg;

static void *parked_read(void *p) {
    parked_arg *a = (parked_arg *)p;
    char c;
    a->rc[0] = (int)concur_read(a->fds[0], &c, 1, CONCUR_FOREVER);
    return NULL;
}
static void *parked_chan(void *p) {
    parked_arg *a = (parked_arg *)p;
    int v;
    a->rc[1] = concur_chan_recv(a->ch, &v, CONCUR_FOREVER);
    return NULL;
}
static void *parked_future(void *p) {
    parked_arg *a = (parked_arg *)p;
    a->rc[2] = concur_future_wait(a->f, CONCUR_FOREVER);
    return NULL;
}
static concur_co *parked_cos[3];
static void *cancel_all(void *p) {
    (void)p;
    concur_sleep(0.01);
    for (int i = 0; i < 3; i++) CHECK_EQ(concur_cancel(parked_cos[i]), 0);
    return NULL;
}

static void test_cancel_parked_everywhere(void) {
    concur_loop *L = new_loop();
    parked_arg a;
    memset(&a, 0, sizeof a);
    REQUIRE(pipe(a.fds) == 0);
    a.ch = concur_chan_create(sizeof(int), 1);
    a.f = concur_future_create();
    REQUIRE(a.ch && a.f);
    parked_cos[0] = concur_go(L, parked_read, &a);
    parked_cos[1] = concur_go(L, parked_chan, &a);
    parked_cos[2] = concur_go(L, parked_future, &a);
    concur_detach(concur_go(L, cancel_all, NULL));
    CHECK_EQ(concur_loop_run(L), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(a.rc[i], -ECANCELED);
        CHECK_EQ(concur_join(parked_cos[i], 0, NULL), 0);
    }
    /* the cancelled waits left nothing behind in the primitives */
    int v = 5;
    CHECK_EQ(concur_chan_send(a.ch, &v, 0), 0);
    CHECK_EQ(concur_future_set_value(a.f, NULL), 0);
    concur_chan_destroy(a.ch);
    concur_future_release(a.f);
    concur_close(a.fds[0]);
    concur_close(a.fds[1]);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* ---- a peer that half-closes, and one that resets ---- */
typedef struct peer_arg { int sv[2]; ssize_t eof, after_reset; int reset_fd[2]; } peer_arg;

static void *half_closer(void *p) {
    peer_arg *a = (peer_arg *)p;
    concur_send(a->sv[1], "bye", 3, 0, 1, NULL);
    shutdown(a->sv[1], SHUT_WR); /* we can still read */
    char buf[8];
    CHECK_EQ(concur_recv(a->sv[1], buf, sizeof buf, 0, 5), 2);
    return NULL;
}
static void *half_reader(void *p) {
    peer_arg *a = (peer_arg *)p;
    char buf[8];
    CHECK_EQ(concur_recv(a->sv[0], buf, sizeof buf, 0, 5), 3);
    a->eof = concur_recv(a->sv[0], buf, sizeof buf, 0, 5);
    CHECK_EQ(concur_send(a->sv[0], "ok", 2, 0, 5, NULL), 2); /* the other way still works */
    return NULL;
}
static void *resetter(void *p) {
    peer_arg *a = (peer_arg *)p;
    struct linger lg = {1, 0}; /* close with RST */
    setsockopt(a->reset_fd[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    concur_sleep(0.01);
    concur_close(a->reset_fd[1]);
    return NULL;
}
static void *reset_reader(void *p) {
    peer_arg *a = (peer_arg *)p;
    char buf[8];
    a->after_reset = concur_recv(a->reset_fd[0], buf, sizeof buf, 0, 5);
    return NULL;
}

static void test_half_close_and_reset(void) {
    concur_loop *L = new_loop();
    peer_arg a;
    memset(&a, 0, sizeof a);
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, a.sv) == 0);
    int l = concur_tcp_listen("127.0.0.1", 0, 4);
    REQUIRE(l >= 0);
    a.reset_fd[0] = concur_tcp_dial("127.0.0.1", concur_tcp_local_port(l), 5);
    a.reset_fd[1] = concur_accept(l, NULL, NULL, 5);
    REQUIRE(a.reset_fd[0] >= 0 && a.reset_fd[1] >= 0);
    concur_detach(concur_go(L, half_closer, &a));
    concur_detach(concur_go(L, half_reader, &a));
    concur_detach(concur_go(L, resetter, &a));
    concur_detach(concur_go(L, reset_reader, &a));
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(a.eof, 0);
    CHECK_EQ(a.after_reset, -ECONNRESET);
    concur_close(a.sv[0]);
    concur_close(a.sv[1]);
    concur_close(a.reset_fd[0]);
    concur_close(l);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* ---- 10,000 coroutines alive at once, 1,000 TCP connections at once ---- */
static concur_event all_in;
static int64_t alive_now, alive_max;
static void *alive(void *p) {
    (void)p;
    alive_now++;
    if (alive_now > alive_max) alive_max = alive_now;
    CHECK_EQ(concur_event_wait(&all_in, 30), 0);
    alive_now--;
    return NULL;
}
static void *release_all(void *p) {
    (void)p;
    concur_yield();
    concur_event_set(&all_in);
    return NULL;
}

static void test_ten_thousand_coroutines(void) {
    concur_loop *L = concur_loop_create(&(concur_loop_desc){.stack_size = 64 * 1024});
    REQUIRE(L);
    concur_event_init(&all_in);
    alive_now = alive_max = 0;
    long n = test_scale(10000) < 1000 || test_tsan() ? 1000 : 10000;
    for (long i = 0; i < n; i++) concur_detach(concur_go(L, alive, NULL));
    concur_detach(concur_go(L, release_all, NULL));
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(alive_max, n);
    CHECK_EQ(alive_now, 0);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

static void test_thousand_connections(void) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int want = 2 * 1000 + 64;
    if (rl.rlim_cur < (rlim_t)want && rl.rlim_max >= (rlim_t)want) {
        rl.rlim_cur = (rlim_t)want;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    int clients = rl.rlim_cur >= (rlim_t)want ? 1000 : (int)(rl.rlim_cur - 64) / 2;
    if (test_tsan()) clients = 200; /* TSan keeps about 1 MiB of state per coroutine */
    concur_loop *L = concur_loop_create(&(concur_loop_desc){.stack_size = 64 * 1024});
    REQUIRE(L);
    echo_arg a;
    memset(&a, 0, sizeof a);
    a.lfd = concur_tcp_listen("127.0.0.1", 0, 1024);
    REQUIRE(a.lfd >= 0);
    a.port = concur_tcp_local_port(a.lfd);
    a.clients = clients;
    a.rounds = 5;
    concur_detach(concur_go(L, echo_server, &a));
    for (int i = 0; i < a.clients; i++) concur_detach(concur_go(L, echo_client, &a));
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(a.errors, 0);
    CHECK_EQ(a.bytes, (int64_t)(1 + 2 + 3 + 4 + 5) * a.clients);
    printf("     (%d concurrent connections)\n", a.clients);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* ---- many coroutines, stack reuse ---- */
static int64_t spawned_sum;
static void *tiny(void *p) {
    concur_yield();
    spawned_sum += (intptr_t)p;
    return NULL;
}

static void *spawner(void *p) {
    long n = (long)(intptr_t)p;
    for (long i = 0; i < n; i++) {
        concur_co *co = concur_go(NULL, tiny, (void *)(intptr_t)1);
        REQUIRE(co);
        concur_detach(co);
        if (i % 1000 == 999) concur_yield(); /* at most ~1000 alive */
    }
    return NULL;
}

static void test_many_coroutines(void) {
    concur_loop *L = concur_loop_create(&(concur_loop_desc){.stack_size = 32 * 1024});
    REQUIRE(L);
    long n = test_scale(100000);
    spawned_sum = 0;
    concur_detach(concur_go(L, spawner, (void *)(intptr_t)n));
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(spawned_sum, n);
    CHECK_EQ(concur_loop_destroy(L), 0);
}

/* ---- stack overflow is reported as such ---- */
static int recurse(int depth) {
    volatile char pad[1024];
    pad[0] = (char)depth;
    return depth > 1000000 ? pad[0] : recurse(depth + 1) + pad[0];
}

static void *overflow(void *p) {
    (void)p;
    printf("%d\n", recurse(0));
    return NULL;
}

static void overflow_child(void) {
    concur_loop *L = concur_loop_create(&(concur_loop_desc){.stack_size = 64 * 1024});
    concur_detach(concur_go(L, overflow, NULL));
    concur_loop_run(L);
}

static void test_stack_overflow_report(void) {
    const char *cfg = getenv("CONCUR_TEST_CONFIG");
    if (cfg && strstr(cfg, "san")) return; /* the sanitizers report it themselves */
    const char *q = getenv("CONCUR_TEST_QUICK");
    if (q && *q == '1') return; /* the valgrind suite */
    char buf[512];
    int status = test_run_child(overflow_child, buf, sizeof buf);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    /* Strict C99 without feature macros hides sigaltstack: no report there. */
    if (!cfg || strcmp(cfg, "pedantic") != 0)
        CHECK(strstr(buf, "coroutine stack overflow (stack size 64 KiB)") != NULL);
}

int main(void) {
    test_begin(120);
    RUN(test_yield_interleaves);
    RUN(test_yield_keeps_values);
    RUN(test_yield_keeps_rounding_mode);
    RUN(test_compute_does_not_starve_io);
    RUN(test_sleep_order);
    RUN(test_many_timers);
    RUN(test_cancel_local);
    RUN(test_cancel_yielding);
    RUN(test_cancel_and_join_from_thread);
    RUN(test_cancel_storm_from_thread);
    RUN(test_go_from_threads);
    RUN(test_channel_and_sem_between_coroutines);
    RUN(test_await_pool_future);
    RUN(test_remote_wake_while_parking);
    RUN(test_tcp_echo);
    RUN(test_thread_client_coroutine_server);
    RUN(test_close_wakes_waiter);
    RUN(test_pipe_wrappers);
    RUN(test_short_reads_never_strand_data);
    RUN(test_sigpipe_never_raised);
    RUN(test_bad_input);
    RUN(test_dial_unknown_name);
    RUN(test_cancel_parked_everywhere);
    RUN(test_half_close_and_reset);
    RUN(test_ten_thousand_coroutines);
    RUN(test_thousand_connections);
    RUN(test_many_coroutines);
    RUN(test_stack_overflow_report);
    return test_end();
}
#endif
