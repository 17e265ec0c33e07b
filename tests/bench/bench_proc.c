/* concur-bench W8-W9: the process pool against a hand-written C fork+pipe pool (the
   near-limit reference, "c-ref") and Python's multiprocessing.Pool and
   ProcessPoolExecutor. Every pool has 2 worker processes.

   c-ref: one pipe each way per worker, frames of {index, length} + payload, a window
   of frames in flight per worker small enough that no write can block on a full
   pipe, results put back in input order by index. */
#define _GNU_SOURCE
#include "../../concur.h"
#include "bench.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "tests/bench"
#endif

enum { WORKERS = 2 };

/* ---- the work ---- */

static void square_items(const int64_t *in, int64_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = in[i] * in[i];
}

static void flip_bytes(const unsigned char *in, unsigned char *out, size_t n) {
    const uint64_t *a = (const uint64_t *)in;
    uint64_t *b = (uint64_t *)out;
    for (size_t i = 0; i < n / 8; i++) b[i] = a[i] ^ 0x5a5a5a5a5a5a5a5aULL;
    for (size_t i = n / 8 * 8; i < n; i++) out[i] = in[i] ^ 0x5a;
}

static int square_task(const void *in, size_t len, concur_proc_out *out) {
    void *o = concur_proc_alloc(out, len);
    if (!o) return -ENOMEM;
    square_items((const int64_t *)in, (int64_t *)o, len / 8);
    return 0;
}

static int flip_task(const void *in, size_t len, concur_proc_out *out) {
    void *o = concur_proc_alloc(out, len);
    if (!o && len) return -ENOMEM;
    flip_bytes((const unsigned char *)in, (unsigned char *)o, len);
    return 0;
}

static int hang_task(const void *in, size_t len, concur_proc_out *out) {
    (void)in;
    (void)len;
    (void)out;
    for (;;) pause();
    return 0;
}

static int pid_task(const void *in, size_t len, concur_proc_out *out) {
    (void)in;
    (void)len;
    int32_t pid = (int32_t)getpid();
    return concur_proc_write(out, &pid, sizeof pid);
}

/* ---- c-ref: the hand-written fork+pipe pool ---- */

typedef struct cref_hdr { uint32_t index, len; } cref_hdr;
enum { CREF_SQUARE = 1, CREF_FLIP = 2 };

typedef struct cref {
    pid_t pid[WORKERS];
    int to[WORKERS], from[WORKERS];
} cref;

static int read_full(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
    size_t put = 0;
    while (put < n) {
        ssize_t r = write(fd, (const char *)buf + put, n - put);
        if (r <= 0) return -1;
        put += (size_t)r;
    }
    return 0;
}

static void cref_worker(int in, int out, int op) {
    size_t cap = 1 << 16;
    unsigned char *a = (unsigned char *)malloc(cap), *b = (unsigned char *)malloc(cap);
    cref_hdr h;
    while (read_full(in, &h, sizeof h) == 0) {
        if (h.len > cap) {
            cap = h.len;
            a = (unsigned char *)realloc(a, cap);
            b = (unsigned char *)realloc(b, cap);
        }
        if (read_full(in, a, h.len) != 0) break;
        if (op == CREF_SQUARE) square_items((const int64_t *)a, (int64_t *)b, h.len / 8);
        else flip_bytes(a, b, h.len);
        if (write_full(out, &h, sizeof h) != 0 || write_full(out, b, h.len) != 0) break;
    }
    _exit(0);
}

static int cref_start(cref *c, int op, int pipe_size) {
    for (int i = 0; i < WORKERS; i++) {
        int down[2], up[2];
        if (pipe(down) || pipe(up)) return -1;
        if (pipe_size) {
            fcntl(down[1], F_SETPIPE_SZ, pipe_size);
            fcntl(up[1], F_SETPIPE_SZ, pipe_size);
        }
        pid_t pid = fork();
        if (pid < 0) return -1;
        if (pid == 0) {
            close(down[1]);
            close(up[0]);
            for (int j = 0; j < i; j++) {
                close(c->to[j]);
                close(c->from[j]);
            }
            cref_worker(down[0], up[1], op);
        }
        close(down[0]);
        close(up[1]);
        c->pid[i] = pid;
        c->to[i] = down[1];
        c->from[i] = up[0];
    }
    return 0;
}

