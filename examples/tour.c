/* tour.c - a guided tour of concur.h.

   What it shows (each step prints what it measured):
     1. a channel pipeline: producer threads feed a bounded channel, consumer threads
        drain it until it is closed, a wait group tells when the consumers are done;
     2. a semaphore limiting concurrency: 8 "download" threads, at most 3 at a time;
     3. futures consumed as they complete: each job thread completes a future, one
        job fails with an error and one is cancelled before it starts, and the main
        thread handles them in completion order with the as-completed iterator;
     4. the work-stealing thread pool: fork-join with a group (a recursive sum that
        spawns a task per half), fork-join with a typed task (Collatz steps over a
        range, split in halves) and a parallel for, each timed against the sequential
        loop;
     5. the coroutine I/O loop: on one thread, 1000 coroutines sleep 50 ms each at
        the same time, then 100 client coroutines talk to an echo server coroutine
        over TCP on 127.0.0.1, all written as plain blocking code;
     6. the process pool: a map of prime counting over worker processes, timed against
        the sequential loop, and a task that crashes with SIGSEGV failing alone.

   Build and run (nothing but a C compiler needed):
       cc -O2 -pthread examples/tour.c -o tour && ./tour
   At the end it prints a table like the Python article's summary: per model, what it
   is best for, the workload it ran here, and the sequential and concurrent times
   measured in this run. It exits 0 when every step checked out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONCUR_IMPLEMENTATION
#include "../concur.h"

/* The summary at the end: one row per model, with the times measured in this run
   (seq < 0: no sequential counterpart). */
typedef struct summary_row { const char *model, *best_for; char workload[64]; double seq, conc; } summary_row;
static summary_row summary[8];
static int summary_rows;

static void add_row(const char *model, const char *best_for, const char *workload, double seq, double conc) {
    summary_row *r = &summary[summary_rows++];
    r->model = model;
    r->best_for = best_for;
    snprintf(r->workload, sizeof r->workload, "%s", workload);
    r->seq = seq;
    r->conc = conc;
}

static void print_summary(void) {
    printf("\n%-16s %-26s %-40s %9s %9s %8s\n", "model", "best for", "workload (this run)", "seq", "concur",
           "speed-up");
    for (int i = 0; i < summary_rows; i++) {
        summary_row *r = &summary[i];
        if (r->seq > 0)
            printf("%-16s %-26s %-40s %8.3fs %8.3fs %7.1fx\n", r->model, r->best_for, r->workload, r->seq, r->conc,
                   r->seq / r->conc);
        else
            printf("%-16s %-26s %-40s %9s %8.3fs %8s\n", r->model, r->best_for, r->workload, "-", r->conc, "-");
    }
}

/* ---- 1. channel pipeline ------------------------------------------------------- */

enum { PRODUCERS = 2, CONSUMERS = 3, ITEMS_PER_PRODUCER = 200000 };

typedef struct pipeline {
    concur_chan *work;
    concur_wg consumers_done;
    concur_mutex lock; /* guards the totals below */
    long long items, steps;
} pipeline;

typedef struct producer_arg { pipeline *p; long first; } producer_arg;

static void *producer(void *arg) {
    producer_arg *a = (producer_arg *)arg;
    for (long n = a->first; n < a->first + ITEMS_PER_PRODUCER; n++)
        if (concur_chan_send(a->p->work, &n, CONCUR_FOREVER) != 0) break;
    return NULL;
}

/* Collatz steps: a little CPU work per item. */
static long collatz_steps(long n) {
    long steps = 0;
    for (unsigned long long x = (unsigned long long)n; x > 1; steps++) x = (x & 1) ? 3 * x + 1 : x / 2;
    return steps;
}

static void *consumer(void *arg) {
    pipeline *p = (pipeline *)arg;
    long n, items = 0;
    long long steps = 0;
    while (concur_chan_recv(p->work, &n, CONCUR_FOREVER) == 0) { /* CONCUR_ECLOSED ends it */
        steps += collatz_steps(n);
        items++;
    }
    concur_mutex_lock(&p->lock);
    p->items += items;
    p->steps += steps;
    concur_mutex_unlock(&p->lock);
    concur_wg_done(&p->consumers_done);
    return NULL;
}

