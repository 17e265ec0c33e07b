/* concur-bench W4-W7: coroutines and the I/O loop against ucontext, Boost.Context,
   libuv, a hand-written epoll server and Python's asyncio.

   W6 and W7 fork the server into a child pinned to CPU 0; the load (our epoll client
   for W6, wrk for W7) runs pinned to CPU 1. Every server is single-threaded. */
#define _GNU_SOURCE
#include "../../concur.h"
#include "bench.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "tests/bench"
#endif

#ifdef HAVE_UV
int uv_echo_server(int listen_fd);
int uv_http_server(int listen_fd);
#endif

/* ---- W4 switch ---- */
static long w4_rounds;

static void *w4_pingpong(void *arg) {
    (void)arg;
    for (long i = 0; i < w4_rounds; i++) concur_yield();
    return NULL;
}

static double run_switch_concur(void *arg) {
    (void)arg;
    concur_loop *L = concur_loop_create(NULL);
    if (!L) return -1;
    concur_detach(concur_go(L, w4_pingpong, NULL));
    concur_detach(concur_go(L, w4_pingpong, NULL));
    double t0 = concur_now();
    concur_loop_run(L);
    double t = concur_now() - t0;
    concur_loop_destroy(L);
    return t / (2.0 * (double)w4_rounds); /* every yield is one switch */
}

static double run_switch_raw(void *arg) { (void)arg; return bench_raw_switch(w4_rounds); }

static ucontext_t uc_main, uc_a, uc_b;
static void uc_ping(void) { for (long i = 0; i < w4_rounds; i++) swapcontext(&uc_a, &uc_b); }
static void uc_pong(void) {
    for (long i = 0; i < w4_rounds; i++) swapcontext(&uc_b, &uc_a);
}

static double run_switch_ucontext(void *arg) {
    (void)arg;
    size_t size = 64 * 1024;
    char *sa = (char *)malloc(size), *sb = (char *)malloc(size);
    if (!sa || !sb) return -1;
    getcontext(&uc_a);
    uc_a.uc_stack.ss_sp = sa;
    uc_a.uc_stack.ss_size = size;
    uc_a.uc_link = &uc_main;
    makecontext(&uc_a, uc_ping, 0);
    getcontext(&uc_b);
    uc_b.uc_stack.ss_sp = sb;
    uc_b.uc_stack.ss_size = size;
    uc_b.uc_link = &uc_main;
    makecontext(&uc_b, uc_pong, 0);
    double t0 = concur_now();
    swapcontext(&uc_main, &uc_a);
    double t = concur_now() - t0;
    free(sa);
    free(sb);
    return t / (2.0 * (double)w4_rounds);
}

#ifdef HAVE_BOOST
static double run_switch_boost(void *arg) { (void)arg; return boost_switch(w4_rounds); }
#endif

void w4(void) {
    w4_rounds = opt_quick ? 100000 : 10000000;
    /* concur, its bare switch and Boost take turns: this VM has slow phases of
       seconds that raise all three by half, and runs one after another let a phase
       land on one of them only (concur 6.7 and 9.4 ns against Boost 5.6 ns in
       consecutive invocations). ucontext, 40 times slower, runs on its own. */
#ifdef HAVE_BOOST
    double (*const fns[3])(void *) = {run_switch_concur, run_switch_raw, run_switch_boost};
    double m[3];
    medians_interleaved(fns, NULL, 3, m);
#else
    double (*const fns[2])(void *) = {run_switch_concur, run_switch_raw};
    double m[2];
    medians_interleaved(fns, NULL, 2, m);
#endif
    double c = m[0] * 1e9;
    report("W4", "concur", 1, c, "ns", "per switch (yield); saves MXCSR/x87 CW too");
    double raw = m[1] * 1e9; /* < 0: the ucontext build */
    if (raw > 0) report("W4", "concur-bare", 1, raw, "ns", "the same switch without the scheduler");
    double u = median_of(run_switch_ucontext, NULL) * 1e9;
    char note[128];
    snprintf(note, sizeof note, "concur is %.1fx faster", u / c);
    report("W4", "ucontext", 1, u, "ns", note);
#ifdef HAVE_BOOST
    double b = m[2] * 1e9;
    snprintf(note, sizeof note, "concur/boost = %.2fx, bare switch %.2fx", c / b, raw / b);
    report("W4", "boost", 1, b, "ns", note);
#else
    printf("W4     boost            skipped (libboost-context-dev not found at build time)\n");
#endif
}

