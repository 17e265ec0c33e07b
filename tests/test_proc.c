/* The process pool: maps in order over many sizes and chunkings, payloads across the
   shared-memory threshold checked byte for byte, crashes of every kind while work is
   in flight, timeouts, worker recycling, the restart limit, bounded shutdown, no
   leftover processes or fds, signals left alone, bad input. */
#include "test.h"

#ifdef CONCUR_NO_PROCESS
int main(void) {
    printf("skipped: built with CONCUR_NO_PROCESS\n");
    return 77;
}
#else
#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* TSan cannot start threads in a child forked from a threaded process, and neither
   can qemu-user (7.2 asserts in its vCPU setup): the tests whose forked child makes a
   pool are skipped there. */
static int threads_in_forked_child(void) {
    const char *cfg = getenv("CONCUR_TEST_CONFIG");
    if ((cfg && strcmp(cfg, "tsan") == 0) || getenv("CONCUR_TEST_EMULATED")) {
        printf("     (skipped: no threads in a forked child under %s)\n",
               getenv("CONCUR_TEST_EMULATED") ? "emulation" : "TSan");
        return 0;
    }
    return 1;
}

static int sanitized(void) {
    const char *cfg = getenv("CONCUR_TEST_CONFIG");
    return cfg && (strcmp(cfg, "asan") == 0 || strcmp(cfg, "tsan") == 0);
}

static int quick(void) {
    const char *q = getenv("CONCUR_TEST_QUICK");
    return q && *q && *q != '0';
}

static concur_procpool *new_pool(int workers) {
    concur_procpool_desc d;
    memset(&d, 0, sizeof d);
    d.workers = workers;
    concur_procpool *pp = concur_procpool_create(&d);
    REQUIRE(pp != NULL);
    return pp;
}

/* ---- task functions (they run in the workers) ---- */

static int square_fn(const void *in, size_t len, concur_proc_out *out) {
    int64_t x;
    if (len != sizeof x) return -EINVAL;
    memcpy(&x, in, sizeof x);
    x *= x;
    return concur_proc_write(out, &x, sizeof x);
}

/* Each output byte is the input byte reversed in position and flipped: a result that
   a lost, truncated or misplaced byte cannot pass. */
static int mirror_fn(const void *in, size_t len, concur_proc_out *out) {
    unsigned char *o = (unsigned char *)concur_proc_alloc(out, len);
    if (!o && len) return -ENOMEM;
    const unsigned char *p = (const unsigned char *)in;
    for (size_t i = 0; i < len; i++) o[i] = (unsigned char)(p[len - 1 - i] ^ 0x5a);
    return 0;
}

/* Three copies of the input, each byte plus its copy's number: a result bigger than
   the segment lent for it, which the worker must grow. */
static int triple_fn(const void *in, size_t len, concur_proc_out *out) {
    unsigned char *o = (unsigned char *)concur_proc_alloc(out, 3 * len);
    if (!o && len) return -ENOMEM;
    const unsigned char *p = (const unsigned char *)in;
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < len; i++) o[k * len + i] = (unsigned char)(p[i] + k);
    return 0;
}

static int pid_fn(const void *in, size_t len, concur_proc_out *out) {
    (void)in;
    (void)len;
    int32_t pid = (int32_t)getpid();
    return concur_proc_write(out, &pid, sizeof pid);
}

enum { DIE_SEGV = 1, DIE_ABORT, DIE_EXIT3, DIE_HANG, DIE_ERROR, DIE_SLEEP_MS };

/* Input: a command byte, then an argument. */
static int die_fn(const void *in, size_t len, concur_proc_out *out) {
    const unsigned char *p = (const unsigned char *)in;
    if (len < 1) return -EINVAL;
    switch (p[0]) {
    case DIE_SEGV: /* raised, not faulted: sanitizers and valgrind would report a fault */
        raise(SIGSEGV);
        break;
    case DIE_ABORT: abort();
    case DIE_EXIT3: exit(3);
    case DIE_HANG:
        for (;;) pause();
    case DIE_ERROR: return -EDOM;
    case DIE_SLEEP_MS: {
        int ms = len > 1 ? p[1] * 10 : 10;
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {
        }
        break;
    }
    default: break;
    }
    return pid_fn(in, len, out);
}

static int32_t future_pid(concur_future *f) {
    size_t len = 0;
    const void *b = concur_future_bytes(f, &len);
    int32_t pid = -1;
    if (b && len == sizeof pid) memcpy(&pid, b, sizeof pid);
    return pid;
}

