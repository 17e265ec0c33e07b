/* Futures: states and outcomes, cancel, callbacks, waits from many threads, wait_all,
   wait_any, the as-completed iterator, release rules. */
#include "test.h"

static void test_future_value(void) {
    concur_future *f = concur_future_create();
    REQUIRE(f);
    CHECK_EQ(concur_future_done(f), 0);
    CHECK_EQ(concur_future_error(f), -EINPROGRESS);
    CHECK(concur_future_value(f) == NULL);
    CHECK_EQ(concur_future_wait(f, 0), -ETIMEDOUT);
    double t0 = concur_now();
    void *v = (void *)1;
    CHECK_EQ(concur_future_result(f, 0.05, &v), -ETIMEDOUT);
    CHECK(v == NULL);
    CHECK(test_since(t0) >= 0.045);
    int payload = 7;
    CHECK_EQ(concur_future_set_value(f, &payload), 0);
    CHECK_EQ(concur_future_set_value(f, NULL), -EALREADY);
    CHECK_EQ(concur_future_set_error(f, -EIO), -EALREADY);
    CHECK_EQ(concur_future_done(f), 1);
    CHECK_EQ(concur_future_cancelled(f), 0);
    CHECK_EQ(concur_future_error(f), 0);
    CHECK(concur_future_value(f) == &payload);
    CHECK_EQ(concur_future_result(f, CONCUR_FOREVER, &v), 0);
    CHECK(v == &payload);
    CHECK_EQ(concur_future_cancel(f), -EALREADY);
    CHECK_EQ(concur_future_release(f), 0);
}

static void test_future_error_and_bytes(void) {
    concur_future *f = concur_future_create();
    REQUIRE(f);
    CHECK_EQ(concur_future_set_error(f, 5), -EINVAL); /* errors are negative */
    CHECK_EQ(concur_future_set_error(f, -EIO), 0);
    CHECK_EQ(concur_future_error(f), -EIO);
    CHECK_EQ(concur_future_result(f, 0, NULL), -EIO);
    CHECK_EQ(concur_future_release(f), 0);

    f = concur_future_create();
    REQUIRE(f);
    char msg[] = "result bytes";
    CHECK_EQ(concur_future_set_bytes(f, msg, sizeof msg), 0);
    memset(msg, 0, sizeof msg); /* the future keeps its own copy */
    size_t len = 0;
    const char *got = (const char *)concur_future_bytes(f, &len);
    REQUIRE(got);
    CHECK_EQ(len, sizeof msg);
    CHECK(strcmp(got, "result bytes") == 0);
    CHECK_EQ(concur_future_error(f), 0);
    CHECK_EQ(concur_future_release(f), 0);
}

static void test_future_cancel(void) {
    concur_future *f = concur_future_create();
    REQUIRE(f);
    CHECK_EQ(concur_future_cancel(f), 0);
    CHECK_EQ(concur_future_cancel(f), 0); /* idempotent, like Python */
    CHECK_EQ(concur_future_cancelled(f), 1);
    CHECK_EQ(concur_future_done(f), 1);
    CHECK_EQ(concur_future_error(f), -ECANCELED);
    CHECK_EQ(concur_future_set_running(f), -ECANCELED); /* the engine must skip it */
    CHECK_EQ(concur_future_set_value(f, NULL), -EALREADY);
    CHECK_EQ(concur_future_wait(f, 0), 0);
    CHECK_EQ(concur_future_release(f), 0);

    f = concur_future_create();
    REQUIRE(f);
    CHECK_EQ(concur_future_set_running(f), 0);
    CHECK_EQ(concur_future_set_running(f), -EINVAL);
    CHECK_EQ(concur_future_cancel(f), -EBUSY); /* running work is not interrupted */
    CHECK_EQ(concur_future_done(f), 0);
    CHECK_EQ(concur_future_set_value(f, f), 0);
    CHECK(concur_future_value(f) == f);
    CHECK_EQ(concur_future_release(f), 0);
}

static void record_cb(concur_future *f, void *arg) {
    int *log = (int *)arg;
    log[log[0] + 1] = (int)(intptr_t)concur_future_value(f);
    log[0]++;
}

