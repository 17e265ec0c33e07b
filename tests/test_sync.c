/* Mutex, semaphore, event and wait group: contract, races, timeouts, bad input. */
#include "test.h"

/* ---- mutex ---- */

typedef struct counter_ctx { concur_mutex m; long iters; long value; } counter_ctx;

static void *counter_worker(void *arg) {
    counter_ctx *c = (counter_ctx *)arg;
    for (long i = 0; i < c->iters; i++) {
        concur_mutex_lock(&c->m);
        c->value++; /* a plain increment: only the lock makes it correct */
        concur_mutex_unlock(&c->m);
    }
    return NULL;
}

static void test_mutex_hammer(void) {
    counter_ctx c;
    concur_mutex_init(&c.m);
    c.iters = test_scale(200000);
    c.value = 0;
    test_threads ts;
    test_threads_start(&ts, 4, counter_worker, &c);
    test_threads_join(&ts);
    CHECK_EQ(c.value, 4 * c.iters);
}

static void *hold_mutex(void *arg) {
    concur_mutex *m = (concur_mutex *)arg;
    CHECK_EQ(concur_mutex_trylock(m), -EBUSY);
    double t0 = concur_now();
    CHECK_EQ(concur_mutex_timedlock(m, 0.05), -ETIMEDOUT);
    CHECK(test_since(t0) >= 0.045);
    return NULL;
}

static void test_mutex_try_and_timeout(void) {
    concur_mutex m = CONCUR_MUTEX_INIT;
    CHECK_EQ(concur_mutex_trylock(&m), 0);
    concur_thread *t = concur_thread_create(hold_mutex, &m);
    REQUIRE(t);
    CHECK_EQ(concur_thread_join(t, NULL), 0);
    CHECK_EQ(concur_mutex_unlock(&m), 0);
    CHECK_EQ(concur_mutex_timedlock(&m, 1.0), 0);
    CHECK_EQ(concur_mutex_unlock(&m), 0);
    CHECK_EQ(concur_mutex_timedlock(&m, 0), 0);
    CHECK_EQ(concur_mutex_unlock(&m), 0);
}

static void test_mutex_bad_input(void) {
    CHECK_EQ(concur_mutex_lock(NULL), -EINVAL);
    CHECK_EQ(concur_mutex_trylock(NULL), -EINVAL);
    CHECK_EQ(concur_mutex_unlock(NULL), -EINVAL);
    concur_mutex m = CONCUR_MUTEX_INIT;
    CHECK_EQ(concur_mutex_timedlock(&m, NAN), -EINVAL);
#ifndef CONCUR_DEBUG /* a debug build asserts on this misuse instead */
    CHECK_EQ(concur_mutex_unlock(&m), -EPERM);
#endif
}

/* ---- semaphore ---- */

static void test_sem_basic(void) {
    concur_sem s;
    CHECK_EQ(concur_sem_init(&s, 2), 0);
    CHECK_EQ(concur_sem_value(&s), 2);
    CHECK_EQ(concur_sem_acquire(&s, 0), 0);
    CHECK_EQ(concur_sem_acquire(&s, CONCUR_FOREVER), 0);
    CHECK_EQ(concur_sem_acquire(&s, 0), -ETIMEDOUT);
    double t0 = concur_now();
    CHECK_EQ(concur_sem_acquire(&s, 0.05), -ETIMEDOUT);
    double waited = test_since(t0);
    CHECK(waited >= 0.045 && waited < 5.0);
    CHECK_EQ(concur_sem_release(&s, 3), 0);
    CHECK_EQ(concur_sem_value(&s), 3);
    CHECK_EQ(concur_sem_destroy(&s), 0);

    concur_sem zero; /* zeroed memory is a valid semaphore of 0 */
    memset(&zero, 0, sizeof zero);
    CHECK_EQ(concur_sem_acquire(&zero, 0), -ETIMEDOUT);
    CHECK_EQ(concur_sem_release(&zero, 1), 0);
    CHECK_EQ(concur_sem_acquire(&zero, 0), 0);
}

static void test_sem_bad_input(void) {
    concur_sem s;
    CHECK_EQ(concur_sem_init(NULL, 1), -EINVAL);
    CHECK_EQ(concur_sem_init(&s, 0x80000000u), -EINVAL);
    CHECK_EQ(concur_sem_init(&s, 0x7fffffffu), 0);
    CHECK_EQ(concur_sem_release(&s, 1), -EOVERFLOW);
    CHECK_EQ(concur_sem_value(&s), 0x7fffffffu);
    CHECK_EQ(concur_sem_acquire(NULL, 0), -EINVAL);
    CHECK_EQ(concur_sem_acquire(&s, NAN), -EINVAL);
    CHECK_EQ(concur_sem_release(NULL, 1), -EINVAL);
    CHECK_EQ(concur_sem_destroy(NULL), -EINVAL);
}

