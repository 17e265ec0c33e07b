/* download.c - the threaded download from Python's threading example, in C.

   Starts a small HTTP/1.1 server on 127.0.0.1 (an ephemeral port; no internet is
   used), then downloads a list of files concurrently: each download is a task on a
   thread pool that does plain blocking socket I/O, exactly like the Python version's
   threads. Each file's size and checksum are checked against what the server sent;
   one URL does not exist, and its 404 comes back as that task's error through its
   future. The server itself hands each connection to a pool of its own.

   Build and run:
       cc -O2 -pthread examples/download.c -o download && ./download
   Exits 0 when every file arrived intact and the missing one failed as it should. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONCUR_IMPLEMENTATION
#include "../concur.h"

/* ---- the files: /file/<k> is k * 23 KiB + 17 bytes of a known pattern ---- */

static size_t file_size(int k) { return (size_t)k * 23 * 1024 + 17; }
static unsigned char file_byte(int k, size_t i) { return (unsigned char)(i * 31 + (size_t)k * 7); }

/* ---- small I/O helpers: every syscall's EINTR and short count handled ---- */

static int write_all(int fd, const void *buf, size_t len) {
    const char *p = (const char *)buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until the blank line that ends the HTTP head; returns its length or < 0. */
static ssize_t read_head(int fd, char *buf, size_t cap, size_t *got) {
    *got = 0;
    while (*got < cap - 1) {
        ssize_t n = recv(fd, buf + *got, cap - 1 - *got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 ? -errno : -ECONNRESET;
        *got += (size_t)n;
        buf[*got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) return end + 4 - buf;
    }
    return -EMSGSIZE;
}

/* ---- the server ---- */

typedef struct server {
    int listen_fd;
    int port;
    concur_pool *handlers;
    concur_thread *acceptor;
} server;

static void *serve_connection(void *arg) {
    int fd = (int)(intptr_t)arg;
    char head[2048];
    size_t got;
    int k;
    if (read_head(fd, head, sizeof head, &got) > 0 && sscanf(head, "GET /file/%d ", &k) == 1 &&
        k >= 1 && k <= 100) {
        size_t size = file_size(k);
        char hdr[128];
        int hl = snprintf(hdr, sizeof hdr,
                          "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", size);
        unsigned char chunk[4096];
        int rc = write_all(fd, hdr, (size_t)hl);
        for (size_t off = 0; rc == 0 && off < size; off += sizeof chunk) {
            size_t n = size - off < sizeof chunk ? size - off : sizeof chunk;
            for (size_t i = 0; i < n; i++) chunk[i] = file_byte(k, off + i);
            rc = write_all(fd, chunk, n);
        }
    } else {
        static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        write_all(fd, nf, sizeof nf - 1);
    }
    close(fd);
    return NULL;
}

static void *accept_loop(void *arg) {
    server *s = (server *)arg;
    for (;;) {
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return NULL; /* the listening socket was shut down: stop */
        }
        concur_future *f = concur_pool_submit(s->handlers, serve_connection, (void *)(intptr_t)fd);
        if (!f || concur_future_error(f) == CONCUR_ESHUTDOWN) close(fd);
        concur_future_release(f); /* fire and forget: the handler closes fd */
    }
}

static int server_start(server *s) {
    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->listen_fd < 0) return -errno;
    int one = 1;
    setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0; /* any free port */
    socklen_t len = sizeof addr;
    if (bind(s->listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s->listen_fd, 128) < 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&addr, &len) < 0) {
        int err = -errno;
        close(s->listen_fd);
        return err;
    }
    s->port = ntohs(addr.sin_port);
    s->handlers = concur_pool_create(&(concur_pool_desc){.threads = 4, .name = "http"});
    s->acceptor = s->handlers ? concur_thread_create(accept_loop, s) : NULL;
    if (!s->acceptor) {
        close(s->listen_fd);
        return -ENOMEM;
    }
    return 0;
}