/* ---- W5 spawn ---- */
static long w5_total, w5_window;

static void *w5_tiny(void *arg) {
    (void)arg;
    concur_yield();
    return NULL;
}

static void *w5_spawner(void *arg) {
    (void)arg;
    for (long i = 0; i < w5_total; i++) {
        concur_co *co = concur_go(NULL, w5_tiny, NULL);
        if (!co) return (void *)1;
        concur_detach(co);
        /* The window runs up to its yields, then to its end, before the next window
           starts: never more than w5_window alive, as in the ucontext and Boost
           versions. */
        if (i % w5_window == w5_window - 1) {
            concur_yield();
            concur_yield();
        }
    }
    return NULL;
}

/* One long-lived loop for every run, as a server has: its stack cache holds the
   window, so the timed runs reuse stacks (the first run pays for creating them). */
static concur_loop *w5_loop;

static double run_spawn_concur(void *arg) {
    (void)arg;
    concur_co *co = concur_go(w5_loop, w5_spawner, NULL);
    if (!co) return -1;
    double t0 = concur_now();
    concur_loop_run(w5_loop);
    double t = concur_now() - t0;
    void *r = NULL;
    concur_join(co, 0, &r);
    return r ? -1 : t / (double)w5_total;
}

static ucontext_t uc_spawn_main;
static ucontext_t *uc_cur;
static void uc_one_yield(void) { swapcontext(uc_cur, &uc_spawn_main); }

static double run_spawn_ucontext(void *arg) {
    (void)arg;
    size_t size = 64 * 1024;
    ucontext_t *ctx = (ucontext_t *)malloc((size_t)w5_window * sizeof *ctx);
    char **stacks = (char **)malloc((size_t)w5_window * sizeof *stacks);
    if (!ctx || !stacks) return -1;
    double t0 = concur_now();
    for (long done = 0; done < w5_total; done += w5_window) {
        long k = w5_total - done < w5_window ? w5_total - done : w5_window;
        for (long i = 0; i < k; i++) {
            stacks[i] = (char *)malloc(size);
            getcontext(&ctx[i]);
            ctx[i].uc_stack.ss_sp = stacks[i];
            ctx[i].uc_stack.ss_size = size;
            ctx[i].uc_link = &uc_spawn_main;
            makecontext(&ctx[i], uc_one_yield, 0);
            uc_cur = &ctx[i];
            swapcontext(&uc_spawn_main, &ctx[i]); /* runs to its yield */
        }
        for (long i = 0; i < k; i++) {
            uc_cur = &ctx[i];
            swapcontext(&uc_spawn_main, &ctx[i]); /* finishes, back through uc_link */
            free(stacks[i]);
        }
    }
    double t = concur_now() - t0;
    free(ctx);
    free(stacks);
    return t / (double)w5_total;
}

#ifdef HAVE_BOOST
static double run_spawn_boost(void *arg) { return boost_spawn(w5_total, w5_window, arg != NULL); }
#endif

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static concur_event rss_gate;
static long rss_before, rss_during;
static void *rss_parked(void *arg) {
    (void)arg;
    concur_event_wait(&rss_gate, CONCUR_FOREVER);
    return NULL;
}
static void *rss_measure(void *arg) {
    (void)arg;
    concur_yield(); /* every parked coroutine has run up to its wait */
    rss_during = rss_kib();
    concur_event_set(&rss_gate);
    return NULL;
}

