/* futures.c - the concurrent.futures example in C: one future type for every engine.

   The Python original submits downloads to a ThreadPoolExecutor and factorials of 35,
   36 and 37 to a ProcessPoolExecutor, and takes each group's results with
   as_completed. Here all of them go into ONE as-completed loop, because a future is
   the same handle whichever engine completes it:
     - the downloads run on the thread pool with plain blocking sockets, against a
       small HTTP server that this program runs on a coroutine loop in a thread of its
       own (127.0.0.1, an ephemeral port; no internet needed). One URL points at a
       port where nothing listens, so its task fails with ECONNREFUSED;
     - the factorials run in worker processes of the process pool, as exact big
       numbers (decimal strings); one request for (-1)! fails with EDOM.
   Every result is checked: the downloaded sizes against what the server sent, the
   factorials against their known values.

   Build and run:
       cc -O2 -pthread examples/futures.c -o futures && ./futures
   Exits 0 when every result and every error is the expected one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONCUR_IMPLEMENTATION
#include "../concur.h"

/* ---- the server: one coroutine per connection, on a loop in its own thread ---- */

typedef struct server { concur_loop *loop; concur_co *acceptor; int listen_fd, port; } server;

/* Answers "GET /bytes/N" with N bytes of body. */
static void *serve_connection(void *arg) {
    int fd = (int)(intptr_t)arg;
    char req[512] = "";
    size_t got = 0;
    while (got < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
        ssize_t n = concur_recv(fd, req + got, sizeof req - 1 - got, 0, 5.0);
        if (n <= 0) break;
        got += (size_t)n;
        req[got] = 0;
    }
    req[got] = 0;
    long size = -1;
    if (sscanf(req, "GET /bytes/%ld", &size) != 1 || size < 0 || size > (1 << 24)) size = -1;
    char head[128];
    int hl = size < 0 ? snprintf(head, sizeof head, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                      : snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n\r\n", size);
    concur_send(fd, head, (size_t)hl, 0, 5.0, NULL);
    static const char chunk[4096] = {0};
    for (long left = size; left > 0; left -= (long)sizeof chunk)
        if (concur_send(fd, chunk, left < (long)sizeof chunk ? (size_t)left : sizeof chunk, 0, 5.0, NULL) < 0) break;
    concur_close(fd);
    return NULL;
}

static void *accept_loop(void *arg) {
    server *s = (server *)arg;
    for (;;) { /* until cancelled: accept then returns -ECANCELED */
        int fd = concur_accept(s->listen_fd, NULL, NULL, CONCUR_FOREVER);
        if (fd < 0) break;
        concur_detach(concur_go(NULL, serve_connection, (void *)(intptr_t)fd));
    }
    concur_close(s->listen_fd);
    return NULL;
}

static void *server_thread(void *arg) {
    server *s = (server *)arg;
    concur_loop_run(s->loop);
    return NULL;
}

/* ---- I/O-bound work for the thread pool: download a URL, return its body length ---- */

typedef struct download { char url[96]; int port; long expect; } download;

static void *download_task(void *arg) {
    download *d = (download *)arg;
    printf("Downloading %s...\n", d->url);
    char path[64];
    if (sscanf(d->url, "http://127.0.0.1:%*d%63s", path) != 1) { concur_task_fail(-EINVAL); return NULL; }
    int fd = concur_tcp_dial("127.0.0.1", d->port, 5.0); /* blocks this worker thread, as requests.get would */
    if (fd < 0) { concur_task_fail(fd); return NULL; }
    char req[160];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    long total = -1, body = 0;
    char buf[8192];
    size_t head = 0;
    if (concur_send(fd, req, (size_t)rl, 0, 5.0, NULL) == rl) {
        ssize_t n;
        while ((n = concur_recv(fd, buf + head, sizeof buf - 1 - head, 0, 5.0)) > 0) {
            head += (size_t)n;
            buf[head] = 0;
            char *end = strstr(buf, "\r\n\r\n");
            if (!end && head < sizeof buf - 1) continue;
            if (!end || sscanf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %ld", &total) != 1) break;
            body = (long)(head - (size_t)(end + 4 - buf));
            while (body < total && (n = concur_recv(fd, buf, sizeof buf, 0, 5.0)) > 0) body += n;
            break;
        }
    }
    concur_close(fd);
    if (total < 0 || body != total) { concur_task_fail(-EPROTO); return NULL; }
    return (void *)(intptr_t)body;
}

/* ---- CPU-bound work for the process pool: n! exactly, as a decimal string ---- */

static int factorial_task(const void *in, size_t len, concur_proc_out *out) {
    int n;
    if (len != sizeof n) return -EINVAL;
    memcpy(&n, in, sizeof n);
    if (n < 0) return -EDOM;
    if (n > 3000) return -ERANGE;
    unsigned limb[1200] = {1}; /* base 1e9, little-endian: 3000! has 9131 digits */
    int used = 1;
    for (int k = 2; k <= n; k++) {
        unsigned long long carry = 0;
        for (int i = 0; i < used; i++) {
            unsigned long long v = (unsigned long long)limb[i] * (unsigned)k + carry;
            limb[i] = (unsigned)(v % 1000000000u);
            carry = v / 1000000000u;
        }
        while (carry) {
            limb[used++] = (unsigned)(carry % 1000000000u);
            carry /= 1000000000u;
        }
    }
    char digits[16];
    int dl = snprintf(digits, sizeof digits, "%u", limb[used - 1]);
    if (concur_proc_write(out, digits, (size_t)dl) < 0) return -ENOMEM;
    for (int i = used - 2; i >= 0; i--) {
        dl = snprintf(digits, sizeof digits, "%09u", limb[i]);
        if (concur_proc_write(out, digits, (size_t)dl) < 0) return -ENOMEM;
    }
    return 0;
}

static const char *const known[] = {"10333147966386144929666651337523200000000",
                                    "371993326789901217467999448150835200000000",
                                    "13763753091226345046315979581580902400000000"};

int main(void) {
    /* The process pool first, while this program has no other thread: its workers are
       forked from the program as it is now. */
    concur_procpool *procs = concur_procpool_create(NULL);
    concur_pool *threads = concur_pool_create(&(concur_pool_desc){.threads = 5});
    server srv = {concur_loop_create(NULL), NULL, concur_tcp_listen("127.0.0.1", 0, 64), 0};
    if (!procs || !threads || !srv.loop || srv.listen_fd < 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    srv.port = concur_tcp_local_port(srv.listen_fd);
    srv.acceptor = concur_go(srv.loop, accept_loop, &srv);
    concur_thread *srv_thread = concur_thread_create(server_thread, &srv);
    /* A port where nothing listens: a listener opened and closed at once. */
    int closed_fd = concur_tcp_listen("127.0.0.1", 0, 1), closed_port = concur_tcp_local_port(closed_fd);
    concur_close(closed_fd);

    enum { DOWNLOADS = 4, FACTORIALS = 4, N = DOWNLOADS + FACTORIALS };
    static const long sizes[DOWNLOADS] = {1000, 250000, 64, 0};
    download dl[DOWNLOADS];
    static const int numbers[FACTORIALS] = {35, 36, 37, -1};
    concur_future *fs[N];
    for (int i = 0; i < DOWNLOADS; i++) {
        int port = i == DOWNLOADS - 1 ? closed_port : srv.port;
        snprintf(dl[i].url, sizeof dl[i].url, "http://127.0.0.1:%d/bytes/%ld", port, sizes[i]);
        dl[i].port = port;
        dl[i].expect = sizes[i];
        fs[i] = concur_pool_submit(threads, download_task, &dl[i]);
    }
    for (int i = 0; i < FACTORIALS; i++)
        fs[DOWNLOADS + i] = concur_procpool_submit(procs, factorial_task, &numbers[i], sizeof numbers[i]);

    /* One loop over both kinds, in the order they finish. */
    concur_as_completed *it = concur_as_completed_create(fs, N);
    int bad = !it, i;
    while (it && (i = concur_as_completed_next(it, 30)) >= 0) {
        int err = concur_future_error(fs[i]);
        if (i < DOWNLOADS) {
            if (err == 0) {
                long length = (long)(intptr_t)concur_future_value(fs[i]);
                printf("Downloaded %s, length: %ld\n", dl[i].url, length);
                bad += length != dl[i].expect;
            } else {
                printf("Error downloading %s: %s\n", dl[i].url, concur_strerror(err));
                bad += !(i == DOWNLOADS - 1 && err == -ECONNREFUSED);
            }
        } else {
            int n = numbers[i - DOWNLOADS];
            if (err == 0) {
                size_t len = 0;
                const char *digits = (const char *)concur_future_bytes(fs[i], &len);
                printf("Factorial of %d is %.*s\n", n, (int)len, digits);
                bad += n < 35 || n > 37 || len != strlen(known[n - 35]) || memcmp(digits, known[n - 35], len) != 0;
            } else {
                printf("Error calculating factorial of %d: %s\n", n, concur_strerror(err));
                bad += !(n < 0 && err == -EDOM);
            }
        }
    }
    concur_as_completed_destroy(it);
    for (int k = 0; k < N; k++) concur_future_release(fs[k]);

    concur_cancel(srv.acceptor); /* thread-safe: the loop thread then runs out of work */
    concur_thread_join(srv_thread, NULL);
    concur_loop_destroy(srv.loop);
    concur_pool_destroy(threads);
    concur_procpool_destroy(procs);
    printf("%s\n", bad ? "UNEXPECTED RESULTS" : "every result checked out");
    return bad ? 1 : 0;
}