static void cref_stop(cref *c) {
    for (int i = 0; i < WORKERS; i++) {
        close(c->to[i]);
        close(c->from[i]);
        int st;
        waitpid(c->pid[i], &st, 0);
    }
}

/* Runs nframes frames of frame_len bytes (the last may be shorter) from in into out,
   at most `window` in flight per worker. 0 or -1. */
static int cref_run(cref *c, const unsigned char *in, unsigned char *out, size_t total, size_t frame_len,
                    int window) {
    size_t nframes = (total + frame_len - 1) / frame_len, next = 0, done = 0;
    int inflight[WORKERS] = {0};
    struct pollfd pfd[WORKERS];
    while (done < nframes) {
        for (int w = 0; w < WORKERS; w++) {
            while (next < nframes && inflight[w] < window) {
                size_t off = next * frame_len, len = total - off < frame_len ? total - off : frame_len;
                cref_hdr h = {(uint32_t)next, (uint32_t)len};
                /* small frames in one write: a syscall per frame, not two */
                unsigned char small[256];
                if (len <= sizeof small - sizeof h) {
                    memcpy(small, &h, sizeof h);
                    memcpy(small + sizeof h, in + off, len);
                    if (write_full(c->to[w], small, sizeof h + len)) return -1;
                } else if (write_full(c->to[w], &h, sizeof h) || write_full(c->to[w], in + off, len)) {
                    return -1;
                }
                inflight[w]++;
                next++;
            }
            pfd[w].fd = c->from[w];
            pfd[w].events = POLLIN;
        }
        if (poll(pfd, WORKERS, -1) < 0) return -1;
        for (int w = 0; w < WORKERS; w++) {
            if (!(pfd[w].revents & (POLLIN | POLLHUP))) continue;
            cref_hdr h;
            if (read_full(c->from[w], &h, sizeof h) || read_full(c->from[w], out + (size_t)h.index * frame_len, h.len))
                return -1;
            inflight[w]--;
            done++;
        }
    }
    return 0;
}

/* ---- W8 procmap ---- */

typedef struct w8_cfg {
    size_t n, chunk;
    int64_t *in, *out;
    concur_procpool *pp;
    cref ref;
    size_t frame_items;
    int window;
    long trips;
    int reps; /* maps per timed run: one map of 1e5 takes about a millisecond */
} w8_cfg;

static int w8_check(w8_cfg *c) {
    for (size_t i = 0; i < c->n; i += c->n / 97 + 1)
        if (c->out[i] != c->in[i] * c->in[i]) return 0;
    return c->out[c->n - 1] == c->in[c->n - 1] * c->in[c->n - 1];
}

static double run_w8_concur(void *arg) {
    w8_cfg *c = (w8_cfg *)arg;
    memset(c->out, 0, c->n * 8);
    double t0 = concur_now();
    int rc = 0;
    for (int r = 0; r < c->reps && !rc; r++)
        rc = concur_procpool_map(c->pp, square_task, c->in, c->n / c->chunk, c->chunk * 8, c->out, c->chunk * 8,
                                 0, 60);
    double t = (concur_now() - t0) / c->reps;
    return rc == 0 && w8_check(c) ? t : -1;
}

/* The pool's own chunking, item by item (fn runs once per int64). */
static int square_one(const void *in, size_t len, concur_proc_out *out) {
    int64_t x;
    (void)len;
    memcpy(&x, in, 8);
    int64_t *o = (int64_t *)concur_proc_alloc(out, 8);
    if (!o) return -ENOMEM;
    *o = x * x;
    return 0;
}

static double run_w8_concur_items(void *arg) {
    w8_cfg *c = (w8_cfg *)arg;
    memset(c->out, 0, c->n * 8);
    double t0 = concur_now();
    int rc = 0;
    for (int r = 0; r < c->reps && !rc; r++)
        rc = concur_procpool_map(c->pp, square_one, c->in, c->n, 8, c->out, 8, c->chunk, 60);
    double t = (concur_now() - t0) / c->reps;
    return rc == 0 && w8_check(c) ? t : -1;
}

