/* Fault injection: every allocation and thread creation that each entry point makes
   is failed in turn, and the entry point must return its documented error, leave
   nothing half-made (ASan and valgrind check for leaks in their configurations) and
   leave the library usable. Built with its own copy of the implementation, compiled
   with CONCUR_TESTING. */
#define CONCUR_TESTING
#ifndef CONCUR_TEST_IMPL
#define CONCUR_TEST_IMPL
#endif
#include "test.h"

#include <dirent.h>
#include <sys/wait.h>
#include <time.h>

static long swept;

/* Runs scenario with the n-th call of `kind` failing, for n = 1, 2, ... until a run
   no longer reaches the failure point. The scenario checks its own results and
   returns 1 when it saw the injected failure. */
static void sweep_how(const char *name, int kind, int (*scenario)(void), int must_show) {
    long points = 0;
    for (long n = 1; n < 200; n++) {
        long before = concur_testing_calls(kind);
        concur_testing_fail_at(kind, n);
        int failed = scenario();
        long made = concur_testing_calls(kind) - before;
        concur_testing_fail_at(kind, 0);
        if (made < n) { /* the failure point was never reached: the sweep is complete */
            CHECK(!failed);
            break;
        }
        if (must_show) CHECK(failed);
        points++;
    }
    CHECK(points > 0);
    swept += points;
    printf("     %-28s %ld failure point(s)\n", name, points);
}

/* Every failure point must reach the caller as an error. */
static void sweep(const char *name, int kind, int (*scenario)(void)) {
    sweep_how(name, kind, scenario, 1);
}

static int threads_now(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n - 2; /* . and .. */
}

/* pthread_join returns once the kernel has cleared the thread's id, a moment before
   the task leaves /proc/self/task: wait for the count to settle (a leaked thread
   never does, and fails the check after the bound). */
static int threads_settle(int expect) {
    int n = threads_now();
    for (int i = 0; i < 5000 && n != expect; i++) {
        struct timespec ms = {0, 1000000L};
        nanosleep(&ms, NULL);
        n = threads_now();
    }
    return n;
}

static int scenario_chan(void) {
    errno = 0;
    concur_chan *ch = concur_chan_create(sizeof(int), 8);
    if (!ch) {
        CHECK_EQ(errno, ENOMEM);
        return 1;
    }
    int v = 3;
    CHECK_EQ(concur_chan_send(ch, &v, 0), 0);
    CHECK_EQ(concur_chan_destroy(ch), 0);
    return 0;
}

static void count_cb(concur_future *f, void *arg) {
    (void)f;
    (*(int *)arg)++;
}

static int scenario_future(void) {
    int failed = 0, calls = 0;
    errno = 0;
    concur_future *f = concur_future_create();
    if (!f) {
        CHECK_EQ(errno, ENOMEM);
        return 1;
    }
    int then_rc = concur_future_then(f, count_cb, &calls);
    if (then_rc) { CHECK_EQ(then_rc, -ENOMEM); failed = 1; }
    int rc = concur_future_set_bytes(f, "abc", 3);
    if (rc) {
        CHECK_EQ(rc, -ENOMEM);
        CHECK_EQ(concur_future_done(f), 0); /* nothing half-done: still pending */
        CHECK_EQ(concur_future_set_error(f, -EIO), 0);
        failed = 1;
    }
    CHECK_EQ(concur_future_done(f), 1);
    CHECK_EQ(calls, then_rc == 0 ? 1 : 0); /* the callback ran exactly when registered */
    CHECK_EQ(concur_future_release(f), 0);
    return failed;
}