void w5(void) {
    w5_total = opt_quick ? 20000 : 1000000;
    w5_window = opt_quick ? 1000 : 10000;
    concur_loop_desc d;
    memset(&d, 0, sizeof d);
    d.stack_cache = (int)w5_window + 1; /* the window and the spawner */
    w5_loop = concur_loop_create(&d);
    if (!w5_loop) return;
    double c = median_of(run_spawn_concur, NULL) * 1e9;
    concur_loop_destroy(w5_loop);
    report("W5", "concur", 1, c, "ns", "per coroutine; mmap'd stacks with guard pages, reused");
    double u = median_of(run_spawn_ucontext, NULL) * 1e9;
    char note[128];
    snprintf(note, sizeof note, "malloc'd 64 KiB stacks, no guard; concur %.1fx faster", u / c);
    report("W5", "ucontext", 1, u, "ns", note);
#ifdef HAVE_BOOST
    double b = median_of(run_spawn_boost, NULL) * 1e9;
    snprintf(note, sizeof note, "malloc'd 64 KiB stacks, no guard; concur/boost = %.2fx", c / b);
    report("W5", "boost", 1, b, "ns", note);
    double br = median_of(run_spawn_boost, (void *)1) * 1e9;
    snprintf(note, sizeof note, "raw switches, stacks preallocated, no guard; concur/this = %.2fx", c / br);
    report("W5", "boost-prealloc", 1, br, "ns", note);
#endif
    /* Resident memory per live coroutine: w5_window coroutines parked on an event. */
    concur_loop *L = concur_loop_create(NULL);
    if (!L) return;
    concur_event_init(&rss_gate);
    rss_before = rss_kib();
    for (long i = 0; i < w5_window; i++) concur_detach(concur_go(L, rss_parked, NULL));
    concur_detach(concur_go(L, rss_measure, NULL));
    concur_loop_run(L);
    concur_loop_destroy(L);
    snprintf(note, sizeof note, "KiB resident per live coroutine, %ld alive (256 KiB reserved each)",
             w5_window);
    report("W5rss", "concur", 1, (double)(rss_during - rss_before) / (double)w5_window, "KiB", note);
}

/* ---- servers for W6 / W7 (each runs in a forked child until SIGTERM) ---- */
static const char http_response[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
#define HTTP_RESPONSE_LEN (sizeof http_response - 1)

/* Complete requests in buf[0, len): the count, and *used = bytes they span. */
static int count_requests(const char *buf, size_t len, size_t *used) {
    int n = 0;
    *used = 0;
    for (size_t i = 0; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            n++;
            *used = i + 4;
            i += 3;
        }
    return n;
}

static void *concur_echo_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    for (;;) {
        ssize_t n = concur_recv(fd, buf, sizeof buf, 0, CONCUR_FOREVER);
        if (n <= 0 || concur_send(fd, buf, (size_t)n, 0, CONCUR_FOREVER, NULL) < 0) break;
    }
    concur_close(fd);
    return NULL;
}

static void *concur_http_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char in[8192], out[32 * HTTP_RESPONSE_LEN];
    size_t have = 0;
    for (;;) {
        ssize_t n = concur_recv(fd, in + have, sizeof in - have, 0, CONCUR_FOREVER);
        if (n <= 0) break;
        have += (size_t)n;
        size_t used;
        int k = count_requests(in, have, &used);
        if (k > 32) k = 32;
        for (int i = 0; i < k; i++) memcpy(out + (size_t)i * HTTP_RESPONSE_LEN, http_response, HTTP_RESPONSE_LEN);
        if (k && concur_send(fd, out, (size_t)k * HTTP_RESPONSE_LEN, 0, CONCUR_FOREVER, NULL) < 0) break;
        memmove(in, in + used, have - used);
        have -= used;
        if (have == sizeof in) break;
    }
    concur_close(fd);
    return NULL;
}

typedef struct acceptor_arg { int fd; void *(*conn)(void *); } acceptor_arg;

static void *concur_acceptor(void *arg) {
    acceptor_arg *a = (acceptor_arg *)arg;
    for (;;) {
        int c = concur_accept(a->fd, NULL, NULL, CONCUR_FOREVER);
        if (c < 0) continue;
        concur_detach(concur_go(NULL, a->conn, (void *)(intptr_t)c));
    }
    return NULL;
}

