/* Channel: FIFO, close semantics, blocking hand-offs, MPMC totals, bad input. */
#include "test.h"

static void test_chan_bad_input(void) {
    errno = 0;
    CHECK(concur_chan_create(0, 4) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(concur_chan_create(4, 0) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(concur_chan_create((size_t)-1, 2) == NULL);
    CHECK_EQ(errno, EINVAL);
    int v = 0;
    CHECK_EQ(concur_chan_send(NULL, &v, 0), -EINVAL);
    CHECK_EQ(concur_chan_recv(NULL, &v, 0), -EINVAL);
    CHECK_EQ(concur_chan_close(NULL), -EINVAL);
    CHECK_EQ(concur_chan_destroy(NULL), -EINVAL);
    CHECK_EQ(concur_chan_len(NULL), 0);
    CHECK_EQ(concur_chan_cap(NULL), 0);
    concur_chan *ch = concur_chan_create(sizeof(int), 2);
    REQUIRE(ch);
    CHECK_EQ(concur_chan_send(ch, NULL, 0), -EINVAL);
    CHECK_EQ(concur_chan_recv(ch, NULL, 0), -EINVAL);
    CHECK_EQ(concur_chan_send(ch, &v, NAN), -EINVAL);
    CHECK_EQ(concur_chan_recv(ch, &v, NAN), -EINVAL);
    CHECK_EQ(concur_chan_destroy(ch), 0);
}

static void test_chan_fifo_and_full(void) {
    concur_chan *ch = concur_chan_create(sizeof(int), 4);
    REQUIRE(ch);
    CHECK_EQ(concur_chan_cap(ch), 4);
    for (int round = 0; round < 3; round++) { /* wraps the ring */
        for (int i = 0; i < 4; i++) CHECK_EQ(concur_chan_send(ch, &i, 0), 0);
        int extra = 99;
        CHECK_EQ(concur_chan_send(ch, &extra, 0), -ETIMEDOUT);
        double t0 = concur_now();
        CHECK_EQ(concur_chan_send(ch, &extra, 0.05), -ETIMEDOUT);
        CHECK(test_since(t0) >= 0.045);
        CHECK_EQ(concur_chan_len(ch), 4);
        for (int i = 0; i < 3; i++) {
            int v = -1;
            CHECK_EQ(concur_chan_recv(ch, &v, 0), 0);
            CHECK_EQ(v, i);
        }
        int v = -1;
        CHECK_EQ(concur_chan_recv(ch, &v, CONCUR_FOREVER), 0);
        CHECK_EQ(v, 3);
        CHECK_EQ(concur_chan_recv(ch, &v, 0), -ETIMEDOUT);
        t0 = concur_now();
        CHECK_EQ(concur_chan_recv(ch, &v, 0.05), -ETIMEDOUT);
        CHECK(test_since(t0) >= 0.045);
    }
    CHECK_EQ(concur_chan_destroy(ch), 0);
}

static void test_chan_close_drains(void) {
    concur_chan *ch = concur_chan_create(sizeof(long), 8);
    REQUIRE(ch);
    for (long i = 0; i < 5; i++) CHECK_EQ(concur_chan_send(ch, &i, 0), 0);
    CHECK_EQ(concur_chan_close(ch), 0);
    CHECK_EQ(concur_chan_close(ch), -EPIPE);
    long v = 7;
    CHECK_EQ(concur_chan_send(ch, &v, CONCUR_FOREVER), -EPIPE);
    for (long i = 0; i < 5; i++) {
        CHECK_EQ(concur_chan_recv(ch, &v, CONCUR_FOREVER), 0);
        CHECK_EQ(v, i);
    }
    CHECK_EQ(concur_chan_recv(ch, &v, CONCUR_FOREVER), CONCUR_ECLOSED);
    CHECK_EQ(concur_chan_recv(ch, &v, 0), CONCUR_ECLOSED);
    CHECK_EQ(concur_chan_destroy(ch), 0);
}

static void *recv_forever(void *arg) {
    int v;
    return (void *)(intptr_t)concur_chan_recv((concur_chan *)arg, &v, CONCUR_FOREVER);
}

static void *send_forever(void *arg) {
    int v = 42;
    return (void *)(intptr_t)concur_chan_send((concur_chan *)arg, &v, CONCUR_FOREVER);
}

/* The threads are woken by close whether or not they have parked yet: either they
   park and close wakes them, or they find the channel closed. Both paths must return
   the same code, which is what this checks, so no sleep is needed. */
static void test_chan_close_wakes_blocked(void) {
    concur_chan *ch = concur_chan_create(sizeof(int), 1);
    REQUIRE(ch);
    test_threads rx;
    test_threads_start(&rx, 3, recv_forever, ch);
    CHECK_EQ(concur_chan_close(ch), 0);
    for (int i = 0; i < rx.n; i++) {
        void *ret = NULL;
        CHECK_EQ(concur_thread_join(rx.t[i], &ret), 0);
        CHECK_EQ((intptr_t)ret, CONCUR_ECLOSED);
    }
    CHECK_EQ(concur_chan_destroy(ch), 0);

    ch = concur_chan_create(sizeof(int), 1);
    REQUIRE(ch);
    int one = 1;
    CHECK_EQ(concur_chan_send(ch, &one, 0), 0); /* full: senders will block */
    test_threads tx;
    test_threads_start(&tx, 3, send_forever, ch);
    CHECK_EQ(concur_chan_close(ch), 0);
    for (int i = 0; i < tx.n; i++) {
        void *ret = NULL;
        CHECK_EQ(concur_thread_join(tx.t[i], &ret), 0);
        CHECK_EQ((intptr_t)ret, -EPIPE);
    }
    int v = 0;
    CHECK_EQ(concur_chan_recv(ch, &v, 0), 0); /* what was sent before close survives */
    CHECK_EQ(v, 1);
    CHECK_EQ(concur_chan_recv(ch, &v, 0), CONCUR_ECLOSED);
    CHECK_EQ(concur_chan_destroy(ch), 0);
}

/* A blocked sender's element lands after the ring's: FIFO across the wait queue. */
static void test_chan_blocked_sender_order(void) {
    concur_chan *ch = concur_chan_create(sizeof(int), 1);
    REQUIRE(ch);
    int first = 1;
    CHECK_EQ(concur_chan_send(ch, &first, 0), 0);
    concur_thread *t = concur_thread_create(send_forever, ch); /* sends 42 */
    REQUIRE(t);
    int v = 0;
    CHECK_EQ(concur_chan_recv(ch, &v, CONCUR_FOREVER), 0);
    CHECK_EQ(v, 1);
    CHECK_EQ(concur_chan_recv(ch, &v, CONCUR_FOREVER), 0);
    CHECK_EQ(v, 42);
    void *ret = (void *)1;
    CHECK_EQ(concur_thread_join(t, &ret), 0);
    CHECK_EQ((intptr_t)ret, 0);
    CHECK_EQ(concur_chan_destroy(ch), 0);
}

/* MPMC: every item arrives exactly once, and each consumer sees each producer's items
   in the order they were sent. */
#define PRODUCERS 3
#define CONSUMERS 3
typedef struct mpmc_ctx {
    concur_chan *ch;
    long per_producer;
    int next_producer;
    unsigned char *seen;
    long received;
    long long sum;
} mpmc_ctx;

static void *mpmc_producer(void *arg) {
    mpmc_ctx *c = (mpmc_ctx *)arg;
    long id = __atomic_fetch_add(&c->next_producer, 1, __ATOMIC_RELAXED);
    for (long i = 0; i < c->per_producer; i++) {
        long item = id * c->per_producer + i;
        /* Short timeouts on every few sends exercise the timeout/hand-off race. */
        int rc;
        do rc = concur_chan_send(c->ch, &item, (i & 7) ? CONCUR_FOREVER : 0.00001);
        while (rc == -ETIMEDOUT);
        CHECK_EQ(rc, 0);
    }
    return NULL;
}

static void *mpmc_consumer(void *arg) {
    mpmc_ctx *c = (mpmc_ctx *)arg;
    long last[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++) last[p] = -1;
    long item, n = 0;
    long long sum = 0;
    for (;;) {
        int rc = concur_chan_recv(c->ch, &item, (n & 7) ? CONCUR_FOREVER : 0.00001);
        if (rc == -ETIMEDOUT) continue;
        if (rc == CONCUR_ECLOSED) break;
        CHECK_EQ(rc, 0);
        if (rc) break;
        long p = item / c->per_producer;
        CHECK(p >= 0 && p < PRODUCERS);
        if (p < 0 || p >= PRODUCERS) break;
        CHECK(item > last[p]);
        last[p] = item;
        CHECK_EQ(__atomic_exchange_n(&c->seen[item], 1, __ATOMIC_RELAXED), 0);
        n++;
        sum += item;
    }
    __atomic_add_fetch(&c->received, n, __ATOMIC_RELAXED);
    __atomic_add_fetch(&c->sum, sum, __ATOMIC_RELAXED);
    return NULL;
}

static void test_chan_mpmc(void) {
    mpmc_ctx c;
    memset(&c, 0, sizeof c);
    c.per_producer = test_scale(100000);
    long total = PRODUCERS * c.per_producer;
    c.seen = (unsigned char *)calloc((size_t)total, 1);
    REQUIRE(c.seen);
    c.ch = concur_chan_create(sizeof(long), 16);
    REQUIRE(c.ch);
    test_threads prod, cons;
    test_threads_start(&cons, CONSUMERS, mpmc_consumer, &c);
    test_threads_start(&prod, PRODUCERS, mpmc_producer, &c);
    test_threads_join(&prod);
    CHECK_EQ(concur_chan_close(c.ch), 0);
    test_threads_join(&cons);
    CHECK_EQ(c.received, total);
    CHECK_EQ(c.sum, (long long)total * (total - 1) / 2);
    CHECK_EQ(concur_chan_destroy(c.ch), 0);
    free(c.seen);
}

/* Large elements are copied whole. */
typedef struct big { char bytes[1000]; } big;

static void test_chan_big_elements(void) {
    concur_chan *ch = concur_chan_create(sizeof(big), 3);
    REQUIRE(ch);
    big in, out;
    for (int i = 0; i < 10; i++) {
        memset(&in, 'a' + i, sizeof in);
        CHECK_EQ(concur_chan_send(ch, &in, 0), 0);
        memset(&out, 0, sizeof out);
        CHECK_EQ(concur_chan_recv(ch, &out, 0), 0);
        CHECK(memcmp(&in, &out, sizeof in) == 0);
    }
    CHECK_EQ(concur_chan_destroy(ch), 0);
}

/* A receiver woken by close may destroy the channel at once. */
static void *close_channel(void *arg) {
    concur_chan_close((concur_chan *)arg);
    return NULL;
}

static void test_chan_close_then_destroy(void) {
    for (int i = 0; i < (int)test_scale(400); i++) {
        concur_chan *ch = concur_chan_create(sizeof(int), 1);
        REQUIRE(ch);
        concur_thread *t = concur_thread_create(close_channel, ch);
        REQUIRE(t);
        int v;
        CHECK_EQ(concur_chan_recv(ch, &v, CONCUR_FOREVER), CONCUR_ECLOSED);
        CHECK_EQ(concur_chan_destroy(ch), 0);
        CHECK_EQ(concur_thread_join(t, NULL), 0);
    }
}

int main(void) {
    test_begin(120);
    RUN(test_chan_bad_input);
    RUN(test_chan_fifo_and_full);
    RUN(test_chan_close_drains);
    RUN(test_chan_close_wakes_blocked);
    RUN(test_chan_blocked_sender_order);
    RUN(test_chan_mpmc);
    RUN(test_chan_big_elements);
    RUN(test_chan_close_then_destroy);
    return test_end();
}