static int scenario_as_completed(void) {
    concur_future *fs[3];
    int failed = 0;
    for (int i = 0; i < 3; i++) fs[i] = NULL;
    for (int i = 0; i < 3; i++) {
        fs[i] = concur_future_create();
        if (!fs[i]) { failed = 1; goto out; }
    }
    concur_future_set_value(fs[1], NULL);
    errno = 0;
    concur_as_completed *it = concur_as_completed_create(fs, 3);
    if (!it) {
        CHECK_EQ(errno, ENOMEM);
        failed = 1;
    } else {
        CHECK_EQ(concur_as_completed_next(it, 0), 1);
        concur_as_completed_destroy(it);
    }
    int rc = concur_wait_any(fs, 3, 0); /* already done: answered without allocating */
    CHECK_EQ(rc, 1);
out:
    for (int i = 0; i < 3; i++)
        if (fs[i]) concur_future_release(fs[i]);
    return failed;
}

static void *return_arg(void *arg) { return arg; }

static int scenario_thread(void) {
    errno = 0;
    concur_thread *t = concur_thread_create(return_arg, &swept);
    if (!t) {
        CHECK(errno == ENOMEM || errno == EAGAIN);
        return 1;
    }
    void *ret = NULL;
    CHECK_EQ(concur_thread_join(t, &ret), 0);
    CHECK(ret == &swept);
    return 0;
}

/* The program's own threads (main and the watchdog): every scenario must end with
   exactly these. */
static int base_threads;

static int scenario_pool(void) {
    int threads_before = base_threads;
    errno = 0;
    concur_pool *pool = concur_pool_create(&(concur_pool_desc){.threads = 3});
    if (!pool) {
        CHECK(errno == ENOMEM || errno == EAGAIN);
        CHECK_EQ(threads_settle(threads_before), threads_before); /* no worker left behind */
        return 1;
    }
    int failed = 0;
    concur_future *f = concur_pool_submit(pool, return_arg, &swept);
    if (!f) {
        CHECK_EQ(errno, ENOMEM);
        failed = 1;
    } else {
        void *v = NULL;
        int rc = concur_future_result(f, CONCUR_FOREVER, &v);
        if (rc) { CHECK_EQ(rc, -ENOMEM); failed = 1; } /* the queue could not grow */
        else CHECK(v == &swept);
        concur_future_release(f);
    }
    CHECK_EQ(concur_pool_destroy(pool), 0);
    CHECK_EQ(threads_settle(threads_before), threads_before);
    return failed;
}

static void add_one(void *arg) { __atomic_add_fetch((int *)arg, 1, __ATOMIC_RELAXED); }

/* Spawning into a group from outside the pool goes through the pool's queue, whose
   first growth may fail: that spawn reports -ENOMEM, the others still run, and the
   group's wait still returns. */
static int scenario_group_from_outside(void) {
    concur_pool *pool = concur_pool_create(&(concur_pool_desc){.threads = 2});
    if (!pool) return 1;
    int ran = 0, spawned = 0, failed = 0;
    concur_group g;
    CHECK_EQ(concur_group_init(&g, pool), 0);
    for (int i = 0; i < 3; i++) {
        int rc = concur_spawn(&g, add_one, &ran);
        if (rc == 0) spawned++;
        else { CHECK_EQ(rc, -ENOMEM); failed = 1; }
    }
    CHECK_EQ(concur_group_wait(&g), 0);
    CHECK_EQ(ran, spawned);
    CHECK_EQ(concur_pool_destroy(pool), 0);
    return failed;
}

#ifndef CONCUR_NO_IO
/* ---- the loop and the fd wrappers ----
   An echo over TCP: a coroutine server on a loop in this thread, a client on a plain
   thread using the same wrappers in their blocking form. Any failure may cut the
   exchange short, but the one who hit it must get the injected code, the other side
   only a consequence of the first one closing (end of file, reset, broken pipe), no
   byte may arrive wrong, nothing may hang (every call has a timeout), and every fd,
   thread and stack must be gone afterwards. */

static int injected_code(long rc) {
    return rc == -EIO || rc == -EMFILE || rc == -ENOMEM || rc == -ENOBUFS;
}

static int peer_code(long rc) { /* the other side went early, or never came */
    return rc == -ECONNRESET || rc == -EPIPE || rc == -ECONNREFUSED || rc == -ECANCELED || rc == 0;
}