static int concur_server(int lfd, int http) {
    concur_loop *L = concur_loop_create(NULL);
    if (!L) return 1;
    acceptor_arg a = {lfd, http ? concur_http_conn : concur_echo_conn};
    concur_detach(concur_go(L, concur_acceptor, &a));
    concur_loop_run(L);
    return 0;
}

/* The hand-written peer: level-triggered epoll, one buffer per connection for HTTP. */
static int epoll_server(int lfd, int http) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {0}, evs[256];
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    static char pending[65536][64]; /* partial HTTP requests, by fd (wrk's are whole) */
    static unsigned char pend_len[65536];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (c >= 65536) { close(c); continue; }
                    pend_len[c] = 0;
                    ev.events = EPOLLIN;
                    ev.data.fd = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            char buf[16384];
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                close(fd);
                continue;
            }
            if (!http) {
                if (send(fd, buf, (size_t)r, MSG_NOSIGNAL) < 0) close(fd);
                continue;
            }
            char out[32 * HTTP_RESPONSE_LEN], joined[64 + sizeof buf];
            char *data = buf;
            size_t used;
            if (pend_len[fd]) { /* rare: a request split across reads */
                memcpy(joined, pending[fd], pend_len[fd]);
                memcpy(joined + pend_len[fd], buf, (size_t)r);
                r += pend_len[fd];
                data = joined;
            }
            int k = count_requests(data, (size_t)r, &used);
            size_t rest = (size_t)r - used;
            pend_len[fd] = (unsigned char)(rest < 64 ? rest : 0);
            if (rest && rest < 64) memcpy(pending[fd], data + used, rest);
            if (k > 32) k = 32;
            for (int j = 0; j < k; j++) memcpy(out + (size_t)j * HTTP_RESPONSE_LEN, http_response, HTTP_RESPONSE_LEN);
            if (k && send(fd, out, (size_t)k * HTTP_RESPONSE_LEN, MSG_NOSIGNAL) < 0) close(fd);
        }
    }
    return 0;
}

/* ---- running a server and a load against it ---- */
static void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (int)sysconf(_SC_NPROCESSORS_ONLN), &set);
    sched_setaffinity(0, sizeof set, &set);
}

static int listen_any(int *port) {
    int fd = concur_tcp_listen("127.0.0.1", 0, 1024);
    if (fd < 0) return -1;
    *port = concur_tcp_local_port(fd);
    return fd;
}

/* nginx as W7's reference server: one worker (inherits the CPU 0 pinning), no access
   log, the same 13-byte body from a `return`. Runs in the foreground in a private
   prefix under /tmp, so SIGTERM to this pid stops it. */