static int tour_pipeline(void) {
    pipeline p;
    memset(&p, 0, sizeof p);
    p.work = concur_chan_create(sizeof(long), 1024);
    if (!p.work) return 1;
    double t0 = concur_now();
    concur_thread *threads[PRODUCERS + CONSUMERS];
    producer_arg pargs[PRODUCERS];
    concur_wg_add(&p.consumers_done, CONSUMERS);
    for (int i = 0; i < CONSUMERS; i++) threads[i] = concur_thread_create(consumer, &p);
    for (int i = 0; i < PRODUCERS; i++) {
        pargs[i].p = &p;
        pargs[i].first = 1 + (long)i * ITEMS_PER_PRODUCER;
        threads[CONSUMERS + i] = concur_thread_create(producer, &pargs[i]);
    }
    for (int i = CONSUMERS; i < CONSUMERS + PRODUCERS; i++) concur_thread_join(threads[i], NULL);
    concur_chan_close(p.work); /* consumers drain what is left, then see CONCUR_ECLOSED */
    concur_wg_wait(&p.consumers_done, CONCUR_FOREVER);
    for (int i = 0; i < CONSUMERS; i++) concur_thread_join(threads[i], NULL);
    double secs = concur_now() - t0;
    concur_chan_destroy(p.work);

    long long expect_items = (long long)PRODUCERS * ITEMS_PER_PRODUCER, seq_steps = 0;
    for (long n = 1; n <= expect_items; n++) seq_steps += collatz_steps(n);
    printf("1. channel pipeline   %d producers -> chan(1024) -> %d consumers: %lld items, "
           "%lld collatz steps, %.3f s (%.1f M items/s)\n",
           PRODUCERS, CONSUMERS, p.items, p.steps, secs, (double)p.items / secs / 1e6);
    return p.items == expect_items && p.steps == seq_steps ? 0 : 1;
}

/* ---- 2. semaphore limiting concurrency ----------------------------------------- */

enum { DOWNLOADS = 8, PARALLEL = 3 };