static void *sem_acquire_forever(void *arg) {
    return (void *)(intptr_t)concur_sem_acquire((concur_sem *)arg, CONCUR_FOREVER);
}

static void test_sem_wakes_blocked(void) {
    concur_sem s;
    concur_sem_init(&s, 0);
    concur_thread *t = concur_thread_create(sem_acquire_forever, &s);
    REQUIRE(t);
    CHECK_EQ(concur_sem_release(&s, 1), 0);
    void *ret = (void *)1;
    CHECK_EQ(concur_thread_join(t, &ret), 0);
    CHECK_EQ((intptr_t)ret, 0);
    CHECK_EQ(concur_sem_value(&s), 0);
}

/* Bounded concurrency: never more than `limit` threads inside. */
typedef struct limit_ctx { concur_sem s; int inside, max_inside; long iters; } limit_ctx;

static void *limit_worker(void *arg) {
    limit_ctx *c = (limit_ctx *)arg;
    for (long i = 0; i < c->iters; i++) {
        CHECK_EQ(concur_sem_acquire(&c->s, CONCUR_FOREVER), 0);
        int now = __atomic_add_fetch(&c->inside, 1, __ATOMIC_SEQ_CST);
        int seen = __atomic_load_n(&c->max_inside, __ATOMIC_RELAXED);
        while (now > seen &&
               !__atomic_compare_exchange_n(&c->max_inside, &seen, now, 0, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED)) {
        }
        __atomic_sub_fetch(&c->inside, 1, __ATOMIC_SEQ_CST);
        CHECK_EQ(concur_sem_release(&c->s, 1), 0);
    }
    return NULL;
}

static void test_sem_limits_concurrency(void) {
    limit_ctx c;
    memset(&c, 0, sizeof c);
    concur_sem_init(&c.s, 3);
    c.iters = test_scale(50000);
    test_threads ts;
    test_threads_start(&ts, 8, limit_worker, &c);
    test_threads_join(&ts);
    CHECK(c.max_inside >= 1 && c.max_inside <= 3);
    CHECK_EQ(concur_sem_value(&c.s), 3);
}

/* Timeouts racing releases must never lose or duplicate a permit: permits in ==
   permits taken + permits left. */
typedef struct race_ctx { concur_sem s; long iters; long taken; long given; } race_ctx;