static int32_t run_pid(concur_procpool *pp) {
    concur_future *f = concur_procpool_submit(pp, pid_fn, NULL, 0);
    REQUIRE(f != NULL);
    CHECK_EQ(concur_future_wait(f, 30), 0);
    CHECK_EQ(concur_future_error(f), 0);
    int32_t pid = future_pid(f);
    concur_future_release(f);
    return pid;
}

static void *volatile kept_for_leak_checkers;

static concur_future *submit_cmd(concur_procpool *pp, int cmd, int arg) {
    unsigned char c[2] = {(unsigned char)cmd, (unsigned char)arg};
    concur_future *f = concur_procpool_submit(pp, die_fn, c, sizeof c);
    REQUIRE(f != NULL);
    return f;
}

/* ---- tests ---- */

static void test_map_in_order(void) {
    concur_procpool *pp = new_pool(2);
    static const size_t sizes[] = {1, 2, 7, 100, 1000, 10007};
    static const size_t chunks[] = {0, 1, 3, 64, 100000};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t n = sizes[si];
        int64_t *in = (int64_t *)malloc(n * sizeof *in), *out = (int64_t *)malloc(n * sizeof *out);
        REQUIRE(in && out);
        for (size_t i = 0; i < n; i++) in[i] = (int64_t)i * 3 - 1000;
        for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
            if (chunks[ci] == 1 && n > 1000) continue; /* 10007 one-item tasks: slow under valgrind */
            memset(out, 0xee, n * sizeof *out);
            CHECK_EQ(concur_procpool_map(pp, square_fn, in, n, sizeof *in, out, sizeof *out, chunks[ci], 60), 0);
            size_t bad = 0;
            for (size_t i = 0; i < n; i++) bad += out[i] != in[i] * in[i];
            CHECK_EQ(bad, 0);
        }
        free(in);
        free(out);
    }
    CHECK_EQ(concur_procpool_map(pp, square_fn, NULL, 0, 8, NULL, 8, 0, 1), 0);
    /* Results shorter than out_size are zero-padded; longer ones are an error. */
    int64_t one = 5, wide[2] = {-1, -1};
    CHECK_EQ(concur_procpool_map(pp, square_fn, &one, 1, sizeof one, wide, sizeof wide, 0, 10), 0);
    CHECK_EQ(wide[0], 25);
    CHECK_EQ(wide[1], 0);
    int32_t narrow;
    CHECK_EQ(concur_procpool_map(pp, square_fn, &one, 1, sizeof one, &narrow, sizeof narrow, 0, 10), -EMSGSIZE);
    /* A failing item fails the map with its code. */
    unsigned char cmds[6] = {0, 0, DIE_ERROR, 0, 0, 0};
    int32_t pids[6];
    CHECK_EQ(concur_procpool_map(pp, die_fn, cmds, 6, 1, pids, sizeof *pids, 1, 10), -EDOM);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
}

/* A pool whose payloads from 4 KiB up go through shared memory. */
static concur_procpool *shm_pool(int workers, int max_tasks_per_child) {
    concur_procpool_desc d;
    memset(&d, 0, sizeof d);
    d.workers = workers;
    d.shm_threshold = 4096;
    d.max_tasks_per_child = max_tasks_per_child;
    concur_procpool *pp = concur_procpool_create(&d);
    REQUIRE(pp != NULL);
    return pp;
}

/* Runs fn on in and expects success: the result's bytes (valid until *fp is
   released) and their length in *got. */
static const unsigned char *run_ok(concur_procpool *pp, concur_proc_fn fn, const void *in, size_t len,
                                   concur_future **fp, size_t *got) {
    concur_future *f = concur_procpool_submit(pp, fn, in, len);
    REQUIRE(f != NULL);
    CHECK_EQ(concur_future_wait(f, 60), 0);
    CHECK_EQ(concur_future_error(f), 0);
    *fp = f;
    return (const unsigned char *)concur_future_bytes(f, got);
}

