/* http_hello.c - an HTTP/1.1 "Hello, World!" server on one thread, one coroutine per
   connection, written as plain blocking code.

   Each connection is a coroutine that reads requests and answers them in order:
   keep-alive and pipelined requests are served (HTTP/1.0 clients get keep-alive only
   when they ask for it), "Connection: close" is honoured in any letter case, request
   bodies sized by Content-Length are read past, a malformed request gets 400 and a
   header over 8 KiB gets 431 before the connection closes, and an idle connection is
   dropped after 30 seconds. This is the server that workload W7 measures with
   `wrk -t1 -c100 -d5s`; `ab` (HTTP/1.0) and curl work against it too.

   Build and run:
       cc -O2 -pthread examples/http_hello.c -o http_hello
       ./http_hello 8080            # serve on 127.0.0.1:8080 until killed
       ./http_hello --self-test     # a free port, 50 clients and the odd cases,
                                    # every response checked */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONCUR_IMPLEMENTATION
#include "../concur.h"

#define HELLO "Hello, World!"
#define HELLO_KEEP_ALIVE \
    "HTTP/1.1 200 OK\r\n" \
    "Content-Type: text/plain\r\n" \
    "Content-Length: 13\r\n" \
    "\r\n" HELLO
/* The answer nearly every request gets (wrk's, browsers'), ready to copy. */
static const char hello_keep_alive[] = HELLO_KEEP_ALIVE;
#define HELLO_LEN (sizeof hello_keep_alive - 1)
#define MAX_HEADER 8192
#define MAX_ANSWER 256 /* the longest answer below, with room to spare */

typedef struct request {
    size_t head_len;   /* request line and headers, with the blank line */
    size_t body_len;   /* from Content-Length: read past, not answered */
    int status;        /* 200, or the error the request gets */
    int keep_alive;    /* the connection stays open after the answer */
    int http10;        /* an HTTP/1.0 client: say so when keep-alive is kept */
    int head_only;     /* HEAD: the answer's headers without its body */
} request;

/* Offset just past the first "\r\n\r\n" in buf[0, len), or 0 when there is none. */
static size_t header_end(const char *buf, size_t len) {
    for (const char *p = buf; (p = memchr(p, '\r', (size_t)(buf + len - p))) != NULL; p++)
        if ((size_t)(buf + len - p) >= 4 && memcmp(p, "\r\n\r\n", 4) == 0)
            return (size_t)(p - buf) + 4;
    return 0;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

/* Is s[0, n) equal to the lower-case word, ignoring case? */
static int is_word(const char *s, size_t n, const char *word) {
    size_t i = 0;
    for (; i < n && word[i]; i++)
        if (lower((unsigned char)s[i]) != word[i]) return 0;
    return i == n && !word[i];
}

/* Does a comma-separated header value hold the token (as "Connection: close" or
   "Connection: TE, Keep-Alive" do)? */
static int has_token(const char *v, size_t n, const char *token) {
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t start = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t') i++;
        if (i > start && is_word(v + start, i - start, token)) return 1;
    }
    return 0;
}

/* Parses the request at the front of buf[0, len). Returns 0 while its header is
   incomplete, else 1 with the request, or the error it gets, in *rq. */
static int parse_request(const char *buf, size_t len, request *rq) {
    size_t end = header_end(buf, len);
    if (!end) return 0;
    memset(rq, 0, sizeof *rq);
    rq->head_len = end;
    rq->status = 400; /* until the request line proves otherwise */
    /* The request line: METHOD SP TARGET SP HTTP/1.x CRLF */
    const char *line = buf, *eol = memchr(buf, '\r', end);
    const char *sp1 = memchr(line, ' ', (size_t)(eol - line));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || sp1 == line || !sp2 || eol - sp2 != 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
        (sp2[8] != '0' && sp2[8] != '1'))
        return 1;
    rq->status = 200;
    rq->http10 = sp2[8] == '0';
    rq->keep_alive = !rq->http10;
    rq->head_only = sp1 - line == 4 && memcmp(line, "HEAD", 4) == 0;
    /* The headers, one per line, up to the blank line. */
    for (const char *p = eol + 2; p < buf + end - 2; p = eol + 2) {
        eol = memchr(p, '\r', (size_t)(buf + end - p));
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p) { rq->status = 400; break; }
        const char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t')) v++;
        size_t name_len = (size_t)(colon - p), v_len = (size_t)(eol - v);
        if (is_word(p, name_len, "connection")) {
            if (has_token(v, v_len, "close")) rq->keep_alive = 0;
            else if (has_token(v, v_len, "keep-alive")) rq->keep_alive = 1;
        } else if (is_word(p, name_len, "content-length")) {
            size_t n = 0, digits = 0;
            for (; v < eol && *v >= '0' && *v <= '9' && digits < 15; v++, digits++)
                n = n * 10 + (size_t)(*v - '0');
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            if (!digits || v != eol) { rq->status = 400; break; }
            rq->body_len = n;
        } else if (is_word(p, name_len, "transfer-encoding")) {
            rq->status = 501; /* chunked bodies: not for a hello-world server */
        }
    }
    if (rq->status != 200) rq->keep_alive = 0;
    return 1;
}