static void *race_taker(void *arg) {
    race_ctx *c = (race_ctx *)arg;
    for (long i = 0; i < c->iters; i++) {
        int rc = concur_sem_acquire(&c->s, (i % 3) ? 0.00002 : 0);
        CHECK(rc == 0 || rc == -ETIMEDOUT);
        if (rc == 0) __atomic_add_fetch(&c->taken, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *race_giver(void *arg) {
    race_ctx *c = (race_ctx *)arg;
    for (long i = 0; i < c->iters; i++) {
        CHECK_EQ(concur_sem_release(&c->s, 1), 0);
        __atomic_add_fetch(&c->given, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_sem_timeout_race(void) {
    race_ctx c;
    memset(&c, 0, sizeof c);
    concur_sem_init(&c.s, 0);
    c.iters = test_scale(40000);
    test_threads takers, givers;
    test_threads_start(&takers, 3, race_taker, &c);
    test_threads_start(&givers, 2, race_giver, &c);
    test_threads_join(&takers);
    test_threads_join(&givers);
    CHECK_EQ(c.given, 2 * c.iters);
    CHECK_EQ(c.taken + (long)concur_sem_value(&c.s), c.given);
}

/* ---- event ---- */

static void *event_waiter(void *arg) {
    return (void *)(intptr_t)concur_event_wait((concur_event *)arg, CONCUR_FOREVER);
}

static void test_event(void) {
    concur_event e;
    CHECK_EQ(concur_event_init(&e), 0);
    CHECK_EQ(concur_event_is_set(&e), 0);
    CHECK_EQ(concur_event_wait(&e, 0), -ETIMEDOUT);
    double t0 = concur_now();
    CHECK_EQ(concur_event_wait(&e, 0.05), -ETIMEDOUT);
    CHECK(test_since(t0) >= 0.045);
    test_threads ts;
    test_threads_start(&ts, 6, event_waiter, &e);
    CHECK_EQ(concur_event_set(&e), 0);
    for (int i = 0; i < ts.n; i++) {
        void *ret = (void *)1;
        CHECK_EQ(concur_thread_join(ts.t[i], &ret), 0);
        CHECK_EQ((intptr_t)ret, 0);
    }
    CHECK_EQ(concur_event_is_set(&e), 1);
    CHECK_EQ(concur_event_wait(&e, 0), 0);
    CHECK_EQ(concur_event_clear(&e), 0);
    CHECK_EQ(concur_event_wait(&e, 0), -ETIMEDOUT);
    CHECK_EQ(concur_event_destroy(&e), 0);
    CHECK_EQ(concur_event_set(NULL), -EINVAL);
    CHECK_EQ(concur_event_wait(NULL, 0), -EINVAL);
    CHECK_EQ(concur_event_wait(&e, NAN), -EINVAL);
    CHECK_EQ(concur_event_is_set(NULL), -EINVAL);
}

/* ---- wait group ---- */

typedef struct wg_ctx { concur_wg wg; long work; } wg_ctx;

static void *wg_worker(void *arg) {
    wg_ctx *c = (wg_ctx *)arg;
    __atomic_add_fetch(&c->work, 1, __ATOMIC_RELAXED);
    CHECK_EQ(concur_wg_done(&c->wg), 0);
    return NULL;
}

static void test_wg(void) {
    wg_ctx c;
    memset(&c, 0, sizeof c);
    CHECK_EQ(concur_wg_wait(&c.wg, 0), 0); /* zero memory: count 0 */
    for (int round = 0; round < 20; round++) {
        CHECK_EQ(concur_wg_add(&c.wg, 8), 0);
        test_threads ts;
        test_threads_start(&ts, 8, wg_worker, &c);
        CHECK_EQ(concur_wg_wait(&c.wg, CONCUR_FOREVER), 0);
        CHECK_EQ(__atomic_load_n(&c.work, __ATOMIC_RELAXED), 8L * (round + 1));
        test_threads_join(&ts);
    }
    CHECK_EQ(concur_wg_add(&c.wg, 1), 0);
    double t0 = concur_now();
    CHECK_EQ(concur_wg_wait(&c.wg, 0.05), -ETIMEDOUT);
    CHECK(test_since(t0) >= 0.045);
    CHECK_EQ(concur_wg_done(&c.wg), 0);
#ifndef CONCUR_DEBUG
    CHECK_EQ(concur_wg_done(&c.wg), -EINVAL); /* below zero: refused, count unchanged */
#endif
    CHECK_EQ(concur_wg_wait(&c.wg, 0), 0);
    CHECK_EQ(concur_wg_destroy(&c.wg), 0);
    CHECK_EQ(concur_wg_add(NULL, 1), -EINVAL);
    CHECK_EQ(concur_wg_wait(NULL, 0), -EINVAL);
    CHECK_EQ(concur_wg_wait(&c.wg, NAN), -EINVAL);
}

/* "Wait, then destroy" must be safe, as in POSIX: the waker may not touch the
   primitive once the waiter can see the wake-up. Each primitive lives on the heap so
   that ASan and valgrind flag any late access by the waker. */
typedef struct destroy_ctx { concur_wg wg; concur_event ev; concur_sem sem; } destroy_ctx;

static void *destroy_waker(void *arg) {
    destroy_ctx *c = (destroy_ctx *)arg;
    concur_event_set(&c->ev);
    concur_sem_release(&c->sem, 1);
    concur_wg_done(&c->wg); /* last: the waiter frees c right after this wakes it */
    return NULL;
}

static void test_wait_then_destroy(void) {
    for (int i = 0; i < (int)test_scale(400); i++) {
        destroy_ctx *c = (destroy_ctx *)calloc(1, sizeof *c);
        REQUIRE(c);
        concur_wg_add(&c->wg, 1);
        concur_thread *t = concur_thread_create(destroy_waker, c);
        REQUIRE(t);
        CHECK_EQ(concur_event_wait(&c->ev, CONCUR_FOREVER), 0);
        CHECK_EQ(concur_sem_acquire(&c->sem, CONCUR_FOREVER), 0);
        /* Alternate parking with polling: a poller sees the count drop the moment
           it does, which is when a careless waker would still be unlocking. */
        if (i & 1) {
            CHECK_EQ(concur_wg_wait(&c->wg, CONCUR_FOREVER), 0);
        } else {
            int rc;
            while ((rc = concur_wg_wait(&c->wg, 0)) == -ETIMEDOUT) {}
            CHECK_EQ(rc, 0);
        }
        CHECK_EQ(concur_wg_destroy(&c->wg), 0);
        CHECK_EQ(concur_event_destroy(&c->ev), 0);
        CHECK_EQ(concur_sem_destroy(&c->sem), 0);
        free(c);
        CHECK_EQ(concur_thread_join(t, NULL), 0);
    }
}

int main(void) {
    test_begin(120);
    RUN(test_mutex_hammer);
    RUN(test_mutex_try_and_timeout);
    RUN(test_mutex_bad_input);
    RUN(test_sem_basic);
    RUN(test_sem_bad_input);
    RUN(test_sem_wakes_blocked);
    RUN(test_sem_limits_concurrency);
    RUN(test_sem_timeout_race);
    RUN(test_event);
    RUN(test_wg);
    RUN(test_wait_then_destroy);
    return test_end();
}