typedef struct io_echo {
    int lfd, port;
    int server_ran;
    concur_co *server;
    int injected;  /* a side got an injected failure */
    int cut_short; /* a side saw the other one go */
    int echoed;    /* rounds the client got back intact */
} io_echo;

enum { IO_ROUNDS = 3 };

static void note(io_echo *e, long rc) {
    if (injected_code(rc)) e->injected = 1;
    else if (peer_code(rc)) e->cut_short = 1;
    else CHECK_EQ(rc, -EIO); /* prints the unexpected code */
}

static void *io_server(void *p) {
    io_echo *e = (io_echo *)p;
    e->server_ran = 1;
    int c = concur_accept(e->lfd, NULL, NULL, 5);
    concur_close(e->lfd); /* one client; a connection still queued is reset */
    if (c < 0) { note(e, c); return NULL; }
    char buf[64];
    for (;;) {
        ssize_t n = concur_recv(c, buf, sizeof buf, 0, 5);
        if (n <= 0) {
            if (n < 0) note(e, n);
            break;
        }
        ssize_t w = concur_send(c, buf, (size_t)n, 0, 5, NULL);
        if (w != n) { note(e, w); break; }
    }
    concur_close(c);
    return NULL;
}

static void *io_client(void *p) {
    io_echo *e = (io_echo *)p;
    int fd = concur_tcp_dial("127.0.0.1", e->port, 5);
    if (fd < 0) {
        note(e, fd);
        concur_cancel(e->server); /* it would wait for us until its accept times out */
        return NULL;
    }
    for (int r = 0; r < IO_ROUNDS; r++) {
        char out[24], in[24];
        int len = snprintf(out, sizeof out, "round %d of the echo", r);
        ssize_t w = concur_write(fd, out, (size_t)len, 5, NULL);
        if (w != len) { note(e, w); break; }
        int got = 0;
        while (got < len) {
            ssize_t n = concur_read(fd, in + got, (size_t)(len - got), 5);
            if (n <= 0) { note(e, n); break; }
            got += (int)n;
        }
        if (got < len) break;
        CHECK(memcmp(in, out, (size_t)len) == 0); /* never a wrong byte */
        e->echoed++;
    }
    concur_close(fd);
    return NULL;
}

static int scenario_loop_echo(void) {
    int fds_before = test_count_fds();
    errno = 0;
    concur_loop *L = concur_loop_create(NULL);
    if (!L) {
        CHECK(errno == ENOMEM || errno == EMFILE);
        CHECK_EQ(test_count_fds(), fds_before);
        return 1;
    }
    io_echo e;
    memset(&e, 0, sizeof e);
    int failed = 0;
    e.lfd = concur_tcp_listen("127.0.0.1", 0, 8);
    if (e.lfd < 0) {
        CHECK(injected_code(e.lfd));
        failed = 1;
        goto out;
    }
    e.port = concur_tcp_local_port(e.lfd);
    CHECK(e.port > 0);
    errno = 0;
    concur_co *server = e.server = concur_go(L, io_server, &e);
    if (!server) {
        CHECK_EQ(errno, ENOMEM);
        concur_close(e.lfd);
        failed = 1;
        goto out;
    }
    pthread_t client; /* not concur_thread_create: its allocation would be swept too */
    REQUIRE(pthread_create(&client, NULL, io_client, &e) == 0);
    CHECK_EQ(concur_loop_run(L), 0);
    if (!e.server_ran) concur_close(e.lfd); /* no stack for it: resets the client */
    CHECK_EQ(pthread_join(client, NULL), 0);
    int rc = concur_join(server, 0, NULL);
    if (rc == -ENOMEM) failed = 1; /* no stack for it */
    else if (rc) CHECK_EQ(rc, -ECANCELED); /* the client failed before it started */
    if (e.injected) failed = 1;
    else if (!failed) CHECK_EQ(e.echoed, IO_ROUNDS); /* nothing failed: all came back */
    CHECK(!e.cut_short || failed); /* a side only goes early because of a failure */
out:
    CHECK_EQ(concur_loop_destroy(L), 0);
    CHECK_EQ(threads_settle(base_threads), base_threads);
    CHECK_EQ(test_count_fds(), fds_before);
    return failed;
}
#endif