typedef struct limiter { concur_sem slots; int inside, max_inside; } limiter;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *download(void *arg) {
    limiter *l = (limiter *)arg;
    concur_sem_acquire(&l->slots, CONCUR_FOREVER);
    int now = __atomic_add_fetch(&l->inside, 1, __ATOMIC_SEQ_CST);
    int seen = __atomic_load_n(&l->max_inside, __ATOMIC_SEQ_CST);
    while (now > seen && !__atomic_compare_exchange_n(&l->max_inside, &seen, now, 0,
                                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    sleep_ms(20); /* stands in for network time */
    __atomic_sub_fetch(&l->inside, 1, __ATOMIC_SEQ_CST);
    concur_sem_release(&l->slots, 1);
    return NULL;
}

static int tour_semaphore(void) {
    limiter l;
    memset(&l, 0, sizeof l);
    concur_sem_init(&l.slots, PARALLEL);
    double t0 = concur_now();
    concur_thread *t[DOWNLOADS];
    for (int i = 0; i < DOWNLOADS; i++) t[i] = concur_thread_create(download, &l);
    for (int i = 0; i < DOWNLOADS; i++) concur_thread_join(t[i], NULL);
    double secs = concur_now() - t0;
    concur_sem_destroy(&l.slots);
    add_row("threads", "blocking I/O, bounded", "8 downloads of 20 ms, at most 3 at once", 0.020 * DOWNLOADS, secs);
    printf("2. semaphore limit    %d downloads of 20 ms, at most %d at once: max seen %d, "
           "%.3f s (>= %.3f s by design)\n",
           DOWNLOADS, PARALLEL, l.max_inside, secs, 0.020 * ((DOWNLOADS + PARALLEL - 1) / PARALLEL));
    return l.max_inside >= 1 && l.max_inside <= PARALLEL ? 0 : 1;
}

/* ---- 3. futures, as completed ---------------------------------------------------- */

enum { JOBS = 6 };

typedef struct job { concur_future *f; int n; } job;

/* Sum of 1..n, slower for bigger n; n < 0 is an invalid job that fails. */
static void *run_job(void *arg) {
    job *j = (job *)arg;
    if (concur_future_set_running(j->f) == -ECANCELED) return NULL; /* cancelled: skip */
    if (j->n < 0) {
        concur_future_set_error(j->f, -EINVAL);
        return NULL;
    }
    sleep_ms(5L * (JOBS - j->n)); /* later jobs finish first */
    long long sum = 0;
    for (int i = 1; i <= j->n * 1000; i++) sum += i;
    concur_future_set_value(j->f, (void *)(intptr_t)sum);
    return NULL;
}

static int tour_futures(void) {
    job jobs[JOBS];
    concur_future *fs[JOBS];
    for (int i = 0; i < JOBS; i++) {
        jobs[i].n = i == 2 ? -1 : i;
        fs[i] = jobs[i].f = concur_future_create();
        if (!fs[i]) return 1;
    }
    concur_future_cancel(fs[4]); /* not started yet: cancels */
    concur_thread *t[JOBS];
    for (int i = 0; i < JOBS; i++) t[i] = concur_thread_create(run_job, &jobs[i]);

    double t0 = concur_now();
    concur_as_completed *it = concur_as_completed_create(fs, JOBS);
    if (!it) return 1;
    int seen = 0, ok = 0, failed = 0, cancelled = 0;
    printf("3. futures            as completed:");
    for (int i; (i = concur_as_completed_next(it, 10.0)) >= 0; seen++) {
        void *value;
        int rc = concur_future_result(fs[i], 0, &value);
        if (rc == 0) { ok++; printf(" job%d=%lld", i, (long long)(intptr_t)value); }
        else if (rc == -ECANCELED) { cancelled++; printf(" job%d:cancelled", i); }
        else { failed++; printf(" job%d:error(%s)", i, concur_strerror(rc)); }
    }
    printf("\n");
    add_row("futures", "combining results", "6 jobs as completed, 1 fails, 1 cancelled", -1, concur_now() - t0);
    concur_as_completed_destroy(it);
    for (int i = 0; i < JOBS; i++) {
        concur_thread_join(t[i], NULL);
        concur_future_release(fs[i]);
    }
    return seen == JOBS && ok == JOBS - 2 && failed == 1 && cancelled == 1 ? 0 : 1;
}

/* ---- 4. thread pool: fork-join and parallel for ----------------------------------- */

typedef struct range_sum { const double *v; long lo, hi; double sum; } range_sum;

static double sum_seq(const double *v, long lo, long hi) {
    double s = 0;
    for (long i = lo; i < hi; i++) s += v[i] * v[i];
    return s;
}

/* Fork-join: split in halves until small, spawn one half, do the other, join. */
static void sum_task(void *arg) {
    range_sum *r = (range_sum *)arg;
    if (r->hi - r->lo <= 100000) {
        r->sum = sum_seq(r->v, r->lo, r->hi);
        return;
    }
    long mid = r->lo + (r->hi - r->lo) / 2;
    range_sum left = {r->v, r->lo, mid, 0}, right = {r->v, mid, r->hi, 0};
    concur_group g;
    concur_group_init(&g, NULL);
    concur_spawn(&g, sum_task, &left);
    sum_task(&right);
    concur_group_wait(&g);
    r->sum = left.sum + right.sum;
}

static void *sum_root(void *arg) {
    sum_task(arg);
    return NULL;
}

/* CPU-bound fork-join written as a typed task: total Collatz steps over [lo, hi),
   split in halves. The arguments and the result travel by value in the pool's own
   task records, and the spawn and join are inlined here. */
CONCUR_TASK_2(long long, steps_task, long, lo, long, hi) {
    if (hi - lo <= 10000) {
        long long steps = 0;
        for (long n = lo; n < hi; n++) steps += collatz_steps(n);
        return steps;
    }
    long mid = lo + (hi - lo) / 2;
    CONCUR_SPAWN(steps_task, lo, mid);                 /* an idle worker may steal it */
    long long right = CONCUR_CALL(steps_task, mid, hi); /* meanwhile, the other half */
    return CONCUR_SYNC(steps_task) + right;            /* runs the left here unless stolen */
}

static void fill_body(int64_t lo, int64_t hi, void *ctx) {
    double *v = (double *)ctx;
    for (int64_t i = lo; i < hi; i++) v[i] = (double)(i % 1000) * 0.001;
}

static int tour_pool(void) {
    enum { N = 20000000 };
    double *v = (double *)malloc(N * sizeof *v);
    concur_pool *pool = concur_pool_create(NULL);
    if (!v || !pool) return 1;
    memset(v, 0, N * sizeof *v); /* fault the pages in, so neither timing pays for it */
    double t0 = concur_now();
    fill_body(0, N, v);
    double fill_seq = concur_now() - t0;
    t0 = concur_now();
    int rc = concur_parallel_for(pool, 0, N, 0, fill_body, v);
    double fill_par = concur_now() - t0;

    t0 = concur_now();
    double expect = sum_seq(v, 0, N);
    double sum_s = concur_now() - t0;
    range_sum root = {v, 0, N, 0};
    t0 = concur_now();
    concur_future *f = concur_pool_submit(pool, sum_root, &root);
    concur_future_wait(f, CONCUR_FOREVER);
    double sum_p = concur_now() - t0;
    concur_future_release(f);

    enum { STEPS_N = 1500000 };
    long long steps_seq = 0;
    t0 = concur_now();
    for (long n = 1; n < STEPS_N; n++) steps_seq += collatz_steps(n);
    double steps_s = concur_now() - t0;
    long long steps_par = -1;
    t0 = concur_now();
    rc |= CONCUR_RUN(pool, steps_task, &steps_par, 1, STEPS_N);
    double steps_p = concur_now() - t0;
    add_row("thread pool", "CPU work, no GIL", "fork-join Collatz steps over 1.5e6 ints", steps_s, steps_p);
    printf("4. thread pool        %d workers: parallel for over %d doubles %.3f s (seq %.3f s, %.2fx); "
           "fork-join sum %.3f s (seq %.3f s, %.2fx); fork-join Collatz %.3f s (seq %.3f s, %.2fx)\n",
           concur_pool_threads(pool), N, fill_par, fill_seq, fill_seq / fill_par, sum_p, sum_s, sum_s / sum_p, steps_p,
           steps_s, steps_s / steps_p);
    concur_pool_destroy(pool);
    free(v);
    /* Sums of the same values in another order may differ in the last bits. */
    double rel = (root.sum - expect) / expect;
    return rc == 0 && rel < 1e-9 && rel > -1e-9 && steps_par == steps_seq ? 0 : 1;
}


/* ---- 5. coroutines and the I/O loop --------------------------------------------- */

enum { SLEEPERS = 1000, CLIENTS = 100, ROUND_TRIPS = 100 };

typedef struct net { int listen_fd, port; long long round_trips; int errors; } net;

static void *nap(void *arg) {
    (void)arg;
    concur_sleep(0.05); /* parks this coroutine; the loop runs the others */
    return NULL;
}

static void *echo_connection(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[512];
    ssize_t n;
    while ((n = concur_recv(fd, buf, sizeof buf, 0, 5.0)) > 0)
        if (concur_send(fd, buf, (size_t)n, 0, 5.0, NULL) < 0) break;
    concur_close(fd);
    return NULL;
}

static void *echo_acceptor(void *arg) {
    net *nt = (net *)arg;
    for (int i = 0; i < CLIENTS; i++) {
        int fd = concur_accept(nt->listen_fd, NULL, NULL, 5.0);
        if (fd < 0) { nt->errors++; break; }
        concur_detach(concur_go(NULL, echo_connection, (void *)(intptr_t)fd));
    }
    concur_close(nt->listen_fd);
    return NULL;
}

static void *echo_client(void *arg) {
    net *nt = (net *)arg;
    int fd = concur_tcp_dial("127.0.0.1", nt->port, 5.0);
    if (fd < 0) { nt->errors++; return NULL; }
    for (int i = 0; i < ROUND_TRIPS; i++) {
        char msg[32], back[32];
        int len = snprintf(msg, sizeof msg, "message %d", i);
        size_t got = 0;
        if (concur_send(fd, msg, (size_t)len, 0, 5.0, NULL) < 0) { nt->errors++; break; }
        while (got < (size_t)len) {
            ssize_t n = concur_recv(fd, back + got, (size_t)len - got, 0, 5.0);
            if (n <= 0) break;
            got += (size_t)n;
        }
        if (got != (size_t)len || memcmp(back, msg, got) != 0) { nt->errors++; break; }
        nt->round_trips++;
    }
    concur_close(fd);
    return NULL;
}

/* HTTP against a slow backend: each answer takes 20 ms. The same requests one after
   another, then all at once; and one to a stalled path, given up at its timeout. */
enum { REQUESTS = 50 };
typedef struct web { int listen_fd, port, ok, timed_out; concur_co *server; double seq, conc; } web;

static void *web_connection(void *arg) {
    int fd = (int)(intptr_t)arg;
    char req[256];
    ssize_t n = concur_recv(fd, req, sizeof req - 1, 0, 5.0);
    if (n > 0) {
        req[n] = 0;
        concur_sleep(strncmp(req, "GET /stall", 10) == 0 ? 0.5 : 0.02);
        static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        concur_send(fd, resp, sizeof resp - 1, 0, 5.0, NULL);
    }
    concur_close(fd);
    return NULL;
}

static void *web_server(void *arg) {
    web *w = (web *)arg;
    int fd;
    while ((fd = concur_accept(w->listen_fd, NULL, NULL, CONCUR_FOREVER)) >= 0) /* until cancelled */
        concur_detach(concur_go(NULL, web_connection, (void *)(intptr_t)fd));
    concur_close(w->listen_fd);
    return NULL;
}

/* 0 for a 200 answer, else a negative code (-ETIMEDOUT when the server is too slow). */
static int http_get(web *w, const char *path, double timeout) {
    int fd = concur_tcp_dial("127.0.0.1", w->port, timeout);
    if (fd < 0) return fd;
    char buf[128];
    int len = snprintf(buf, sizeof buf, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    int rc = (int)concur_send(fd, buf, (size_t)len, 0, timeout, NULL);
    if (rc >= 0) {
        ssize_t n = concur_recv(fd, buf, sizeof buf - 1, 0, timeout);
        rc = n < 0 ? (int)n : n >= 12 && memcmp(buf, "HTTP/1.1 200", 12) == 0 ? 0 : -EPROTO;
    }
    concur_close(fd);
    return rc;
}

static void *web_client(void *arg) {
    web *w = (web *)arg;
    if (http_get(w, "/", 5.0) == 0) w->ok++;
    return NULL;
}

static void *web_stalled(void *arg) {
    web *w = (web *)arg;
    w->timed_out = http_get(w, "/stall", 0.2) == -ETIMEDOUT;
    return NULL;
}

static void *web_main(void *arg) {
    web *w = (web *)arg;
    double t0 = concur_now();
    for (int i = 0; i < REQUESTS; i++)
        if (http_get(w, "/", 5.0) == 0) w->ok++;
    w->seq = concur_now() - t0;
    concur_co *stalled = concur_go(NULL, web_stalled, w), *clients[REQUESTS];
    t0 = concur_now();
    for (int i = 0; i < REQUESTS; i++) clients[i] = concur_go(NULL, web_client, w);
    for (int i = 0; i < REQUESTS; i++) concur_join(clients[i], CONCUR_FOREVER, NULL);
    w->conc = concur_now() - t0;
    concur_join(stalled, CONCUR_FOREVER, NULL);
    concur_cancel(w->server); /* thread-safe too; here, from a sibling coroutine */
    return NULL;
}

static int tour_loop(void) {
    concur_loop *loop = concur_loop_create(NULL);
    if (!loop) return 1;
    double t0 = concur_now();
    for (int i = 0; i < SLEEPERS; i++) concur_detach(concur_go(loop, nap, NULL));
    concur_loop_run(loop);
    double naps = concur_now() - t0;

    net nt = {concur_tcp_listen("127.0.0.1", 0, 128), 0, 0, 0};
    if (nt.listen_fd < 0) { concur_loop_destroy(loop); return 1; }
    nt.port = concur_tcp_local_port(nt.listen_fd);
    t0 = concur_now();
    concur_detach(concur_go(loop, echo_acceptor, &nt));
    for (int i = 0; i < CLIENTS; i++) concur_detach(concur_go(loop, echo_client, &nt));
    concur_loop_run(loop);
    double echo = concur_now() - t0;

    web w;
    memset(&w, 0, sizeof w);
    w.listen_fd = concur_tcp_listen("127.0.0.1", 0, 128);
    if (w.listen_fd < 0) { concur_loop_destroy(loop); return 1; }
    w.port = concur_tcp_local_port(w.listen_fd);
    w.server = concur_go(loop, web_server, &w);
    concur_detach(w.server);
    concur_detach(concur_go(loop, web_main, &w));
    concur_loop_run(loop);
    concur_loop_destroy(loop);
    add_row("coroutine loop", "many connections, I/O", "50 HTTP requests, 20 ms each, 1 timeout", w.seq, w.conc);
    printf("5. coroutine loop     one thread: %d coroutines slept 50 ms each in %.3f s; "
           "%d TCP clients x %d echoes = %lld round trips in %.3f s (%.0f/s)\n",
           SLEEPERS, naps, CLIENTS, ROUND_TRIPS, nt.round_trips, echo, (double)nt.round_trips / echo);
    printf("                      %d HTTP requests to a 20 ms backend: one after another %.3f s, all at once "
           "%.3f s; a stalled request %s at its 0.2 s timeout\n",
           REQUESTS, w.seq, w.conc, w.timed_out ? "gave up" : "did NOT give up");
    return nt.errors == 0 && nt.round_trips == (long long)CLIENTS * ROUND_TRIPS && naps < 1.0 &&
                   w.ok == 2 * REQUESTS && w.timed_out
               ? 0
               : 1;
}

/* ---- 6. process pool ------------------------------------------------------------- */

enum { RANGES = 8, RANGE = 150000 };

static long primes_in(long lo, long hi) {
    long count = 0;
    for (long n = lo < 2 ? 2 : lo; n < hi; n++) {
        int prime = 1;
        for (long d = 2; d * d <= n && prime; d++) prime = n % d != 0;
        count += prime;
    }
    return count;
}

static volatile int *volatile nowhere; /* NULL, out of the optimiser's sight */

/* Runs in a worker process: the primes in [lo, lo + RANGE); lo < 0 crashes. */
static int primes_task(const void *in, size_t len, concur_proc_out *out) {
    int64_t lo, count;
    if (len != sizeof lo) return -EINVAL;
    memcpy(&lo, in, sizeof lo);
    if (lo < 0) *nowhere = 1; /* a bug in the task: SIGSEGV, in the worker only */
    count = primes_in((long)lo, (long)lo + RANGE);
    return concur_proc_write(out, &count, sizeof count);
}

static int tour_procpool(concur_procpool *pp) {
    int64_t starts[RANGES], counts[RANGES];
    for (int i = 0; i < RANGES; i++) starts[i] = (int64_t)i * RANGE;
    double t0 = concur_now();
    long expect = primes_in(0, (long)RANGES * RANGE);
    double seq = concur_now() - t0;
    t0 = concur_now();
    int rc = concur_procpool_map(pp, primes_task, starts, RANGES, sizeof starts[0], counts, sizeof counts[0], 1, 60);
    double par = concur_now() - t0;
    long total = 0;
    for (int i = 0; i < RANGES; i++) total += (long)counts[i];
    /* One task crashes: only its own future fails, and the pool carries on. */
    int64_t bad_start = -1;
    concur_future *crash = concur_procpool_submit(pp, primes_task, &bad_start, sizeof bad_start);
    concur_future *after = concur_procpool_submit(pp, primes_task, &starts[1], sizeof starts[1]);
    concur_future_wait(crash, 30);
    int signo = 0;
    int died = concur_future_error(crash) == CONCUR_EWORKERDIED && concur_future_death(crash, &signo, NULL) == 0;
    int carried_on = concur_future_result(after, 30, NULL) == 0;
    concur_future_release(crash);
    concur_future_release(after);
    add_row("process pool", "isolation, crashing code", "prime-count map, 8 tasks, 1 crash", seq, par);
    printf("6. process pool       %d workers: primes below %d in %d tasks %.3f s (seq %.3f s, %.2fx), %ld primes; "
           "a crashing task failed alone (signal %d), the next one ran\n",
           concur_procpool_workers(pp), RANGES * RANGE, RANGES, par, seq, seq / par, total, signo);
    return rc == 0 && total == expect && died && carried_on ? 0 : 1;
}

int main(void) {
    printf("concur.h %s tour\n", concur_version());
    /* First, before any thread exists: workers are forked from the program as it is
       now (see concur_procpool_create). */
    concur_procpool *pp = concur_procpool_create(NULL);
    if (!pp) {
        perror("concur_procpool_create");
        return 1;
    }
    int bad = 0;
    bad |= tour_pipeline();
    bad |= tour_semaphore();
    bad |= tour_futures();
    bad |= tour_pool();
    bad |= tour_loop();
    bad |= tour_procpool(pp);
    concur_procpool_destroy(pp);
    print_summary();
    printf(bad ? "tour: a step FAILED its check\n" : "tour: every step checked out\n");
    return bad;
}
