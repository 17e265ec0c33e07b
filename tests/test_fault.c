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
static void sweep(const char *name, int kind, int (*scenario)(void)) {
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
        CHECK(failed);
        points++;
    }
    CHECK(points > 0);
    swept += points;
    printf("     %-28s %ld failure point(s)\n", name, points);
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
        CHECK(errno == ENOMEM || errno == EAGAIN || errno == EMFILE);
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

int main(void) {
    test_begin(240);
    base_threads = threads_now();
    sweep("concur_chan_create", CONCUR_FAULT_MALLOC, scenario_chan);
    sweep("future create/then/bytes", CONCUR_FAULT_MALLOC, scenario_future);
    sweep("as_completed", CONCUR_FAULT_MALLOC, scenario_as_completed);
    sweep("concur_thread_create (malloc)", CONCUR_FAULT_MALLOC, scenario_thread);
    sweep("concur_thread_create (thread)", CONCUR_FAULT_THREAD, scenario_thread);
    sweep("pool create+submit (malloc)", CONCUR_FAULT_MALLOC, scenario_pool);
    sweep("pool create (thread)", CONCUR_FAULT_THREAD, scenario_pool);
    sweep("group spawn from outside", CONCUR_FAULT_MALLOC, scenario_group_from_outside);
#ifndef CONCUR_NO_PROCESS
    sweep("procpool create/submit/map (malloc)", CONCUR_FAULT_MALLOC, scenario_procpool);
    sweep("procpool create (thread)", CONCUR_FAULT_THREAD, scenario_procpool);
    sweep("procpool create (fork, sockets)", CONCUR_FAULT_PROCESS, scenario_procpool);
#endif
    printf("fault injection: %ld failure points swept\n", swept);
    return test_end();
}