static const char *nginx_path(void) {
    static const char *paths[] = {"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], X_OK) == 0) return paths[i];
    return NULL;
}

static int nginx_exec(int port, const char *dir) {
    const char *bin = nginx_path();
    if (!bin) return 127;
    char conf[256];
    snprintf(conf, sizeof conf, "%s/nginx.conf", dir);
    FILE *f = fopen(conf, "w");
    if (!f) return 127;
    fprintf(f,
            "worker_processes 1;\ndaemon off;\npid %s/nginx.pid;\nerror_log stderr crit;\n"
            "events { worker_connections 4096; }\n"
            "http {\n  access_log off;\n  default_type text/plain;\n"
            "  client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;\n"
            "  uwsgi_temp_path %s; scgi_temp_path %s;\n"
            "  server { listen 127.0.0.1:%d; location / { return 200 \"Hello, World!\"; } }\n}\n",
            dir, dir, dir, dir, dir, dir, port);
    fclose(f);
    execl(bin, "nginx", "-p", dir, "-c", conf, "-e", "stderr", (char *)NULL);
    return 127;
}

typedef struct server_run {
    const char *impl;
    int http;
    pid_t pid;
    int port;
    char dir[64]; /* nginx's prefix, removed when it stops */
} server_run;

/* Starts the server `impl` in a child on CPU 0; 0 when it accepts connections. */
static int server_start(server_run *s) {
    int lfd = listen_any(&s->port);
    if (lfd < 0) return -1;
    int binds_itself = strcmp(s->impl, "asyncio") == 0 || strcmp(s->impl, "nginx") == 0;
    if (binds_itself) close(lfd);
    if (strcmp(s->impl, "nginx") == 0) {
        snprintf(s->dir, sizeof s->dir, "/tmp/concur-bench-nginx-XXXXXX");
        if (!mkdtemp(s->dir)) return -1;
    }
    s->pid = fork();
    if (s->pid < 0) return -1;
    if (s->pid == 0) {
        pin_to(0);
        if (strcmp(s->impl, "concur") == 0) _exit(concur_server(lfd, s->http));
        if (strcmp(s->impl, "epoll") == 0) _exit(epoll_server(lfd, s->http));
#ifdef HAVE_UV
        if (strcmp(s->impl, "libuv") == 0) _exit(s->http ? uv_http_server(lfd) : uv_echo_server(lfd));
#endif
        if (strcmp(s->impl, "nginx") == 0) _exit(nginx_exec(s->port, s->dir));
        if (strcmp(s->impl, "asyncio") == 0) {
            char port[16];
            snprintf(port, sizeof port, "%d", s->port);
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0) dup2(devnull, 1);
            execlp("python3", "python3", BENCH_SOURCE_DIR "/py_asyncio.py", s->http ? "http" : "echo",
                   port, (char *)NULL);
        }
        _exit(127);
    }
    if (!binds_itself) close(lfd);
    /* Ready when a connection succeeds (python and nginx need a moment to start). */
    for (int i = 0; i < 200; i++) {
        int fd = concur_tcp_dial("127.0.0.1", s->port, 1);
        if (fd >= 0) { close(fd); return 0; }
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) return -1;
        concur_sleep(0.025);
    }
    return -1;
}

static void server_stop(server_run *s) {
    int status;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {}
    }
    if (s->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s->dir);
        s->dir[0] = 0;
    }
}

/* W6's client: 100 connections, each sends 64 bytes and waits for the 64-byte echo,
   again and again; level-triggered epoll on CPU 1. Round trips per second. */
static double echo_load(int port, double seconds) {
    enum { CONNS = 100, MSG = 64 };
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int fds[CONNS], got[CONNS];
    char msg[MSG];
    memset(msg, 'x', sizeof msg);
    for (int i = 0; i < CONNS; i++) {
        fds[i] = concur_tcp_dial("127.0.0.1", port, 5);
        if (fds[i] < 0) return -1;
        int one = 1;
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {0};
        ev.events = EPOLLIN;
        ev.data.u32 = (uint32_t)i;
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
        got[i] = 0;
    }
    long trips = 0;
    for (int i = 0; i < CONNS; i++)
        if (send(fds[i], msg, MSG, MSG_NOSIGNAL) != MSG) return -1;
    double t0 = concur_now(), end = t0 + seconds;
    struct epoll_event evs[CONNS];
    while (concur_now() < end) {
        int n = epoll_wait(ep, evs, CONNS, 100);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            char buf[MSG * 4];
            ssize_t r = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
            if (r <= 0) continue;
            got[i] += (int)r;
            while (got[i] >= MSG) {
                got[i] -= MSG;
                trips++;
                if (send(fds[i], msg, MSG, MSG_NOSIGNAL) != MSG) return -1;
            }
        }
    }
    double t = concur_now() - t0;
    for (int i = 0; i < CONNS; i++) close(fds[i]);
    close(ep);
    return (double)trips / t;
}

typedef struct load_arg { const char *impl; int http; double seconds; } load_arg;

