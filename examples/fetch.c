/* fetch.c - the asyncio example in C: fetch several URLs concurrently, each with its
   own timeout, on one thread.

   Python's version awaits aiohttp requests under asyncio.gather. Here each fetch is a
   coroutine that uses plain blocking-style calls (dial, send, read); while one waits
   for the network the loop runs the others. concur_join plays gather's part.

   No internet is needed: the example starts, on the same loop, a web server that
   serves /page/<k> (k * 10,000 bytes, after a k * 50 ms "think time"), and a second
   server that accepts connections and never answers. The URL list has three good
   pages, one on a port where nobody listens (an error) and one on the silent server
   (a timeout). Ends in about a second; exits 0 when every outcome is the expected one.

   Build and run:
       cc -O2 -pthread examples/fetch.c -o fetch && ./fetch */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONCUR_IMPLEMENTATION
#include "../concur.h"

/* ---- the local web server ---- */
static void *serve_page(void *arg) {
    int fd = (int)(intptr_t)arg;
    char req[1024];
    ssize_t n = concur_recv(fd, req, sizeof req - 1, 0, 5.0);
    int k = 0;
    if (n > 0) {
        req[n] = 0;
        sscanf(req, "GET /page/%d", &k);
    }
    if (k > 0 && k < 100) {
        concur_sleep(k * 0.05); /* the page takes a while to "render" */
        size_t len = (size_t)k * 10000;
        char *body = (char *)malloc(len);
        char head[128];
        if (body) {
            memset(body, 'a' + k % 26, len);
            int hl = snprintf(head, sizeof head,
                              "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", len);
            if (concur_send(fd, head, (size_t)hl, 0, 5.0, NULL) >= 0)
                concur_send(fd, body, len, 0, 5.0, NULL);
            free(body);
        }
    } else {
        static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        concur_send(fd, nf, sizeof nf - 1, 0, 5.0, NULL);
    }
    concur_close(fd);
    return NULL;
}

typedef struct listener { int fd; int silent; int held[16]; int nheld; } listener;

static void *accept_loop(void *arg) {
    listener *l = (listener *)arg;
    for (;;) {
        int c = concur_accept(l->fd, NULL, NULL, CONCUR_FOREVER);
        if (c == -ECANCELED) break; /* main is done with us */
        if (c < 0) continue;
        if (l->silent) { /* never answer: hold the connection open until the end */
            if (l->nheld < 16) l->held[l->nheld++] = c;
            else concur_close(c);
            continue;
        }
        concur_co *co = concur_go(NULL, serve_page, (void *)(intptr_t)c);
        if (co) concur_detach(co);
        else concur_close(c);
    }
    while (l->nheld > 0) concur_close(l->held[--l->nheld]);
    concur_close(l->fd);
    return NULL;
}

/* ---- the client: GET one URL, return the body's length or a negative error ---- */
typedef struct fetch { const char *url; double timeout; long length; int status; } fetch;

static void *fetch_url(void *arg) {
    fetch *f = (fetch *)arg;
    char host[64], path[128];
    int port;
    printf("Fetching %s...\n", f->url);
    if (sscanf(f->url, "http://%63[^:/]:%d%127s", host, &port, path) != 3) {
        f->status = -EINVAL;
        return NULL;
    }
    /* One deadline for the whole request, like aiohttp's total timeout. */
    double deadline = concur_now() + f->timeout;
    int fd = concur_tcp_dial(host, port, f->timeout);
    if (fd < 0) { f->status = fd; return NULL; }
    char req[256];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host);
    long total = 0;
    int rc = (int)concur_send(fd, req, (size_t)rl, 0, deadline - concur_now(), NULL);
    char buf[16384];
    char head[512];
    size_t head_len = 0;
    while (rc >= 0) {
        double left = deadline - concur_now();
        ssize_t n = concur_read(fd, buf, sizeof buf, left > 0 ? left : 0);
        if (n == 0) break;          /* the server closed: the body is complete */
        if (n < 0) { rc = (int)n; break; }
        if (head_len < sizeof head) {
            size_t take = (size_t)n < sizeof head - head_len ? (size_t)n : sizeof head - head_len;
            memcpy(head + head_len, buf, take);
            head_len += take;
        }
        total += n;
    }
    concur_close(fd);
    if (rc < 0) { f->status = rc; return NULL; }
    /* Status line, then the body is whatever follows the blank line. */
    int code = 0;
    head[head_len < sizeof head ? head_len : sizeof head - 1] = 0;
    sscanf(head, "HTTP/1.%*d %d", &code);
    const char *blank = strstr(head, "\r\n\r\n");
    if (code != 200 || !blank) { f->status = -EPROTO; return NULL; }
    f->length = total - (long)(blank + 4 - head);
    printf("Finished fetching %s, length: %ld\n", f->url, f->length);
    return NULL;
}