static void test_future_then(void) {
    int log[8] = {0};
    concur_future *f = concur_future_create();
    REQUIRE(f);
    CHECK_EQ(concur_future_then(f, record_cb, log), 0);
    CHECK_EQ(concur_future_then(f, record_cb, log), 0);
    CHECK_EQ(log[0], 0);
    CHECK_EQ(concur_future_set_value(f, (void *)(intptr_t)5), 0);
    CHECK_EQ(log[0], 2);
    CHECK_EQ(log[1], 5);
    CHECK_EQ(concur_future_then(f, record_cb, log), 0); /* already done: runs now */
    CHECK_EQ(log[0], 3);
    CHECK_EQ(concur_future_then(f, NULL, log), -EINVAL);
    CHECK_EQ(concur_future_then(NULL, record_cb, log), -EINVAL);
    CHECK_EQ(concur_future_release(f), 0);

    /* A future released without completing frees its pending callbacks. */
    f = concur_future_create();
    REQUIRE(f);
    CHECK_EQ(concur_future_then(f, record_cb, log), 0);
    CHECK_EQ(concur_future_release(f), 0);
    CHECK_EQ(log[0], 3);
}

static void test_future_bad_input(void) {
    CHECK_EQ(concur_future_wait(NULL, 0), -EINVAL);
    CHECK_EQ(concur_future_done(NULL), -EINVAL);
    CHECK_EQ(concur_future_error(NULL), -EINVAL);
    CHECK(concur_future_value(NULL) == NULL);
    CHECK(concur_future_bytes(NULL, NULL) == NULL);
    CHECK_EQ(concur_future_cancel(NULL), -EINVAL);
    CHECK_EQ(concur_future_release(NULL), -EINVAL);
    CHECK_EQ(concur_future_set_value(NULL, NULL), -EINVAL);
    CHECK(concur_future_retain(NULL) == NULL);
    concur_future *f = concur_future_create();
    REQUIRE(f);
    CHECK_EQ(concur_future_wait(f, NAN), -EINVAL);
    CHECK_EQ(concur_future_set_bytes(f, NULL, 3), -EINVAL);
    CHECK(concur_future_retain(f) == f);
    CHECK_EQ(concur_future_release(f), 0);
    CHECK_EQ(concur_future_release(f), 0);
#ifndef CONCUR_DEBUG
    /* Released futures stay cached, so a second release is caught. */
    CHECK_EQ(concur_future_release(f), -EINVAL);
    CHECK_EQ(concur_future_wait(f, 0), -EINVAL);
#endif
    concur_future *one = concur_future_create();
    REQUIRE(one);
    concur_future *arr[2] = {one, NULL};
    CHECK_EQ(concur_wait_all(arr, 2, 0), -EINVAL);
    CHECK_EQ(concur_wait_all(NULL, 1, 0), -EINVAL);
    CHECK_EQ(concur_wait_all(NULL, 0, 0), 0);
    CHECK_EQ(concur_wait_any(arr, 2, 0), -EINVAL);
    CHECK_EQ(concur_wait_any(arr, 0, 0), -EINVAL);
    errno = 0;
    CHECK(concur_as_completed_create(arr, 2) == NULL);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(concur_as_completed_next(NULL, 0), -EINVAL);
    concur_as_completed_destroy(NULL);
    CHECK_EQ(concur_future_release(one), 0);
}

/* Many threads wait on one future; one completion wakes them all. */
typedef struct shared_wait { concur_future *f; } shared_wait;

static void *wait_value(void *arg) {
    shared_wait *s = (shared_wait *)arg;
    void *v = NULL;
    int rc = concur_future_result(s->f, CONCUR_FOREVER, &v);
    return rc == 0 ? v : NULL;
}

static void test_future_many_waiters(void) {
    shared_wait s;
    s.f = concur_future_create();
    REQUIRE(s.f);
    test_threads ts;
    test_threads_start(&ts, 8, wait_value, &s);
    int payload = 1;
    CHECK_EQ(concur_future_set_value(s.f, &payload), 0);
    for (int i = 0; i < ts.n; i++) {
        void *ret = NULL;
        CHECK_EQ(concur_thread_join(ts.t[i], &ret), 0);
        CHECK(ret == &payload);
    }
    CHECK_EQ(concur_future_release(s.f), 0);
}