static void test_payload_sizes(void) {
    concur_procpool *pp = shm_pool(2, 0);
    size_t big = quick() ? (size_t)8 << 20 : (size_t)64 << 20;
    size_t sizes[] = {0, 1, 4095, 4096, 4097, 64 * 1024, 64 * 1024 + 1, 1 << 20, big, 3, 4096};
    unsigned char *buf = (unsigned char *)malloc(big);
    REQUIRE(buf);
    for (size_t i = 0; i < big; i++) buf[i] = (unsigned char)(i * 131 + (i >> 13));
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t len = sizes[k], got = 99;
        concur_future *f;
        const unsigned char *o = run_ok(pp, mirror_fn, len ? buf : NULL, len, &f, &got);
        CHECK_EQ(got, len);
        size_t bad = 0;
        for (size_t i = 0; o && i < len && i < got; i++) bad += o[i] != (unsigned char)(buf[len - 1 - i] ^ 0x5a);
        if (bad) fprintf(stderr, "payload %zu: %zu wrong bytes\n", len, bad);
        CHECK_EQ(bad, 0);
        concur_future_release(f);
    }
    /* Many in flight at once, mixed sizes, through both paths. */
    enum { N = 24 };
    concur_future *fs[N];
    for (int i = 0; i < N; i++) {
        size_t len = (size_t)(i % 3 == 0 ? 100 : i % 3 == 1 ? 5000 : 300000) + (size_t)i;
        fs[i] = concur_procpool_submit(pp, mirror_fn, buf + i, len);
        REQUIRE(fs[i] != NULL);
    }
    CHECK_EQ(concur_wait_all(fs, N, 60), 0);
    for (int i = 0; i < N; i++) {
        size_t len = (size_t)(i % 3 == 0 ? 100 : i % 3 == 1 ? 5000 : 300000) + (size_t)i, got = 0;
        const unsigned char *o = (const unsigned char *)concur_future_bytes(fs[i], &got);
        CHECK_EQ(got, len);
        size_t bad = 0;
        for (size_t j = 0; o && j < len && j < got; j++) bad += o[j] != (unsigned char)(buf[i + len - 1 - j] ^ 0x5a);
        CHECK_EQ(bad, 0);
        concur_future_release(fs[i]);
    }
    free(buf);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
}

/* Tasks of 12 sizes, 6 rounds, each checked byte for byte (see test_segments_kept). */
static void segments_round_trip(concur_procpool *pp) {
    enum { SIZES = 12, ROUNDS = 6 };
    size_t max = (size_t)SIZES * 20000 + 8192;
    unsigned char *buf = (unsigned char *)malloc(max);
    REQUIRE(buf);
    size_t bad = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int k = 0; k < SIZES; k++) {
            size_t len = 8192 + (size_t)k * 20000;
            for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)(i * 7 + (size_t)round * 31 + (size_t)k);
            int grow = (round + k) % 4 == 0;
            size_t got = 0;
            concur_future *f;
            const unsigned char *o = run_ok(pp, grow ? triple_fn : mirror_fn, buf, len, &f, &got);
            CHECK_EQ(got, grow ? 3 * len : len);
            for (size_t i = 0; o && i < got && i < (grow ? 3 * len : len); i++)
                bad += o[i] != (grow ? (unsigned char)(buf[i % len] + i / len) : (unsigned char)(buf[len - 1 - i] ^ 0x5a));
            concur_future_release(f);
        }
    }
    CHECK_EQ(bad, 0);
    free(buf);
}

/* Workers keep the segments they were sent mapped between tasks: every task must
   still see its own input and fill its own result, when segments come back, when
   more of them go around than a worker keeps, when a result grows one, and when
   workers are replaced (a new one has none mapped) while the segments live on. The
   contents change on every round, so a stale mapping shows as wrong bytes. */
static void test_segments_kept(void) {
    for (int setup = 0; setup < 2; setup++) {
        concur_procpool *pp = setup == 0 ? shm_pool(1, 0) : shm_pool(2, 5);
        segments_round_trip(pp);
        CHECK_EQ(concur_procpool_destroy(pp), 0);
    }
}

static void test_crashes_fail_only_their_task(void) {
    concur_procpool *pp = new_pool(2);
    struct { int cmd, signo, code; } cases[] = {
        {DIE_SEGV, SIGSEGV, -1}, {DIE_ABORT, SIGABRT, -1}, {DIE_EXIT3, 0, 3}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        concur_future *ok1 = submit_cmd(pp, DIE_SLEEP_MS, 2);
        concur_future *bad = submit_cmd(pp, cases[k].cmd, 0);
        concur_future *ok2 = submit_cmd(pp, 0, 0);
        CHECK_EQ(concur_future_wait(bad, 30), 0);
        CHECK_EQ(concur_future_error(bad), CONCUR_EWORKERDIED);
        int signo = -7, code = -7;
        CHECK_EQ(concur_future_death(bad, &signo, &code), 0);
        /* Sanitizers catch SIGSEGV and abort and turn them into exit(1). */
        if (!sanitized() || cases[k].cmd == DIE_EXIT3) {
            CHECK_EQ(signo, cases[k].signo);
            CHECK_EQ(code, cases[k].code);
        } else {
            CHECK(signo == cases[k].signo || code == 1);
        }
        CHECK_EQ(concur_future_result(ok1, 30, NULL), 0);
        CHECK_EQ(concur_future_result(ok2, 30, NULL), 0);
        CHECK_EQ(concur_future_death(ok1, NULL, NULL), -EINVAL);
        concur_future_release(ok1);
        concur_future_release(bad);
        concur_future_release(ok2);
    }
    /* The pool keeps serving with replaced workers. */
    CHECK(run_pid(pp) > 0);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
}