/* Writes the answer to rq into out (MAX_ANSWER bytes); returns its length. */
static size_t answer(char *out, const request *rq) {
    if (rq->status == 200 && rq->keep_alive && !rq->http10 && !rq->head_only) {
        memcpy(out, hello_keep_alive, HELLO_LEN);
        return HELLO_LEN;
    }
    const char *status = rq->status == 200 ? "200 OK"
                       : rq->status == 400 ? "400 Bad Request"
                       : rq->status == 431 ? "431 Request Header Fields Too Large"
                                           : "501 Not Implemented";
    const char *body = rq->status == 200 ? HELLO : status + 4;
    const char *connection = !rq->keep_alive ? "Connection: close\r\n"
                           : rq->http10     ? "Connection: keep-alive\r\n" : "";
    int n = snprintf(out, MAX_ANSWER,
                     "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n%s",
                     status, strlen(body), connection, rq->head_only ? "" : body);
    return (size_t)n;
}

/* Closing a socket with input still unread makes the kernel answer with a reset, which
   can destroy the last answer before the client has read it. So stop sending, read and
   drop whatever the client still sends until it closes (2 seconds at most), then close. */
static void lingering_close(int fd) {
    char sink[4096];
    shutdown(fd, SHUT_WR);
    double deadline = concur_now() + 2.0, left;
    while ((left = deadline - concur_now()) > 0 && concur_recv(fd, sink, sizeof sink, 0, left) > 0) {}
    concur_close(fd);
}