/* Runs the load in a child pinned to CPU 1 and reads its figure from a pipe. */
static double run_load(void *arg) {
    load_arg *a = (load_arg *)arg;
    server_run s;
    memset(&s, 0, sizeof s);
    s.impl = a->impl;
    s.http = a->http;
    if (server_start(&s) != 0) {
        server_stop(&s);
        return -1;
    }
    int p[2];
    if (pipe(p) != 0) { server_stop(&s); return -1; }
    pid_t c = fork();
    if (c == 0) {
        close(p[0]);
        pin_to(1);
        double v = -1;
        if (!a->http) {
            v = echo_load(s.port, a->seconds);
        } else {
            char cmd[256];
            snprintf(cmd, sizeof cmd, "wrk -t1 -c100 -d%ds http://127.0.0.1:%d/ 2>/dev/null",
                     a->seconds < 1 ? 1 : (int)a->seconds, s.port);
            FILE *w = popen(cmd, "r");
            char line[256];
            while (w && fgets(line, sizeof line, w))
                if (sscanf(line, "Requests/sec: %lf", &v) == 1) break;
            if (w) pclose(w);
        }
        ssize_t wr = write(p[1], &v, sizeof v);
        (void)wr;
        _exit(0);
    }
    close(p[1]);
    double v = -1;
    if (c > 0 && read(p[0], &v, sizeof v) != sizeof v) v = -1;
    close(p[0]);
    int status;
    if (c > 0) waitpid(c, &status, 0);
    server_stop(&s);
    return v;
}

static int have_python_asyncio(void) {
    return system("python3 -c 'import asyncio' >/dev/null 2>&1") == 0;
}

static int cmp_rate(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The servers take turns: round r runs each once, starting one further along each
   round. Run back to back instead, a slow phase of this VM (they last seconds to
   minutes) lands on one server's runs and shows as a ratio. */
static void load_workload(const char *id, int http) {
    const char *all[] = {"concur", "epoll", "libuv", "nginx", "asyncio"};
    enum { IMPLS = sizeof all / sizeof all[0], RUNS = 64 };
    const char *impls[IMPLS];
    double rates[IMPLS][RUNS];
    int failed[IMPLS] = {0};
    size_t n = 0;
    double seconds = opt_quick ? 0.3 : 5.0;
    int runs = opt_runs < RUNS ? opt_runs : RUNS;
    if (http && system("command -v wrk >/dev/null 2>&1") != 0) {
        printf("%-6s (all)            skipped (wrk not installed: apt-get install wrk)\n", id);
        return;
    }
    for (size_t i = 0; i < IMPLS; i++) {
#ifndef HAVE_UV
        if (strcmp(all[i], "libuv") == 0) {
            printf("%-6s libuv            skipped (libuv1-dev not found at build time)\n", id);
            continue;
        }
#endif
        if (strcmp(all[i], "nginx") == 0 && (!http || !nginx_path())) {
            if (http) printf("%-6s nginx            skipped (nginx not installed: apt-get install nginx)\n", id);
            continue;
        }
        if (strcmp(all[i], "asyncio") == 0 && !have_python_asyncio()) {
            printf("%-6s asyncio          skipped (python3 not runnable)\n", id);
            continue;
        }
        impls[n++] = all[i];
    }
    for (int r = 0; r < runs; r++) {
        for (size_t k = 0; k < n; k++) {
            size_t i = (k + (size_t)r) % n;
            if (failed[i]) continue;
            load_arg a = {impls[i], http, seconds};
            rates[i][r] = run_load(&a);
            if (rates[i][r] <= 0) failed[i] = 1;
        }
    }
    double concur_rate = 0;
    for (size_t i = 0; i < n; i++) {
        if (failed[i]) {
            printf("%-6s %-16s failed to run\n", id, impls[i]);
            continue;
        }
        qsort(rates[i], (size_t)runs, sizeof rates[i][0], cmp_rate);
        double rate = runs % 2 ? rates[i][runs / 2] : (rates[i][runs / 2 - 1] + rates[i][runs / 2]) / 2;
        char note[128] = "";
        if (i == 0) {
            concur_rate = rate;
            snprintf(note, sizeof note, "server on CPU 0, %s on CPU 1; servers take turns", http ? "wrk" : "client");
        } else if (concur_rate > 0) {
            snprintf(note, sizeof note, "concur/%s = %.2fx", impls[i], concur_rate / rate);
        }
        report(id, impls[i], 1, rate, http ? "req/s" : "rt/s", note);
    }
}

void w6(void) { load_workload("W6", 0); }
void w7(void) { load_workload("W7", 1); }