static double run_w8_cref(void *arg) {
    w8_cfg *c = (w8_cfg *)arg;
    memset(c->out, 0, c->n * 8);
    double t0 = concur_now();
    int rc = 0;
    int reps = c->frame_items == 1 ? 1 : c->reps; /* item by item is slow enough */
    for (int r = 0; r < reps && !rc; r++)
        rc = cref_run(&c->ref, (const unsigned char *)c->in, (unsigned char *)c->out, c->n * 8, c->frame_items * 8,
                      c->window);
    double t = (concur_now() - t0) / reps;
    return rc == 0 && w8_check(c) ? t : -1;
}

static double run_rtt_concur(void *arg) {
    w8_cfg *c = (w8_cfg *)arg;
    int64_t x = 7;
    double t0 = concur_now();
    for (long i = 0; i < c->trips; i++) {
        concur_future *f = concur_procpool_submit(c->pp, square_task, &x, sizeof x);
        if (!f || concur_future_wait(f, 30) != 0 || concur_future_error(f) != 0) return -1;
        concur_future_release(f);
    }
    return (concur_now() - t0) / (double)c->trips * 1e6;
}

static double run_rtt_cref(void *arg) {
    w8_cfg *c = (w8_cfg *)arg;
    int64_t x = 7, y = 0;
    double t0 = concur_now();
    for (long i = 0; i < c->trips; i++)
        if (cref_run(&c->ref, (const unsigned char *)&x, (unsigned char *)&y, 8, 8, 1) || y != 49) return -1;
    return (concur_now() - t0) / (double)c->trips * 1e6;
}

/* One crash: how long from the SIGKILL of a busy worker to its failed future. */
static double run_crash(void *arg) {
    w8_cfg *c = (w8_cfg *)arg;
    concur_future *p = concur_procpool_submit(c->pp, pid_task, NULL, 0);
    if (!p || concur_future_wait(p, 30) != 0) return -1;
    int32_t pid = 0;
    size_t len = 0;
    const void *b = concur_future_bytes(p, &len);
    if (!b || len != sizeof pid) return -1;
    memcpy(&pid, b, sizeof pid);
    concur_future_release(p);
    concur_future *f = concur_procpool_submit(c->pp, hang_task, NULL, 0);
    double t0 = concur_now();
    kill(pid, SIGKILL);
    int rc = concur_future_wait(f, 30);
    double t = concur_now() - t0;
    int err = concur_future_error(f);
    concur_future_release(f);
    return rc == 0 && err == CONCUR_EWORKERDIED ? t * 1e6 : -1;
}

typedef struct py_cfg { const char *mode; long a, b; } py_cfg;

static double run_python(void *arg) {
    py_cfg *c = (py_cfg *)arg;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "python3 '%s/py_procpool.py' %s %ld %ld 2>/dev/null", BENCH_SOURCE_DIR, c->mode,
             c->a, c->b);
    return run_peer_command(cmd);
}

static void report_python(const char *wl, const char *impl, py_cfg *py, double scale, const char *unit,
                          double concur_value, int higher_better) {
    double t = median_of(run_python, py);
    if (t <= 0) {
        if (!opt_json) printf("%-6s %-16s skipped (python3 not runnable)\n", wl, impl);
        return;
    }
    double v = scale ? scale / t : t;
    char note[96];
    snprintf(note, sizeof note, "concur is %.1fx (n=%ld)", higher_better ? concur_value / v : v / concur_value,
             py->a);
    report(wl, impl, WORKERS, v, unit, note);
}

