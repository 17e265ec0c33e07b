/* http_hello.c - an HTTP/1.1 "Hello, World!" server on one thread, one coroutine per
   connection, written as plain blocking code.

   Each connection is a coroutine that reads requests and answers them; keep-alive and
   pipelined requests are served, "Connection: close" is honoured, an idle connection
   is dropped after 30 seconds. This is the server that workload W7 measures with
   `wrk -t1 -c100 -d5s`.

   Build and run:
       cc -O2 -pthread examples/http_hello.c -o http_hello
       ./http_hello 8080            # serve on 127.0.0.1:8080 until killed
       ./http_hello --self-test     # a free port, 50 clients, checks every response */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONCUR_IMPLEMENTATION
#include "../concur.h"

static const char response[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "Hello, World!";
#define RESPONSE_LEN (sizeof response - 1)
#define MAX_PIPELINE 32

/* Offset just past the first "\r\n\r\n" in buf[from, len), or 0 when there is none. */
static size_t header_end(const char *buf, size_t from, size_t len) {
    for (size_t i = from; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n')
            return i + 4;
    return 0;
}

static int wants_close(const char *req, size_t len) {
    static const char h[] = "Connection: close";
    for (size_t i = 0; i + sizeof h - 1 <= len; i++)
        if (memcmp(req + i, h, sizeof h - 1) == 0) return 1;
    return 0;
}

static void *serve_connection(void *arg) {
    int fd = (int)(intptr_t)arg;
    char in[8192];
    static char out[MAX_PIPELINE * RESPONSE_LEN];
    size_t have = 0;
    int closing = 0;
    while (!closing) {
        ssize_t n = concur_recv(fd, in + have, sizeof in - have, 0, 30.0);
        if (n <= 0) break; /* peer closed, idle timeout, reset or cancel */
        have += (size_t)n;
        /* Answer every complete request that arrived, in one write. */
        size_t done = 0, end, answers = 0;
        while (answers < MAX_PIPELINE && (end = header_end(in, done, have)) != 0) {
            if (wants_close(in + done, end - done)) closing = 1;
            memcpy(out + answers * RESPONSE_LEN, response, RESPONSE_LEN);
            answers++;
            done = end;
            if (closing) break;
        }
        if (answers && concur_send(fd, out, answers * RESPONSE_LEN, 0, 30.0, NULL) < 0) break;
        memmove(in, in + done, have - done);
        have -= done;
        if (have == sizeof in) break; /* a header larger than the buffer: give up */
    }
    concur_close(fd);
    return NULL;
}

typedef struct server { int listen_fd; int max_clients; } server;

/* Accepts connections and starts a coroutine for each; max_clients 0 = forever. */
static void *acceptor(void *arg) {
    server *s = (server *)arg;
    for (int served = 0; s->max_clients == 0 || served < s->max_clients; served++) {
        int fd = concur_accept(s->listen_fd, NULL, NULL, CONCUR_FOREVER);
        if (fd < 0) {
            fprintf(stderr, "accept: %s\n", concur_strerror(fd));
            if (fd == -EMFILE || fd == -ENFILE) concur_sleep(0.1);
            continue;
        }
        concur_co *co = concur_go(NULL, serve_connection, (void *)(intptr_t)fd);
        if (co) concur_detach(co);
        else concur_close(fd);
    }
    concur_close(s->listen_fd);
    return NULL;
}

/* ---- --self-test: client coroutines on the same loop ---- */
static int self_test_port, self_test_failures;

static void *client(void *arg) {
    int id = (int)(intptr_t)arg;
    int fd = concur_tcp_dial("127.0.0.1", self_test_port, 5.0);
    if (fd < 0) { self_test_failures++; return NULL; }
    const char *req = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    const char *last = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    /* 9 keep-alive requests, the first three pipelined in one write, then a last one
       that asks the server to close. */
    char batch[512];
    size_t len = 0;
    for (int i = 0; i < 3; i++) {
        memcpy(batch + len, req, strlen(req));
        len += strlen(req);
    }
    int expected = 0;
    if (concur_send(fd, batch, len, 0, 5.0, NULL) < 0) self_test_failures++;
    expected += 3;
    for (int i = 0; i < 6; i++, expected++)
        if (concur_send(fd, req, strlen(req), 0, 5.0, NULL) < 0) self_test_failures++;
    if (concur_send(fd, last, strlen(last), 0, 5.0, NULL) < 0) self_test_failures++;
    expected++;
    /* Read until the server closes: exactly `expected` responses, byte for byte. */
    char buf[16 * RESPONSE_LEN];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf && (n = concur_read(fd, buf + got, sizeof buf - got, 5.0)) > 0)
        got += (size_t)n;
    if (got != (size_t)expected * RESPONSE_LEN) {
        fprintf(stderr, "client %d: %zu bytes, expected %zu\n", id, got,
                (size_t)expected * RESPONSE_LEN);
        self_test_failures++;
    }
    for (size_t off = 0; off + RESPONSE_LEN <= got; off += RESPONSE_LEN)
        if (memcmp(buf + off, response, RESPONSE_LEN) != 0) self_test_failures++;
    concur_close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    int self_test = argc > 1 && strcmp(argv[1], "--self-test") == 0;
    int port = self_test ? 0 : argc > 1 ? atoi(argv[1]) : 8080;
    int fd = concur_tcp_listen("127.0.0.1", port, 1024);
    if (fd < 0) {
        fprintf(stderr, "listen on port %d: %s\n", port, concur_strerror(fd));
        return 1;
    }
    concur_loop *loop = concur_loop_create(NULL);
    if (!loop) { perror("concur_loop_create"); return 1; }
    server s = {fd, self_test ? 50 : 0};
    concur_detach(concur_go(loop, acceptor, &s));
    if (self_test) {
        self_test_port = concur_tcp_local_port(fd);
        for (int i = 0; i < s.max_clients; i++)
            concur_detach(concur_go(loop, client, (void *)(intptr_t)i));
    } else {
        printf("serving http://127.0.0.1:%d/ (Ctrl-C stops)\n", concur_tcp_local_port(fd));
        fflush(stdout);
    }
    concur_loop_run(loop);
    concur_loop_destroy(loop);
    if (self_test) {
        printf("%d clients x 10 requests: %s\n", s.max_clients,
               self_test_failures ? "FAILED" : "all responses correct");
        return self_test_failures ? 1 : 0;
    }
    return 0;
}