static void test_kill_during_map(void) {
    concur_procpool *pp = new_pool(2);
    /* Every item sleeps 20 ms, 2 per chunk: the map is in flight for a while. */
    enum { N = 40 };
    unsigned char items[N][2];
    int32_t pids[N];
    for (int i = 0; i < N; i++) {
        items[i][0] = DIE_SLEEP_MS;
        items[i][1] = 2;
    }
    int32_t victim = run_pid(pp);
    REQUIRE(victim > 0);
    kept_for_leak_checkers = pp; /* the forked killer below exits while pp is live */
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        struct timespec ts = {0, 60 * 1000000L};
        nanosleep(&ts, NULL);
        kill(victim, SIGKILL);
        _exit(0);
    }
    int rc = concur_procpool_map(pp, die_fn, items, N, 2, pids, sizeof *pids, 2, 60);
    int st;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
    }
    /* The killed worker's chunk failed (unless it had gone idle), nothing hung. */
    CHECK(rc == CONCUR_EWORKERDIED || rc == 0);
    concur_future *f = concur_procpool_submit(pp, pid_fn, NULL, 0);
    CHECK_EQ(concur_future_result(f, 30, NULL), 0);
    concur_future_release(f);
    CHECK(run_pid(pp) > 0);
    CHECK_EQ(concur_procpool_destroy(pp), 0);

    /* A SIGKILL from outside at a busy worker: its task reports the signal. With one
       worker, the pid that ran the last task runs the next one. */
    pp = new_pool(1);
    int32_t only = run_pid(pp);
    REQUIRE(only > 0);
    concur_future *hang = submit_cmd(pp, DIE_HANG, 0);
    kill(only, SIGKILL);
    CHECK_EQ(concur_future_wait(hang, 30), 0);
    CHECK_EQ(concur_future_error(hang), CONCUR_EWORKERDIED);
    int signo = 0, code = 0;
    CHECK_EQ(concur_future_death(hang, &signo, &code), 0);
    CHECK_EQ(signo, SIGKILL);
    CHECK_EQ(code, -1);
    concur_future_release(hang);
    int32_t next = run_pid(pp);
    CHECK(next > 0 && next != only);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
}

static void test_timeout_kills_and_replaces(void) {
    concur_procpool_desc d;
    memset(&d, 0, sizeof d);
    d.workers = 1;
    d.task_timeout = 0.3;
    d.kill_grace = 0.1;
    concur_procpool *pp = concur_procpool_create(&d);
    REQUIRE(pp != NULL);
    int32_t before = run_pid(pp);
    double t0 = concur_now();
    concur_future *hang = submit_cmd(pp, DIE_HANG, 0);
    CHECK_EQ(concur_future_wait(hang, 30), 0);
    CHECK_EQ(concur_future_error(hang), -ETIMEDOUT);
    CHECK(test_since(t0) >= 0.29);
    concur_future_release(hang);
    int32_t after = run_pid(pp);
    CHECK(after > 0 && after != before);
    /* A per-task timeout overrides the default; 0 means none. */
    unsigned char c[2] = {DIE_SLEEP_MS, 50}; /* 500 ms */
    concur_future *slow = concur_procpool_submit_timeout(pp, die_fn, c, sizeof c, 0);
    CHECK_EQ(concur_future_result(slow, 30, NULL), 0);
    concur_future_release(slow);
    concur_future *quick_to = concur_procpool_submit_timeout(pp, die_fn, c, sizeof c, 0.05);
    CHECK_EQ(concur_future_result(quick_to, 30, NULL), -ETIMEDOUT);
    concur_future_release(quick_to);
    CHECK(run_pid(pp) > 0);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
}