void w8(void) {
    w8_cfg c;
    memset(&c, 0, sizeof c);
    c.n = 100000;
    c.chunk = 1000;
    c.reps = opt_quick ? 1 : 20;
    c.in = (int64_t *)malloc(c.n * 8);
    c.out = (int64_t *)malloc(c.n * 8);
    for (size_t i = 0; i < c.n; i++) c.in[i] = (int64_t)i - 5000;
    char note[128];
    concur_procpool_desc d;
    memset(&d, 0, sizeof d);
    d.workers = WORKERS;
    c.pp = concur_procpool_create(&d);
    if (!c.pp) { perror("W8: concur_procpool_create"); return; }
    /* concur: the pool's own chunking (automatic), fn once per item. */
    c.chunk = 0;
    run_w8_concur_items(&c);
    double t_items = median_of(run_w8_concur_items, &c);
    double concur_rate = (double)c.n / t_items;
    /* concur with the work done a frame at a time (1000 items per task): the same
       shape as c-ref's frames. */
    c.chunk = 1000;
    double t_frames = median_of(run_w8_concur, &c);

    if (cref_start(&c.ref, CREF_SQUARE, 0) != 0) { perror("W8: c-ref"); return; }
    c.frame_items = 1000;
    c.window = 4;
    run_w8_cref(&c);
    double t_ref = median_of(run_w8_cref, &c);
    double ref_rate = (double)c.n / t_ref;
    snprintf(note, sizeof note, "automatic chunks, fn per item; %.2fx c-ref (20 maps per run)", concur_rate / ref_rate);
    report("W8", "concur", WORKERS, concur_rate, "items/s", note);
    snprintf(note, sizeof note, "1000 items per task; %.2fx c-ref", ((double)c.n / t_frames) / ref_rate);
    report("W8", "concur-chunk1000", WORKERS, (double)c.n / t_frames, "items/s", note);
    report("W8", "c-ref", WORKERS, ref_rate, "items/s", "fork+pipe, 1000 items per frame, 4 frames in flight");
    c.frame_items = 1;
    c.window = 64;
    double t_ref1 = median_of(run_w8_cref, &c);
    report("W8", "c-ref-item", WORKERS, (double)c.n / t_ref1, "items/s", "one frame per item, 64 in flight");

    /* Round trip of a single task. */
    c.trips = opt_quick ? 200 : 2000;
    run_rtt_concur(&c);
    double rtt = median_of(run_rtt_concur, &c);
    double rtt_ref = median_of(run_rtt_cref, &c);
    snprintf(note, sizeof note, "submit + wait of one task; %.2fx c-ref", rtt / rtt_ref);
    report("W8rtt", "concur", WORKERS, rtt, "us", note);
    report("W8rtt", "c-ref", WORKERS, rtt_ref, "us", "one 8-byte frame there and back");
    cref_stop(&c.ref);

    concur_procpool_destroy(c.pp);
    /* One worker, so the hanging task surely runs on the pid that gets killed. */
    d.workers = 1;
    c.pp = concur_procpool_create(&d);
    if (!c.pp) { perror("W8: concur_procpool_create"); return; }
    double crash = median_of(run_crash, &c);
    report("W8crash", "concur", 1, crash, "us", "SIGKILL of a busy worker to its failed future");
    concur_procpool_destroy(c.pp);

    long n = opt_quick ? 10000 : (long)c.n;
    py_cfg py = {"pool-map", n, 0};
    report_python("W8", "python-pool", &py, (double)n, "items/s", concur_rate, 1);
    py_cfg py1 = {"pool-map", n / 10, 1};
    report_python("W8", "python-pool-chunk1", &py1, (double)(n / 10), "items/s", concur_rate, 1);
    py_cfg pe1 = {"ppe-map", n / 50, 1};
    report_python("W8", "python-ppe-chunk1", &pe1, (double)(n / 50), "items/s", concur_rate, 1);
    py_cfg pe = {"ppe-map", n, 1000};
    report_python("W8", "python-ppe-chunk1000", &pe, (double)n, "items/s", concur_rate, 1);
    py_cfg prtt = {"rtt", opt_quick ? 200 : 2000, 0};
    report_python("W8rtt", "python-pool", &prtt, 0, "us", rtt, 0);
    free(c.in);
    free(c.out);
}

/* ---- W9 procbig ---- */

typedef struct w9_cfg {
    int tasks;
    size_t size;
    unsigned char *in, *out;
    concur_procpool *pp;
    concur_future **fs;
    cref ref;
} w9_cfg;