/* The refused port: bind a port, then close it, so nobody listens there. */
static int unused_port(void) {
    int fd = concur_tcp_listen("127.0.0.1", 0, 1);
    int port = concur_tcp_local_port(fd);
    concur_close(fd);
    return port;
}

typedef struct plan { fetch *fetches; int n; concur_co *servers[2]; } plan;

static void *main_coroutine(void *arg) {
    plan *p = (plan *)arg;
    concur_co *tasks[8];
    double t0 = concur_now();
    for (int i = 0; i < p->n; i++) tasks[i] = concur_go(NULL, fetch_url, &p->fetches[i]);
    for (int i = 0; i < p->n; i++) concur_join(tasks[i], CONCUR_FOREVER, NULL); /* gather */
    double took = concur_now() - t0;
    for (int i = 0; i < p->n; i++)
        if (p->fetches[i].status < 0)
            printf("Error fetching %s: %s\n", p->fetches[i].url, concur_strerror(p->fetches[i].status));
    printf("Total lengths: [");
    for (int i = 0; i < p->n; i++) printf("%s%ld", i ? ", " : "", p->fetches[i].length);
    printf("] in %.2f s, all concurrently on one thread\n", took);
    concur_cancel(p->servers[0]); /* stop serving so the loop can end */
    concur_cancel(p->servers[1]);
    return NULL;
}

int main(void) {
    concur_loop *loop = concur_loop_create(NULL);
    listener web, silent;
    memset(&web, 0, sizeof web);
    memset(&silent, 0, sizeof silent);
    web.fd = concur_tcp_listen("127.0.0.1", 0, 64);
    silent.fd = concur_tcp_listen("127.0.0.1", 0, 64);
    silent.silent = 1;
    if (!loop || web.fd < 0 || silent.fd < 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    char urls[5][64];
    snprintf(urls[0], 64, "http://127.0.0.1:%d/page/3", concur_tcp_local_port(web.fd));
    snprintf(urls[1], 64, "http://127.0.0.1:%d/page/7", concur_tcp_local_port(web.fd));
    snprintf(urls[2], 64, "http://127.0.0.1:%d/page/5", concur_tcp_local_port(web.fd));
    snprintf(urls[3], 64, "http://127.0.0.1:%d/", unused_port());
    snprintf(urls[4], 64, "http://127.0.0.1:%d/slow", concur_tcp_local_port(silent.fd));
    fetch fetches[5];
    for (int i = 0; i < 5; i++) {
        fetches[i].url = urls[i];
        fetches[i].timeout = 1.0;
        fetches[i].length = 0;
        fetches[i].status = 0;
    }
    plan p = {fetches, 5, {NULL, NULL}};
    p.servers[0] = concur_go(loop, accept_loop, &web);
    p.servers[1] = concur_go(loop, accept_loop, &silent);
    concur_detach(concur_go(loop, main_coroutine, &p));
    concur_loop_run(loop);
    concur_join(p.servers[0], 0, NULL);
    concur_join(p.servers[1], 0, NULL);
    concur_loop_destroy(loop);
    int ok = fetches[0].length == 30000 && fetches[1].length == 70000 &&
             fetches[2].length == 50000 && fetches[3].status == -ECONNREFUSED &&
             fetches[4].status == -ETIMEDOUT;
    if (!ok) fprintf(stderr, "fetch: unexpected outcome\n");
    return ok ? 0 : 1;
}