static void test_max_tasks_per_child(void) {
    concur_procpool_desc d;
    memset(&d, 0, sizeof d);
    d.workers = 1;
    d.max_tasks_per_child = 2;
    concur_procpool *pp = concur_procpool_create(&d);
    REQUIRE(pp != NULL);
    int32_t pids[6];
    for (int i = 0; i < 6; i++) pids[i] = run_pid(pp);
    for (int i = 0; i < 6; i += 2) {
        CHECK(pids[i] > 0);
        CHECK_EQ(pids[i], pids[i + 1]);
        if (i) CHECK(pids[i] != pids[i - 1]);
    }
    CHECK_EQ(concur_procpool_destroy(pp), 0);
}

static void test_restart_limit(void) {
    concur_procpool_desc d;
    memset(&d, 0, sizeof d);
    d.workers = 1;
    d.max_restarts = 2;
    d.restart_window = 60;
    concur_procpool *pp = concur_procpool_create(&d);
    REQUIRE(pp != NULL);
    for (int i = 0; i < 2; i++) {
        concur_future *f = submit_cmd(pp, DIE_ABORT, 0);
        CHECK_EQ(concur_future_result(f, 30, NULL), CONCUR_EWORKERDIED);
        concur_future_release(f);
        CHECK(run_pid(pp) > 0); /* still serving */
    }
    concur_future *f = submit_cmd(pp, DIE_ABORT, 0);
    CHECK_EQ(concur_future_result(f, 30, NULL), CONCUR_EWORKERDIED);
    concur_future_release(f);
    f = concur_procpool_submit(pp, pid_fn, NULL, 0);
    REQUIRE(f != NULL);
    CHECK_EQ(concur_future_result(f, 30, NULL), CONCUR_EBROKEN);
    concur_future_release(f);
    CHECK_EQ(concur_procpool_map(pp, square_fn, &d, 1, 8, NULL, 0, 0, 5), CONCUR_EBROKEN);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
}

static int init_value;
static int init_fn(void *arg) {
    init_value = *(int *)arg;
    return init_value == 13 ? -ENOTSUP : 0;
}
static int read_init_fn(const void *in, size_t len, concur_proc_out *out) {
    (void)in;
    (void)len;
    return concur_proc_write(out, &init_value, sizeof init_value);
}

static void test_initializer(void) {
    int arg = 42;
    concur_procpool_desc d;
    memset(&d, 0, sizeof d);
    d.workers = 2;
    d.initializer = init_fn;
    d.init_arg = &arg;
    concur_procpool *pp = concur_procpool_create(&d);
    REQUIRE(pp != NULL);
    CHECK_EQ(init_value, 0); /* ran in the workers, not here */
    concur_future *f = concur_procpool_submit(pp, read_init_fn, NULL, 0);
    CHECK_EQ(concur_future_result(f, 30, NULL), 0);
    size_t len = 0;
    const int *v = (const int *)concur_future_bytes(f, &len);
    CHECK(v && len == sizeof(int) && *v == 42);
    concur_future_release(f);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
    arg = 13;
    errno = 0;
    CHECK(concur_procpool_create(&d) == NULL);
    CHECK_EQ(errno, ENOTSUP);
}

static void test_shutdown_bounded(void) {
    concur_procpool_desc d;
    memset(&d, 0, sizeof d);
    d.workers = 2;
    d.kill_grace = 0.2;
    concur_procpool *pp = concur_procpool_create(&d);
    REQUIRE(pp != NULL);
    concur_future *a = submit_cmd(pp, DIE_HANG, 0), *b = submit_cmd(pp, DIE_HANG, 0);
    concur_future *queued = submit_cmd(pp, 0, 0);
    /* Without the bound this shutdown would wait forever (the tasks never end), so a
       generous ceiling still tells "bounded" from "not". */
    double t0 = concur_now();
    CHECK_EQ(concur_procpool_shutdown(pp, 0, 0.3), 0);
    double took = test_since(t0);
    CHECK(took < 0.3 + 0.2 + 20.0);
    CHECK_EQ(concur_future_error(a), CONCUR_ESHUTDOWN);
    CHECK_EQ(concur_future_error(b), CONCUR_ESHUTDOWN);
    CHECK_EQ(concur_future_error(queued), CONCUR_ESHUTDOWN);
    CHECK_EQ(concur_procpool_shutdown(pp, 1, 0), 0); /* idempotent */
    concur_future *late = concur_procpool_submit(pp, pid_fn, NULL, 0);
    REQUIRE(late != NULL);
    CHECK_EQ(concur_future_error(late), CONCUR_ESHUTDOWN);
    concur_future_release(late);
    concur_future_release(a);
    concur_future_release(b);
    concur_future_release(queued);
    CHECK_EQ(concur_procpool_destroy(pp), 0);

    /* Graceful: queued work runs first; with cancel_pending it is cancelled. */
    pp = new_pool(1);
    concur_future *slow = submit_cmd(pp, DIE_SLEEP_MS, 20), *after = submit_cmd(pp, 0, 0);
    CHECK_EQ(concur_procpool_shutdown(pp, 0, CONCUR_FOREVER), 0);
    CHECK_EQ(concur_future_error(slow), 0);
    CHECK_EQ(concur_future_error(after), 0);
    concur_future_release(slow);
    concur_future_release(after);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
    pp = new_pool(1);
    slow = submit_cmd(pp, DIE_SLEEP_MS, 20);
    after = submit_cmd(pp, 0, 0);
    CHECK_EQ(concur_procpool_shutdown(pp, 1, CONCUR_FOREVER), 0);
    CHECK_EQ(concur_future_error(slow), 0);
    CHECK_EQ(concur_future_cancelled(after), 1);
    concur_future_release(slow);
    concur_future_release(after);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
}