static void *serve_connection(void *arg) {
    int fd = (int)(intptr_t)arg;
    char in[MAX_HEADER], out[16 * MAX_ANSWER];
    size_t have = 0;     /* bytes in `in` */
    size_t skip = 0;     /* body bytes still to read past */
    int open = 1;
    while (open) {
        /* Answer every complete request that has arrived, in as few writes as fit. */
        size_t done = 0, out_len = 0;
        request rq;
        for (;;) {
            size_t k = skip < have - done ? skip : have - done;
            done += k;
            skip -= k;
            if (skip || !parse_request(in + done, have - done, &rq)) break;
            if (out_len + MAX_ANSWER > sizeof out) {
                if (concur_send(fd, out, out_len, 0, 30.0, NULL) < 0) goto hang_up;
                out_len = 0;
            }
            out_len += answer(out + out_len, &rq);
            done += rq.head_len;
            skip = rq.body_len;
            if (!rq.keep_alive) { open = 0; break; }
        }
        if (have - done == sizeof in && open) {
            /* A header that does not fit: say so, then hang up. */
            rq.status = 431, rq.keep_alive = 0, rq.http10 = 0, rq.head_only = 0;
            out_len += answer(out + out_len, &rq);
            open = 0;
        }
        if (out_len && concur_send(fd, out, out_len, 0, 30.0, NULL) < 0) break;
        if (!open) {
            lingering_close(fd);
            return NULL;
        }
        memmove(in, in + done, have - done);
        have -= done;
        ssize_t n = concur_recv(fd, in + have, sizeof in - have, 0, 30.0);
        if (n <= 0) break; /* peer closed, idle timeout, reset or cancel */
        have += (size_t)n;
    }
hang_up:
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

#define HELLO_CLOSE "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n" \
                    "Connection: close\r\n\r\n" HELLO
#define BAD_REQUEST "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n" \
                    "Content-Length: 11\r\nConnection: close\r\n\r\nBad Request"
#define GET "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
#define GET_CLOSE "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"

/* Bytes written as first, then `times` copies of repeated, then last. */
typedef struct text { const char *first, *repeated; int times; const char *last; } text;

static char *text_make(const text *t, size_t *len) {
    size_t rl = t->repeated ? strlen(t->repeated) : 0, fl = strlen(t->first);
    size_t ll = t->last ? strlen(t->last) : 0;
    *len = fl + rl * (size_t)t->times + ll;
    char *buf = malloc(*len + 1), *p = buf;
    if (!buf) return NULL;
    memcpy(p, t->first, fl), p += fl;
    for (int i = 0; i < t->times; i++) memcpy(p, t->repeated, rl), p += rl;
    if (ll) memcpy(p, t->last, ll);
    return buf;
}

/* Sends the request in pieces of `chunk` bytes (0: in one write), reads until the
   server closes and compares what came back with the expected answers. */
static void exchange(const char *name, const text *request, size_t chunk, const text *answers) {
    size_t req_len, expect_len, got = 0;
    char *req = text_make(request, &req_len), *expect = text_make(answers, &expect_len);
    char *buf = malloc(expect_len + 4096);
    int fd = req && expect && buf ? concur_tcp_dial("127.0.0.1", self_test_port, 5.0) : -ENOMEM;
    ssize_t n = fd;
    if (fd >= 0) {
        for (size_t off = 0, k; off < req_len; off += k) {
            k = chunk && chunk < req_len - off ? chunk : req_len - off;
            if (concur_write(fd, req + off, k, 5.0, NULL) < 0) break; /* it may hang up early */
        }
        while (got < expect_len + 4096 && (n = concur_read(fd, buf + got, expect_len + 4096 - got, 5.0)) > 0)
            got += (size_t)n;
        concur_close(fd);
    }
    if (n < 0 || got != expect_len || memcmp(buf, expect, got) != 0) {
        fprintf(stderr, "%s: %zu bytes back (%s), expected %zu\n", name, got,
                n < 0 ? concur_strerror((int)n) : "then closed", expect_len);
        self_test_failures++;
    }
    free(req), free(expect), free(buf);
}

/* Nine keep-alive requests and one that asks the server to close: all in one write
   (pipelined), one write per request, or in 7-byte pieces that split requests. */
static void *client(void *arg) {
    int id = (int)(intptr_t)arg;
    char name[32];
    snprintf(name, sizeof name, "client %d", id);
    text request = {"", GET, 9, GET_CLOSE}, answers = {"", HELLO_KEEP_ALIVE, 9, HELLO_CLOSE};
    exchange(name, &request, id % 3 == 0 ? 0 : id % 3 == 1 ? sizeof GET - 1 : 7, &answers);
    return NULL;
}

/* The cases a browser, curl, ab or a fuzzer bring. */
static const struct odd_case { const char *name; text request, answers; } odd_cases[] = {
    {"HTTP/1.0, closed after one answer",
     {"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", NULL, 0, NULL}, {HELLO_CLOSE, NULL, 0, NULL}},
    {"HTTP/1.0 keep-alive",
     {"", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 2, "GET / HTTP/1.0\r\n\r\n"},
     {"", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
          "Connection: keep-alive\r\n\r\n" HELLO, 2, HELLO_CLOSE}},
    {"lower-case connection: close",
     {"GET / HTTP/1.1\r\nconnection: te, CLOSE\r\n\r\n", NULL, 0, NULL}, {HELLO_CLOSE, NULL, 0, NULL}},
    {"bodies read past",
     {"POST / HTTP/1.1\r\nContent-Length: 21\r\n\r\nGET / HTTP/1.1\r\n\r\nxyz"
      "PUT / HTTP/1.1\r\ncontent-length:0\r\n\r\n" GET_CLOSE, NULL, 0, NULL},
     {HELLO_KEEP_ALIVE HELLO_KEEP_ALIVE HELLO_CLOSE, NULL, 0, NULL}},
    {"200 pipelined requests", {"", GET, 199, GET_CLOSE}, {"", HELLO_KEEP_ALIVE, 199, HELLO_CLOSE}},
    {"HEAD",
     {"HEAD / HTTP/1.1\r\n\r\n" GET_CLOSE, NULL, 0, NULL},
     {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n" HELLO_CLOSE,
      NULL, 0, NULL}},
    {"malformed request line", {"HELLO\r\n\r\n", NULL, 0, NULL}, {BAD_REQUEST, NULL, 0, NULL}},
    {"bad Content-Length",
     {GET "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", NULL, 0, NULL},
     {HELLO_KEEP_ALIVE BAD_REQUEST, NULL, 0, NULL}},
    {"a header over 8 KiB",
     {"GET / HTTP/1.1\r\nX-Big: ", "x", 9000, "\r\n\r\n"},
     {"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
      "Content-Length: 31\r\nConnection: close\r\n\r\nRequest Header Fields Too Large", NULL, 0, NULL}},
    {"chunked body",
     {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", NULL, 0, NULL},
     {"HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n"
      "Connection: close\r\n\r\nNot Implemented", NULL, 0, NULL}},
};
#define ODD_CASES (int)(sizeof odd_cases / sizeof odd_cases[0])

/* One after the other, beside the 50 clients. */
static void *odd_client(void *arg) {
    (void)arg;
    for (int i = 0; i < ODD_CASES; i++)
        exchange(odd_cases[i].name, &odd_cases[i].request, 0, &odd_cases[i].answers);
    return NULL;
}
#define CLIENTS 50

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
    server s = {fd, self_test ? CLIENTS + ODD_CASES : 0};
    concur_detach(concur_go(loop, acceptor, &s));
    if (self_test) {
        self_test_port = concur_tcp_local_port(fd);
        for (int i = 0; i < CLIENTS; i++)
            concur_detach(concur_go(loop, client, (void *)(intptr_t)i));
        concur_detach(concur_go(loop, odd_client, NULL));
    } else {
        printf("serving http://127.0.0.1:%d/ (Ctrl-C stops)\n", concur_tcp_local_port(fd));
        fflush(stdout);
    }
    concur_loop_run(loop);
    concur_loop_destroy(loop);
    if (self_test) {
        printf("%d clients x 10 requests and %d odd cases: %s\n", CLIENTS, ODD_CASES,
               self_test_failures ? "FAILED" : "all responses correct");
        return self_test_failures ? 1 : 0;
    }
    return 0;
}