static double run_w9_concur(void *arg) {
    w9_cfg *c = (w9_cfg *)arg;
    double t0 = concur_now();
    for (int i = 0; i < c->tasks; i++) {
        c->fs[i] = concur_procpool_submit(c->pp, flip_task, c->in, c->size);
        if (!c->fs[i]) return -1;
    }
    int ok = concur_wait_all(c->fs, (size_t)c->tasks, 60) == 0;
    double t = concur_now() - t0;
    for (int i = 0; i < c->tasks; i++) {
        size_t len = 0;
        const unsigned char *o = (const unsigned char *)concur_future_bytes(c->fs[i], &len);
        ok = ok && o && len == c->size && o[0] == (c->in[0] ^ 0x5a) && o[len - 1] == (c->in[len - 1] ^ 0x5a);
        concur_future_release(c->fs[i]);
    }
    return ok ? t : -1;
}

static double run_w9_cref(void *arg) {
    w9_cfg *c = (w9_cfg *)arg;
    /* The same input for every task, as in the concur run; the outputs land side by
       side. */
    size_t total = (size_t)c->tasks * c->size;
    unsigned char *in = (unsigned char *)malloc(total);
    if (!in) return -1;
    for (int i = 0; i < c->tasks; i++) memcpy(in + (size_t)i * c->size, c->in, c->size);
    double t0 = concur_now();
    int rc = cref_run(&c->ref, in, c->out, total, c->size, 1);
    double t = concur_now() - t0;
    int ok = rc == 0 && c->out[total - 1] == (c->in[c->size - 1] ^ 0x5a);
    free(in);
    return ok ? t : -1;
}

void w9(void) {
    w9_cfg c;
    memset(&c, 0, sizeof c);
    c.tasks = opt_quick ? 16 : 256;
    c.size = (size_t)1 << 20;
    c.in = (unsigned char *)malloc(c.size);
    c.out = (unsigned char *)malloc((size_t)c.tasks * c.size);
    c.fs = (concur_future **)malloc((size_t)c.tasks * sizeof *c.fs);
    for (size_t i = 0; i < c.size; i++) c.in[i] = (unsigned char)(i * 7);
    memset(c.out, 0, (size_t)c.tasks * c.size);
    double bytes = 2.0 * (double)c.tasks * (double)c.size; /* in and out */
    char note[128];
    concur_procpool_desc d;
    memset(&d, 0, sizeof d);
    d.workers = WORKERS;
    c.pp = concur_procpool_create(&d);
    if (!c.pp) { perror("W9: concur_procpool_create"); return; }
    run_w9_concur(&c);
    double t = median_of(run_w9_concur, &c);
    double concur_gbs = bytes / t / 1e9;
    concur_procpool_destroy(c.pp);

    if (cref_start(&c.ref, CREF_FLIP, 1 << 20) != 0) { perror("W9: c-ref"); return; }
    double t_ref = median_of(run_w9_cref, &c);
    cref_stop(&c.ref);
    if (cref_start(&c.ref, CREF_FLIP, 0) != 0) { perror("W9: c-ref"); return; }
    double t_ref64 = median_of(run_w9_cref, &c);
    cref_stop(&c.ref);
    snprintf(note, sizeof note, "shared memory; %.2fx c-ref (1 MiB pipes), %.2fx c-ref-64k", t_ref / t, t_ref64 / t);
    report("W9", "concur", WORKERS, concur_gbs, "GB/s", note);
    report("W9", "c-ref", WORKERS, bytes / t_ref / 1e9, "GB/s", "fork+pipe, pipes of 1 MiB");
    report("W9", "c-ref-64k", WORKERS, bytes / t_ref64 / 1e9, "GB/s", "fork+pipe, default 64 KiB pipes");
    py_cfg py = {"big", c.tasks, (long)c.size};
    double pt = median_of(run_python, &py);
    if (pt > 0) {
        snprintf(note, sizeof note, "ProcessPoolExecutor.map; concur is %.1fx", pt / t);
        report("W9", "python-ppe", WORKERS, bytes / pt / 1e9, "GB/s", note);
    } else if (!opt_json) {
        printf("W9     python-ppe       skipped (python3 not runnable)\n");
    }
    free(c.in);
    free(c.out);
    free(c.fs);
}