/* Completer threads and waiter threads with tiny timeouts race on a stream of futures:
   each future must be completed exactly once and seen done with its own value. */
typedef struct race_ctx {
    concur_chan *to_complete, *to_wait;
    long n;
    long waited;
} race_ctx;

static void *race_completer(void *arg) {
    race_ctx *c = (race_ctx *)arg;
    concur_future *f;
    while (concur_chan_recv(c->to_complete, &f, CONCUR_FOREVER) == 0) {
        CHECK_EQ(concur_future_set_value(f, f), 0);
        CHECK_EQ(concur_future_release(f), 0);
    }
    return NULL;
}

static void *race_waiter(void *arg) {
    race_ctx *c = (race_ctx *)arg;
    concur_future *f;
    long i = 0;
    while (concur_chan_recv(c->to_wait, &f, CONCUR_FOREVER) == 0) {
        int rc;
        do rc = concur_future_wait(f, (++i & 3) ? 0.00001 : 0);
        while (rc == -ETIMEDOUT);
        CHECK_EQ(rc, 0);
        CHECK(concur_future_value(f) == f);
        CHECK_EQ(concur_future_release(f), 0);
        __atomic_add_fetch(&c->waited, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_future_wait_race(void) {
    race_ctx c;
    memset(&c, 0, sizeof c);
    c.n = test_scale(50000);
    c.to_complete = concur_chan_create(sizeof(concur_future *), 64);
    c.to_wait = concur_chan_create(sizeof(concur_future *), 64);
    REQUIRE(c.to_complete && c.to_wait);
    test_threads completers, waiters;
    test_threads_start(&completers, 2, race_completer, &c);
    test_threads_start(&waiters, 2, race_waiter, &c);
    for (long i = 0; i < c.n; i++) {
        concur_future *f = concur_future_create();
        REQUIRE(f);
        concur_future_retain(f);
        CHECK_EQ(concur_chan_send(c.to_wait, &f, CONCUR_FOREVER), 0);
        CHECK_EQ(concur_chan_send(c.to_complete, &f, CONCUR_FOREVER), 0);
    }
    concur_chan_close(c.to_complete);
    concur_chan_close(c.to_wait);
    test_threads_join(&completers);
    test_threads_join(&waiters);
    CHECK_EQ(c.waited, c.n);
    concur_chan_destroy(c.to_complete);
    concur_chan_destroy(c.to_wait);
}

static void test_wait_all_and_any(void) {
    enum { N = 16 };
    concur_future *fs[N];
    for (int i = 0; i < N; i++) {
        fs[i] = concur_future_create();
        REQUIRE(fs[i]);
    }
    CHECK_EQ(concur_wait_any(fs, N, 0), -ETIMEDOUT);
    double t0 = concur_now();
    CHECK_EQ(concur_wait_any(fs, N, 0.05), -ETIMEDOUT);
    CHECK(test_since(t0) >= 0.045);
    CHECK_EQ(concur_future_set_value(fs[11], NULL), 0);
    CHECK_EQ(concur_wait_any(fs, N, CONCUR_FOREVER), 11);
    CHECK_EQ(concur_wait_all(fs, N, 0.02), -ETIMEDOUT);
    for (int i = 0; i < N; i++)
        if (i != 11) CHECK_EQ(concur_future_set_error(fs[i], -EIO), 0);
    CHECK_EQ(concur_wait_all(fs, N, CONCUR_FOREVER), 0);
    for (int i = 0; i < N; i++) CHECK_EQ(concur_future_release(fs[i]), 0);
}

/* Completed from this thread in a known order: the iterator must follow it, and
   futures done before the iterator existed come first. */
static void test_as_completed_order(void) {
    enum { N = 10 };
    static const int order[N] = {3, 7, 0, 9, 1, 8, 2, 6, 5, 4};
    concur_future *fs[N];
    for (int i = 0; i < N; i++) {
        fs[i] = concur_future_create();
        REQUIRE(fs[i]);
    }
    CHECK_EQ(concur_future_set_value(fs[order[0]], NULL), 0);
    concur_as_completed *it = concur_as_completed_create(fs, N);
    REQUIRE(it);
    for (int i = 0; i < N; i++) CHECK_EQ(concur_future_release(fs[i]), 0); /* it holds refs */
    CHECK_EQ(concur_as_completed_next(it, 0), order[0]);
    CHECK_EQ(concur_as_completed_next(it, 0), -ETIMEDOUT);
    for (int k = 1; k < N; k++) {
        CHECK_EQ(concur_future_set_value(fs[order[k]], NULL), 0);
        CHECK_EQ(concur_as_completed_next(it, CONCUR_FOREVER), order[k]);
    }
    CHECK_EQ(concur_as_completed_next(it, CONCUR_FOREVER), CONCUR_EDONE);
    concur_as_completed_destroy(it);

    concur_as_completed *empty = concur_as_completed_create(NULL, 0);
    REQUIRE(empty);
    CHECK_EQ(concur_as_completed_next(empty, CONCUR_FOREVER), CONCUR_EDONE);
    concur_as_completed_destroy(empty);
}

/* Completed by several threads: every index exactly once, then EDONE. */
typedef struct ac_ctx { concur_future **fs; long n; long next; } ac_ctx;

static void *ac_completer(void *arg) {
    ac_ctx *c = (ac_ctx *)arg;
    long i;
    while ((i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED)) < c->n) {
        /* A permutation that is not the index order. */
        long j = (i * 7919) % c->n;
        CHECK_EQ(concur_future_set_value(c->fs[j], (void *)(intptr_t)(j + 1)), 0);
    }
    return NULL;
}

static void test_as_completed_threads(void) {
    ac_ctx c;
    c.n = 10007; /* prime, so i*7919 mod n is a permutation */
    c.next = 0;
    c.fs = (concur_future **)calloc((size_t)c.n, sizeof *c.fs);
    unsigned char *seen = (unsigned char *)calloc((size_t)c.n, 1);
    REQUIRE(c.fs && seen);
    for (long i = 0; i < c.n; i++) {
        c.fs[i] = concur_future_create();
        REQUIRE(c.fs[i]);
    }
    concur_as_completed *it = concur_as_completed_create(c.fs, (size_t)c.n);
    REQUIRE(it);
    test_threads ts;
    test_threads_start(&ts, 3, ac_completer, &c);
    long got = 0;
    int idx;
    while ((idx = concur_as_completed_next(it, CONCUR_FOREVER)) >= 0) {
        CHECK(idx < c.n);
        if (idx >= c.n) break;
        CHECK_EQ(seen[idx], 0);
        seen[idx] = 1;
        CHECK_EQ((intptr_t)concur_future_value(c.fs[idx]), idx + 1);
        got++;
    }
    CHECK_EQ(idx, CONCUR_EDONE);
    CHECK_EQ(got, c.n);
    test_threads_join(&ts);
    concur_as_completed_destroy(it);
    for (long i = 0; i < c.n; i++) concur_future_release(c.fs[i]);
    free(c.fs);
    free(seen);
}

/* Destroying the iterator while futures are pending or completing must neither
   crash nor leak (ASan and valgrind configurations check the latter). */
static void test_as_completed_destroy_early(void) {
    enum { N = 64 };
    ac_ctx c;
    concur_future *fs[N];
    for (int i = 0; i < N; i++) {
        fs[i] = concur_future_create();
        REQUIRE(fs[i]);
    }
    c.fs = fs;
    c.n = N;
    c.next = 0;
    concur_as_completed *it = concur_as_completed_create(fs, N);
    REQUIRE(it);
    test_threads ts;
    test_threads_start(&ts, 2, ac_completer, &c);
    int first = concur_as_completed_next(it, CONCUR_FOREVER);
    CHECK(first >= 0 && first < N);
    concur_as_completed_destroy(it); /* completers still running */
    test_threads_join(&ts);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(concur_future_done(fs[i]), 1);
        CHECK_EQ(concur_future_release(fs[i]), 0);
    }
}

int main(void) {
    test_begin(120);
    RUN(test_future_value);
    RUN(test_future_error_and_bytes);
    RUN(test_future_cancel);
    RUN(test_future_then);
    RUN(test_future_bad_input);
    RUN(test_future_many_waiters);
    RUN(test_future_wait_race);
    RUN(test_wait_all_and_any);
    RUN(test_as_completed_order);
    RUN(test_as_completed_threads);
    RUN(test_as_completed_destroy_early);
    return test_end();
}
