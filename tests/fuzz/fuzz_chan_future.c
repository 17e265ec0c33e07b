/* libFuzzer target: three threads run operation scripts cut from the input against
   one channel and four futures, and the results are checked against what must hold
   whatever the interleaving:
   - the channel loses, duplicates and invents nothing: every value received was sent
     once, each receiver sees each sender's values in the order they were sent, and
     after a final drain received == sent;
   - a send after close fails with -EPIPE, a receive on a closed and empty channel
     says CONCUR_ECLOSED; the queue never holds more than its capacity;
   - of the attempts to complete a future (set value, set error, cancel), one wins
     (a cancel of a cancelled future also says 0); its outcome is what every reader
     sees afterwards;
   - a callback registered with concur_future_then runs exactly once.
   Built and run by the clang configuration (tests/meson.build), for a bounded time. */
#define CONCUR_IMPLEMENTATION
#include "../../concur.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { THREADS = 3, FUTURES = 4, MAX_OPS = 256 };

#define MUST(c)                                                                        \
    do {                                                                               \
        if (!(c)) {                                                                    \
            fprintf(stderr, "%s:%d: model violated: %s\n", __FILE__, __LINE__, #c);   \
            abort();                                                                   \
        }                                                                              \
    } while (0)

typedef struct shared {
    concur_chan *ch;
    size_t cap;
    int closing;                    /* set before a thread calls close */
    int closed;                     /* set after close returned */
    concur_future *fs[FUTURES];
    int wins[FUTURES];              /* set_value / set_error calls that returned 0 */
    int won_kind[FUTURES];          /* 1 value, 2 error */
    int cancels[FUTURES];           /* cancel calls that returned 0 */
    int callbacks[FUTURES];         /* callback runs */
    int registered[FUTURES];        /* successful then() calls */
    long sent[THREADS];
    long received;
} shared;

typedef struct script {
    shared *s;
    int tid;
    const uint8_t *ops;
    size_t n;
    long last_seen[THREADS];        /* per sender, the last sequence number received */
} script;

static void on_done(concur_future *f, void *arg) {
    (void)f;
    __atomic_add_fetch((int *)arg, 1, __ATOMIC_RELAXED);
}

static void got_value(script *sc, uint32_t v) {
    int from = (int)(v >> 24);
    long seq = (long)(v & 0xffffff);
    MUST(from >= 0 && from < THREADS);
    MUST(seq > sc->last_seen[from]); /* in order per sender, never twice */
    MUST(seq <= __atomic_load_n(&sc->s->sent[from], __ATOMIC_ACQUIRE) + 1);
    sc->last_seen[from] = seq;
    __atomic_add_fetch(&sc->s->received, 1, __ATOMIC_RELAXED);
}

static void *run_script(void *arg) {
    script *sc = (script *)arg;
    shared *s = sc->s;
    long next_seq = 1;
    for (size_t i = 0; i < sc->n; i++) {
        uint8_t op = sc->ops[i];
        int k = op & (FUTURES - 1);
        switch (op >> 4) {
        case 0: case 1: case 2: { /* send, without waiting or with a short wait */
            uint32_t v = (uint32_t)sc->tid << 24 | (uint32_t)next_seq;
            int was_closed = __atomic_load_n(&s->closed, __ATOMIC_ACQUIRE);
            int rc = concur_chan_send(s->ch, &v, (op >> 4) == 2 ? 0.0005 : 0);
            if (rc == 0) {
                MUST(!was_closed);
                __atomic_store_n(&s->sent[sc->tid], next_seq, __ATOMIC_RELEASE);
                next_seq++;
            } else {
                MUST(rc == -ETIMEDOUT || rc == -EPIPE);
                if (was_closed) MUST(rc == -EPIPE);
            }
            break;
        }
        case 3: case 4: case 5: { /* receive */
            uint32_t v = 0;
            int rc = concur_chan_recv(s->ch, &v, (op >> 4) == 5 ? 0.0005 : 0);
            if (rc == 0) got_value(sc, v);
            else MUST(rc == -ETIMEDOUT || rc == CONCUR_ECLOSED);
            if (rc == CONCUR_ECLOSED) MUST(__atomic_load_n(&s->closing, __ATOMIC_ACQUIRE));
            break;
        }
        case 6:
            if ((op & 15) == 15) { /* rarely: close */
                __atomic_store_n(&s->closing, 1, __ATOMIC_RELEASE);
                int rc = concur_chan_close(s->ch);
                MUST(rc == 0 || rc == -EPIPE);
                __atomic_store_n(&s->closed, 1, __ATOMIC_RELEASE);
            } else {
                MUST(concur_chan_len(s->ch) <= s->cap);
            }
            break;
        case 7: case 8: case 9: { /* complete a future */
            int kind = (op >> 4) - 6, rc;
            if (kind == 1) rc = concur_future_set_value(s->fs[k], (void *)(uintptr_t)(k + 1));
            else if (kind == 2) rc = concur_future_set_error(s->fs[k], -EIO);
            else rc = concur_future_cancel(s->fs[k]);
            if (rc == 0 && kind == 3) {
                __atomic_add_fetch(&s->cancels[k], 1, __ATOMIC_RELAXED);
            } else if (rc == 0) {
                __atomic_add_fetch(&s->wins[k], 1, __ATOMIC_RELAXED);
                __atomic_store_n(&s->won_kind[k], kind, __ATOMIC_RELEASE);
            } else {
                MUST(rc == -EALREADY);
            }
            break;
        }
        case 10: { /* register a callback */
            int rc = concur_future_then(s->fs[k], on_done, &s->callbacks[k]);
            MUST(rc == 0);
            __atomic_add_fetch(&s->registered[k], 1, __ATOMIC_RELAXED);
            break;
        }
        case 11: case 12: { /* wait briefly, then read the outcome */
            int rc = concur_future_wait(s->fs[k], (op >> 4) == 12 ? 0.0005 : 0);
            MUST(rc == 0 || rc == -ETIMEDOUT);
            if (rc == 0) {
                MUST(concur_future_done(s->fs[k]) == 1);
                int err = concur_future_error(s->fs[k]);
                MUST(err == 0 || err == -EIO || err == -ECANCELED);
                if (err == 0) MUST(concur_future_value(s->fs[k]) == (void *)(uintptr_t)(k + 1));
                MUST(concur_future_cancelled(s->fs[k]) == (err == -ECANCELED));
            }
            break;
        }
        default: /* reads that never block */
            MUST(concur_future_done(s->fs[k]) >= 0);
            break;
        }
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    shared s;
    memset(&s, 0, sizeof s);
    s.cap = 1 + data[0] % 8;
    s.ch = concur_chan_create(sizeof(uint32_t), s.cap);
    MUST(s.ch);
    for (int k = 0; k < FUTURES; k++) MUST((s.fs[k] = concur_future_create()) != NULL);
    data++, size--;
    if (size > THREADS * MAX_OPS) size = THREADS * MAX_OPS;

    /* Thread t gets every THREADS-th byte, so that a mutation moves one thread's step. */
    uint8_t ops[THREADS][MAX_OPS];
    script sc[THREADS];
    pthread_t th[THREADS];
    memset(sc, 0, sizeof sc);
    for (int t = 0; t < THREADS; t++) {
        sc[t].s = &s;
        sc[t].tid = t;
        sc[t].ops = ops[t];
        for (size_t i = (size_t)t; i < size; i += THREADS) ops[t][sc[t].n++] = data[i];
    }
    for (int t = 0; t < THREADS; t++) MUST(pthread_create(&th[t], NULL, run_script, &sc[t]) == 0);
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);

    /* Drain: everything sent arrives, once, in order per sender. */
    script drain;
    memset(&drain, 0, sizeof drain);
    drain.s = &s;
    for (;;) {
        uint32_t v;
        int rc = concur_chan_recv(s.ch, &v, 0);
        if (rc != 0) {
            MUST(rc == -ETIMEDOUT || rc == CONCUR_ECLOSED);
            break;
        }
        got_value(&drain, v);
    }
    long sent = 0;
    for (int t = 0; t < THREADS; t++) sent += s.sent[t];
    MUST(s.received == sent);
    MUST(concur_chan_len(s.ch) == 0);

    for (int k = 0; k < FUTURES; k++) {
        MUST(s.wins[k] <= 1 && !(s.wins[k] && s.cancels[k]));
        if (s.cancels[k]) {
            MUST(concur_future_error(s.fs[k]) == -ECANCELED);
        } else if (s.wins[k] == 0) {
            MUST(concur_future_done(s.fs[k]) == 0);
            MUST(s.callbacks[k] == 0);
            MUST(concur_future_set_value(s.fs[k], NULL) == 0);
        } else {
            int err = concur_future_error(s.fs[k]);
            int kind = s.won_kind[k];
            MUST(kind == 1 ? err == 0 : kind == 2 ? err == -EIO : err == -ECANCELED);
        }
        MUST(s.callbacks[k] == s.registered[k]); /* each exactly once */
        MUST(concur_future_release(s.fs[k]) == 0);
    }
    MUST(concur_chan_destroy(s.ch) == 0);
    return 0;
}