static int fd_open_fn(const void *in, size_t len, concur_proc_out *out) {
    int fd;
    if (len != sizeof fd) return -EINVAL;
    memcpy(&fd, in, sizeof fd);
    /* The number may be reused by the worker's own socket or arenas: look for the
       pipe itself. */
    struct stat st;
    int open_ = fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
    int total = test_count_fds();
    int r[2] = {open_, total};
    return concur_proc_write(out, r, sizeof r);
}

static void test_no_leftovers(void) {
    int base_fds = test_count_fds();
    int rounds = quick() ? 5 : 50;
    for (int i = 0; i < rounds; i++) {
        concur_procpool *pp = new_pool(2);
        if (i % 10 == 0) CHECK(run_pid(pp) > 0);
        CHECK_EQ(concur_procpool_destroy(pp), 0);
    }
    CHECK_EQ(test_count_fds(), base_fds);
    int st;
    errno = 0;
    CHECK_EQ(waitpid(-1, &st, WNOHANG), -1); /* no child left, not even a zombie */
    CHECK_EQ(errno, ECHILD);
    /* An fd the program opened without O_CLOEXEC does not reach the workers. */
    int p[2];
    REQUIRE(pipe(p) == 0);
    concur_procpool *pp = new_pool(1);
    concur_future *f = concur_procpool_submit(pp, fd_open_fn, &p[1], sizeof p[1]);
    CHECK_EQ(concur_future_result(f, 30, NULL), 0);
    size_t len = 0;
    const int *r = (const int *)concur_future_bytes(f, &len);
    REQUIRE(r && len == 2 * sizeof(int));
    CHECK_EQ(r[0], 0);
    CHECK(r[1] <= 6); /* stdio, the channel, and the two arenas at most */
    concur_future_release(f);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
    close(p[0]);
    close(p[1]);
}

/* The grandparent's view: the process that owns a pool dies by SIGKILL, and every
   worker and the helper go with it. The check runs in a subreaper so the orphans come
   back to it to be counted. */
static void test_parent_killed_leaves_nothing(void) {
    if (!threads_in_forked_child()) return;
    pid_t g = fork();
    REQUIRE(g >= 0);
    if (g == 0) {
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        int report[2];
        if (pipe(report) != 0) _exit(2);
        pid_t parent = fork();
        if (parent == 0) {
            close(report[0]);
            concur_procpool *pp = new_pool(2);
            int32_t pids[2];
            unsigned char items[2][2] = {{DIE_SLEEP_MS, 10}, {DIE_SLEEP_MS, 10}};
            if (concur_procpool_map(pp, die_fn, items, 2, 2, pids, sizeof *pids, 1, 30) != 0) _exit(3);
            if (write(report[1], pids, sizeof pids) != (ssize_t)sizeof pids) _exit(4);
            concur_future *f = submit_cmd(pp, DIE_HANG, 0); /* busy when we die */
            (void)f;
            for (;;) pause();
        }
        close(report[1]);
        int32_t pids[2];
        if (read(report[0], pids, sizeof pids) != (ssize_t)sizeof pids) _exit(5);
        kill(parent, SIGKILL);
        /* Reap everything that comes back: the parent, then the orphaned helper and
           workers. ECHILD means nothing is left alive or unreaped. */
        int reaped = 0, st;
        pid_t r;
        while ((r = waitpid(-1, &st, 0)) > 0 || errno == EINTR)
            if (r > 0) reaped++;
        if (errno != ECHILD) _exit(6);
        for (int i = 0; i < 2; i++)
            if (kill(pids[i], 0) == 0) _exit(7);
        /* The parent and the helper at least; the workers come back here too unless
           the helper reaped them before it went. */
        _exit(reaped >= 2 ? 0 : 8);
    }
    int st;
    while (waitpid(g, &st, 0) < 0 && errno == EINTR) {
    }
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
}