#ifndef CONCUR_NO_PROCESS
/* ---- the process pool ---- */

static int no_child_left(void) {
    int st;
    errno = 0;
    return waitpid(-1, &st, WNOHANG) == -1 && errno == ECHILD;
}

static int square_task(const void *in, size_t len, concur_proc_out *out) {
    int64_t x;
    if (len != sizeof x) return -EINVAL;
    memcpy(&x, in, sizeof x);
    x *= x;
    return concur_proc_write(out, &x, sizeof x);
}

/* Small payloads only: a big one whose shared segment cannot be made goes through
   the socket instead, which is a fallback, not an error the caller could see. A
   failure on the pool's own thread (a result buffer) loses that worker, so its task
   fails with CONCUR_EWORKERDIED and a replacement comes. */
static int scenario_procpool(void) {
    int fds_before = test_count_fds();
    errno = 0;
    concur_procpool *pp = concur_procpool_create(&(concur_procpool_desc){.workers = 2});
    if (!pp) {
        CHECK(errno == ENOMEM || errno == EAGAIN || errno == EMFILE || errno == ECONNRESET);
        CHECK_EQ(threads_settle(base_threads), base_threads);
        CHECK_EQ(test_count_fds(), fds_before);
        CHECK(no_child_left());
        return 1;
    }
    int failed = 0;
    int64_t x = 9, in[3] = {1, 2, 3}, out[3] = {0, 0, 0};
    concur_future *f = concur_procpool_submit(pp, square_task, &x, sizeof x);
    if (!f) {
        CHECK_EQ(errno, ENOMEM);
        failed = 1;
    } else {
        int rc = concur_future_result(f, 30, NULL);
        size_t len = 0;
        const int64_t *v = (const int64_t *)concur_future_bytes(f, &len);
        if (rc) {
            CHECK(rc == -ENOMEM || rc == CONCUR_EWORKERDIED);
            failed = 1;
        } else {
            CHECK(v && len == sizeof *v && *v == 81);
        }
        concur_future_release(f);
    }
    int rc = concur_procpool_map(pp, square_task, in, 3, sizeof in[0], out, sizeof out[0], 1, 30);
    if (rc) {
        CHECK(rc == -ENOMEM || rc == CONCUR_EWORKERDIED);
        failed = 1;
    } else {
        CHECK(out[0] == 1 && out[1] == 4 && out[2] == 9);
    }
    CHECK_EQ(concur_procpool_destroy(pp), 0);
    CHECK_EQ(threads_settle(base_threads), base_threads);
    CHECK_EQ(test_count_fds(), fds_before);
    CHECK(no_child_left());
    return failed;
}
#endif

/* ---- the shrunken defaults of CONCUR_TESTING, with no failure armed ----
   A deque of 8 records (deeper spawns run inline), a submission queue that starts at
   2 and grows, a stack cache of 2, one worker process: each result must still be
   exact. */
typedef struct fib_arg { int n; long r; } fib_arg;

static void fib_task(void *p) {
    fib_arg *a = (fib_arg *)p;
    if (a->n < 2) { a->r = a->n; return; }
    fib_arg x = {a->n - 1, 0}, y = {a->n - 2, 0};
    concur_group g;
    CHECK_EQ(concur_group_init(&g, concur_pool_current()), 0);
    CHECK_EQ(concur_spawn(&g, fib_task, &x), 0);
    CHECK_EQ(concur_spawn(&g, fib_task, &y), 0);
    CHECK_EQ(concur_group_wait(&g), 0);
    a->r = x.r + y.r;
}

static void *fib_root(void *p) {
    fib_task(p);
    return p;
}

