/* echo_server.c - a TCP echo server on one thread: one coroutine per connection,
   each a plain read-then-write loop.

   Build and run:
       cc -O2 -pthread examples/echo_server.c -o echo_server
       ./echo_server 7000           # serve on 127.0.0.1:7000 until killed
       ./echo_server --self-test    # a free port, 200 client coroutines on the same
                                    # loop, every byte checked, then exit */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONCUR_IMPLEMENTATION
#include "../concur.h"

static void *echo(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    for (;;) {
        ssize_t n = concur_recv(fd, buf, sizeof buf, 0, 60.0);
        if (n <= 0) break; /* closed, reset, idle for a minute, or cancelled */
        if (concur_send(fd, buf, (size_t)n, 0, 60.0, NULL) < 0) break;
    }
    concur_close(fd);
    return NULL;
}

typedef struct server { int listen_fd; int max_clients; } server;

static void *acceptor(void *arg) {
    server *s = (server *)arg;
    for (int n = 0; s->max_clients == 0 || n < s->max_clients; n++) {
        int fd = concur_accept(s->listen_fd, NULL, NULL, CONCUR_FOREVER);
        if (fd < 0) {
            fprintf(stderr, "accept: %s\n", concur_strerror(fd));
            concur_sleep(0.1); /* out of fds, most likely: let connections finish */
            continue;
        }
        concur_co *co = concur_go(NULL, echo, (void *)(intptr_t)fd);
        if (co) concur_detach(co);
        else concur_close(fd);
    }
    concur_close(s->listen_fd);
    return NULL;
}

/* ---- --self-test ---- */
static int port, failures;
static long long echoed;

static void *client(void *arg) {
    unsigned seed = (unsigned)(intptr_t)arg * 2654435761u + 1;
    int fd = concur_tcp_dial("127.0.0.1", port, 5.0);
    if (fd < 0) { failures++; return NULL; }
    char out[4096], in[4096];
    for (int round = 0; round < 50; round++) {
        size_t len = 1 + (seed = seed * 1103515245u + 12345u) % sizeof out;
        for (size_t i = 0; i < len; i++) out[i] = (char)(seed >> 16) + (char)i;
        if (concur_write(fd, out, len, 5.0, NULL) < 0) { failures++; break; }
        size_t got = 0;
        while (got < len) {
            ssize_t n = concur_read(fd, in + got, len - got, 5.0);
            if (n <= 0) break;
            got += (size_t)n;
        }
        if (got != len || memcmp(in, out, len) != 0) { failures++; break; }
        echoed += (long long)len;
    }
    concur_close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    int self_test = argc > 1 && strcmp(argv[1], "--self-test") == 0;
    int fd = concur_tcp_listen("127.0.0.1", self_test ? 0 : argc > 1 ? atoi(argv[1]) : 7000, 1024);
    if (fd < 0) {
        fprintf(stderr, "listen: %s\n", concur_strerror(fd));
        return 1;
    }
    concur_loop *loop = concur_loop_create(NULL);
    if (!loop) { perror("concur_loop_create"); return 1; }
    server s = {fd, self_test ? 200 : 0};
    concur_detach(concur_go(loop, acceptor, &s));
    port = concur_tcp_local_port(fd);
    if (self_test) {
        for (int i = 0; i < s.max_clients; i++)
            concur_detach(concur_go(loop, client, (void *)(intptr_t)i));
    } else {
        printf("echoing on 127.0.0.1:%d (Ctrl-C stops)\n", port);
        fflush(stdout);
    }
    concur_loop_run(loop);
    concur_loop_destroy(loop);
    if (self_test) {
        printf("%d clients, %lld bytes echoed: %s\n", s.max_clients, echoed,
               failures ? "FAILED" : "every byte correct");
        return failures ? 1 : 0;
    }
    return 0;
}