static int stdio_open_fn(const void *in, size_t len, concur_proc_out *out) {
    (void)in;
    (void)len;
    int open_ = fcntl(1, F_GETFD) != -1 && fcntl(2, F_GETFD) != -1;
    return concur_proc_write(out, &open_, sizeof open_);
}

/* A daemon may run with stdin closed: the pool's own sockets then get low fd
   numbers, and the workers must still keep stdout and stderr. */
static void test_stdin_closed(void) {
    if (!threads_in_forked_child()) return;
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        close(0);
        concur_procpool *pp = concur_procpool_create(&(concur_procpool_desc){.workers = 1});
        if (!pp) _exit(2);
        concur_future *f = concur_procpool_submit(pp, stdio_open_fn, NULL, 0);
        size_t len = 0;
        const int *r = concur_future_wait(f, 30) == 0 ? (const int *)concur_future_bytes(f, &len) : NULL;
        int ok = r && len == sizeof *r && *r == 1;
        concur_future_release(f);
        concur_procpool_destroy(pp);
        _exit(ok ? 0 : 3);
    }
    int st;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
    }
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
}

static volatile sig_atomic_t got_sigint;
static void on_sigint(int sig) {
    (void)sig;
    got_sigint = 1;
}

static void test_signals_left_alone(void) {
    struct sigaction sa, before_int, before_chld, before_pipe, after;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &before_int);
    sigaction(SIGCHLD, NULL, &before_chld);
    sigaction(SIGPIPE, NULL, &before_pipe);
    concur_procpool *pp = new_pool(1);
    int32_t w = run_pid(pp);
    REQUIRE(w > 0);
    /* Ctrl-C reaches the whole process group; the worker must shrug it off. */
    kill(w, SIGINT);
    raise(SIGINT); /* delivered before raise returns, unlike a kill() to the process */
    CHECK_EQ(run_pid(pp), w);
    CHECK_EQ(got_sigint, 1);
    sigaction(SIGINT, NULL, &after);
    CHECK(after.sa_handler == on_sigint);
    sigaction(SIGCHLD, NULL, &after);
    CHECK(after.sa_handler == before_chld.sa_handler);
    sigaction(SIGPIPE, NULL, &after);
    CHECK(after.sa_handler == before_pipe.sa_handler);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
    sigaction(SIGINT, &before_int, NULL);
}

static void test_futures_everywhere(void) {
    concur_procpool *pp = new_pool(2);
    enum { N = 12 };
    concur_future *fs[N];
    for (int i = 0; i < N; i++) fs[i] = submit_cmd(pp, i == 5 ? DIE_ERROR : DIE_SLEEP_MS, (N - i) % 4);
    concur_as_completed *it = concur_as_completed_create(fs, N);
    REQUIRE(it != NULL);
    int seen = 0, errors = 0, idx;
    while ((idx = concur_as_completed_next(it, 30)) >= 0) {
        seen++;
        if (concur_future_error(fs[idx]) == -EDOM) errors++;
        else CHECK_EQ(concur_future_error(fs[idx]), 0);
    }
    CHECK_EQ(idx, CONCUR_EDONE);
    CHECK_EQ(seen, N);
    CHECK_EQ(errors, 1);
    concur_as_completed_destroy(it);
    for (int i = 0; i < N; i++) concur_future_release(fs[i]);
    /* Cancel a queued task: it never runs. */
    concur_procpool *one = new_pool(1);
    concur_future *busy = submit_cmd(one, DIE_SLEEP_MS, 10), *queued = submit_cmd(one, 0, 0);
    CHECK_EQ(concur_future_cancel(queued), 0);
    CHECK_EQ(concur_future_cancel(busy), -EBUSY);
    CHECK_EQ(concur_future_result(busy, 30, NULL), 0);
    CHECK_EQ(concur_future_error(queued), -ECANCELED);
    concur_future_release(busy);
    concur_future_release(queued);
    CHECK_EQ(concur_procpool_destroy(one), 0);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
}