#ifndef CONCUR_NO_IO
static void *co_square(void *p) {
    intptr_t x = (intptr_t)p;
    CHECK_EQ(concur_yield(), 0);
    return (void *)(x * x);
}
#endif

#ifndef CONCUR_NO_IO
static void *co_yield_once(void *arg) {
    concur_yield();
    return arg;
}

static void *co_nap(void *arg) {
    for (int i = 0; i < 8; i++) concur_sleep(0.001); /* the loop waits: it trims */
    return arg;
}

/* Spawned on the loop, as a server spawns: a record made from another thread is
   always a fresh allocation. */
static void *co_spawn_burst(void *arg) {
    intptr_t n = (intptr_t)arg;
    for (intptr_t i = 0; i < n; i++) {
        concur_co *co = concur_go(NULL, co_yield_once, NULL);
        if (!co) return NULL;
        concur_detach(co);
    }
    return arg;
}

static void coroutine_burst(concur_loop *L, int n) {
    concur_co *spawner = concur_go(L, co_spawn_burst, (void *)(intptr_t)n);
    REQUIRE(spawner);
    CHECK_EQ(concur_loop_run(L), 0);
    void *r = NULL;
    CHECK_EQ(concur_join(spawner, 0, &r), 0);
    CHECK(r == (void *)(intptr_t)n);
}

/* By default every stack and record of a finished coroutine is kept (the cache then
   holds no more than were alive at once), so a second burst allocates nothing; an
   explicit cap is a cap; and a loop that waits gives the excess back, after which it
   still works. */
static void test_stack_cache(void) {
    enum { BURST = 50 }; /* far beyond the cap of 2 that CONCUR_TESTING sets */
    concur_loop *L = concur_loop_create(NULL);
    REQUIRE(L);
    coroutine_burst(L, BURST);
    long before = concur_testing_calls(CONCUR_FAULT_MALLOC);
    coroutine_burst(L, BURST);
    /* only the spawner's record, made from this thread */
    CHECK_EQ(concur_testing_calls(CONCUR_FAULT_MALLOC) - before, 1);
    concur_co *napper = concur_go(L, co_nap, NULL);
    REQUIRE(napper);
    concur_detach(napper);
    CHECK_EQ(concur_loop_run(L), 0);
    before = concur_testing_calls(CONCUR_FAULT_MALLOC);
    coroutine_burst(L, BURST);
    CHECK(concur_testing_calls(CONCUR_FAULT_MALLOC) - before > 0); /* trimmed: new stacks */
    CHECK_EQ(concur_loop_destroy(L), 0);

    concur_loop_desc d;
    memset(&d, 0, sizeof d);
    d.stack_cache = 4;
    L = concur_loop_create(&d);
    REQUIRE(L);
    coroutine_burst(L, BURST);
    before = concur_testing_calls(CONCUR_FAULT_MALLOC);
    coroutine_burst(L, BURST);
    /* a stack (and a record) for each coroutine beyond the four cached */
    CHECK(concur_testing_calls(CONCUR_FAULT_MALLOC) - before >= BURST - 4);
    CHECK_EQ(concur_loop_destroy(L), 0);
}
#endif