static void server_stop(server *s) {
    shutdown(s->listen_fd, SHUT_RDWR); /* makes the blocked accept return */
    concur_thread_join(s->acceptor, NULL);
    close(s->listen_fd);
    concur_pool_destroy(s->handlers); /* finishes connections in flight */
}

/* ---- the client: one pool task per download ---- */

typedef struct download {
    int port;
    int k;              /* which file; 0 asks for one that does not exist */
    size_t bytes;       /* results */
    int intact;
} download;

static void *download_task(void *arg) {
    download *d = (download *)arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) { concur_task_fail(-errno); return NULL; }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((unsigned short)d->port);
    char req[128], head[2048];
    size_t got = 0;
    int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 ? -errno : 0;
    if (rc == 0) {
        int rl = snprintf(req, sizeof req, "GET /file/%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", d->k);
        rc = write_all(fd, req, (size_t)rl);
    }
    ssize_t head_len = rc == 0 ? read_head(fd, head, sizeof head, &got) : rc;
    if (head_len < 0) { close(fd); concur_task_fail((int)head_len); return NULL; }
    int status = 0;
    size_t length = 0;
    char *cl = strstr(head, "Content-Length:");
    if (sscanf(head, "HTTP/1.1 %d", &status) != 1 || !cl || sscanf(cl, "Content-Length: %zu", &length) != 1) {
        close(fd);
        concur_task_fail(-EPROTO);
        return NULL;
    }
    if (status == 404) { close(fd); concur_task_fail(-ENOENT); return NULL; }
    /* The body: whatever followed the head in the first reads, then the rest. */
    int intact = 1;
    size_t have = got - (size_t)head_len;
    for (size_t i = 0; i < have; i++) intact &= (unsigned char)head[head_len + (ssize_t)i] == file_byte(d->k, i);
    unsigned char buf[8192];
    while (have < length) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) intact &= buf[i] == file_byte(d->k, have + (size_t)i);
        have += (size_t)n;
    }
    close(fd);
    d->bytes = have;
    d->intact = intact && have == length;
    return d;
}

int main(void) {
    server srv;
    int rc = server_start(&srv);
    if (rc) { fprintf(stderr, "server: %s\n", concur_strerror(rc)); return 1; }
    printf("serving on 127.0.0.1:%d\n", srv.port);

    enum { FILES = 8 };
    download d[FILES + 1];
    concur_future *f[FILES + 1];
    concur_pool *pool = concur_pool_create(&(concur_pool_desc){.threads = 4, .name = "download"});
    if (!pool) return 1;
    double t0 = concur_now();
    for (int i = 0; i <= FILES; i++) {
        d[i].port = srv.port;
        d[i].k = i < FILES ? i + 1 : 0; /* the last one does not exist */
        d[i].bytes = 0;
        d[i].intact = 0;
        printf("Downloading http://127.0.0.1:%d/file/%d...\n", srv.port, d[i].k);
        f[i] = concur_pool_submit(pool, download_task, &d[i]);
    }
    int bad = 0;
    for (int i = 0; i <= FILES; i++) { /* like thread.join() in the original */
        int err = concur_future_result(f[i], 30.0, NULL);
        if (d[i].k == 0) {
            printf("file/%d: %s (expected)\n", d[i].k, concur_strerror(err));
            bad |= err != -ENOENT;
        } else if (err) {
            printf("file/%d: error: %s\n", d[i].k, concur_strerror(err));
            bad = 1;
        } else {
            printf("Finished downloading file/%d: %zu bytes, %s\n", d[i].k, d[i].bytes,
                   d[i].intact && d[i].bytes == file_size(d[i].k) ? "intact" : "CORRUPT");
            bad |= !(d[i].intact && d[i].bytes == file_size(d[i].k));
        }
        concur_future_release(f[i]);
    }
    printf("All downloads finished in %.3f s%s\n", concur_now() - t0, bad ? " - with FAILURES" : "!");
    concur_pool_destroy(pool);
    server_stop(&srv);
    return bad;
}