#ifndef CONCUR_NO_IO
typedef struct await_arg { concur_procpool *pp; int ok; } await_arg;
static void *await_in_coroutine(void *p) {
    await_arg *a = (await_arg *)p;
    int64_t x = 12, y = 0;
    concur_future *f = concur_procpool_submit(a->pp, square_fn, &x, sizeof x);
    if (concur_future_wait(f, 30) == 0 && concur_future_error(f) == 0) {
        size_t len = 0;
        const void *b = concur_future_bytes(f, &len);
        if (b && len == sizeof y) memcpy(&y, b, sizeof y);
    }
    concur_future_release(f);
    a->ok = y == 144;
    return NULL;
}
#endif

static void test_await_from_coroutine(void) {
#ifndef CONCUR_NO_IO
    concur_procpool *pp = new_pool(1);
    concur_loop *L = concur_loop_create(NULL);
    REQUIRE(L != NULL);
    await_arg a = {pp, 0};
    concur_co *co = concur_go(L, await_in_coroutine, &a);
    REQUIRE(co != NULL);
    concur_detach(co);
    CHECK_EQ(concur_loop_run(L), 0);
    CHECK_EQ(a.ok, 1);
    concur_loop_destroy(L);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
#endif
}

static void test_bad_input(void) {
    concur_procpool_desc d;
    memset(&d, 0, sizeof d);
    d.workers = -1;
    errno = 0;
    CHECK(concur_procpool_create(&d) == NULL);
    CHECK_EQ(errno, EINVAL);
    memset(&d, 0, sizeof d);
    d.task_timeout = NAN;
    CHECK(concur_procpool_create(&d) == NULL);
    memset(&d, 0, sizeof d);
    d.max_tasks_per_child = -2;
    CHECK(concur_procpool_create(&d) == NULL);
    errno = 0;
    CHECK(concur_procpool_submit(NULL, pid_fn, NULL, 0) == NULL);
    CHECK_EQ(errno, EINVAL);
    concur_procpool *pp = new_pool(1);
    CHECK(concur_procpool_submit(pp, NULL, NULL, 0) == NULL);
    CHECK(concur_procpool_submit(pp, pid_fn, NULL, 5) == NULL);
    CHECK(concur_procpool_submit_timeout(pp, pid_fn, NULL, 0, NAN) == NULL);
    CHECK_EQ(concur_procpool_map(NULL, square_fn, &d, 1, 8, &d, 8, 0, 1), -EINVAL);
    CHECK_EQ(concur_procpool_map(pp, square_fn, NULL, 1, 8, &d, 8, 0, 1), -EINVAL);
    CHECK_EQ(concur_procpool_map(pp, square_fn, &d, 1, 0, &d, 8, 0, 1), -EINVAL);
    CHECK_EQ(concur_procpool_map(pp, square_fn, &d, 1, 8, &d, 8, 0, NAN), -EINVAL);
    CHECK_EQ(concur_procpool_shutdown(NULL, 0, 1), -EINVAL);
    CHECK_EQ(concur_procpool_shutdown(pp, 0, NAN), -EINVAL);
    CHECK_EQ(concur_procpool_workers(pp), 1);
    CHECK_EQ(concur_procpool_workers(NULL), -EINVAL);
    CHECK_EQ(concur_procpool_destroy(NULL), -EINVAL);
    CHECK(concur_proc_alloc(NULL, 1) == NULL);
    CHECK_EQ(concur_proc_write(NULL, "x", 1), -EINVAL);
    CHECK_EQ(concur_future_death(NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(concur_procpool_destroy(pp), 0);
    CHECK_EQ(strcmp(concur_strerror(CONCUR_EWORKERDIED), "worker process died"), 0);
}

int main(void) {
    test_begin(240);
    RUN(test_map_in_order);
    RUN(test_payload_sizes);
    RUN(test_segments_kept);
    RUN(test_crashes_fail_only_their_task);
    RUN(test_kill_during_map);
    RUN(test_timeout_kills_and_replaces);
    RUN(test_max_tasks_per_child);
    RUN(test_restart_limit);
    RUN(test_initializer);
    RUN(test_shutdown_bounded);
    RUN(test_futures_everywhere);
    RUN(test_await_from_coroutine);
    RUN(test_signals_left_alone);
    RUN(test_parent_killed_leaves_nothing);
    RUN(test_stdin_closed);
    RUN(test_bad_input);
    RUN(test_no_leftovers);
    return test_end();
}
#endif