static void test_small_defaults(void) {
    concur_pool *pool = concur_pool_create(&(concur_pool_desc){.threads = 2});
    REQUIRE(pool);
    fib_arg f = {18, 0};
    concur_future *ff = concur_pool_submit(pool, fib_root, &f);
    enum { SUBMITS = 200 };
    concur_future *fs[SUBMITS];
    for (int i = 0; i < SUBMITS; i++) REQUIRE((fs[i] = concur_pool_submit(pool, return_arg, &fs[i])) != NULL);
    for (int i = 0; i < SUBMITS; i++) {
        void *v = NULL;
        CHECK_EQ(concur_future_result(fs[i], 30, &v), 0);
        CHECK(v == &fs[i]);
        concur_future_release(fs[i]);
    }
    REQUIRE(ff);
    CHECK_EQ(concur_future_wait(ff, 30), 0);
    CHECK_EQ(f.r, 2584);
    concur_future_release(ff);
    CHECK_EQ(concur_pool_destroy(pool), 0);
#ifndef CONCUR_NO_IO
    concur_loop *L = concur_loop_create(NULL);
    REQUIRE(L);
    enum { COS = 20 };
    concur_co *cos[COS];
    for (intptr_t i = 0; i < COS; i++) REQUIRE((cos[i] = concur_go(L, co_square, (void *)i)) != NULL);
    CHECK_EQ(concur_loop_run(L), 0);
    for (intptr_t i = 0; i < COS; i++) {
        void *r = NULL;
        CHECK_EQ(concur_join(cos[i], 0, &r), 0);
        CHECK((intptr_t)r == i * i);
    }
    CHECK_EQ(concur_loop_destroy(L), 0);
#endif
#ifndef CONCUR_NO_PROCESS
    concur_procpool *pp = concur_procpool_create(NULL); /* one worker */
    REQUIRE(pp);
    int64_t in[10], out[10];
    for (int i = 0; i < 10; i++) in[i] = i + 1;
    CHECK_EQ(concur_procpool_map(pp, square_task, in, 10, sizeof in[0], out, sizeof out[0], 3, 30), 0);
    for (int i = 0; i < 10; i++) CHECK_EQ(out[i], (int64_t)(i + 1) * (i + 1));
    CHECK_EQ(concur_procpool_destroy(pp), 0);
#endif
    CHECK_EQ(threads_settle(base_threads), base_threads);
    printf("     shrunken defaults: fork-join, 200 submits, 20 coroutines, a map: exact\n");
}

int main(void) {
    test_begin(240);
    base_threads = threads_now();
    test_small_defaults();
#ifndef CONCUR_NO_IO
    test_stack_cache();
#endif
    sweep("concur_chan_create", CONCUR_FAULT_MALLOC, scenario_chan);
    sweep("future create/then/bytes", CONCUR_FAULT_MALLOC, scenario_future);
    sweep("as_completed", CONCUR_FAULT_MALLOC, scenario_as_completed);
    sweep("concur_thread_create (malloc)", CONCUR_FAULT_MALLOC, scenario_thread);
    sweep("concur_thread_create (thread)", CONCUR_FAULT_THREAD, scenario_thread);
    sweep("pool create+submit (malloc)", CONCUR_FAULT_MALLOC, scenario_pool);
    sweep("pool create (thread)", CONCUR_FAULT_THREAD, scenario_pool);
    sweep("group spawn from outside", CONCUR_FAULT_MALLOC, scenario_group_from_outside);
#ifndef CONCUR_NO_IO
    /* The poll backend retries a failed growth of its fd array 10 ms later: there,
       a failure may be absorbed (the echo must still be right). */
    const char *cfg = getenv("CONCUR_TEST_CONFIG");
    int poll_backend = cfg && strcmp(cfg, "poll") == 0;
    sweep_how("loop echo over TCP (malloc)", CONCUR_FAULT_MALLOC, scenario_loop_echo, !poll_backend);
    sweep("loop echo over TCP (I/O)", CONCUR_FAULT_IO, scenario_loop_echo);
#endif
#ifndef CONCUR_NO_PROCESS
    sweep("procpool create/submit/map (malloc)", CONCUR_FAULT_MALLOC, scenario_procpool);
    sweep("procpool create (thread)", CONCUR_FAULT_THREAD, scenario_procpool);
    sweep("procpool create (fork, sockets)", CONCUR_FAULT_PROCESS, scenario_procpool);
    /* A failed frame between tasks only costs a worker, which is replaced: the scenario
       must still get right answers or CONCUR_EWORKERDIED, but need not see a failure. */
    sweep_how("procpool frames (I/O)", CONCUR_FAULT_IO, scenario_procpool, 0);
#endif
    printf("fault injection: %ld failure points swept\n", swept);
    return test_end();
}
